"""Batch objects that are not OpenAI-shaped, read into OpenAI's shape.

Only Together AI's needs this. Its object (https://docs.together.ai/reference/batch-create)
names the deadline ``job_deadline`` and the model ``model_id``, has one end time,
``completed_at``, whatever the end, a free-text ``error`` instead of ``errors.data``, a
``progress`` percentage instead of ``request_counts``, no ``metadata``, and ``create``
wraps it: ``{"job": {...}, "warning": "..."}``. Its timestamps are RFC 3339 strings,
which the snapshot reads itself (:func:`batchfsm.fsm.wire.unix_seconds`), so they pass
through untouched here: this module moves fields, it never interprets a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["read_together"]

_ENDED_AT = {
    "COMPLETED": "completed_at",
    "FAILED": "failed_at",
    "EXPIRED": "expired_at",
    "CANCELLED": "cancelled_at",
}
"""Together's ``completed_at`` is the time the batch ended; the snapshot wants it in the
field of the state it ended in (the path through the machine is read from these)."""


def read_together(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A Together batch object (or create's ``{"job": ...}`` wrapper) in OpenAI's shape.

    An object parsed by the ``openai`` client carries every OpenAI field, as None when
    Together did not send it; a field OpenAI's shape already holds is never overwritten.
    """
    data = dict(answer)
    job = data.get("job")
    if isinstance(job, Mapping) and data.get("status") is None:
        data = dict(job)
    _move(data, "job_deadline", "expires_at")
    _move(data, "model_id", "model")
    status = data.get("status")
    ended = _ENDED_AT.get(status.upper()) if isinstance(status, str) else None
    end_time = data.pop("completed_at", None)
    if ended is not None and end_time is not None and data.get(ended) is None:
        data[ended] = end_time
    error = data.pop("error", None)
    if isinstance(error, str) and error.strip() and not data.get("errors"):
        data["errors"] = {"object": "list", "data": [{"code": None, "message": error.strip()}]}
    return data


def _move(data: dict[str, Any], source: str, target: str) -> None:
    value = data.pop(source, None)
    if value is not None and data.get(target) is None:
        data[target] = value
