"""Writing a batch's verdicts into the ledger: chunked, conditional, conflict-safe.

The pure rules live in :mod:`batchfsm.ledger.rules`; this module is their I/O half, shared by
every handler that settles items (harvest, classify_failure, release_lost):

* which ids a batch is answerable for (:func:`submitted_ids`): entries that went
  through it and still wait for its verdict (:func:`awaits`): ``pending`` there and
  still held by the intent that sent it (:func:`sender_of`), so a settlement run again
  after a crash leaves alone what a retry has claimed since;
* saving verdicts chunk by chunk (:func:`apply_fates`) through the one chunked ledger
  writer (:mod:`batchfsm.persistence.ledger_writer`). On a conflict the chunk is re-read
  and recomputed, never overwritten; because only pending entries change, what another
  writer settled in the meantime is left alone, so two pollers racing converge on one
  outcome.
* recording, on each entry a batch's line settles as ``succeeded``, the usage that line
  reported (``usage``: :class:`~batchfsm.ledger.usage.LineUsage`), in the same write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchfsm.config import Settings
from batchfsm.errors import JobNotFoundError
from batchfsm.ledger.records import INTENT_KEY, ItemState, LedgerEntry
from batchfsm.ledger.rules import Fate, Reconciled, Tally, reconcile
from batchfsm.ledger.usage import LineUsage
from batchfsm.persistence.ledger_writer import rewrite_ledger
from batchfsm.ports import JobStore

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord

__all__ = ["Submitted", "apply_fates", "awaits", "max_attempts_for", "sender_of", "submitted_ids"]


@dataclass
class Submitted:
    """The ids one batch is answerable for. Holds ids only (never entries)."""

    pending: list[str] = field(default_factory=list)
    """Still waiting for this batch's verdict (:func:`awaits`), in ledger order."""
    known: set[str] = field(default_factory=set)
    """Every id that went through this batch, settled or not (to spot foreign lines)."""


def sender_of(record: BatchRecord) -> str | None:
    """The submit intent that created the batch, from the metadata the API keeps with
    it; None for a batch created without one."""
    metadata = record.snapshot.metadata if record.snapshot is not None else None
    return (metadata or {}).get(INTENT_KEY)


def awaits(entry: LedgerEntry, batch_id: str, sender: str | None) -> bool:
    """Whether ``entry`` still waits for ``batch_id``'s verdict: ``pending`` with it as
    its current batch, and still stamped by ``sender``, the intent that sent it.

    The stamp is what tells the two ``pending`` apart: a retry intent claims an entry
    this batch settled already by restamping it, and the entry lists this batch last
    until the retry's own batch exists. It is the retry's then; settling it again (a
    settlement run twice: the poller died before marking it done) would spend a second
    attempt for one execution and take it from under the intent about to send it.
    Entries without a stamp, or a batch without a known sender, are judged as before.
    """
    if entry.state is not ItemState.PENDING or not entry.batches or entry.batches[-1] != batch_id:
        return False
    return sender is None or entry.intent_id is None or entry.intent_id == sender


def submitted_ids(
    store: JobStore, job_id: str, batch_id: str, *, sender: str | None = None
) -> Submitted:
    """Stream the ledger entries of ``batch_id`` and keep the ids that matter;
    ``sender``: the intent that created the batch (:func:`sender_of`)."""
    out = Submitted()
    for entry in store.iter_ledger(job_id, batch_id=batch_id):
        out.known.add(entry.custom_id)
        if awaits(entry, batch_id, sender):
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
    sender: str | None = None,
    usage: Mapping[str, LineUsage] | None = None,
) -> Tally:
    """Settle ``ids`` (pending in ``batch_id``) by ``fates``, else by ``unaccounted``;
    an entry settled ``succeeded`` keeps its line's ``usage`` (by ``custom_id``).

    Each chunk is read again before it is settled, and only entries that still wait
    for this batch (:func:`awaits`, ``sender`` as in :func:`submitted_ids`) change.
    Returns what *this call* settled. Raises
    :class:`~batchfsm.errors.ConflictRetriesExhaustedError` if one chunk keeps losing
    version races (the effect then stays owed and runs again later).
    """

    def rewrite(chunk: Sequence[str], entries: Mapping[str, LedgerEntry]) -> Reconciled:
        result = reconcile(
            (e for c in chunk if (e := entries.get(c)) is not None and awaits(e, batch_id, sender)),
            batch_id,
            fates,
            unaccounted=unaccounted,
            max_attempts=max_attempts,
        )
        if usage:
            result.changed = [_with_usage(e, usage) for e in result.changed]
        return result

    total = Tally()
    for result, _written in rewrite_ledger(
        store, job_id, ids, rewrite, lambda result: result.changed
    ):
        total.add(result.tally)
    return total


def _with_usage(entry: LedgerEntry, usage: Mapping[str, LineUsage]) -> LedgerEntry:
    found = usage.get(entry.custom_id) if entry.state is ItemState.SUCCEEDED else None
    return entry if found is None else entry.model_copy(update={"usage": found})
