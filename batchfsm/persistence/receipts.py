"""The webhook half of every store: event receipts (dedupe) and Step Functions wait
tokens, written once over a backend's four primitives.

Webhooks arrive at least once, for up to 72 hours, and unordered; deduplicating on the
``webhook-id`` is what makes a redelivery do nothing. The receipt is written with one
conditional insert, so of two deliveries racing on two hosts exactly one wins: the
backends' ``_insert_receipt`` is that insert, nothing else. A wait token is the
callback address of a Step Functions execution waiting for a batch's webhook; taking
it must be atomic too, or two webhooks would both resume the one execution (the second
``SendTaskSuccess`` fails).

Kept apart from :mod:`batchfsm.persistence.base`, which :class:`~batchfsm.persistence.
base.BaseJobStore` mixes this into: the batch, job and ledger half does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta

import orjson

from batchfsm.errors import StoreError
from batchfsm.ports import RECEIPT_DAYS, WebhookReceipt

__all__ = ["RECEIPT_DAYS", "WebhookReceipts", "decode_receipt", "encode_receipt"]

MAX_KEY_CHARS = 512
"""Longer ids are refused: a ``webhook-id`` or scope is a short opaque string, and a
DynamoDB key attribute must stay well under its 1 KB (sort) / 2 KB (partition) limit."""


def encode_receipt(receipt: WebhookReceipt) -> str:
    return orjson.dumps(
        {
            "event_id": receipt.event_id,
            "event_type": receipt.event_type,
            "batch_id": receipt.batch_id,
            "received_at": receipt.received_at.isoformat(),
            "known": receipt.known,
        }
    ).decode()


def decode_receipt(data: str, *, store: str) -> WebhookReceipt:
    try:
        raw = orjson.loads(data)
        return WebhookReceipt(
            event_id=str(raw["event_id"]),
            event_type=str(raw["event_type"]),
            batch_id=raw["batch_id"] if raw["batch_id"] is None else str(raw["batch_id"]),
            received_at=datetime.fromisoformat(raw["received_at"]),
            known=bool(raw["known"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{store}: unreadable webhook receipt: {exc}") from exc


def _check_key(kind: str, value: str) -> None:
    if not value or len(value) > MAX_KEY_CHARS:
        raise ValueError(f"a {kind} must be 1 to {MAX_KEY_CHARS} characters, got {len(value)}")


class WebhookReceipts(ABC):
    """``record_event``, ``get_event``, ``save_wait_token`` and ``pop_wait_token`` of the
    :class:`~batchfsm.ports.JobStore` contract; a backend writes the primitives."""

    url: str = ""

    @abstractmethod
    def _insert_receipt(self, event_id: str, data: str, expires_at: datetime) -> bool:
        """Insert unless a live receipt with this id exists; True if inserted. A receipt
        past ``expires_at`` may be deleted or overwritten."""

    @abstractmethod
    def _get_receipt(self, event_id: str) -> str | None: ...

    @abstractmethod
    def _put_token(self, scope: str, token: str) -> None:
        """Store ``token`` for ``scope``, replacing any."""

    @abstractmethod
    def _take_token(self, scope: str) -> str | None:
        """Remove and return the token for ``scope`` in one atomic step."""

    def record_event(self, receipt: WebhookReceipt) -> bool:
        """True the first time ``receipt.event_id`` is seen; False (nothing written) for
        a redelivery."""
        _check_key("webhook-id", receipt.event_id)
        if receipt.received_at.tzinfo is None:
            raise ValueError("a receipt's received_at must be timezone-aware")
        expires = receipt.received_at + timedelta(days=RECEIPT_DAYS)
        return self._insert_receipt(receipt.event_id, encode_receipt(receipt), expires)

    def get_event(self, event_id: str) -> WebhookReceipt | None:
        """The receipt recorded for ``event_id``, or None."""
        data = self._get_receipt(event_id)
        return None if data is None else decode_receipt(data, store=self.url)

    def save_wait_token(self, scope: str, token: str) -> None:
        """Remember the task token of the execution waiting on ``scope``."""
        _check_key("scope", scope)
        if not token:
            raise ValueError("an empty task token")
        self._put_token(scope, token)

    def pop_wait_token(self, scope: str) -> str | None:
        """Take the token waiting on ``scope`` (None if nobody waits)."""
        _check_key("scope", scope)
        return self._take_token(scope)
