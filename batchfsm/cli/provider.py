"""``--provider`` on the commands that talk to a Batch API, and the limits it implies.

The profile itself (:mod:`batchfsm.providers`) is chosen from the settings, where
``--provider`` overrides ``BATCHFSM_PROVIDER`` (:func:`batchfsm.wiring.settings_from_args`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from batchfsm.config import PROVIDER_NAMES
from batchfsm.jobs.input_file import Limits

if TYPE_CHECKING:
    from batchfsm.config import Settings

__all__ = ["add_provider_option", "limits_for"]


def add_provider_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider", choices=PROVIDER_NAMES, default=None,
        help="whose Batch API (default $BATCHFSM_PROVIDER, else detected from "
        "OPENAI_BASE_URL, else openai); see the README's Providers section",
    )  # fmt: skip


def limits_for(max_requests: int | None, settings: Settings) -> Limits:
    """The provider's limits per batch; ``--max-requests`` lowers its request count,
    never raises it."""
    from batchfsm.providers import profile_for

    profile = profile_for(settings)
    most = profile.max_requests
    return Limits(
        max_requests=most if max_requests is None else min(max_requests, most),
        max_bytes=profile.max_bytes,
        max_embedding_inputs=profile.max_embedding_inputs,
    )
