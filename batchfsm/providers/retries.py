"""The retry loop both API gateways (OpenAI's and Anthropic's) share.

Full-jitter exponential backoff (a delay drawn uniformly from ``[0, min(cap, base *
2**(n-1))]``), or the server's ``Retry-After`` up to a cap, and a WARNING per retry.
Which failures are worth another try is each SDK's own: the gateway passes it in; the
server's hint (:func:`retry_after`) reads the same headers on both. Translating the
final failure into a :class:`~batchfsm.errors.GatewayError` stays with the gateway.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Retrying", "backoff_delay", "call_with_retries", "retry_after", "transport_reason"]

T = TypeVar("T")


@dataclass(frozen=True)
class Retrying:
    """One gateway's retry settings and the loop that applies them: what the OpenAI
    and the Anthropic gateway hold alike; which failures deserve another try is the
    ``reason`` each passes in."""

    max_attempts: int
    backoff_base: float
    backoff_cap: float
    retry_after_cap: float
    sleep: Callable[[float], object]
    rng: random.Random

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def call(
        self,
        fn: Callable[[], T],
        *,
        operation: str,
        subject: str,
        reason: Callable[[Exception], str | None],
        logger: logging.Logger,
    ) -> T:
        """:func:`call_with_retries` with these settings."""
        return call_with_retries(
            fn,
            operation=operation,
            subject=subject,
            reason=reason,
            delay=self.delay,
            max_attempts=self.max_attempts,
            sleep=self.sleep,
            logger=logger,
        )

    def delay(self, attempt: int, exc: Exception) -> float:
        """Seconds before retry ``attempt`` after ``exc`` (the server's hint first)."""
        return backoff_delay(
            attempt,
            retry_after(exc),
            base=self.backoff_base,
            cap=self.backoff_cap,
            retry_after_cap=self.retry_after_cap,
            rng=self.rng,
        )


def backoff_delay(
    attempt: int,
    server_hint: float | None,
    *,
    base: float,
    cap: float,
    retry_after_cap: float,
    rng: random.Random,
) -> float:
    """Seconds before retry number ``attempt`` (1-based)."""
    if server_hint is not None:
        return min(server_hint, retry_after_cap)
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def call_with_retries(
    fn: Callable[[], T],
    *,
    operation: str,
    subject: str,
    reason: Callable[[Exception], str | None],
    delay: Callable[[int, Exception], float],
    max_attempts: int,
    sleep: Callable[[float], object],
    logger: logging.Logger,
) -> T:
    """``fn()``, tried again while ``reason(exc)`` names a reason and attempts remain;
    the last failure is raised as it came."""
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            why = reason(exc)
            if why is None or attempt >= max_attempts:
                raise
            pause = delay(attempt, exc)
            logger.warning(
                "%s %s failed (%s); retry %d of %d in %.2fs",
                operation,
                subject,
                why,
                attempt,
                max_attempts - 1,
                pause,
            )
            sleep(pause)
            attempt += 1


def retry_after(exc: Exception) -> float | None:
    """The server's ``retry-after-ms`` / ``retry-after`` in seconds, if the failed
    response carried one (both SDKs hang the ``httpx`` response on their errors)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def transport_reason(exc: Exception, *, connection_error: type, idempotent: bool) -> str | None:
    """Why a failure below HTTP is worth another try, or None: a connection that never
    sent the request (both SDKs wrap ``httpx`` errors in their ``connection_error``
    class) always is; one that may have sent it, or a body broken while streaming,
    only for an idempotent call."""
    import httpx2  # the openai and anthropic clients' transport, loaded by them already

    if isinstance(exc, connection_error):
        never_sent = isinstance(exc.__cause__, httpx2.ConnectError | httpx2.ConnectTimeout)
        if idempotent or never_sent:
            return type(exc.__cause__ or exc).__name__
        return None
    if isinstance(exc, httpx2.TransportError) and idempotent:
        return type(exc).__name__  # the connection broke while streaming a body
    return None
