"""Checking a webhook's signature with the official client, and reading what it names.

The check is ``openai``'s own (``client.webhooks.verify_signature``, what
``client.webhooks.unwrap`` runs before parsing): Standard Webhooks, HMAC-SHA256 over
``"{webhook-id}.{webhook-timestamp}.{body}"`` with the ``whsec_`` secret, any one of the
space-separated ``v1,...`` signatures matching, and the timestamp within five minutes
of now in either direction (a replayed delivery is stale). Doing it by hand would be
one more place to get constant-time comparison or the tolerance wrong.

The secret is held as a :class:`~pydantic.SecretStr` and unwrapped only for the call;
it is never logged, never stored and never part of an error message. The client built
here makes no API requests: it only verifies, so it needs no API key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchfsm.errors import BatchFSMError

if TYPE_CHECKING:
    import openai
    from pydantic import SecretStr

__all__ = [
    "BATCH_EVENTS",
    "MAX_BODY_BYTES",
    "TOLERANCE_SECONDS",
    "InvalidWebhookError",
    "Verified",
    "WebhookVerifier",
]

logger = logging.getLogger(__name__)

BATCH_EVENTS = frozenset({"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"})
"""The events OpenAI sends about batches: only the four endings (none for
``validating``, ``in_progress``, ``finalizing`` or ``cancelling``)."""
TOLERANCE_SECONDS = 300
"""Standard Webhooks' tolerance: older (or newer) timestamps are refused as stale."""
MAX_BODY_BYTES = 1024 * 1024
"""Larger deliveries are refused unread: a batch event is a few hundred bytes."""
"""Standard Webhooks' tolerance: older (or newer) timestamps are refused as stale."""
_UNUSED_KEY = "verification-only-no-api-calls"


class InvalidWebhookError(BatchFSMError):
    """A delivery that is not a verifiable event: missing headers, a signature that does
    not match, a stale timestamp, or a signed body that is not an event. Answered 400."""


@dataclass(frozen=True)
class Verified:
    """A delivery whose signature checked out."""

    webhook_id: str
    """The ``webhook-id`` header: the same on every redelivery, the dedupe key."""
    event_type: str
    event_id: str | None
    """The event's own ``id`` (``evt_...``), for the history."""
    batch_id: str | None
    """The batch a ``batch.*`` event names; None for any other event."""
    created_at: int | None


class WebhookVerifier:
    """Verifies deliveries signed with one endpoint secret (``whsec_...``).

    :param secret: the endpoint's signing secret.
    :param tolerance: seconds a timestamp may differ from now (default 300).
    """

    def __init__(self, secret: SecretStr, *, tolerance: int = TOLERANCE_SECONDS) -> None:
        if not secret.get_secret_value().strip():
            raise ValueError("an empty webhook secret")
        self._secret = secret
        self.tolerance = tolerance
        self._client: openai.OpenAI | None = None

    def __repr__(self) -> str:
        return f"WebhookVerifier(secret=**********, tolerance={self.tolerance})"

    def _webhooks(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(api_key=_UNUSED_KEY, max_retries=0)
        return self._client.webhooks

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        """The delivery's event, if its signature and timestamp check out.

        :raises InvalidWebhookError: for anything else (the reason names no secret).
        """
        import openai

        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_id = lowered.get("webhook-id", "").strip()
        if not webhook_id:
            raise InvalidWebhookError("missing webhook-id header")
        webhooks = self._webhooks()
        secret = self._secret.get_secret_value()
        try:
            webhooks.verify_signature(body, lowered, secret=secret, tolerance=self.tolerance)
        except openai.InvalidWebhookSignatureError as exc:
            raise InvalidWebhookError(f"signature refused: {exc}") from None
        except ValueError as exc:  # a missing header, a body that is not UTF-8
            raise InvalidWebhookError(f"not a webhook delivery: {_reason(exc)}") from None
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidWebhookError("a signed body that is not JSON") from None
        return _read(webhook_id, event)


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _read(webhook_id: str, event: Any) -> Verified:
    """The fields batchfsm uses, read defensively: a signed body is OpenAI's, but an
    unexpected shape must be refused, never a crash. (Parsed here rather than by
    ``unwrap``, whose typed event is built without validation and whose own signature
    check cannot take another tolerance.)"""
    if not isinstance(event, dict):
        raise InvalidWebhookError("a signed body that is not an event object")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidWebhookError("a signed body that is not an event (no type)")
    data = event.get("data")
    batch_id = data.get("id") if isinstance(data, dict) else None
    event_id = event.get("id")
    created = event.get("created_at")
    if event_type not in BATCH_EVENTS:
        batch_id = None
    elif not (isinstance(batch_id, str) and batch_id.strip()):
        raise InvalidWebhookError(f"a {event_type} event without a batch id")
    else:
        batch_id = batch_id.strip()
    return Verified(
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=event_id if isinstance(event_id, str) else None,
        batch_id=batch_id,
        created_at=created if isinstance(created, int) and not isinstance(created, bool) else None,
    )
