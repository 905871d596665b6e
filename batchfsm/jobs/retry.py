"""``retry``: new batches from the ledger's ``retry`` items, never from the input file.

The recovery handlers put a request in ``retry`` when it failed in a way worth another
try (a 5xx, a timeout, never run before expiry or cancellation, a queue-full batch).
:func:`retry_items` gathers them per job, splits them to the same limits as a first
submit, and sends each group through the intent steps of :mod:`batchfsm.jobs.intents`, so it
is crash-safe in the same way. The gathering streams: the ledger is read page by page
and the ready items are spooled to a temporary file, so a job whose million requests
all came back holds one batch in memory, not its ledger. Each new batch is linked to
the batch its items last ran in: ``parent_batch_id`` on the record, a ``retry_of`` event
in its history, and the new id appended to each item's ``batches`` (state back to
``pending``).

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

import orjson

from batchfsm.errors import JobNotFoundError
from batchfsm.fsm.models import BatchRecord
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.input_file import Limits, plan_chunks
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


STREAM_CHUNK = 5_000
"""Ledger entries held at once while a job's ``retry`` items are read: a job of a
million requests whose batches all expired is resent without holding its ledger."""


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
        with tempfile.TemporaryDirectory(dir=tracker.workdir, prefix="batchfsm-retry-") as tmp:
            spool = _Spool(Path(tmp) / f"{job.job_id}.retry.jsonl", Path(tmp) / "expected.jsonl")
            _spool_ready(tracker, job, backoff, spool, result)
            for expected in spool.groups(job, limits or Limits()):
                record = _send(tracker, job, expected)
                if record is not None:
                    result.batches.append(record)
    return result


class _Spool:
    """The ready items of one job, on disk rather than in memory: their lines (split
    exactly as a submit splits a file of them) and, line for line, the batches each had
    when read, which its claim must still find (:func:`_send`)."""

    def __init__(self, lines: Path, expected: Path) -> None:
        self.lines, self.expected, self.count = lines, expected, 0

    def add(self, entries: list[LedgerEntry]) -> None:
        with self.lines.open("ab") as lines, self.expected.open("ab") as keys:
            for entry in entries:
                lines.write(entry.line.encode() + b"\n")
                keys.write(orjson.dumps([entry.custom_id, entry.batches]) + b"\n")
        self.count += len(entries)

    def groups(self, job: JobRecord, limits: Limits) -> Iterator[dict[str, tuple[str, ...]]]:
        """Each batch's ``{custom_id: batches as read}``, one batch in memory at a time."""
        if not self.count:
            return
        chunks = plan_chunks(
            self.lines,
            job.endpoint,
            max_requests=limits.max_requests,
            max_bytes=limits.max_bytes,
            max_embedding_inputs=limits.max_embedding_inputs,
        )
        with self.expected.open("rb") as keys:
            for chunk in chunks:
                expected: dict[str, tuple[str, ...]] = {}
                for request in chunk.requests:
                    custom_id, batches = orjson.loads(next(keys))
                    if custom_id != request.custom_id:  # both written above, in one order
                        raise RuntimeError(f"retry spool out of step at {custom_id!r}")
                    expected[custom_id] = tuple(batches)
                yield expected


def _spool_ready(
    tracker: Tracker,
    job: JobRecord,
    backoff: Backoff | None,
    spool: _Spool,
    result: RetryResult,
) -> None:
    """Read the job's ``retry`` items once: those owned by an open intent are left to
    it, those still in their queue-full backoff are counted in ``result.waiting``, those
    out of rounds are failed (:func:`cap_rounds`), the rest go to ``spool``; at most
    :data:`STREAM_CHUNK` entries in memory."""
    owned = Intents.of(tracker).open_ids(job.job_id)
    now = tracker.clock.now()
    records: dict[str, BatchRecord | None] = {}
    waiting, first_ready = 0, None
    chunk: list[LedgerEntry] = []

    def flush() -> None:
        ready, spent = cap_rounds(tracker, job.job_id, chunk)
        result.out_of_rounds += spent
        spool.add(ready)
        chunk.clear()

    for entry in tracker.store.iter_ledger(job.job_id, state=ItemState.RETRY):
        if entry.custom_id in owned:
            continue
        queue_full = (
            entry.last_error is not None and entry.last_error.category == ErrorCategory.QUEUE_FULL
        )
        if backoff is not None and queue_full:
            ready_at = _ready_at(tracker, entry, backoff, records)
            if ready_at is not None and now < ready_at:
                waiting += 1
                first_ready = ready_at if first_ready is None else min(first_ready, ready_at)
                continue
        chunk.append(entry)
        if len(chunk) >= STREAM_CHUNK:
            flush()
    flush()
    if first_ready is not None:
        result.waiting.append(Waiting(job.job_id, waiting, first_ready))


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


def _send(
    tracker: Tracker, job: JobRecord, expected: dict[str, tuple[str, ...]]
) -> BatchRecord | None:
    """Intent, claim (``retry`` -> ``pending`` stamped with the intent, conditional per
    entry: still in ``retry`` with the batches it had when read), then launch what the
    intent owns. A rival retry that claimed some items first sends those; this one
    sends the rest (:mod:`batchfsm.jobs.claims`)."""
    parents = [batches[-1] for batches in expected.values() if batches]

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
