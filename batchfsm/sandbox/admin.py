"""The one Administration API route the sandbox serves: a project's rate limits.

``GET /v1/organization/projects/{project_id}/rate_limits`` lists one
``project.rate_limit`` per model of the sandbox's queue limits (``--queue-limit``,
``Scenario.queue_limits``), with the limit as ``batch_1_day_max_input_tokens``, as
OpenAI's Administration API does (https://platform.openai.com/docs/api-reference/project-rate-limits).
``*`` is the sandbox's own "any other model" and no model, so it is not listed. Any
project id is taken: the sandbox has one organisation and one queue.

It takes an *admin* key only (``Authorization: Bearer sk-admin-...``): any other key is
refused with 401, its text showing the key masked as OpenAI shows a wrong one. Rows come
in id order, ``limit`` (1 to 100, default 100) at a time, after the id ``after``, with
``first_id``, ``last_id`` and ``has_more``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchfsm.sandbox.api_errors import page_size, unauthorized

__all__ = ["ADMIN_KEY_PREFIX", "RATE_LIMITS_ROUTE", "check_admin_key", "rate_limits_page"]

ADMIN_KEY_PREFIX = "sk-admin-"
RATE_LIMITS_ROUTE = "/v1/organization/projects/<project_id>/rate_limits"
ANY_MODEL = "*"
_OTHER_LIMITS = {"max_requests_per_1_minute": 500, "max_tokens_per_1_minute": 200_000}
"""The per-minute limits every row also states (the sandbox does not enforce them)."""


def check_admin_key(authorization: str) -> None:
    """:raises SandboxAPIError: 401 unless the bearer key is an admin key."""
    _scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if not key.startswith(ADMIN_KEY_PREFIX):
        shown = f"{key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}" if len(key) > 12 else "***"
        raise unauthorized(
            f"Incorrect API key provided: {shown}. The Administration API takes an admin "
            f"key ({ADMIN_KEY_PREFIX}...), not a project or user API key. (sandbox)",
            code="invalid_api_key",
        )


def _row(model: str, tokens: int) -> dict[str, Any]:
    return {
        "object": "project.rate_limit",
        "id": f"rl-{model}",
        "model": model,
        **_OTHER_LIMITS,
        "batch_1_day_max_input_tokens": tokens,
    }


def rate_limits_page(
    limits: Mapping[str, int], *, limit: str | None, after: str | None
) -> dict[str, Any]:
    """The list page for ``limits`` (the sandbox's queue limits by model).

    :raises SandboxAPIError: 400 for a ``limit`` that is not 1 to 100.
    """
    size = page_size("100" if limit is None else limit)
    rows = sorted(
        (_row(model, tokens) for model, tokens in limits.items() if model != ANY_MODEL),
        key=lambda row: str(row["id"]),
    )
    if after:
        rows = [row for row in rows if str(row["id"]) > after]
    page = rows[:size]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(rows) > size,
    }
