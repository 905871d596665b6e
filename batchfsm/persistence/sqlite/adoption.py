"""The SQLite store's ``append_batch``: the rule of :mod:`batchfsm.persistence.adoption`
as SQL, a few hundred entries per statement inside one ``BEGIN IMMEDIATE``.

Each entry's JSON is changed in place with SQLite's JSON functions (``batches`` gets the
id appended, ``state`` and ``version`` move on) and its ``version`` column goes up by
one, so a writer holding the entry at its old version loses its race exactly as after
any other write. Only the last of ``batches`` is compared with the new id: an entry
still stamped with the intent has been in no batch since the intent's own (one intent,
one batch), so the id, if there, is last. (``batches`` is always a list: every entry is
written whole by the models first.)
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

from batchfsm.ledger.records import ItemState, LedgerEntry

__all__ = ["SQLiteAdoption"]

_CHUNK = 500
"""``custom_id``s per statement: SQLite caps the ``?`` parameters of one."""

_PENDING = str(ItemState.PENDING)

# Assembled only from "?" placeholders (hence the S608 waivers); values are bound.
_UPDATE = """
UPDATE ledger SET
    version = version + 1,
    state = ?,
    data = json_set(
        data,
        '$.batches[#]', ?,
        '$.state', ?,
        '$.version', version + 1
    )
WHERE job_id = ? AND custom_id IN ({marks})
  AND json_extract(data, '$.intent_id') = ?
  AND json_extract(data, '$.batches[#-1]') IS NOT ?
"""

_MEMBERS = """
INSERT INTO ledger_batches (batch_id, job_id, custom_id)
SELECT ?, job_id, custom_id FROM ledger
WHERE job_id = ? AND custom_id IN ({marks}) AND json_extract(data, '$.intent_id') = ?
ON CONFLICT DO NOTHING
"""


class SQLiteAdoption:
    @abstractmethod
    def _write(self, action: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def append_batch(
        self,
        job_id: str,
        custom_ids: Sequence[str],
        *,
        intent_id: str,
        batch_id: str,
        known: Mapping[str, LedgerEntry] | None = None,
    ) -> None:
        """See :meth:`batchfsm.persistence.adoption.BatchAdoption.append_batch`."""
        with self._write(f"record batch {batch_id} on the ledger of job {job_id}") as conn:
            for start in range(0, len(custom_ids), _CHUNK):
                chunk = list(custom_ids[start : start + _CHUNK])
                marks = ", ".join("?" for _ in chunk)
                conn.execute(
                    _UPDATE.format(marks=marks),
                    [_PENDING, batch_id, _PENDING, job_id, *chunk, intent_id, batch_id],
                )
                conn.execute(_MEMBERS.format(marks=marks), [batch_id, job_id, *chunk, intent_id])
