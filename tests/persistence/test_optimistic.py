"""The one optimistic-concurrency loop and the one chunked ledger writer, against a real
store whose rival writer commits between our read and our write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from batchfsm.errors import ConflictRetriesExhaustedError, StaleJobError
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, HistoryEntry
from batchfsm.handlers.base import HandlerRegistry
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.ledger_writer import update_ledger
from batchfsm.persistence.memory import MemoryJobStore
from batchfsm.persistence.optimistic import (
    MAX_CONFLICT_RETRIES,
    conflict_backoff,
    retry_on_conflict,
)
from batchfsm.ports import FrozenClock
from batchfsm.tracker import Tracker


def test_the_first_attempt_may_use_what_it_holds_and_retries_must_reread() -> None:
    seen: list[bool] = []

    def attempt(retry: bool) -> str:
        seen.append(retry)
        if len(seen) < 3:
            raise StaleJobError("batch_1", expected_version=1, actual_version=2)
        return "written"

    assert retry_on_conflict(attempt, subject="batch batch_1", sleep=lambda _s: None) == "written"
    assert seen == [False, True, True]


def test_running_out_of_attempts_names_the_subject_and_count_and_keeps_the_cause() -> None:
    pauses: list[float] = []

    def attempt(_retry: bool) -> None:
        raise StaleJobError("batch_1", expected_version=3, actual_version=4)

    with pytest.raises(ConflictRetriesExhaustedError) as caught:
        retry_on_conflict(attempt, subject="batch batch_1", attempts=5, sleep=pauses.append)

    error = caught.value
    assert (error.subject, error.attempts) == ("batch batch_1", 5)
    assert "batch batch_1" in str(error) and "5 attempts" in str(error)
    assert error.expected_version is None  # never a made-up version
    assert isinstance(error.__cause__, StaleJobError)
    assert isinstance(error, StaleJobError)  # callers catching conflicts still do
    assert len(pauses) == 3  # no pause before the first try nor the first retry


def test_an_inner_loop_that_gave_up_is_not_retried_by_an_outer_one() -> None:
    calls = 0

    def outer(_retry: bool) -> None:
        nonlocal calls
        calls += 1
        raise ConflictRetriesExhaustedError("ledger of job-1", attempts=8)

    with pytest.raises(ConflictRetriesExhaustedError):
        retry_on_conflict(outer, subject="batch b", sleep=lambda _s: None)
    assert calls == 1


def test_backoff_is_zero_for_the_first_retry_then_bounded() -> None:
    assert conflict_backoff(0) == conflict_backoff(1) == 0.0
    for attempt in range(2, 40):
        assert 0.0 <= conflict_backoff(attempt) <= 0.1


class RivalStore(MemoryJobStore):
    """Before each of the first ``rivals`` ledger writes, a rival bumps every entry."""

    def __init__(self, rivals: int) -> None:
        super().__init__()
        self.rivals = rivals

    def save_ledger(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        if self.rivals > 0 and entries and all(e.version for e in entries):
            self.rivals -= 1
            current = self.get_ledger(entries[0].job_id, [e.custom_id for e in entries])
            super().save_ledger(
                [e.model_copy(update={"attempts": e.attempts + 1}) for e in current.values()]
            )
        return super().save_ledger(entries)


def _entries(store: MemoryJobStore, ids: Sequence[str]) -> None:
    store.save_ledger([LedgerEntry(job_id="job-1", custom_id=c, line="{}") for c in ids])


def _to_retry(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
    if entry is None or entry.state is not ItemState.PENDING:
        return None
    return entry.model_copy(update={"state": ItemState.RETRY})


def test_the_ledger_writer_recomputes_a_chunk_that_lost_its_race() -> None:
    store = RivalStore(rivals=2)
    _entries(store, ["a", "b", "c"])

    written = update_ledger(store, "job-1", ["a", "b", "c"], _to_retry)

    assert sorted(e.custom_id for e in written) == ["a", "b", "c"]
    final = store.get_ledger("job-1", ["a", "b", "c"])
    assert all(e.state is ItemState.RETRY for e in final.values())
    assert all(e.attempts == 2 for e in final.values())  # the rival's writes were kept


def test_the_ledger_writer_gives_up_loudly_and_writes_nothing_of_that_chunk() -> None:
    store = RivalStore(rivals=MAX_CONFLICT_RETRIES)
    _entries(store, ["a"])

    with pytest.raises(ConflictRetriesExhaustedError, match="ledger of job job-1"):
        update_ledger(store, "job-1", ["a"], _to_retry)
    assert store.get_ledger("job-1", ["a"])["a"].state is ItemState.PENDING


class ContendedStore(MemoryJobStore):
    """Every commit of ``contended`` loses to a rival; other batches commit normally."""

    def __init__(self, contended: str) -> None:
        super().__init__()
        self.contended = contended

    def commit(
        self,
        record: BatchRecord,
        *,
        expected_version: int,
        history: Sequence[HistoryEntry] = (),
    ) -> BatchRecord:
        if record.batch_id == self.contended:
            raise StaleJobError(record.batch_id, expected_version=1, actual_version=2)
        return super().commit(record, expected_version=expected_version, history=history)


def _snapshot(batch_id: str, status: str) -> BatchSnapshot:
    created = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    return BatchSnapshot.model_validate(
        {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/embeddings",
            "input_file_id": "file-in",
            "completion_window": "24h",
            "status": status,
            "created_at": created,
            "in_progress_at": created + 60 if status == "in_progress" else None,
        }
    )


class _Gateway:
    """Answers every retrieve with ``in_progress``."""

    def retrieve(self, batch_id: str) -> BatchSnapshot:
        return _snapshot(batch_id, "in_progress")


def test_a_batch_whose_writes_keep_losing_never_stops_the_poll_of_the_others() -> None:
    store = ContendedStore(contended="batch_stuck")
    tracker = Tracker(
        store,
        _Gateway(),  # type: ignore[arg-type]
        HandlerRegistry(handlers={}),
        clock=FrozenClock(datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
    )
    for batch_id in ("batch_stuck", "batch_fine"):
        store.create(BatchRecord(batch_id=batch_id), [])

    reports = {r.batch_id: r for r in tracker.poll_once()}

    assert reports["batch_stuck"].kind == "error"
    assert "gave up after" in (reports["batch_stuck"].error or "")
    assert reports["batch_fine"].state == "in_progress"
    assert store.load("batch_fine").state.value == "in_progress"
