"""The API's error answers, as an exception the world raises and the app renders.

OpenAI answers every failure with ``{"error": {"message", "type", "param", "code"}}``; the
official client turns the status into ``BadRequestError``, ``NotFoundError`` and so on,
so the sandbox must use exactly that shape for the client to behave as in production.
"""

from __future__ import annotations

from typing import Any

from batchfsm.errors import BatchFSMError

__all__ = [
    "SandboxAPIError",
    "bad_request",
    "not_found",
    "page_size",
    "rate_limited",
    "server_error",
    "unauthorized",
]


class SandboxAPIError(BatchFSMError):
    """An API error answer: HTTP status plus the OpenAI error body fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        super().__init__(f"{status}: {message}")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> SandboxAPIError:
    return SandboxAPIError(400, message, param=param, code=code)


def not_found(message: str, *, param: str | None = None) -> SandboxAPIError:
    return SandboxAPIError(404, message, param=param)


def unauthorized(message: str, *, code: str | None = None) -> SandboxAPIError:
    return SandboxAPIError(401, message, code=code)


def rate_limited() -> SandboxAPIError:
    return SandboxAPIError(
        429,
        "Rate limit reached for requests (sandbox fault injection).",
        type="requests",
        code="rate_limit_exceeded",
    )


def queue_full(status: int, model: str = "the model") -> SandboxAPIError:
    """Batch create refused because the model's enqueued-token queue is full (Azure
    answers 400 in regions that fail fast; a proxy may answer 429)."""
    return SandboxAPIError(
        status,
        f"Enqueued token limit reached for {model} in organization sandbox. Please try again "
        "once some in_progress batches have been completed. (sandbox fault injection)",
        code="token_limit_exceeded",
    )


def server_error() -> SandboxAPIError:
    return SandboxAPIError(
        500,
        "The server had an error while processing your request. Sorry about that! "
        "(sandbox fault injection)",
        type="server_error",
    )


def page_size(raw: str) -> int:
    """A list endpoint's ``limit``, 1 to 100, as the API checks it.

    :raises SandboxAPIError: 400 naming the bad value, as the API answers.
    """
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= 100:
        raise bad_request(
            f"Invalid 'limit': {raw!r}. Expected an integer from 1 to 100.", param="limit"
        )
    return size
