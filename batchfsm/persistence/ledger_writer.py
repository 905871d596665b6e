"""The one chunked ledger writer: conditional group writes, bounded memory.

A job's ledger may hold a million entries, so every bulk change (claiming entries for an
intent, settling a batch's verdicts, releasing stranded items) goes through here: ids
are taken in chunks of :data:`LEDGER_CHUNK`, each chunk read, changed by the caller's
pure function, and saved in one conditional group write. On a lost race the chunk is
read again and the change recomputed (:func:`~batchfsm.persistence.optimistic.retry_on_conflict`),
so a change must be idempotent and decide from the entries it is given, never from what
it saw before: on a store without atomic group writes (DynamoDB writes 100 at a time)
part of a losing group may already be written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from batchfsm.persistence.optimistic import retry_on_conflict

if TYPE_CHECKING:
    from batchfsm.ledger.records import LedgerEntry
    from batchfsm.ports import JobStore

__all__ = ["LEDGER_CHUNK", "Change", "rewrite_ledger", "update_ledger"]

T = TypeVar("T")

LEDGER_CHUNK = 500
"""Entries read and saved per step: bounded memory whatever the job's size."""

Change = Callable[["LedgerEntry | None", str], "LedgerEntry | None"]
"""``change(entry_or_None, custom_id)``: the entry to write, or None to leave it."""

ChunkRewrite = Callable[[Sequence[str], Mapping[str, "LedgerEntry"]], T]
"""``rewrite(chunk_ids, current_entries)``: what to save for one chunk (see
:func:`rewrite_ledger`)."""


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def rewrite_ledger(
    store: JobStore,
    job_id: str,
    custom_ids: Sequence[str],
    rewrite: ChunkRewrite[T],
    updates: Callable[[T], Sequence[LedgerEntry]],
    *,
    chunk: int | None = None,
    known: Mapping[str, LedgerEntry] | None = None,
) -> list[tuple[T, list[LedgerEntry]]]:
    """Rewrite ``custom_ids`` chunk by chunk.

    ``rewrite`` computes a plan from the chunk's current entries and ``updates(plan)``
    names the entries to save (each still carrying the version it was read at).
    Returns, per chunk, the plan whose write succeeded and the entries as written.

    ``known``: the entries as this process just wrote or read them (an id missing from
    it is believed absent). Each chunk's first attempt trusts them instead of reading
    the store; that is safe because every write is conditional on the version it
    carries, so a stale belief loses its race and the retry reads. Submitting a fresh
    job writes each entry twice and reads it never, which is what makes a 50,000-line
    submit cost a small multiple of the bare upload (``bench/bench_submit.py``).

    :raises ConflictRetriesExhaustedError: a chunk kept losing its race.
    """
    saved: list[tuple[T, list[LedgerEntry]]] = []
    for ids in _chunks(custom_ids, chunk or LEDGER_CHUNK):

        def attempt(retry: bool, ids: Sequence[str] = ids) -> tuple[T, list[LedgerEntry]]:
            if known is None or retry:
                current = store.get_ledger(job_id, ids)
            else:
                current = {cid: entry for cid in ids if (entry := known.get(cid)) is not None}
            plan = rewrite(ids, current)
            changed = updates(plan)
            return plan, (store.save_ledger(changed) if changed else [])

        saved.append(retry_on_conflict(attempt, subject=f"ledger of job {job_id}"))
    return saved


def update_ledger(
    store: JobStore,
    job_id: str,
    custom_ids: Sequence[str],
    change: Change,
    *,
    known: Mapping[str, LedgerEntry] | None = None,
) -> list[LedgerEntry]:
    """Apply ``change`` to each entry (see :data:`Change`; ``known`` as for
    :func:`rewrite_ledger`); returns the entries written."""

    def rewrite(ids: Sequence[str], current: Mapping[str, LedgerEntry]) -> list[LedgerEntry]:
        return [new for cid in ids if (new := change(current.get(cid), cid)) is not None]

    written: list[LedgerEntry] = []
    for _plan, entries in rewrite_ledger(
        store, job_id, custom_ids, rewrite, lambda plan: plan, known=known
    ):
        written.extend(entries)
    return written
