"""The SQLite store's webhook primitives: receipts and wait tokens (migration 2).

A mixin of :class:`~batchfsm.persistence.sqlite.store.SQLiteJobStore`, using its
transactions: a receipt is one ``INSERT ... ON CONFLICT DO NOTHING`` inside
``BEGIN IMMEDIATE``, so of two processes receiving the same event exactly one inserts;
taking a token is a ``DELETE ... RETURNING`` in one transaction, so exactly one gets it.
Receipts past their expiry are pruned by the insert that would collide with them, and
a few at a time by later inserts, so the table stays a week of deliveries deep.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from batchfsm.ports import RECEIPT_DAYS

__all__ = ["SQLiteReceipts"]

_PRUNE_BATCH = 100
"""Expired receipts deleted per insert: bounded work on the webhook's fast path."""


class SQLiteReceipts:
    """The four webhook primitives, on the store's ``_read``/``_write`` transactions."""

    @abstractmethod
    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    @abstractmethod
    def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def _insert_receipt(self, event_id: str, data: str, expires_at: datetime) -> bool:
        # "Now" is when this receipt was received, on the caller's clock, like its expiry.
        now = (expires_at - timedelta(days=RECEIPT_DAYS)).timestamp()
        with self._write(f"record webhook event {event_id}") as conn:
            conn.execute(
                "DELETE FROM webhook_events WHERE event_id IN (SELECT event_id FROM "
                "webhook_events WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
                (now, _PRUNE_BATCH),
            )
            inserted = conn.execute(
                "INSERT INTO webhook_events (event_id, expires_at, data) VALUES (?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, expires_at.timestamp(), data),
            ).rowcount
        return inserted == 1

    def _get_receipt(self, event_id: str) -> str | None:
        with self._read(f"read webhook event {event_id}") as conn:
            row = conn.execute(
                "SELECT data FROM webhook_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def _put_token(self, scope: str, token: str) -> None:
        with self._write(f"save the wait token of {scope}") as conn:
            conn.execute(
                "INSERT INTO wait_tokens (scope, token) VALUES (?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET token = excluded.token",
                (scope, token),
            )

    def _take_token(self, scope: str) -> str | None:
        with self._write(f"take the wait token of {scope}") as conn:
            row = conn.execute(
                "DELETE FROM wait_tokens WHERE scope = ? RETURNING token", (scope,)
            ).fetchone()
        return str(row[0]) if row else None
