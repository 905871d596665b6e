"""The embeddable poll loop on a frozen clock: no real sleeping, sandbox time follows ours."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from batchfsm.cli.progress import LiveProgress, PlainProgress, format_remaining
from batchfsm.fsm.models import RejectionEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.input_file import Limits
from batchfsm.jobs.retry import Backoff
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ItemState
from batchfsm.poller import CycleReport, Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Faults, Scenario
from tests.e2e.support import (
    EMBEDDINGS,
    RETRIEVE_ROUTE,
    make_tracker,
    result_lines,
    sandbox,
    write_input,
)

# How far along the lifecycle a state is; a poller must never move a batch backwards.
_RANK = {
    BatchStatus.VALIDATING: 0,
    BatchStatus.IN_PROGRESS: 1,
    BatchStatus.FINALIZING: 2,
    BatchStatus.CANCELLING: 2,
    BatchStatus.COMPLETED: 3,
    BatchStatus.FAILED: 3,
    BatchStatus.EXPIRED: 3,
    BatchStatus.CANCELLED: 3,
}


def test_one_retrieve_per_batch_per_cycle(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(Scenario(default=Fate(kind="stuck_finalizing")), clock)
    tracker = make_tracker(tmp_path, app, clock)
    for name in ("a", "b", "c"):
        submit_job(tracker, write_input(tmp_path / f"{name}.jsonl", [name]), EMBEDDINGS)
    poller = Poller(tracker, sleep=clock.advance)

    summary = poller.run(max_cycles=4, interval=10)

    assert summary.cycles == 4 and not summary.done
    assert app.stats.count(RETRIEVE_ROUTE) == 3 * 4
    assert app.stats.count("GET /v1/batches") == 0  # no listing without open intents


def test_until_done_times_out_on_a_batch_stuck_in_finalizing(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(Scenario(default=Fate(kind="stuck_finalizing")), clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a"]), EMBEDDINGS)
    start = clock.now()

    summary = Poller(tracker, sleep=clock.advance).run(until_done=True, interval=60, timeout=900)

    assert summary.timed_out and not summary.done
    assert (clock.now() - start).total_seconds() == 900
    (record,) = summary.batches.values()
    assert record.state is BatchStatus.FINALIZING


def test_retry_items_keep_the_loop_going_only_with_auto_retry(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["ok", "x#fail=500"]), EMBEDDINGS)

    plain = Poller(tracker, sleep=clock.advance).run(until_done=True, interval=5, timeout=600)
    assert plain.done and plain.retry_items == 1 and plain.retried == []

    auto = Poller(tracker, sleep=clock.advance).run(
        until_done=True, interval=5, timeout=3600, auto_retry=True
    )
    # "#fail=500" fails every time: retried until its attempts run out, then failed.
    assert auto.done and auto.retry_items == 0 and len(auto.retried) == 2
    entry = tracker.store.get_ledger(next(iter(tracker.store.list_jobs())).job_id, ["x#fail=500"])
    assert entry["x#fail=500"].state is ItemState.FAILED
    assert entry["x#fail=500"].attempts == 3


def test_auto_retry_waits_out_the_backoff_after_token_limit_exceeded(tmp_path: Path) -> None:
    clock = FrozenClock()
    queue_full = Fate(kind="token_limit_exceeded")
    app = sandbox(Scenario(by_order=(queue_full, queue_full)), clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a", "b"]), EMBEDDINGS)

    summary = Poller(tracker, backoff=Backoff(base=600, cap=3600), sleep=clock.advance).run(
        until_done=True, interval=30, timeout=6 * 3600, auto_retry=True
    )

    assert summary.done
    assert {e.state for e in tracker.store.iter_ledger()} == {ItemState.SUCCEEDED}
    first, second, third = tracker.store.list_batches()
    assert (first.state, second.state, third.state) == (
        BatchStatus.FAILED,
        BatchStatus.FAILED,
        BatchStatus.COMPLETED,
    )

    def gap(parent_failed: int | None, child_created: int | None) -> float:
        assert parent_failed is not None and child_created is not None
        return child_created - parent_failed

    assert first.snapshot and second.snapshot and third.snapshot
    # 1st failure waits base (600 s), the 2nd twice that; never sooner, at most a cycle later.
    assert 600 <= gap(first.snapshot.failed_at, second.snapshot.created_at) <= 630
    assert 1200 <= gap(second.snapshot.failed_at, third.snapshot.created_at) <= 1230
    # Queue-full failures cost no attempts.
    assert {e.attempts for e in tracker.store.iter_ledger()} == {1}


def test_storms_of_429_and_500_and_stale_reads_never_move_a_batch_backwards(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    faults = Faults(rate_limit_rate=0.2, server_error_rate=0.2, stale_read_rate=0.3)
    app = sandbox(
        Scenario(seed=3, faults=faults, default=Fate(failure_rate=0.2, failure_codes=(500,))),
        clock,
    )
    tracker = make_tracker(tmp_path, app, clock)
    ids = [f"r{i}" for i in range(12)]
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ids), EMBEDDINGS)
    seen: dict[str, list[BatchStatus]] = {}

    def watch(report: CycleReport) -> None:
        for poll in report.reports:
            if poll.record is not None:
                seen.setdefault(poll.batch_id, []).append(poll.record.state)

    summary = Poller(tracker, sleep=clock.advance, on_cycle=watch).run(
        until_done=True, interval=2, timeout=4 * 3600, auto_retry=True
    )

    assert summary.done
    assert app.faults.injected  # the storm happened
    for states in seen.values():
        ranks = [_RANK[s] for s in states]
        assert ranks == sorted(ranks)
    rejected = [
        h
        for record in tracker.store.list_batches()
        for h in tracker.store.history(record.batch_id)
        if isinstance(h, RejectionEntry)
    ]
    assert rejected and all(h.reason == "stale" for h in rejected)
    succeeded = {e.custom_id for e in tracker.store.iter_ledger(state=ItemState.SUCCEEDED)}
    assert len(result_lines(tmp_path / "results")) == len(succeeded) == len(ids)


def test_plain_progress_prints_a_line_per_change_and_per_cycle(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a"]), EMBEDDINGS)
    out = io.StringIO()
    display = PlainProgress(out, clock=clock)

    with display:
        Poller(tracker, sleep=clock.advance, on_cycle=display.on_cycle).run(
            until_done=True, interval=1, timeout=600
        )

    lines = out.getvalue().splitlines()
    batch_lines = [line for line in lines if " batch_" in line]
    assert any("in_progress" in line and "deadline in 23h" in line for line in batch_lines)
    assert "completed" in batch_lines[-1]
    assert len(batch_lines) == len(set(batch_lines))  # unchanged batches are not repeated
    assert lines[-1].endswith("0 need attention, 0 items in retry")


def test_time_left_is_shown_in_hours_and_minutes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert format_remaining(datetime(2026, 1, 1, 23, 59, 30, tzinfo=UTC), now) == "23h59m"
    assert format_remaining(datetime(2026, 1, 1, 0, 4, tzinfo=UTC), now) == "4m"
    assert format_remaining(datetime(2025, 12, 31, 23, 48, tzinfo=UTC), now) == "overdue 12m"
    assert format_remaining(None, now) == ""


def test_live_progress_draws_a_table_of_every_batch_seen(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    result = submit_job(
        tracker, write_input(tmp_path / "in.jsonl", ["a", "b"]), EMBEDDINGS, limits=Limits(1)
    )
    out = io.StringIO()

    with LiveProgress(out, clock=clock, width=200) as display:
        Poller(tracker, sleep=clock.advance, on_cycle=display.on_cycle).run(
            until_done=True, interval=1, timeout=600
        )

    text = out.getvalue()
    assert "done/failed/total" in text and "deadline in" in text
    assert all(batch_id in text for batch_id in result.launched)
    assert "completed" in text and "1/0/1" in text
