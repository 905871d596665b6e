"""The tokens one result line reports (``response.body.usage``), read in every shape.

A succeeded line's body carries the ``usage`` of the request and the ``model`` (the
exact snapshot) that served it. Three shapes reach the harvest:

==============================  ==============================================================
chat, completions, embeddings   ``prompt_tokens``, ``completion_tokens`` (none for embeddings),
                                ``total_tokens``, ``prompt_tokens_details.cached_tokens``,
                                ``completion_tokens_details.reasoning_tokens``
responses (and images)          ``input_tokens``, ``output_tokens``, ``total_tokens``,
                                ``input_tokens_details.cached_tokens``,
                                ``output_tokens_details.reasoning_tokens``
Anthropic's Message             ``input_tokens`` (*not* counting the cache),
                                ``cache_read_input_tokens``, ``cache_creation_input_tokens``,
                                ``output_tokens``
==============================  ==============================================================

They are read into one :class:`LineUsage`, in OpenAI's sense: ``input_tokens`` is every
input token (cached and cache-written ones included; Anthropic's three counts are
added), ``cached_tokens`` and ``cache_write_tokens`` say how many of them were read
from or written to the prompt cache, ``output_tokens`` includes ``reasoning_tokens``.

Unknown stays unknown: a count that is missing, null, negative, not an integer (a bool,
a float, a string) or absurd (over 2**53) is ``None``, never 0. Two counts are derived,
not guessed, from what the line does say: output as ``total - input`` (an embedding
reports no output: its total equals its input, so output is 0), input as
``total - output``. A body without a ``usage`` object gives no :class:`LineUsage` at all.
:func:`parse_usage` never raises, whatever the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LineUsage", "UsageTotals", "parse_usage"]

MAX_COUNT = 2**53
"""No line reports more tokens than this; a bigger number is read as unknown."""
MAX_MODEL = 200
"""A longer ``model`` string is not a model name: it is read as unknown."""
MAX_MODELS = 20
"""A sum names at most this many models (one batch is served by one or two)."""


@dataclass(frozen=True, slots=True)
class LineUsage:
    """What one succeeded result line reported (see the module doc); ``None``: unknown."""

    model: str | None = None
    """The model that served the request, as the body names it (a dated snapshot)."""
    input_tokens: int | None = None
    cached_tokens: int | None = None
    """Of the input, read from the prompt cache."""
    cache_write_tokens: int | None = None
    """Of the input, written to the prompt cache (Anthropic's ``cache_creation``)."""
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    """Of the output, spent reasoning."""

    @property
    def complete(self) -> bool:
        """Both input and output are known: the line can be priced."""
        return self.input_tokens is not None and self.output_tokens is not None

    def as_json(self) -> dict[str, Any]:
        """``{"model", "input_tokens", "cached_tokens", "cache_write_tokens",
        "output_tokens", "reasoning_tokens"}``, null where unknown."""
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


def _count(value: object) -> int | None:
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    return None


def _detail(usage: Mapping[Any, Any], outer: str, inner: str) -> int | None:
    details = usage.get(outer)
    return _count(details.get(inner)) if isinstance(details, Mapping) else None


def _model(body: Mapping[Any, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) and 0 < len(model) <= MAX_MODEL else None


def parse_usage(body: object) -> LineUsage | None:
    """The usage a response body reports; None when it has no ``usage`` object."""
    if not isinstance(body, Mapping):
        return None
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return None
    write: int | None = None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        given = _count(usage.get("prompt_tokens"))
        output = _count(usage.get("completion_tokens"))
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    else:
        given = _count(usage.get("input_tokens"))
        output = _count(usage.get("output_tokens"))
        reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
        if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
            cached = _count(usage.get("cache_read_input_tokens"))
            write = _count(usage.get("cache_creation_input_tokens"))
            if given is not None:  # Anthropic's input_tokens leaves the cache out
                given = _count(given + (cached or 0) + (write or 0))
        else:
            cached = _detail(usage, "input_tokens_details", "cached_tokens")
    total = _count(usage.get("total_tokens"))
    if total is not None:
        if output is None and given is not None and total >= given:
            output = total - given
        elif given is None and output is not None and total >= output:
            given = total - output
    return LineUsage(_model(body), given, cached, write, output, reasoning)


@dataclass
class UsageTotals:
    """Line usage summed (per batch, per job and model): known counts added, and how
    many lines could not be priced (no usage, or its input or output unknown)."""

    lines: int = 0
    """Lines counted, with usage or without."""
    lines_without_usage: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    models: set[str] = field(default_factory=set)
    """The models the lines named (the first :data:`MAX_MODELS`)."""

    def add(self, usage: LineUsage | None) -> None:
        self.lines += 1
        if usage is None or not usage.complete:
            self.lines_without_usage += 1
        if usage is None:
            return
        self.input_tokens += usage.input_tokens or 0
        self.cached_tokens += usage.cached_tokens or 0
        self.cache_write_tokens += usage.cache_write_tokens or 0
        self.output_tokens += usage.output_tokens or 0
        self.reasoning_tokens += usage.reasoning_tokens or 0
        if usage.model is not None and len(self.models) < MAX_MODELS:
            self.models.add(usage.model)

    def merge(self, other: UsageTotals) -> None:
        self.lines += other.lines
        self.lines_without_usage += other.lines_without_usage
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        for model in sorted(other.models):
            if len(self.models) >= MAX_MODELS:
                break
            self.models.add(model)

    @property
    def reported(self) -> bool:
        """At least one line reported a usable count."""
        return self.lines > self.lines_without_usage

    def as_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "lines_without_usage": self.lines_without_usage,
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "models": sorted(self.models),
        }
