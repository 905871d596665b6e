"""What a provider's answers look like, made from the sandbox's OpenAI-shaped objects.

Pure functions over JSON-ready dicts; :mod:`batchfsm.sandbox.dialects` calls them on
the way out. The facts, from each provider's published reference:

* Together AI (https://docs.together.ai/reference/batch-create): statuses in upper case,
  no FINALIZING or CANCELLING; ``job_deadline``, ``model_id``, ``progress`` (percent),
  ``file_size_bytes``, ``user_id``, a free-text ``error``, one ``completed_at`` for
  whatever end, RFC 3339 timestamps, no ``request_counts`` and no ``metadata``;
  ``create`` answers ``{"job": {...}}``, the list is one bare array; uploaded batch
  input has ``purpose: "batch-api"``.
* Azure OpenAI (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/batch):
  a failed batch's ``request_counts`` has null ``completed`` and ``failed``; a batch
  that ends with no failed line still has an ``error_file_id``, an empty file.
* OpenRouter (https://openrouter.ai/docs/client-sdks/python/components/batchliststatus):
  lists know only ``in_progress`` for a batch that is ``finalizing`` or ``cancelling``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["TOGETHER_WORDS", "azure_batch", "collapsed", "iso", "together_batch"]

TOGETHER_WORDS = {
    "validating": "VALIDATING",
    "in_progress": "IN_PROGRESS",
    "finalizing": "IN_PROGRESS",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "expired": "EXPIRED",
    "cancelling": "IN_PROGRESS",
    "cancelled": "CANCELLED",
}
"""The sandbox's status -> the word Together shows (it has no word for finalizing or
cancelling: the batch still reads as running)."""

_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


def iso(timestamp: object) -> str | None:
    """Unix seconds as RFC 3339 (``2026-01-01T00:00:12Z``), None for None."""
    if not isinstance(timestamp, int | float):
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def together_batch(obj: dict[str, Any], *, file_size: int) -> dict[str, Any]:
    """The sandbox's Batch object as Together's batch job."""
    status = obj["status"]
    counts = obj.get("request_counts") or {}
    total = counts.get("total") or 0
    done = (counts.get("completed") or 0) + (counts.get("failed") or 0)
    errors = (obj.get("errors") or {}).get("data") or []
    return {
        "id": obj["id"],
        "user_id": "user_sandbox",
        "input_file_id": obj["input_file_id"],
        "file_size_bytes": file_size,
        "status": TOGETHER_WORDS.get(status, status.upper()),
        "job_deadline": iso(obj.get("expires_at")),
        "created_at": iso(obj.get("created_at")),
        "endpoint": obj["endpoint"],
        "progress": round(100.0 * done / total, 1) if total else 0.0,
        "model_id": obj.get("model"),
        "output_file_id": obj.get("output_file_id"),
        "error_file_id": obj.get("error_file_id"),
        "error": "; ".join(str(e.get("message") or e.get("code")) for e in errors),
        "completed_at": iso(obj.get(f"{status}_at")) if status in _ENDED else None,
    }


def azure_batch(obj: dict[str, Any], *, empty_file_id: str | None) -> dict[str, Any]:
    """The sandbox's Batch object with Azure's quirks: null counts when failed, and
    ``empty_file_id`` as the error file of a batch that ended with none."""
    out = dict(obj)
    if out["status"] == "failed" and isinstance(out.get("request_counts"), dict):
        out["request_counts"] = {**out["request_counts"], "completed": None, "failed": None}
    if empty_file_id is not None and not out.get("error_file_id"):
        out["error_file_id"] = empty_file_id
    return out


def collapsed(obj: dict[str, Any]) -> dict[str, Any]:
    """A Batch object as OpenRouter's list shows it."""
    if obj.get("status") in ("finalizing", "cancelling"):
        return {**obj, "status": "in_progress"}
    return obj
