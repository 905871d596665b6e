"""The stretched schedule (polling as the fallback) and the ``via`` marker it relies on,
with the real tracker on a SQLite file and the sandbox in-process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from batchfsm.config import Settings
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.submit import submit_job
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input
from batchfsm.tracker import PollReport, Tracker
from batchfsm.webhooks.schedule import DEADLINE_GRACE_SECONDS, StretchedSchedule
from tests.e2e.support import RETRIEVE_ROUTE, make_tracker

SLOW = Scenario(
    default=Fate(phases=Phases(validating_s=30, in_progress_s=6 * 3600, finalizing_s=30))
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def app(clock: FrozenClock) -> SandboxApp:
    return SandboxApp(World(SLOW, clock=clock))


@pytest.fixture
def tracker(tmp_path: Path, app: SandboxApp, clock: FrozenClock) -> Iterator[Tracker]:
    made = make_tracker(tmp_path, app, clock)
    yield made
    made.store.close()


def submit(tracker: Tracker, tmp_path: Path, name: str = "in") -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(batch_input([f"{name}-{i}" for i in range(3)]))
    (batch_id,) = submit_job(tracker, path, "/v1/embeddings").launched
    return batch_id


def noticed(tracker: Tracker, batch_id: str) -> list[str]:
    return [
        e.detail["via"]
        for e in tracker.store.history(batch_id)
        if isinstance(e, EventEntry) and e.name == "noticed"
    ]


def test_a_still_batch_waits_longer_and_longer_up_to_the_ceiling(
    tracker: Tracker, tmp_path: Path, clock: FrozenClock
) -> None:
    batch_id = submit(tracker, tmp_path)
    schedule = StretchedSchedule(interval=30, ceiling=240, clock=clock)
    waits = []
    for _ in range(40):
        record = tracker.store.load(batch_id)
        if schedule.due(record):
            schedule.update([tracker.observe(batch_id, known=record)])
            waits.append(schedule.wait_of(batch_id))
        clock.advance(30)
    # validating, then in_progress (a new state: back to the interval), then doubling
    # while the batch runs (its counts move, its state does not), capped at the ceiling.
    assert waits == [30, 30, 60, 120, 240, 240, 240, 240]


def test_a_record_someone_else_committed_is_not_polled_again_now(
    tracker: Tracker, tmp_path: Path, clock: FrozenClock
) -> None:
    batch_id = submit(tracker, tmp_path)
    schedule = StretchedSchedule(interval=60, ceiling=600, clock=clock)
    schedule.update([tracker.observe(batch_id)])
    clock.advance(3600)  # long past due; meanwhile a webhook-triggered observation commits
    tracker.observe(batch_id, via="webhook")
    assert schedule.due(tracker.store.load(batch_id)) is False
    clock.advance(60)
    assert schedule.due(tracker.store.load(batch_id)) is True


def test_the_deadline_is_never_stretched_past(clock: FrozenClock) -> None:
    expires = clock.now() + timedelta(hours=24)
    snapshot = BatchSnapshot.model_validate(
        {
            "id": "b",
            "status": "in_progress",
            "created_at": int(clock.now().timestamp()),
            "expires_at": int(expires.timestamp()),
        }
    )
    record = BatchRecord(batch_id="b", state=BatchStatus.IN_PROGRESS, version=3, snapshot=snapshot)
    schedule = StretchedSchedule(interval=600, ceiling=7200, clock=clock)
    clock.set(expires - timedelta(seconds=100))
    schedule.update([PollReport("b", "in_progress", "heartbeat", record=record)])
    clock.set(expires + timedelta(seconds=DEADLINE_GRACE_SECONDS - 1))
    assert not schedule.due(record)
    clock.advance(1)
    assert schedule.due(record)  # 105 s after the last look, not 600


def test_a_failed_retrieve_keeps_the_batch_due_and_an_ended_one_is_forgotten(
    clock: FrozenClock,
) -> None:
    schedule = StretchedSchedule(interval=60, ceiling=600, clock=clock)
    schedule.update([PollReport("b", "in_progress", "error", error="boom")])
    assert schedule.wait_of("b") is None
    with pytest.raises(ValueError, match="positive"):
        StretchedSchedule(interval=0, ceiling=600, clock=clock)


def test_the_poller_with_webhooks_polls_far_less_and_marks_what_it_noticed(
    tracker: Tracker, tmp_path: Path, app: SandboxApp, clock: FrozenClock
) -> None:
    batch_id = submit(tracker, tmp_path)
    plain = Poller(tracker, webhooks=False, sleep=clock.advance)
    (tmp_path / "b").mkdir()
    other_app = SandboxApp(World(SLOW, clock=clock))
    stretched_tracker = make_tracker(tmp_path / "b", other_app, clock)
    other = submit(stretched_tracker, tmp_path, "other")
    stretched = Poller(stretched_tracker, webhooks=True, sleep=clock.advance)
    assert stretched.schedule is not None and plain.schedule is None
    for _ in range(7 * 120):  # 7 hours of 30-second cycles for both
        plain.cycle()
        stretched.cycle()
        clock.advance(30)
    assert tracker.store.load(batch_id).terminal and stretched_tracker.store.load(other).terminal
    assert noticed(tracker, batch_id) == []  # without webhooks, no marker
    assert noticed(stretched_tracker, other) and set(noticed(stretched_tracker, other)) == {"poll"}
    plain_count = app.stats.count(RETRIEVE_ROUTE)
    stretched_count = other_app.stats.count(RETRIEVE_ROUTE)
    print(f"7 h of 30 s cycles: {plain_count} retrieves plain, {stretched_count} with webhooks on")
    assert plain_count > 700 and stretched_count < plain_count / 10
    stretched_tracker.store.close()


def test_webhooks_are_on_when_a_secret_or_the_flag_says_so() -> None:
    assert not Settings().webhooks_enabled
    assert Settings.from_env({"BATCHFSM_WEBHOOKS": "1"}).webhooks_enabled
    assert Settings.from_env({"OPENAI_WEBHOOK_SECRET": "whsec_abc"}).webhooks_enabled
    assert Settings.from_env({"BATCHFSM_WEBHOOK_SECRET_ARN": "arn:x"}).webhooks_enabled
    assert "whsec_abc" not in repr(Settings.from_env({"OPENAI_WEBHOOK_SECRET": "whsec_abc"}))
