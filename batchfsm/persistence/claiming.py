"""Claiming a fresh job's requests in one all-or-none insert.

A new job's ledger entries do not exist yet, so its first claim (:mod:`batchfsm.jobs.claims`:
entries stamped with the intent before anything is uploaded) is nothing but inserts.
:meth:`BulkClaims.insert_claimed` writes them all at once, or none: where a backend
writes a group atomically, a request that already has an entry (a racing submit of the
same job claimed it first) makes the whole insert fail, nothing is written, and the
caller falls back to the general claim, which reads, decides per entry and narrows the
intent. A backend that cannot promise all-or-none (DynamoDB writes 100 at a time)
always answers False.

The SQLite store builds each entry's JSON itself (:mod:`batchfsm.persistence.sqlite.claiming`);
the generic path here goes through ``save_ledger``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchfsm.errors import StaleJobError
from batchfsm.ledger.records import LedgerEntry, NewClaim

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = ["BulkClaims", "NewClaim"]


class BulkClaims:
    """``insert_claimed`` for any store (a mixin)."""

    def insert_claimed(self, job_id: str, intent_id: str, claims: Sequence[NewClaim]) -> bool:
        """Insert one ``pending`` entry per claim, stamped with ``intent_id``, all or none.

        True: every entry was inserted (at version 1). False: nothing was written,
        because one of them exists already or this backend cannot write a group
        atomically; claim them the general way then.
        """
        store: JobStore = self  # type: ignore[assignment]  # a mixin of a JobStore
        if not store.ledger_group_atomic:
            return False
        entries = [
            LedgerEntry(
                job_id=job_id,
                custom_id=claim.custom_id,
                line=claim.line,
                input_tokens=claim.input_tokens,
                intent_id=intent_id,
            )
            for claim in claims
        ]
        try:
            store.save_ledger(entries)
        except StaleJobError:
            return False
        return True
