"""``retry``: new batches from the ledger's ``retry`` items, never from the input file.

The recovery handlers put a request in ``retry`` when it failed in a way worth another
try (a 5xx, a timeout, never run before expiry or cancellation, a queue-full batch).
:func:`retry_items` gathers them per job, splits them to the same limits as a first
submit, and sends each group through the intent steps of :mod:`batchfsm.jobs.intents`, so it
is crash-safe in the same way. Each new batch is linked to the batch its items last ran
in: ``parent_batch_id`` on the record, a ``retry_of`` event in its history, and the new
id appended to each item's ``batches`` (state back to ``pending``).

Queue-full (``token_limit_exceeded``) is not the request's fault and resending at once
just fills the queue again, so when a :class:`Backoff` is given (``poll --auto-retry``)
those items wait ``min(cap, base * 2**(n-1))`` seconds after their n-th such failure,
measured from the failed batch's ``failed_at`` (or from when
we saw it fail, if that is earlier by our clock). A manual ``batchfsm retry`` sends them
at once: a person asked for it.

``batchfsm retry --json`` prints the shape in :mod:`batchfsm.cli.views`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from batchfsm.errors import JobNotFoundError
from batchfsm.fsm.models import BatchRecord
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.input_file import Limits, plan_chunks, write_chunk
from batchfsm.jobs.intents import Intents
from batchfsm.ledger.records import ErrorCategory, ItemError, ItemState, JobRecord, LedgerEntry
from batchfsm.persistence.ledger_writer import update_ledger

if TYPE_CHECKING:
    from batchfsm.tracker import Tracker

__all__ = ["Backoff", "RetryResult", "Waiting", "cap_rounds", "retry_items"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How long queue-full items wait before they are sent again (seconds)."""

    base: float = 60.0
    cap: float = 1800.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"backoff must not be negative: {self}")

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th queue-full failure (1-based)."""
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True)
class Waiting:
    """Queue-full items of one job held back by the backoff."""

    job_id: str
    items: int
    ready_at: datetime


@dataclass
class RetryResult:
    batches: list[BatchRecord] = field(default_factory=list)
    """The retry batches created, in order."""
    waiting: list[Waiting] = field(default_factory=list)
    out_of_rounds: int = 0
    """Items failed instead of resent: they had been sent ``max_rounds`` times."""

    @property
    def next_ready(self) -> datetime | None:
        return min((w.ready_at for w in self.waiting), default=None)


def retry_items(
    tracker: Tracker,
    *,
    job_id: str | None = None,
    limits: Limits | None = None,
    backoff: Backoff | None = None,
) -> RetryResult:
    """Send every ``retry`` item (of one job, or of all) again; see the module docstring.

    Items owned by an open intent are left to it. With ``backoff``, queue-full items
    whose wait has not run out are reported in ``waiting`` instead of sent.
    """
    result = RetryResult()
    jobs = [tracker.store.load_job(job_id)] if job_id else tracker.store.list_jobs()
    for job in jobs:
        ready, waiting = _ready_items(tracker, job, backoff)
        ready, spent = cap_rounds(tracker, job.job_id, ready)
        result.out_of_rounds += spent
        if waiting:
            result.waiting.append(
                Waiting(job.job_id, len(waiting), min(ready_at for _, ready_at in waiting))
            )
        for group in _groups(tracker, job, ready, limits or Limits()):
            record = _send(tracker, job, group)
            if record is not None:
                result.batches.append(record)
    return result


def _ready_items(
    tracker: Tracker, job: JobRecord, backoff: Backoff | None
) -> tuple[list[LedgerEntry], list[tuple[LedgerEntry, datetime]]]:
    owned = Intents.of(tracker).open_ids(job.job_id)
    now = tracker.clock.now()
    records: dict[str, BatchRecord | None] = {}
    ready: list[LedgerEntry] = []
    waiting: list[tuple[LedgerEntry, datetime]] = []
    for entry in tracker.store.iter_ledger(job.job_id, state=ItemState.RETRY):
        if entry.custom_id in owned:
            continue
        queue_full = (
            entry.last_error is not None and entry.last_error.category == ErrorCategory.QUEUE_FULL
        )
        if backoff is not None and queue_full:
            ready_at = _ready_at(tracker, entry, backoff, records)
            if ready_at is not None and now < ready_at:
                waiting.append((entry, ready_at))
                continue
        ready.append(entry)
    return ready, waiting


def _ready_at(
    tracker: Tracker,
    entry: LedgerEntry,
    backoff: Backoff,
    records: dict[str, BatchRecord | None],
) -> datetime | None:
    """When a queue-full item may go again: its last failure plus the backoff, doubling
    with each queue-full failure in a row (failed batches and refused creates alike)."""

    def load(batch_id: str) -> BatchRecord | None:
        if batch_id not in records:
            try:
                records[batch_id] = tracker.store.load(batch_id)
            except JobNotFoundError:
                records[batch_id] = None
        return records[batch_id]

    error = entry.last_error
    failed_batches = sum(
        1 for b in entry.batches if (r := load(b)) is not None and r.state is BatchStatus.FAILED
    )
    if error is not None and error.at is not None:  # a create refused: no batch records it
        failures = max(error.repeats, failed_batches + 1)
        return error.at + timedelta(seconds=backoff.delay(failures))
    if not entry.batches:
        return None
    last = load(entry.batches[-1])
    if last is None:
        return None
    failures = failed_batches
    # The API's failed_at, but never later than we saw the failure: the two clocks may
    # disagree (a sped-up sandbox, skew), and ours is the one the wait is measured on.
    moments = [last.observed_at or tracker.clock.now()]
    if last.snapshot is not None and last.snapshot.failed_at is not None:
        moments.append(datetime.fromtimestamp(last.snapshot.failed_at, UTC))
    since = min(moments)
    return since + timedelta(seconds=backoff.delay(max(1, failures)))


def _groups(
    tracker: Tracker, job: JobRecord, entries: list[LedgerEntry], limits: Limits
) -> Iterator[list[LedgerEntry]]:
    """Split ``entries`` exactly as a submit would split a file of their lines."""
    if not entries:
        return
    by_id = {e.custom_id: e for e in entries}
    with tempfile.TemporaryDirectory(dir=tracker.workdir, prefix="batchfsm-retry-") as tmp:
        path = Path(tmp) / f"{job.job_id}.retry.jsonl"
        write_chunk((e.line for e in entries), path)
        chunks = plan_chunks(
            path,
            job.endpoint,
            max_requests=limits.max_requests,
            max_bytes=limits.max_bytes,
            max_embedding_inputs=limits.max_embedding_inputs,
        )
        for chunk in chunks:
            yield [by_id[cid] for cid in chunk.custom_ids]


def _send(tracker: Tracker, job: JobRecord, group: list[LedgerEntry]) -> BatchRecord | None:
    """Intent, claim (``retry`` -> ``pending`` stamped with the intent, conditional per
    entry), then launch what the intent owns. A rival retry that claimed some items
    first sends those; this one sends the rest (:mod:`batchfsm.jobs.claims`)."""
    expected = {e.custom_id: e.batches for e in group}
    parents = [e.batches[-1] for e in group if e.batches]

    def claim(entry: LedgerEntry | None, custom_id: str) -> LedgerEntry | None:
        if entry is None or entry.state is not ItemState.RETRY:
            return None
        if entry.batches != expected[custom_id]:
            return None
        return entry

    return Intents.of(tracker).send(job, expected, claim, parent_batch_ids=parents)


def cap_rounds(
    tracker: Tracker, job_id: str, entries: list[LedgerEntry]
) -> tuple[list[LedgerEntry], int]:
    """``entries`` that may go again, and how many were failed instead: sent in
    ``Settings.max_rounds`` batches already (its rounds are ``len(entry.batches)``, kept
    per item in the ledger), whatever became of each."""
    cap = tracker.settings.max_rounds
    spent = {e.custom_id for e in entries if len(e.batches) >= cap}
    if not spent:
        return entries, 0
    failure = ItemError(
        code="max_rounds",
        message=f"sent in {cap} batches without a result (max rounds {cap}); not resent",
        category=ErrorCategory.ROUNDS,
        at=tracker.clock.now(),
    )

    def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.state not in (ItemState.RETRY, ItemState.QUEUED):
            return None
        if len(entry.batches) < cap:
            return None
        return entry.model_copy(update={"state": ItemState.FAILED, "last_error": failure})

    failed = update_ledger(tracker.store, job_id, sorted(spent), change)
    if failed:
        logger.error(
            "job %s: %d requests failed after %d rounds (--max-rounds)", job_id, len(failed), cap
        )
    return [e for e in entries if e.custom_id not in spent], len(failed)
