"""A request line as one request of a Message Batch: Anthropic's shape, or OpenAI's
``/v1/chat/completions`` batch line converted, so one input file can go to either vendor.

Anthropic's shape (https://platform.claude.com/docs/en/api/messages/batches/create) is
``{"custom_id": ..., "params": {...}}``: ``custom_id`` matches ``^[a-zA-Z0-9_-]{1,64}$``
and ``params`` are the Messages API's, with ``model``, ``max_tokens`` and ``messages``
required (https://platform.claude.com/docs/en/api/messages). Everything else in
``params`` is passed on untouched for the API to judge.

An OpenAI batch line (``custom_id``, ``method: POST``, ``url: /v1/chat/completions``,
``body``) is converted as :data:`CONVERSION` says, and only as it says: a ``body`` field
it does not list (``n``, ``tools``, ``response_format``...) is refused, naming the field,
rather than dropped, because dropping it would send a different request than the one
written. Both shapes may be mixed in one file; each line is judged alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from batchfsm.errors import InputFileError

__all__ = ["CONVERSION", "CUSTOM_ID", "RequestProblem", "check_line", "to_request"]

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""Anthropic's ``custom_id`` (matched whole): 1 to 64 letters, digits, ``-`` and ``_``."""
CHAT = "/v1/chat/completions"
_REQUIRED = ("model", "max_tokens", "messages")
_SYSTEM_ROLES = frozenset({"system", "developer"})
_ROLES = frozenset({"user", "assistant"})

CONVERSION: Mapping[str, str] = MappingProxyType(
    {
        "model": "params.model (required)",
        "max_tokens": "params.max_tokens (this or max_completion_tokens is required)",
        "max_completion_tokens": "params.max_tokens",
        "messages": "system and developer messages, in order, joined by a blank line into "
        "params.system; user and assistant messages into params.messages, in order, a "
        "string content as it is and a list of text parts as text blocks (required: at "
        "least one user or assistant message)",
        "temperature": "params.temperature (0 to 1; above 1 has no equivalent and is refused)",
        "top_p": "params.top_p",
        "stop": "params.stop_sequences (a string becomes a list of one)",
    }
)
"""What each ``body`` field of an OpenAI chat line becomes (the README repeats it)."""


class RequestProblem(ValueError):
    """A line that cannot be a Message Batch request; ``field`` names where."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def to_request(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The Message Batch request for one parsed line, in either shape.

    :raises RequestProblem: the line is neither shape, or breaks a rule above.
    """
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or CUSTOM_ID.fullmatch(custom_id) is None:
        raise RequestProblem(
            f"custom_id {custom_id!r} is not one Anthropic takes: 1 to 64 letters, digits, "
            "'-' or '_'",
            "custom_id",
        )
    if "params" in obj:
        extra = sorted(set(obj) - {"custom_id", "params"})
        if extra:
            raise RequestProblem(f"unexpected field {extra[0]!r} beside params", extra[0])
        return {"custom_id": custom_id, "params": _checked(obj["params"], "params")}
    if "body" in obj or "url" in obj:
        return {"custom_id": custom_id, "params": _checked(_converted(obj), "body")}
    raise RequestProblem(
        "neither Anthropic's shape (custom_id, params) nor an OpenAI batch line "
        "(custom_id, method, url, body)",
        "params",
    )


def check_line(obj: Mapping[str, Any], *, path: str, line: int) -> None:
    """:func:`to_request` as ``submit`` checks a line: a problem becomes the
    :class:`~batchfsm.errors.InputFileError` that names the file, the line and the field."""
    try:
        to_request(obj)
    except RequestProblem as exc:
        raise InputFileError(str(exc), path=path, line=line, field=exc.field) from None


def _checked(params: object, where: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise RequestProblem(f"{where} must be a JSON object", where)
    for name in _REQUIRED:
        if name not in params:
            raise RequestProblem(f"{where}.{name} is required", f"{where}.{name}")
    if not isinstance(params["model"], str) or not params["model"]:
        raise RequestProblem(f"{where}.model must be a non-empty string", f"{where}.model")
    tokens = params["max_tokens"]
    if type(tokens) is not int or tokens < 1:
        raise RequestProblem(
            f"{where}.max_tokens must be a whole number >= 1", f"{where}.max_tokens"
        )
    messages = params["messages"]
    if not isinstance(messages, list) or not messages:
        raise RequestProblem(f"{where}.messages must be a non-empty array", f"{where}.messages")
    if params.get("stream"):
        raise RequestProblem("a batch request cannot stream", f"{where}.stream")
    return params


def _converted(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` from an OpenAI chat batch line, by :data:`CONVERSION`."""
    if obj.get("method") != "POST":
        raise RequestProblem(f"method must be 'POST', not {obj.get('method')!r}", "method")
    if obj.get("url") != CHAT:
        raise RequestProblem(
            f"only {CHAT} lines convert to Anthropic requests, not {obj.get('url')!r}", "url"
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        raise RequestProblem("body must be a JSON object", "body")
    unknown = sorted(set(body) - set(CONVERSION))
    if unknown:
        raise RequestProblem(
            f"body.{unknown[0]} has no documented conversion to Anthropic; write this line "
            "in Anthropic's shape (custom_id, params)",
            f"body.{unknown[0]}",
        )
    params: dict[str, Any] = {}
    if "model" in body:
        params["model"] = body["model"]
    tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if tokens is not None:
        params["max_tokens"] = tokens
    system, messages = _messages(body.get("messages"))
    if system is not None:
        params["system"] = system
    if messages:
        params["messages"] = messages
    _sampling(body, params)
    return params


def _sampling(body: Mapping[str, Any], params: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise RequestProblem(
                f"body.temperature {temperature!r}: Anthropic takes 0 to 1", "body.temperature"
            )
        params["temperature"] = temperature
    if body.get("top_p") is not None:
        params["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        params["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        params["stop_sequences"] = stop
    elif stop is not None:
        raise RequestProblem("body.stop must be a string or an array", "body.stop")


def _messages(value: object) -> tuple[str | None, list[dict[str, Any]]]:
    """(the joined system prompt or None, the user/assistant messages)."""
    if not isinstance(value, list):
        raise RequestProblem("body.messages must be an array", "body.messages")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(value):
        where = f"body.messages[{index}]"
        if not isinstance(message, dict):
            raise RequestProblem(f"{where} must be an object", where)
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.append(_text(message.get("content"), where))
        elif role in _ROLES:
            messages.append({"role": role, "content": _content(message.get("content"), where)})
        else:
            raise RequestProblem(
                f"{where}.role {role!r} has no Anthropic equivalent here (user, assistant, "
                "system, developer)",
                f"{where}.role",
            )
    return ("\n\n".join(system) if system else None), messages


def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(str(part["text"]) for part in _blocks(content, where))


def _content(content: object, where: str) -> str | list[dict[str, Any]]:
    return content if isinstance(content, str) else _blocks(content, where)


def _blocks(content: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not content:
        raise RequestProblem(f"{where}.content must be a string or text parts", where)
    blocks = []
    for number, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise RequestProblem(
                f"{where}.content[{number}]: only text parts convert (write image or "
                "other parts in Anthropic's shape)",
                f"{where}.content[{number}]",
            )
        if not isinstance(part.get("text"), str):
            raise RequestProblem(f"{where}.content[{number}].text must be a string", where)
        blocks.append({"type": "text", "text": part["text"]})
    return blocks
