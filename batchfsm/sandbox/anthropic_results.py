"""The results stream of a sandbox Message Batch: one line per request, in Anthropic's
shapes (``MessageBatchIndividualResponse``: ``{"custom_id", "result": {"type", ...}}``).

``succeeded`` carries a Message (https://platform.claude.com/docs/en/api/messages: a
text block, ``stop_reason``, ``usage`` with the cache counts), ``errored`` an
``ErrorResponse`` (``{"type": "error", "error": {"type", "message"}}``), ``canceled`` and
``expired`` nothing more. Bodies derive from the request and a generator seeded by the
batch id, so a re-read gives the same bytes; the order is shuffled, as the API does not
keep request order ("use the custom_id field to match results to requests").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from batchfsm.sandbox.ids import new_id
from batchfsm.sandbox.results import encode_lines

__all__ = ["error_type", "message_body", "result_lines"]

_ERROR_TYPES: dict[int | str, str] = {
    400: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
    "request_timeout": "overloaded_error",
    "invalid_params": "invalid_request_error",
}
"""How a request failed (the scenario's codes, a custom_id marker, or params the API
would refuse) -> the error type its result carries."""


def error_type(outcome: int | str) -> str:
    """The ``error.type`` of a request that failed with ``outcome``."""
    return _ERROR_TYPES[outcome]


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        return _text_of(value.get("content", value.get("text", "")))
    return ""


def message_body(custom_id: str, params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The Message a request's ``params`` would have got."""
    messages = params.get("messages")
    prompt = _text_of(messages[-1]) if isinstance(messages, list) and messages else ""
    reply = f"sandbox reply to {custom_id}: {prompt[-60:]}"
    return {
        "id": new_id(rng, "msg_"),
        "type": "message",
        "role": "assistant",
        "model": params.get("model"),
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(_text_of(messages).split())),
            "output_tokens": len(reply.split()),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _errored(custom_id: str, outcome: int | str, rng: random.Random) -> dict[str, Any]:
    kind = error_type(outcome)
    message = (
        "params: model, max_tokens and messages are required"
        if outcome == "invalid_params"
        else f"{kind} (sandbox scripted failure)"
    )
    error = {"type": "error", "error": {"type": kind, "message": message},
             "request_id": "req_" + rng.randbytes(12).hex()}  # fmt: skip
    return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}


def result_lines(
    batch_id: str,
    requests: Sequence[dict[str, Any]],
    outcomes: Sequence[int | str | None],
    done: set[int],
    cancelled: bool,
    seed: int,
) -> bytes:
    """The JSONL results of an ended batch: requests outside ``done`` never ran."""
    rng = random.Random(f"{seed}:{batch_id}:results")
    lines: list[dict[str, Any]] = []
    for index, request in enumerate(requests):
        custom_id = request["custom_id"]
        outcome = outcomes[index]
        if index not in done:
            never = "canceled" if cancelled else "expired"
            lines.append({"custom_id": custom_id, "result": {"type": never}})
        elif outcome is None:
            message = message_body(custom_id, request["params"], rng)
            lines.append(
                {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
            )
        else:
            lines.append(_errored(custom_id, outcome, rng))
    rng.shuffle(lines)
    return encode_lines(lines)
