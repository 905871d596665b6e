"""Stream a batch's output or error file and say, per line, what happened to the request.

Both files share one line shape (https://platform.openai.com/docs/guides/batch) but
carry failures in two different places, so each line is classified from its *content*,
never from the file it came from:

* **HTTP outcome** - ``response`` is an object: ``response.status_code`` decides; on a
  failure the details are in ``response.body.error`` and the top-level ``error`` is null.
* **Never produced a response** - ``response`` is null and ``error.code`` says why
  (``batch_expired``, ``batch_cancelled``, ``request_timeout``).

Classification table (``classify``):

==========================================  ===========  ==============================
status code / error code                    kind         spends an attempt
==========================================  ===========  ==============================
``batch_expired``, ``batch_cancelled``      not_run      no (the request never ran)
2xx                                         succeeded    yes
400, 401, 403, 404, 422, any other 4xx      permanent    yes (fix the request)
408, 409, 429, 5xx                          retryable    yes
0, 1xx, 3xx, >= 600 (never documented)      retryable    yes (bounded by max attempts)
no response, ``request_timeout``            retryable    yes
no response, any other/unknown code         retryable    yes
==========================================  ===========  ==============================

Status 0 has been reported in "successful" output files, though no document lists it;
treating the unknown as retryable means a bounded number of re-runs rather than a silent
loss or an unbounded loop. Lines that are not JSON objects, have no string
``custom_id``, or carry neither a usable ``response`` nor an ``error`` are yielded as
``malformed`` with their raw bytes and line number: ingestion never stops on a bad line.

Speed: embedding outputs are ~32 KB of floats per line and dominate ingestion, so a
succeeded line is parsed once and its ``response.body`` is handed on as the *raw bytes*
from the line, never re-serialised. The body's span is located with cheap byte searches
and then proven: the line with the span replaced by ``0`` must parse with
``response.body == 0`` and the span itself must parse as one JSON value, which together
imply the span is exactly the body value. Any line where the proof fails (odd layout)
falls back to a full parse plus ``orjson.dumps`` of the body: slower, never wrong.

Usage: a succeeded line's ``usage`` (and the ``model`` that served it) is read from the
body already parsed for the proof (:func:`~batchfsm.ledger.usage.parse_usage`), so it
costs a few dictionary lookups, not another parse.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from batchfsm.ledger.usage import LineUsage, parse_usage

__all__ = [
    "LineOutcome",
    "OutcomeKind",
    "classify",
    "iter_outcomes",
    "parse_line",
]


class OutcomeKind(StrEnum):
    """What a result line says about its request."""

    SUCCEEDED = "succeeded"
    PERMANENT = "permanent"
    """The request itself is wrong (4xx): resending it unchanged cannot help."""
    RETRYABLE = "retryable"
    """It ran and failed for a reason that may pass (429, 5xx, timeout, unknown)."""
    NOT_RUN = "not_run"
    """The batch ended (expired/cancelled) before the request ran: free to resend."""
    MALFORMED = "malformed"
    """The line could not be understood; kept aside for a human."""


PERMANENT_STATUS = frozenset({400, 401, 403, 404, 422})
RETRYABLE_STATUS = frozenset({408, 409, 429})
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """One line of an output or error file, classified.

    ``body`` is the raw JSON text of ``response.body`` (succeeded lines only): write it
    as is, or call :meth:`body_json`. ``raw`` and ``reason`` are set for malformed lines
    only, so they can be quarantined verbatim. ``usage``: what a succeeded line's body
    reported (None: no ``usage`` object, or not a succeeded line).
    """

    line: int
    kind: OutcomeKind
    custom_id: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    body: bytes | None = None
    raw: bytes | None = None
    reason: str | None = None
    usage: LineUsage | None = None

    @property
    def spends_attempt(self) -> bool:
        """Whether the request really executed (the ledger counts only those)."""
        return self.kind in _EXECUTED

    def body_json(self) -> Any:
        """The response body parsed (``None`` when there is no body)."""
        return None if self.body is None else orjson.loads(self.body)


_EXECUTED = frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.PERMANENT, OutcomeKind.RETRYABLE})


def classify(status_code: int | None, error_code: str | None) -> OutcomeKind:
    """The kind for a status code and/or error code (see the module table).

    An error code that says the request never ran wins over any status code; otherwise
    the status code decides when present, and the error code when it is not.
    """
    if error_code in NOT_RUN_CODES:
        return OutcomeKind.NOT_RUN
    if status_code is None:
        return OutcomeKind.RETRYABLE  # request_timeout, or a code nobody documented
    if 200 <= status_code < 300:
        return OutcomeKind.SUCCEEDED
    if status_code in RETRYABLE_STATUS or 500 <= status_code < 600:
        return OutcomeKind.RETRYABLE
    if status_code in PERMANENT_STATUS or 400 <= status_code < 500:
        return OutcomeKind.PERMANENT
    return OutcomeKind.RETRYABLE  # 0, 1xx, 3xx, >= 600: undocumented, bounded retries


def iter_outcomes(
    path: Path, *, counts: collections.Counter[OutcomeKind] | None = None
) -> Iterator[LineOutcome]:
    """Yield one :class:`LineOutcome` per line of ``path``, reading it as a stream.

    Memory stays at one line whatever the file size. ``counts``, if given, is
    incremented per kind as lines are yielded (malformed ones included).
    """
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            outcome = parse_line(raw, number)
            if counts is not None:
                counts[outcome.kind] += 1
            yield outcome


def parse_line(raw: bytes, line: int) -> LineOutcome:
    """Classify one line (with or without its trailing newline); never raises."""
    if not raw or raw.isspace():
        return _malformed(raw, line, "blank line")
    fast = _parse_with_raw_body(raw, line)
    if fast is not None:
        return fast
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _malformed(raw, line, "not valid JSON")
    return _from_object(obj, raw, line, raw_body=None)


def _malformed(raw: bytes, line: int, reason: str, custom_id: str | None = None) -> LineOutcome:
    return LineOutcome(
        line=line, kind=OutcomeKind.MALFORMED, custom_id=custom_id, raw=raw, reason=reason
    )


def _from_object(obj: Any, raw: bytes, line: int, *, raw_body: bytes | None) -> LineOutcome:
    """Classify a parsed line; ``raw_body`` is the proven body span when known."""
    if not isinstance(obj, dict):
        return _malformed(raw, line, "not a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str):
        return _malformed(raw, line, "no string custom_id")
    response = obj.get("response")
    error = obj.get("error")
    top_code, top_message = _error_fields(error)

    if isinstance(response, dict) and _is_status(response.get("status_code")):
        status_code: int = response["status_code"]
        body = response.get("body")
        kind = classify(status_code, top_code)
        if kind is OutcomeKind.SUCCEEDED:
            if "body" not in response:
                return _malformed(raw, line, "2xx response without a body", custom_id)
            return LineOutcome(
                line=line,
                kind=kind,
                custom_id=custom_id,
                status_code=status_code,
                body=raw_body if raw_body is not None else orjson.dumps(body),
                usage=parse_usage(body),
            )
        nested = body.get("error") if isinstance(body, dict) else None
        code, message = _error_fields(nested)
        return LineOutcome(
            line=line,
            kind=kind,
            custom_id=custom_id,
            status_code=status_code,
            error_code=top_code or code,
            error_message=top_message or message,
        )

    if isinstance(error, dict):
        return LineOutcome(
            line=line,
            kind=classify(None, top_code),
            custom_id=custom_id,
            error_code=top_code,
            error_message=top_message,
        )
    return _malformed(raw, line, "neither a response with a status code nor an error", custom_id)


def _is_status(value: object) -> bool:
    return type(value) is int


def _error_fields(error: object) -> tuple[str | None, str | None]:
    """``(code, message)`` of an error object; ``code`` falls back to ``type``."""
    if not isinstance(error, Mapping):
        return None, None
    code = error.get("code") or error.get("type")
    message = error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


# -- the raw body span -------------------------------------------------------------------

_BODY_KEY = b'"body"'
_WHITESPACE = b" \t\r\n"
_MAX_KEY_TRIES = 3
_MAX_END_TRIES = 4


def _parse_with_raw_body(raw: bytes, line: int) -> LineOutcome | None:
    """Classify a line whose ``response.body`` is an object, keeping the body's bytes.

    Returns ``None`` when no candidate span can be proven; the caller then parses the
    whole line the ordinary way.
    """
    key_at = -1
    for _ in range(_MAX_KEY_TRIES):
        key_at = raw.find(_BODY_KEY, key_at + 1)
        if key_at < 0:
            return None
        start = _value_start(raw, key_at + len(_BODY_KEY))
        if start < 0 or raw[start : start + 1] != b"{":
            continue
        for end in _closing_brace_candidates(raw, start):
            skeleton = _parse_or_none(raw[:start] + b"0" + raw[end + 1 :])
            if skeleton is None or not _body_is_placeholder(skeleton):
                continue
            span = raw[start : end + 1]
            body = _parse_or_none(span)
            if body is None:
                return None  # the proven span is not JSON: let the full parse report it
            skeleton["response"]["body"] = body
            return _from_object(skeleton, raw, line, raw_body=span)
    return None


def _closing_brace_candidates(raw: bytes, start: int) -> Iterator[int]:
    """Positions of ``}`` after ``start`` that may close the body, likeliest first.

    The tail after the body must close every object still open before it, so the body
    usually ends at the (depth + 1)-th ``}`` from the right, where depth is estimated by
    counting braces before the body (strings may fool the count: it only orders tries).
    Found lazily: each ``rfind`` further left may scan a long run of floats.
    """
    depth = max(raw.count(b"{", 0, start) - raw.count(b"}", 0, start), 0)
    closers: list[int] = []

    def closer(index: int) -> int:
        while len(closers) <= index:
            found = raw.rfind(b"}", start, closers[-1] if closers else len(raw))
            if found < 0:
                return -1
            closers.append(found)
        return closers[index]

    order = [*range(depth, depth + _MAX_END_TRIES), *range(depth - 1, -1, -1)]
    for index in order[:_MAX_END_TRIES]:
        at = closer(index)
        if at >= 0:
            yield at


def _value_start(raw: bytes, after_key: int) -> int:
    """Index of the value after ``"key"`` + optional spaces + ``:``; -1 if not a key."""
    i = after_key
    n = len(raw)
    while i < n and raw[i] in _WHITESPACE:
        i += 1
    if i >= n or raw[i] != ord(":"):
        return -1
    i += 1
    while i < n and raw[i] in _WHITESPACE:
        i += 1
    return i


def _parse_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _body_is_placeholder(skeleton: Any) -> bool:
    if not isinstance(skeleton, dict):
        return False
    response = skeleton.get("response")
    if not isinstance(response, dict):
        return False
    placeholder = response.get("body", None)
    return type(placeholder) is int and placeholder == 0
