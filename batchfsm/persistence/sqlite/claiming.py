"""The SQLite store's ``insert_claimed``: a fresh job's entries in one ``executemany``.

Each entry's JSON is the same document ``LedgerEntry.model_dump_json`` writes (one is
rendered by pydantic, the rest differ only in ``custom_id``, ``line`` and
``input_tokens``), so a 50,000-request chunk costs an ``orjson.dumps`` and an index insert
per request rather than building, copying and encoding 50,000 models. ``ON CONFLICT DO
NOTHING`` and a row count tell whether every insert landed; if one did not, the
transaction is rolled back and the caller claims the general way
(:mod:`batchfsm.persistence.claiming`).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager

import orjson

from batchfsm.errors import StaleJobError
from batchfsm.ledger.records import LedgerEntry, NewClaim

__all__ = ["SQLiteClaims"]

_INSERT = (
    "INSERT INTO ledger (job_id, custom_id, state, version, data) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, custom_id) DO NOTHING"
)


class _Taken(StaleJobError):
    """Some entry existed: roll the whole insert back."""


class SQLiteClaims:
    @abstractmethod
    def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def insert_claimed(self, job_id: str, intent_id: str, claims: Sequence[NewClaim]) -> bool:
        """See :meth:`batchfsm.persistence.claiming.BulkClaims.insert_claimed`."""
        if not claims:
            return True
        template = orjson.loads(
            LedgerEntry(
                job_id=job_id, custom_id="", line="", intent_id=intent_id, version=1
            ).model_dump_json()
        )
        state, version = template["state"], template["version"]
        rows = []
        for claim in claims:
            template["custom_id"] = claim.custom_id
            template["line"] = claim.line
            template["input_tokens"] = claim.input_tokens
            data = orjson.dumps(template).decode()
            rows.append((job_id, claim.custom_id, state, version, data))
        try:
            with self._write(f"claim {len(rows)} new entries of job {job_id}") as conn:
                if conn.executemany(_INSERT, rows).rowcount != len(rows):
                    raise _Taken(job_id, kind="ledger", expected_version=0, actual_version=None)
        except _Taken:
            return False
        return True
