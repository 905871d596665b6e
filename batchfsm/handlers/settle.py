"""Writing a batch's verdicts into the ledger: chunked, conditional, conflict-safe.

The pure rules live in :mod:`batchfsm.ledger.rules`; this module is their I/O half, shared by
every handler that settles items (harvest, classify_failure, release_lost):

* which ids a batch is answerable for (:func:`submitted_ids`): entries that went
  through it and are still ``pending`` there;
* saving verdicts chunk by chunk (:func:`apply_fates`) through the one chunked ledger
  writer (:mod:`batchfsm.persistence.ledger_writer`). On a conflict the chunk is re-read
  and recomputed, never overwritten; because only pending entries change, what another
  writer settled in the meantime is left alone, so two pollers racing converge on one
  outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from batchfsm.config import Settings
from batchfsm.errors import JobNotFoundError
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.ledger.rules import Fate, Reconciled, Tally, reconcile
from batchfsm.persistence.ledger_writer import rewrite_ledger
from batchfsm.ports import JobStore

__all__ = ["Submitted", "apply_fates", "max_attempts_for", "submitted_ids"]


@dataclass
class Submitted:
    """The ids one batch is answerable for. Holds ids only (never entries)."""

    pending: list[str] = field(default_factory=list)
    """Still ``pending`` with this batch as their current batch, in ledger order."""
    known: set[str] = field(default_factory=set)
    """Every id that went through this batch, settled or not (to spot foreign lines)."""


def submitted_ids(store: JobStore, job_id: str, batch_id: str) -> Submitted:
    """Stream the ledger entries of ``batch_id`` and keep the ids that matter."""
    out = Submitted()
    for entry in store.iter_ledger(job_id, batch_id=batch_id):
        out.known.add(entry.custom_id)
        if entry.state is ItemState.PENDING and entry.batches and entry.batches[-1] == batch_id:
            out.pending.append(entry.custom_id)
    return out


def max_attempts_for(store: JobStore, job_id: str, settings: Settings) -> int:
    """The job's own limit (``JobRecord.max_attempts``), else the configured default."""
    try:
        return store.load_job(job_id).max_attempts
    except JobNotFoundError:
        return settings.max_attempts


def apply_fates(
    store: JobStore,
    *,
    job_id: str,
    batch_id: str,
    ids: Sequence[str],
    fates: Mapping[str, Fate],
    unaccounted: Fate,
    max_attempts: int,
) -> Tally:
    """Settle ``ids`` (pending in ``batch_id``) by ``fates``, else by ``unaccounted``.

    Returns what *this call* settled. Raises
    :class:`~batchfsm.errors.ConflictRetriesExhaustedError` if one chunk keeps losing
    version races (the effect then stays owed and runs again later).
    """

    def rewrite(chunk: Sequence[str], entries: Mapping[str, LedgerEntry]) -> Reconciled:
        return reconcile(
            (entries[c] for c in chunk if c in entries),
            batch_id,
            fates,
            unaccounted=unaccounted,
            max_attempts=max_attempts,
        )

    total = Tally()
    for result, _written in rewrite_ledger(
        store, job_id, ids, rewrite, lambda result: result.changed
    ):
        total.add(result.tally)
    return total
