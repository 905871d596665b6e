"""Crash recovery without batch metadata: an intent's batch is found by its size and
creation time (:mod:`batchfsm.jobs.untagged`), through the official client against the
sandbox's Anthropic dialect, on a SQLite file.

Each "restart" is a new tracker with a new gateway on the same store, so it holds none
of the requests the crashed one held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from batchfsm.errors import StoreUnavailableError
from batchfsm.fsm.models import BatchRecord, HistoryEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.endpoints import MESSAGES
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import IntentState, ItemState
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock, JobStore
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.anthropic import RunningAnthropic, running_anthropic
from batchfsm.tracker import Tracker
from tests.providers.anthropic.support import (
    CREATE,
    anthropic_line,
    client_for,
    create,
    delivered,
    tracker_on,
    write_lines,
)

IDS = [f"req-{i}" for i in range(4)]
LEASE = 300.0


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sandbox(clock: FrozenClock) -> Iterator[RunningAnthropic]:
    scenario = Scenario(default=Fate(phases=Phases(in_progress_s=600.0)))
    with running_anthropic(scenario, clock=clock) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    made = SQLiteJobStore(tmp_path / "store.db")
    yield made
    made.close()


def _restart(
    tmp_path: Path, sandbox: RunningAnthropic, clock: FrozenClock, store: JobStore
) -> Tracker:
    return tracker_on(tmp_path, sandbox, clock, store, lease_seconds=LEASE)


def _stray(sandbox: RunningAnthropic, count: int) -> str:
    """A batch someone else created in the same workspace (no tag, like ours)."""
    requests = [anthropic_line(f"stray-{i}") for i in range(count)]
    return create(client_for(sandbox), requests).id


def _crash_on_first_track(store: JobStore) -> None:
    track = store.create
    crashes = [StoreUnavailableError("disk gone (simulated crash)")]

    def crash_once(record: BatchRecord, history: Sequence[HistoryEntry] = ()) -> BatchRecord:
        if crashes:
            raise crashes.pop()
        return track(record, history)

    store.create = crash_once  # type: ignore[method-assign]


def test_a_batch_created_before_the_crash_is_adopted_by_size_and_time_not_sent_twice(
    tmp_path: Path, clock: FrozenClock, sandbox: RunningAnthropic, store: JobStore
) -> None:
    older = _stray(sandbox, len(IDS))  # same size, but created before the intent
    clock.advance(3600)
    path = write_lines(tmp_path / "in.jsonl", [anthropic_line(c) for c in IDS])
    _crash_on_first_track(store)
    with pytest.raises(StoreUnavailableError):
        submit_job(_restart(tmp_path, sandbox, clock, store), path, MESSAGES)
    newer = _stray(sandbox, len(IDS) + 1)  # after it, but of another size
    clock.advance(LEASE + 1)  # the crashed submit's lease runs out

    report = reconcile_intents(Intents.of(_restart(tmp_path, sandbox, clock, store)))

    assert len(report.adopted) == 1, report
    assert sandbox.stats.count(CREATE) == 3  # ours once, and the two strays
    (record,) = store.list_batches()
    assert record.batch_id not in (older, newer)
    assert all(e.batches == (record.batch_id,) for e in store.iter_ledger())


def test_a_crash_after_holding_the_requests_sends_them_once_from_a_new_process(
    tmp_path: Path, clock: FrozenClock, sandbox: RunningAnthropic, store: JobStore
) -> None:
    """The intent was ``uploaded`` (requests held in memory), then the process died
    before ``create``: nothing exists remotely, and the new process holds nothing. The
    reconcile finds no batch, is told the held requests are gone (404), and sends them
    again at once from the ledger: one batch, every result once."""
    first = _restart(tmp_path, sandbox, clock, store)

    def die(*_args: object) -> None:
        raise SystemExit("killed between the intent write and create")

    first.gateway.create = die  # type: ignore[union-attr, method-assign]
    path = write_lines(tmp_path / "in.jsonl", [anthropic_line(c) for c in IDS])
    with pytest.raises(SystemExit):
        submit_job(first, path, MESSAGES)
    (intent,) = store.list_intents(open_only=True)
    assert intent.state is IntentState.UPLOADED and intent.file_id is not None
    assert intent.file_id.startswith("held-")
    clock.advance(LEASE + 1)

    second = _restart(tmp_path, sandbox, clock, store)
    report = reconcile_intents(Intents.of(second))

    assert len(report.relaunched) == 1, report
    summary = Poller(second, sleep=clock.advance).run(until_done=True, interval=300, timeout=7200)
    assert summary.done
    assert sandbox.stats.count(CREATE) == 1
    assert {e.state for e in store.iter_ledger()} == {ItemState.SUCCEEDED}
    assert sorted(str(line["custom_id"]) for line in delivered(tmp_path / "results")) == IDS


def test_two_crashed_intents_of_one_size_wait_for_their_results_to_tell_them_apart(
    tmp_path: Path, clock: FrozenClock, sandbox: RunningAnthropic, store: JobStore
) -> None:
    """The one window that cannot be closed at once: two intents of the same size both
    crashed after their batches were created. Neither batch is adopted while they run
    (and nothing is created); once they end, each is adopted by the ids its results
    name."""
    for job in ("one", "two"):
        _crash_on_first_track(store)
        path = write_lines(tmp_path / f"{job}.jsonl", [anthropic_line(f"{job}-{c}") for c in IDS])
        with pytest.raises(StoreUnavailableError):
            submit_job(_restart(tmp_path, sandbox, clock, store), path, MESSAGES, job_id=job)
    clock.advance(LEASE + 1)

    report = reconcile_intents(Intents.of(_restart(tmp_path, sandbox, clock, store)))
    assert report.adopted == [] and len(report.failed) == 2, report
    assert store.list_batches() == []

    clock.advance(3600)  # both batches end
    report = reconcile_intents(Intents.of(_restart(tmp_path, sandbox, clock, store)))

    assert len(report.adopted) == 2, report
    assert sandbox.stats.count(CREATE) == 2
    for job in ("one", "two"):
        (record,) = store.list_batches(job)
        batch_ids = {e.batches for e in store.iter_ledger(job)}
        assert batch_ids == {(record.batch_id,)}
        ended = _restart(tmp_path, sandbox, clock, store).observe(record.batch_id)
        assert ended.record is not None and ended.record.state is BatchStatus.COMPLETED
    lines = delivered(tmp_path / "results")
    assert sorted(str(line["custom_id"]) for line in lines) == sorted(
        f"{job}-{c}" for job in ("one", "two") for c in IDS
    )
