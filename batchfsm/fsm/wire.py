"""Reading the values providers really put in a Batch object.

OpenAI documents timestamps as Unix seconds and counts as integers
(https://platform.openai.com/docs/api-reference/batch/object), but the servers that
speak the same wire protocol send other shapes, all seen in their published outputs:
RFC 3339 strings for timestamps (Voyage, Together), ``0`` for a timestamp not set yet
(Alibaba DashScope), ``null`` request counts (Azure on failed batches, Zhipu while
``validating``). A value that is merely absent, null or unset is *unknown* (``None``);
a value of the wrong kind (``"yesterday"``, ``"lots"``) is refused with a message
saying which field and what it held, because guessing would put a wrong deadline or a
wrong count on the record. Both rules live here so the snapshot model only names them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

__all__ = [
    "RAW_LIMIT",
    "flat_usage",
    "problem_fingerprint",
    "problems_of",
    "raw_answer",
    "unix_seconds",
]

RAW_LIMIT = 8192
"""Characters of an unreadable answer kept in the history (an HTML error page can be
large; its start says what it is)."""

_SHOWN = 60
"""Characters of an offending value a problem message repeats."""


def unix_seconds(value: object) -> int | None:
    """A timestamp as Unix seconds, ``None`` when it is absent or unset.

    Takes Unix seconds (int, a float is floored, a string of digits), ``0`` or ``""``
    as "not set", and RFC 3339 strings with an offset (``2026-01-05T10:00:00Z``).
    Refuses (``ValueError``) booleans, negatives, non-finite numbers, other text and
    date-times without an offset, whose instant would be a guess.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a Unix time or an RFC 3339 timestamp, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a negative Unix time")
        return value or None
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a Unix time must be a finite number >= 0")
        return math.floor(value) or None
    if isinstance(value, str):
        return _from_text(value.strip())
    raise ValueError(f"expected a Unix time or an RFC 3339 timestamp, not {type(value).__name__}")


def _from_text(text: str) -> int | None:
    if not text or text == "0":
        return None
    if text.isascii() and text.isdigit():
        return int(text) or None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not a Unix time or an RFC 3339 timestamp") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("a date-time without a UTC offset (its instant is unknown)")
    seconds = math.floor(when.timestamp())
    if seconds < 0:
        raise ValueError("a date-time before 1970")
    return seconds or None


_USAGE_DETAILS = (
    ("input_tokens_details", "cached_tokens"),
    ("output_tokens_details", "reasoning_tokens"),
)


def flat_usage(value: object) -> object:
    """The Batch object's ``usage`` with its two detail objects folded in.

    The API nests ``cached_tokens`` in ``input_tokens_details`` and ``reasoning_tokens``
    in ``output_tokens_details``; the record keeps the five counts side by side (one
    small object per batch). An already flat mapping (the record read back from the
    store) passes as it is; anything but a mapping is left for validation to refuse.
    """
    if not isinstance(value, Mapping):
        return value
    flat: dict[str, Any] = {
        k: value[k] for k in ("input_tokens", "output_tokens", "total_tokens") if k in value
    }
    for outer, inner in _USAGE_DETAILS:
        details = value.get(outer)
        if isinstance(details, Mapping):
            flat[inner] = details.get(inner)
        elif details is not None:
            flat[inner] = details  # the wrong kind: refused by validation, named by field
        elif inner in value:
            flat[inner] = value[inner]
    return flat


def problems_of(error: ValidationError) -> tuple[str, ...]:
    """One line per refused field: where (dotted path), what is wrong, what it held."""
    out = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "the answer"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            out.append(f"{where}: missing")
            continue
        shown = repr(item.get("input"))
        if len(shown) > _SHOWN:
            shown = shown[: _SHOWN - 3] + "..."
        out.append(f"{where}: {message} (got {shown})")
    return tuple(out)


def problem_fingerprint(problems: tuple[str, ...]) -> str:
    """A short, stable name for a set of problems: the same defect answered on every
    poll is recorded once, a different one again."""
    digest = hashlib.sha256("\n".join(problems).encode()).hexdigest()[:16]
    return f"undecodable:{digest}"


def raw_answer(obj: object, *, limit: int = RAW_LIMIT) -> dict[str, Any]:
    """The answer as the history keeps it: a JSON object as sent, anything else (or an
    object too large to keep whole) as ``{"body": text}`` cut at ``limit`` characters."""
    if isinstance(obj, Mapping):
        text = json.dumps(obj, default=repr, ensure_ascii=False)
        if len(text) <= limit:
            kept: dict[str, Any] = json.loads(text)
            return kept
    elif isinstance(obj, bytes | bytearray):
        text = bytes(obj).decode("utf-8", errors="replace")
    else:
        text = obj if isinstance(obj, str) else repr(obj)
    if len(text) <= limit:
        return {"body": text}
    return {"body": text[:limit], "truncated_from": len(text)}
