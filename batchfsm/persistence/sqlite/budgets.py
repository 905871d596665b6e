"""The SQLite store's token budgets (migration 3): one row per model, conditional on
its version inside ``BEGIN IMMEDIATE``. A mixin of
:class:`~batchfsm.persistence.sqlite.store.SQLiteJobStore`."""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from contextlib import AbstractContextManager

from batchfsm.errors import StaleJobError

__all__ = ["MIGRATION", "SQLiteBudgets"]

MIGRATION = (
    """CREATE TABLE token_budgets (
        model TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID""",
)


class SQLiteBudgets:
    @abstractmethod
    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    @abstractmethod
    def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def _get_budget(self, model: str) -> tuple[int, str] | None:
        with self._read(f"read the token budget of {model}") as conn:
            row = conn.execute(
                "SELECT version, data FROM token_budgets WHERE model = ?", (model,)
            ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def _put_budget(self, model: str, data: str, *, version: int, expected_version: int) -> None:
        with self._write(f"save the token budget of {model}") as conn:
            if expected_version == 0:
                written = conn.execute(
                    "INSERT INTO token_budgets (model, version, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (model) DO NOTHING",
                    (model, version, data),
                ).rowcount
            else:
                written = conn.execute(
                    "UPDATE token_budgets SET version = ?, data = ? "
                    "WHERE model = ? AND version = ?",
                    (version, data, model, expected_version),
                ).rowcount
            if written == 0:
                raise StaleJobError(
                    model,
                    kind="token budget",
                    expected_version=expected_version,
                    actual_version=None,
                )
