"""Anthropic's Message Batches API in the engine's terms, as data: statuses, timestamps,
counts and result lines.

The machine and the rulebook stay the same eight states; this module only says which
of them an Anthropic batch is in and what each result line did to its request. Facts
from the API reference (https://platform.claude.com/docs/en/api/messages/batches) and
the guide (https://platform.claude.com/docs/en/build-with-claude/batch-processing),
checked against the official ``anthropic`` client's types (``MessageBatch``,
``MessageBatchIndividualResponse``):

=====================  ===============================================================
``processing_status``  state
=====================  ===============================================================
``in_progress``        ``in_progress`` (a batch "begins processing immediately" once
                       created; the record, which starts every batch at
                       ``validating``, shows that one hop)
``canceling``          ``cancelling``
``ended``              ``cancelled`` if ``cancel_initiated_at`` is set, else
                       ``expired`` if ``request_counts.expired`` > 0, else
                       ``completed``
anything else          the word itself: rejected as ``unknown`` and recorded verbatim
                       (one of the engine's own eight, which Anthropic does not use,
                       as ``anthropic:<word>``, so it cannot be taken for that state)
=====================  ===============================================================

Timestamps: ``created_at`` is also ``in_progress_at``; ``cancel_initiated_at`` is
``cancelling_at``; ``ended_at`` is the stamp of the state it ended in, so the path
through the machine is read from the stamps as for OpenAI (``finalizing``, which
Anthropic never shows, is an implied hop before ``completed``). Counts: ``total`` is
the sum of the five, ``completed`` is ``succeeded``, ``failed`` is ``errored``.

The batch has no result *files*: once ended, ``results_url`` streams one line per
request. ``output_file_id`` carries the batch id then (the results are fetched by it),
and :func:`result_line` rewrites each line into the shape
:mod:`batchfsm.ledger.result_lines` already classifies, so the same ledger rules settle
it (see :data:`ERROR_STATUS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from batchfsm.fsm.spec import BatchStatus

__all__ = [
    "COUNT_KEYS",
    "ENDPOINT",
    "ERROR_STATUS",
    "STATUS_WORDS",
    "ended_status",
    "read_anthropic",
    "result_line",
]

ENDPOINT = "/v1/messages"
"""What every request of a Message Batch is: a Messages API call."""

STATUS_WORDS: Mapping[str, BatchStatus] = MappingProxyType(
    {"in_progress": BatchStatus.IN_PROGRESS, "canceling": BatchStatus.CANCELLING}
)
"""``processing_status`` words that name one state alone (``ended`` needs the rule of
:func:`ended_status`)."""

COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")
"""``request_counts``: their sum "always matches the total number of requests"."""

_END_STAMP: Mapping[str, str] = MappingProxyType(
    {
        s.value: f"{s.value}_at"
        for s in (BatchStatus.CANCELLED, BatchStatus.EXPIRED, BatchStatus.COMPLETED)
    }
)
"""The states an ``ended`` batch may be in, and the stamp ``ended_at`` becomes."""

_ENGINE_WORDS = frozenset(s.value for s in BatchStatus)

ERROR_STATUS: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
    }
)
"""An ``errored`` result's error type -> the HTTP status its line is given, which
decides its fate (:func:`batchfsm.ledger.result_lines.classify`): ``invalid_request``
(and a request too large) fails for good, the others are retried spending an attempt.
A type not listed here keeps its name as the error code with no status, which is
retried spending an attempt (bounded by the attempts allowed), never guessed permanent."""

_NOT_RUN = MappingProxyType(
    {
        "canceled": ("batch_cancelled", "the batch was canceled before the request ran"),
        "expired": ("batch_expired", "the batch expired (24 h) before the request ran"),
    }
)
"""Result types of requests that never ran: retried without spending an attempt."""


def ended_status(batch: Mapping[str, Any]) -> str:
    """The state an ``ended`` batch ended in (the module's table); ``"ended"`` itself,
    recorded as unknown, when its counts cannot say whether a request expired."""
    if batch.get("cancel_initiated_at") is not None:
        return BatchStatus.CANCELLED.value
    counts = batch.get("request_counts")
    expired = counts.get("expired") if isinstance(counts, Mapping) else None
    if type(expired) is not int:
        return "ended"  # not guessed: the rulebook rejects it as unknown and records it
    return (BatchStatus.EXPIRED if expired > 0 else BatchStatus.COMPLETED).value


def _status(batch: Mapping[str, Any]) -> object:
    word = batch.get("processing_status")
    if word == "ended":
        return ended_status(batch)
    mapped = STATUS_WORDS.get(word) if isinstance(word, str) else None
    if mapped is not None:
        return mapped.value
    if isinstance(word, str) and word in _ENGINE_WORDS:  # e.g. "completed": not Anthropic's
        return f"anthropic:{word}"
    return word


def _counts(counts: object) -> object:
    """``request_counts`` in OpenAI's shape; a value that is not an object passes as
    it is, for the snapshot to refuse (or take as unknown, if null)."""
    if not isinstance(counts, Mapping):
        return counts
    values = [counts.get(key) for key in COUNT_KEYS]
    known = all(type(v) is int for v in values)
    return {
        "total": sum(values) if known else None,  # type: ignore[arg-type]
        "completed": counts.get("succeeded"),
        "failed": counts.get("errored"),
    }


def read_anthropic(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A ``MessageBatch`` as the engine's Batch object (OpenAI's shape).

    Moves fields and maps the status; values (RFC 3339 strings, counts) are left for
    :meth:`~batchfsm.fsm.models.BatchSnapshot.from_api` to read or refuse. An answer
    without ``processing_status`` gets no ``status``, and is refused as undecodable.
    """
    status = _status(answer)
    created = answer.get("created_at")
    out: dict[str, Any] = {
        "id": answer.get("id"),
        "object": "batch",
        "endpoint": ENDPOINT,
        "created_at": created,
        "in_progress_at": created,
        "cancelling_at": answer.get("cancel_initiated_at"),
        "expires_at": answer.get("expires_at"),
        "request_counts": _counts(answer.get("request_counts")),
        "output_file_id": answer.get("id") if answer.get("results_url") else None,
        "error_file_id": None,
        "metadata": None,
        "input_file_id": None,
    }
    if "processing_status" in answer:
        out["status"] = status
    stamp = _END_STAMP.get(status) if isinstance(status, str) else None
    if stamp is not None:
        out[stamp] = answer.get("ended_at")
    return out


def result_line(raw: bytes) -> bytes:
    """One line of a batch's results rewritten as an output-file line (no newline).

    ``succeeded`` -> a 200 response whose body is the ``message``; ``errored`` -> the
    status of :data:`ERROR_STATUS` with the error in the body, or, for a type not
    listed, an error whose code is that type; ``canceled``/``expired`` -> the
    never-ran codes ``batch_cancelled``/``batch_expired``. The original ``result`` is
    kept beside every line but a success. A line that is not a result (not JSON, no
    ``custom_id``, an unknown ``result.type``) comes out as a line the classifier calls
    malformed, so it is quarantined verbatim and counted, never given a guessed fate.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.rstrip(b"\r\n")
    if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
        return raw.rstrip(b"\r\n")
    custom_id: str = obj["custom_id"]
    result = obj.get("result")
    kind = result.get("type") if isinstance(result, dict) else None
    if kind == "succeeded" and isinstance(result, dict):
        response: dict[str, Any] = {"status_code": 200}
        if "message" in result:
            response["body"] = result["message"]
        return orjson.dumps({"custom_id": custom_id, "response": response, "error": None})
    line: dict[str, Any] = {"custom_id": custom_id, "response": None, "error": None}
    if kind == "errored" and isinstance(result, dict):
        code, message = _error_of(result.get("error"))
        status = ERROR_STATUS.get(code) if code is not None else None
        if status is not None:
            error = {"type": code, "code": code, "message": message}
            line["response"] = {"status_code": status, "body": {"error": error}}
        else:
            line["error"] = {"code": code, "message": message or "errored, with no error type"}
    elif isinstance(kind, str) and kind in _NOT_RUN:
        code, message = _NOT_RUN[kind]
        line["error"] = {"code": code, "message": message}
    line["result"] = result
    return orjson.dumps(line)


def _error_of(error: object) -> tuple[str | None, str | None]:
    """``(type, message)`` of an errored result's ``error``: an ``ErrorResponse``
    (``{"type": "error", "error": {"type", "message"}}``), or a bare error object."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        message if isinstance(message, str) else None,
    )
