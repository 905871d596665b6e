"""Deterministic response bodies and the output/error file lines that carry them.

Bodies derive from the request (an embedding vector is seeded by a hash of the model and
the text), so a test can predict the exact bytes and a re-run gives the same file. The
three line shapes are the API's (https://platform.openai.com/docs/guides/batch): a
success, an HTTP failure (``error`` null, details in ``response.body.error``) and a
never-ran failure (``response`` null, ``error.code`` such as ``batch_expired``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchfsm.sandbox.ids import new_id
from batchfsm.sandbox.scenario import Fate
from batchfsm.sandbox.validation import BatchRequest

Outcome = int | str | None
"""A request's scripted fate: None succeeds, an int is an HTTP failure status,
``"request_timeout"`` never answered."""

__all__ = [
    "Outcome",
    "Usage",
    "build_result_lines",
    "embedding_vector",
    "encode_lines",
    "http_error_line",
    "never_ran_line",
    "response_body",
    "scripted_outcome",
    "success_line",
]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    def as_chat_usage(self) -> dict[str, Any]:
        """The ``usage`` of a chat completion, with both detail objects the API sends
        (nothing is cached or spent reasoning in the sandbox: its prompts are short)."""
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def as_batch_usage(self, shown: str = "reported") -> dict[str, Any] | None:
        """The ``usage`` object of a Batch (``Fate.batch_usage`` says what it shows)."""
        if shown != "reported":
            return None if shown == "missing" else Usage().as_batch_usage()
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def _tokens(text: str) -> int:
    # A stand-in for a tokenizer: stable, cheap, and never zero for a non-empty prompt.
    return max(1, len(text.split()))


def _text_of(value: Any) -> str:
    """Flatten a prompt (string, list of strings, message parts) into text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        for key in ("text", "content", "input_text"):
            if key in value:
                return _text_of(value[key])
    return "" if value is None else str(value)


def embedding_vector(text: str, *, model: str, dim: int) -> list[float]:
    """A unit vector seeded by sha256(model, text): equal inputs, equal vectors."""
    digest = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def response_body(
    endpoint: str,
    body: dict[str, Any],
    *,
    custom_id: str,
    created: int,
    rng: random.Random,
    embedding_dim: int,
) -> tuple[dict[str, Any], Usage]:
    """The synchronous endpoint's answer to ``body``, and its token usage."""
    model = str(body.get("model", "sandbox-model"))
    if endpoint == "/v1/embeddings":
        return _embeddings(body, model=model, dim=int(body.get("dimensions") or embedding_dim))
    if endpoint == "/v1/chat/completions":
        return _chat(body, model=model, custom_id=custom_id, created=created, rng=rng)
    if endpoint == "/v1/responses":
        return _responses(body, model=model, custom_id=custom_id, created=created, rng=rng)
    if endpoint == "/v1/completions":
        return _completions(body, model=model, custom_id=custom_id, created=created, rng=rng)
    if endpoint == "/v1/moderations":
        return _moderations(body, model=model, rng=rng)
    if endpoint in ("/v1/images/generations", "/v1/images/edits"):
        return _images(body, created=created, rng=rng)
    prompt = _text_of(body.get("prompt") or body.get("input"))
    usage = Usage(_tokens(prompt), 0)
    return {"object": "sandbox.result", "model": model, "custom_id": custom_id}, usage


def _embeddings(body: dict[str, Any], *, model: str, dim: int) -> tuple[dict[str, Any], Usage]:
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) else [raw]
    texts = [_text_of(item) for item in inputs]
    prompt_tokens = sum(_tokens(text) for text in texts)
    data = [
        {"object": "embedding", "index": i, "embedding": embedding_vector(t, model=model, dim=dim)}
        for i, t in enumerate(texts)
    ]
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return answer, Usage(prompt_tokens, 0)


def _reply(prompt: str, custom_id: str) -> str:
    tail = prompt[-60:]
    return f"sandbox reply to {custom_id}: {tail}"


