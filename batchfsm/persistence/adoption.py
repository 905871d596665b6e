"""Putting a created batch's id on the ledger entries its intent claimed.

Submitting writes every entry twice: once to claim it for an intent (before the upload,
so two submitters never send it twice) and once, after ``POST /batches`` answered, to
record the batch it went into. The second write changes the same two fields of every
entry, so a backend that can do it in place (SQLite: one ``UPDATE`` per few hundred
entries, :mod:`batchfsm.persistence.sqlite.adoption`) overrides
:meth:`BatchAdoption.append_batch`; every other one reads and rewrites each entry
through the chunked ledger writer, conditionally as always.

Either way the rule is the same, and idempotent: an entry gets ``batch_id`` appended to
its ``batches`` and becomes ``pending`` only if it is still stamped with the claiming
intent and does not hold ``batch_id`` yet; any other entry is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.ledger_writer import Change, update_ledger

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = ["BatchAdoption", "append_batch_change"]


def append_batch_change(intent_id: str, batch_id: str) -> Change:
    """The rule of the module docstring, as a ledger change."""

    def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.intent_id != intent_id or batch_id in entry.batches:
            return None
        return entry.model_copy(
            update={"batches": (*entry.batches, batch_id), "state": ItemState.PENDING}
        )

    return change


class BatchAdoption:
    """``append_batch`` for any store, by conditional rewrites (a mixin)."""

    def append_batch(
        self,
        job_id: str,
        custom_ids: Sequence[str],
        *,
        intent_id: str,
        batch_id: str,
        known: Mapping[str, LedgerEntry] | None = None,
    ) -> None:
        """Record that the entries ``intent_id`` claimed among ``custom_ids`` went into
        ``batch_id`` (``known``: the entries as the claim wrote them, see
        :func:`~batchfsm.persistence.ledger_writer.rewrite_ledger`)."""
        store: JobStore = self  # type: ignore[assignment]  # a mixin of a JobStore
        update_ledger(
            store, job_id, custom_ids, append_batch_change(intent_id, batch_id), known=known
        )
