"""The ``anthropic`` client's errors in batchfsm's terms: when to retry, how long to
wait, and the one translation boundary into :mod:`batchfsm.errors`.

The same rules as the OpenAI gateway (:mod:`batchfsm.gateway`), for this client's
exception types: 429 and 5xx (Anthropic's 529 ``overloaded_error`` included) are
retried, but ``create`` only when the batch surely was not created (429, or a connection
that never opened); 404 is :class:`~batchfsm.errors.BatchNotFoundError`, 401/403
:class:`~batchfsm.errors.AuthenticationFailedError` (never retried), and the key is
scrubbed from every message kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import anthropic
import httpx2

from batchfsm.errors import (
    AuthenticationFailedError,
    GatewayError,
    GatewayUnavailableError,
    gateway_error_for,
)
from batchfsm.providers.retries import transport_reason

__all__ = ["retry_reason", "scrub", "translate"]

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")
"""Anthropic keys start ``sk-ant-``: any such text is masked, ours or not."""


def retry_reason(exc: Exception, *, idempotent: bool) -> str | None:
    """Why ``exc`` is worth another try (for the log), or None if it is final."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status == 429:
            return "HTTP 429"
        if status >= 500 and idempotent:
            return f"HTTP {status}"
        return None
    return transport_reason(
        exc, connection_error=anthropic.APIConnectionError, idempotent=idempotent
    )


def scrub(text: str, secret: str | None) -> str:
    """``text`` with the key (and anything shaped like one) masked."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("sk-***", text)


@contextmanager
def translate(
    operation: str, subject: str, *, batch_id: str | None, secret: str | None
) -> Iterator[None]:
    """Turn the client's and the transport's errors into batchfsm's gateway errors."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        status = exc.status_code
        code = exc.type if isinstance(exc.type, str) else None
        text = f"{operation} {subject}: HTTP {status}{_detail(exc, code, secret)}"
        kind = gateway_error_for(status)
        if kind is AuthenticationFailedError:
            text += " (the API refused the key: check ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL)"
        _raise(kind(text, batch_id=batch_id, status_code=status, code=code), exc, secret)
    except anthropic.APIConnectionError as exc:
        cause = type(exc.__cause__ or exc).__name__
        text = f"{operation} {subject}: cannot reach the API ({cause})"
        _raise(GatewayUnavailableError(text, batch_id=batch_id), exc, secret)
    except httpx2.TransportError as exc:
        text = f"{operation} {subject}: connection broke ({type(exc).__name__})"
        _raise(GatewayUnavailableError(text, batch_id=batch_id), exc, secret)
    except anthropic.AnthropicError as exc:  # e.g. results asked of a batch not ended
        text = f"{operation} {subject}: unexpected answer ({scrub(str(exc), secret)})"
        _raise(GatewayError(text, batch_id=batch_id), exc, secret)


def _detail(exc: anthropic.APIStatusError, code: str | None, secret: str | None) -> str:
    """`` (type): message`` from the API's error body, scrubbed of the key."""
    message = exc.api_message
    detail = f" ({code})" if code else ""
    if isinstance(message, str) and message:
        detail += f": {message}"
    return scrub(detail, secret)


def _raise(error: GatewayError, exc: BaseException, secret: str | None) -> NoReturn:
    """Raise ``error`` chained to ``exc``, unless ``exc``'s own text carries the key."""
    leaks = secret is not None and secret in f"{exc} {getattr(exc, 'body', '')}"
    if leaks or _KEY_PATTERN.search(str(exc)):
        raise error from None
    raise error from exc