def _chat(
    body: dict[str, Any], *, model: str, custom_id: str, created: int, rng: random.Random
) -> tuple[dict[str, Any], Usage]:
    messages = body.get("messages") or []
    prompt = _text_of(messages[-1]) if isinstance(messages, list) and messages else ""
    reply = _reply(prompt, custom_id)
    usage = Usage(_tokens(_text_of(messages)), _tokens(reply))
    answer = {
        "id": new_id(rng, "chatcmpl-"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage.as_chat_usage(),
        "system_fingerprint": None,
    }
    return answer, usage


def _responses(
    body: dict[str, Any], *, model: str, custom_id: str, created: int, rng: random.Random
) -> tuple[dict[str, Any], Usage]:
    prompt = _text_of(body.get("input"))
    reply = _reply(prompt, custom_id)
    usage = Usage(_tokens(prompt), _tokens(reply))
    answer = {
        "id": new_id(rng, "resp_"),
        "object": "response",
        "created_at": created,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": new_id(rng, "msg_"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.as_batch_usage(),
    }
    return answer, usage


def _completions(
    body: dict[str, Any], *, model: str, custom_id: str, created: int, rng: random.Random
) -> tuple[dict[str, Any], Usage]:
    prompt = _text_of(body.get("prompt"))
    reply = _reply(prompt, custom_id)
    usage = Usage(_tokens(prompt), _tokens(reply))
    answer = {
        "id": new_id(rng, "cmpl-"),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": reply, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }
    return answer, usage


def _moderations(
    body: dict[str, Any], *, model: str, rng: random.Random
) -> tuple[dict[str, Any], Usage]:
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) else [raw]
    results = [{"flagged": False, "categories": {}, "category_scores": {}} for _ in inputs]
    answer = {"id": new_id(rng, "modr-"), "model": model, "results": results}
    return answer, Usage(sum(_tokens(_text_of(i)) for i in inputs), 0)


def _images(
    body: dict[str, Any], *, created: int, rng: random.Random
) -> tuple[dict[str, Any], Usage]:
    """An Images API answer: ``n`` base64 images (a few random bytes each, not a
    picture) and the token ``usage`` the GPT image models report."""
    prompt_tokens = _tokens(_text_of(body.get("prompt")))
    asked = body.get("n")
    count = asked if isinstance(asked, int) and asked > 0 else 1
    data = [{"b64_json": base64.b64encode(rng.randbytes(12)).decode()} for _ in range(count)]
    usage = Usage(prompt_tokens, 16 * count)
    answer = {
        "created": created,
        "data": data,
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"text_tokens": usage.input_tokens, "image_tokens": 0},
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }
    return answer, usage


_HTTP_FAILURES: dict[int, dict[str, Any]] = {
    400: {
        "message": "Invalid request (sandbox scripted failure).",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    },
    429: {
        "message": "Rate limit reached (sandbox scripted failure).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    },
    500: {
        "message": "The server had an error processing your request. You can retry "
        "(sandbox scripted failure).",
        "type": "server_error",
        "param": None,
        "code": None,
    },
}

_NEVER_RAN_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "request_timeout": "The request timed out.",
}


def success_line(
    line_id: str, custom_id: str, request_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def http_error_line(line_id: str, custom_id: str, request_id: str, status: int) -> dict[str, Any]:
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": request_id,
            "body": {"error": dict(_HTTP_FAILURES[status])},
        },
        "error": None,
    }


def never_ran_line(line_id: str, custom_id: str, code: str) -> dict[str, Any]:
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": _NEVER_RAN_MESSAGES[code]},
    }


def encode_lines(lines: Iterable[dict[str, Any]]) -> bytes:
    """JSONL bytes, one object per line, newline-terminated."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def build_result_lines(
    requests: Sequence[BatchRequest],
    outcomes: Sequence[Outcome],
    bodies: Sequence[dict[str, Any]],
    *,
    done: set[int],
    never_ran_code: str,
    rng: random.Random,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The output (successes) and error lines of a terminal batch, each list shuffled.

    Requests outside ``done`` never ran and get the ``never_ran_code`` line
    (``batch_expired`` or ``batch_cancelled``); the order is shuffled because the API
    does not keep input order either, and consumers must join on ``custom_id``.
    """
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for i, request in enumerate(requests):
        line_id = new_id(rng, "batch_req_", 32)
        request_id = "req_" + rng.randbytes(16).hex()
        outcome = outcomes[i]
        if i not in done:
            failed.append(never_ran_line(line_id, request.custom_id, never_ran_code))
        elif outcome is None:
            output.append(success_line(line_id, request.custom_id, request_id, bodies[i]))
        elif isinstance(outcome, int):
            failed.append(http_error_line(line_id, request.custom_id, request_id, outcome))
        else:
            failed.append(never_ran_line(line_id, request.custom_id, outcome))
    rng.shuffle(output)
    rng.shuffle(failed)
    return output, failed


FAIL_MARKER = re.compile(r"#fail=(400|429|500|timeout|request_timeout)\b")
"""A custom_id marker that scripts how one request fails."""


def scripted_outcome(custom_id: str, fate: Fate, rng: random.Random) -> Outcome:
    """A request's scripted fate: a ``#fail=...`` marker in its custom_id wins, else the
    batch fate's failure rate decides."""
    # Draw for every request, marked or not, so a marker never shifts later draws.
    draw = rng.random()
    code = rng.choice(fate.failure_codes)
    marker = FAIL_MARKER.search(custom_id)
    if marker is not None:
        value = marker.group(1)
        return "request_timeout" if value.endswith("timeout") else int(value)
    if fate.kind == "all_fail" or draw < fate.failure_rate:
        return code
    return None
