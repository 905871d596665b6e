"""The endpoints a batch may target, and the ones the API no longer takes.

From the ``endpoint`` parameter of https://platform.openai.com/docs/api-reference/batch/create
(the ``openai`` client's ``batch_create_params``, 3.63.0). ``/v1/videos`` was added to
that list in 2026 and retired the same year: the client marks it deprecated, "The Videos
API shut down on September 24, 2026. Batch creation no longer accepts this endpoint."
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from batchfsm.errors import InputFileError

__all__ = ["ENDPOINTS", "MESSAGES", "MODEL_OPTIONAL", "RETIRED_ENDPOINTS", "check_endpoint"]

ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
    }
)
"""Every endpoint the Batch API takes. A plain constant, so a provider profile can
narrow it to what its server accepts."""
RETIRED_ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {
        "/v1/videos": "the Videos API shut down on September 24, 2026 and batch creation "
        "no longer accepts /v1/videos",
    }
)
"""Endpoints the API used to take for batches, and why it no longer does."""
MESSAGES = "/v1/messages"
"""Anthropic's Message Batches (https://platform.claude.com/docs/en/build-with-claude/batch-processing):
every request is a Messages call. Taken here; only the ``anthropic`` profile accepts it
(:meth:`batchfsm.providers.ProviderProfile.check_endpoint`)."""
MODEL_OPTIONAL = frozenset({"/v1/moderations", "/v1/images/generations", "/v1/images/edits"})
"""Endpoints whose requests may leave ``body.model`` out (the endpoint's default model)."""


def check_endpoint(endpoint: str, *, path: str | None = None) -> str:
    """``endpoint`` if the Batch API takes it; else :class:`InputFileError` saying why
    (for a retired one, since when) and listing the ones it takes."""
    if endpoint in ENDPOINTS or endpoint == MESSAGES:
        return endpoint
    why = RETIRED_ENDPOINTS.get(endpoint)
    if why is not None:
        raise InputFileError(f"endpoint {endpoint!r} is refused: {why}", path=path)
    raise InputFileError(
        f"endpoint {endpoint!r} is not one the Batch API takes; use one of "
        + ", ".join(sorted(ENDPOINTS)),
        path=path,
    )
