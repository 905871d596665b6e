"""The per-batch limits of the provider a runtime talks to.

A provider's profile (:mod:`batchfsm.providers`) states its limits; submit and every
retry round (from the command line, a library poller or the Lambda) split to them, so
a retry batch is never larger than the provider takes (Azure: 100,000 requests a file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchfsm.jobs.input_file import Limits

if TYPE_CHECKING:
    from batchfsm.config import Settings

__all__ = ["limits_for"]


def limits_for(settings: Settings, max_requests: int | None = None) -> Limits:
    """The provider's limits per batch; ``max_requests`` (``--max-requests``) lowers its
    request count, never raises it."""
    from batchfsm.providers import profile_for

    profile = profile_for(settings)
    most = profile.max_requests
    return Limits(
        max_requests=most if max_requests is None else min(max_requests, most),
        max_bytes=profile.max_bytes,
        max_embedding_inputs=profile.max_embedding_inputs,
    )
