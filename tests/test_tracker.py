"""The poll loop's promises: commit before effects, each effect once, crashes resumed,
stale writers re-apply, lost batches surfaced once, alerts raised once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchfsm.config import Settings
from batchfsm.errors import BatchNotFoundError, GatewayUnavailableError, StaleJobError
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry, TransitionEntry
from batchfsm.handlers.base import EffectContext, HandlerRegistry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.tracker import Tracker

C = 1_774_437_191


class ScriptedGateway:
    """A BatchGateway port that replays scripted snapshots (the API itself is exercised
    against the sandbox in the end-to-end tests)."""

    def __init__(self, script: Mapping[str, list[BatchSnapshot | Exception]]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.retrieves: list[str] = []

    def retrieve(self, batch_id: str) -> BatchSnapshot:
        self.retrieves.append(batch_id)
        step = (
            self.script[batch_id].pop(0)
            if len(self.script[batch_id]) > 1
            else self.script[batch_id][0]
        )
        if isinstance(step, Exception):
            raise step
        return step

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        raise AssertionError("the tracker must not call this while polling")

    def upload(self, path: Path) -> str:
        raise AssertionError("the tracker must not call this while polling")

    def create(
        self, input_file_id: str, endpoint: str, metadata: Mapping[str, str]
    ) -> BatchSnapshot:
        raise AssertionError("the tracker must not call this while polling")

    def cancel(self, batch_id: str) -> BatchSnapshot:
        raise AssertionError("the tracker must not call this while polling")

    def iter_batches(self, limit: int = 100) -> Iterator[BatchSnapshot]:
        raise AssertionError("the tracker must not call this while polling")


def snap(status: str, **fields: Any) -> BatchSnapshot:
    return BatchSnapshot.model_validate(
        {"id": "batch_1", "status": status, "created_at": C, "expires_at": C + 86_400, **fields}
    )


class Recorder:
    """Handlers that record their calls; ``fail_times`` makes the first runs raise."""

    def __init__(self, fail_times: int = 0) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail_times = fail_times

    def __call__(self, ctx: EffectContext) -> None:
        self.calls.append((ctx.record.state.value, ctx.effect.key if ctx.effect else None))
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("downstream is down")
        ctx.note("ran", state=ctx.record.state.value)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    with SQLiteJobStore(tmp_path / "t.db") as s:
        yield s


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.fromtimestamp(C + 60, UTC))


def tracker_for(
    store: SQLiteJobStore,
    gateway: ScriptedGateway,
    clock: FrozenClock,
    handlers: Mapping[str, Any],
    owner: str = "poller-a",
) -> Tracker:
    registry = HandlerRegistry(handlers=dict(handlers))
    return Tracker(
        store, gateway, registry, clock=clock, owner=owner, settings=Settings(lease_seconds=60)
    )


def test_observe_commits_then_runs_each_owed_effect_once(
    store: SQLiteJobStore, clock: FrozenClock
) -> None:
    harvest, watch = Recorder(), Recorder()
    gw = ScriptedGateway(
        {
            "batch_1": [
                snap("in_progress", in_progress_at=C + 3),
                snap("completed", completed_at=C + 40),
            ]
        }
    )
    tracker = tracker_for(store, gw, clock, {"harvest": harvest, "watch": watch})
    tracker.track(snap("validating"))
    first = tracker.observe("batch_1")
    second = tracker.observe("batch_1")
    third = tracker.observe("batch_1")
    assert (first.kind, second.kind, third.kind) == ("advanced", "advanced", "heartbeat")
    assert harvest.calls == [("completed", "completed#harvest")]
    assert watch.calls == [("in_progress", "in_progress#watch")]
    record = store.load("batch_1")
    assert record.pending_effects == ()
    assert not record.needs_attention
    assert store.list_attention() == []
    kinds = [e.kind if not isinstance(e, EventEntry) else e.name for e in store.history("batch_1")]
    assert kinds == ["transition", "ran", "transition", "transition", "ran"]
    assert gw.retrieves == ["batch_1"] * 3


def test_an_unchanged_heartbeat_writes_nothing(store: SQLiteJobStore, clock: FrozenClock) -> None:
    gw = ScriptedGateway({"batch_1": [snap("validating")]})
    tracker = tracker_for(store, gw, clock, {})
    tracker.track(snap("validating"))
    version = store.load("batch_1").version
    report = tracker.observe("batch_1")
    assert report.kind == "heartbeat" and not report.changed
    assert store.load("batch_1").version == version


def test_crash_between_commit_and_effect_is_resumed_once(
    store: SQLiteJobStore, clock: FrozenClock
) -> None:
    harvest = Recorder()
    gw = ScriptedGateway({"batch_1": [snap("completed", completed_at=C + 40)]})
    crashed = tracker_for(store, gw, clock, {"harvest": harvest})
    crashed.track(snap("validating"))
    crashed.apply("batch_1", gw.retrieve("batch_1"))  # committed; the process dies here
    assert [e.key for e in store.load("batch_1").pending_effects] == ["completed#harvest"]
    assert [r.batch_id for r in store.list_attention()] == ["batch_1"]

    restarted = tracker_for(store, gw, clock, {"harvest": harvest}, owner="poller-b")
    restarted.poll_once()
    restarted.poll_once()
    assert harvest.calls == [("completed", "completed#harvest")]
    assert store.load("batch_1").pending_effects == ()


def test_a_failing_effect_stays_owed_with_its_error_and_runs_again(
    store: SQLiteJobStore,
    clock: FrozenClock,
) -> None:
    harvest = Recorder(fail_times=1)
    gw = ScriptedGateway({"batch_1": [snap("completed", completed_at=C + 40)]})
    tracker = tracker_for(store, gw, clock, {"harvest": harvest})
    tracker.track(snap("validating"))
    report = tracker.observe("batch_1")
    assert report.effects_failed == ["completed#harvest"]
    entry = store.load("batch_1").outbox[0]
    assert not entry.done and entry.attempts == 1
    assert entry.last_error == "RuntimeError: downstream is down"
    assert entry.lease_owner is None
    again = tracker.poll_once()
    assert again[0].effects_run == ["completed#harvest"]
    entry = store.load("batch_1").outbox[0]
    assert entry.done and entry.attempts == 2 and entry.last_error is None


def test_a_live_lease_of_another_poller_is_respected_and_an_expired_one_taken_over(
    store: SQLiteJobStore,
    clock: FrozenClock,
) -> None:
    harvest = Recorder()
    gw = ScriptedGateway({"batch_1": [snap("completed", completed_at=C + 40)]})
    a = tracker_for(store, gw, clock, {"harvest": harvest}, owner="a")
    a.track(snap("validating"))
    a.apply("batch_1", gw.retrieve("batch_1"))
    record = store.load("batch_1")
    leased = record.with_effect(
        "completed#harvest", lease_owner="a", lease_until=clock.now() + timedelta(seconds=60)
    )
    store.commit(leased, expected_version=record.version)  # a claimed it, then died

    b = tracker_for(store, gw, clock, {"harvest": harvest}, owner="b")
    b.drain("batch_1")
    assert harvest.calls == []
    clock.advance(61)
    b.drain("batch_1")
    assert harvest.calls == [("completed", "completed#harvest")]


class RacingStore(SQLiteJobStore):
    """Lets a second poller commit between our load and our commit, once."""

    def __init__(self, path: Path, rival: Tracker | None = None) -> None:
        super().__init__(path)
        self.rival = rival
        self.rival_snapshot: BatchSnapshot | None = None

    def commit(
        self, record: BatchRecord, *, expected_version: int, history: Any = ()
    ) -> BatchRecord:
        if self.rival is not None and self.rival_snapshot is not None:
            rival, snapshot, self.rival = self.rival, self.rival_snapshot, None
            rival.apply(record.batch_id, snapshot)
        return super().commit(record, expected_version=expected_version, history=history)


def test_a_stale_writer_reloads_and_reapplies_never_overwrites(
    tmp_path: Path, clock: FrozenClock
) -> None:
    path = tmp_path / "race.db"
    with SQLiteJobStore(path) as plain, RacingStore(path) as racing:
        gw = ScriptedGateway({"batch_1": [snap("in_progress")]})
        rival = tracker_for(plain, gw, clock, {}, owner="rival")
        rival.track(snap("validating"))
        racing.rival, racing.rival_snapshot = rival, snap("finalizing", finalizing_at=C + 9)
        ours = tracker_for(racing, gw, clock, {}, owner="ours")
        applied, record = ours.apply("batch_1", snap("in_progress", in_progress_at=C + 3))
        # The rival moved it to finalizing first; our in_progress is now a stale read.
        assert record.state.value == "finalizing"
        assert applied.outcome == "rejected"
        history = plain.history("batch_1")
        hops = [
            (e.hop.source.value, e.hop.dest.value)
            for e in history
            if isinstance(e, TransitionEntry)
        ]
        assert hops == [("validating", "in_progress"), ("in_progress", "finalizing")]
        assert [e.kind for e in history][-1] == "rejection"


def test_a_vanished_batch_is_marked_lost_once_and_no_longer_polled(
    store: SQLiteJobStore,
    clock: FrozenClock,
) -> None:
    release = Recorder()
    gone = BatchNotFoundError(
        "No batch found with id 'batch_1'.", batch_id="batch_1", status_code=404
    )
    gw = ScriptedGateway({"batch_1": [gone]})
    tracker = tracker_for(store, gw, clock, {"release_lost": release, "watch": Recorder()})
    tracker.track(snap("in_progress"))
    report = tracker.observe("batch_1")
    assert report.kind == "lost"
    assert ("in_progress", "lost#release_lost") in release.calls
    record = store.load("batch_1")
    assert record.lost and not record.needs_attention
    assert tracker.poll_once() == []
    assert gw.retrieves == ["batch_1"]
    events = [e for e in store.history("batch_1") if isinstance(e, EventEntry)]
    assert events[0].name == "lost" and events[0].detail["status_code"] == 404


def test_gateway_outage_is_reported_not_raised_and_state_is_kept(
    store: SQLiteJobStore,
    clock: FrozenClock,
) -> None:
    gw = ScriptedGateway({"batch_1": [GatewayUnavailableError("503 after 5 attempts")]})
    tracker = tracker_for(store, gw, clock, {})
    tracker.track(snap("in_progress"))
    report = tracker.observe("batch_1")
    assert report.kind == "error" and report.error == "503 after 5 attempts"
    assert store.load("batch_1").state.value == "in_progress"


def test_heartbeat_alerts_fire_once_per_key(store: SQLiteJobStore, clock: FrozenClock) -> None:
    def watch(ctx: EffectContext) -> None:
        ctx.alert("deadline-4h", "4 h left before the batch expires")

    gw = ScriptedGateway({"batch_1": [snap("in_progress")]})
    registry = HandlerRegistry(handlers={"watch": watch}, on_heartbeat=("watch",))
    tracker = Tracker(store, gw, registry, clock=clock, owner="a")
    tracker.track(snap("in_progress"))
    for _ in range(3):
        tracker.observe("batch_1")
    alerts = [
        e for e in store.history("batch_1") if isinstance(e, EventEntry) and e.name == "alert"
    ]
    assert len(alerts) == 1 and alerts[0].detail["key"] == "deadline-4h"
    assert store.load("batch_1").alerts == ("deadline-4h",)


def test_conflicts_that_never_end_surface_as_stale_errors(
    tmp_path: Path, clock: FrozenClock
) -> None:
    class AlwaysStale(SQLiteJobStore):
        def commit(
            self, record: BatchRecord, *, expected_version: int, history: Any = ()
        ) -> BatchRecord:
            raise StaleJobError(
                record.batch_id,
                expected_version=expected_version,
                actual_version=expected_version + 1,
            )

    with AlwaysStale(tmp_path / "s.db") as s:
        tracker = tracker_for(s, ScriptedGateway({}), clock, {})
        tracker.track(snap("validating"))
        with pytest.raises(StaleJobError):
            tracker.apply("batch_1", snap("in_progress"))


def test_alerts_raised_by_an_effect_are_not_repeated_when_it_runs_again(
    store: SQLiteJobStore,
    clock: FrozenClock,
) -> None:
    runs = []

    def harvest(ctx: EffectContext) -> None:
        runs.append(ctx.effect.key if ctx.effect else None)
        ctx.alert("output_file_gone", "the output file is gone")
        if len(runs) == 1:
            raise RuntimeError("disk full")

    gw = ScriptedGateway({"batch_1": [snap("completed", completed_at=C + 40)]})
    tracker = tracker_for(store, gw, clock, {"harvest": harvest})
    tracker.track(snap("validating"))
    tracker.observe("batch_1")
    tracker.poll_once()
    assert runs == ["completed#harvest", "completed#harvest"]
    alerts = [
        e for e in store.history("batch_1") if isinstance(e, EventEntry) and e.name == "alert"
    ]
    assert len(alerts) == 1
    assert store.load("batch_1").alerts == ("output_file_gone",)


class CountingStore(SQLiteJobStore):
    """Counts the writes that reach the store (commits), as a bill would."""

    commits = 0

    def commit(
        self, record: BatchRecord, *, expected_version: int, history: Any = ()
    ) -> BatchRecord:
        self.commits += 1
        return super().commit(record, expected_version=expected_version, history=history)


def inline_tracker(
    store: SQLiteJobStore, gw: ScriptedGateway, clock: FrozenClock, watch: Any, owner: str = "a"
) -> Tracker:
    registry = HandlerRegistry(handlers={"watch": watch}, inline=frozenset({"watch"}))
    return Tracker(store, gw, registry, clock=clock, owner=owner)


def test_an_inline_effect_is_done_in_the_very_commit_that_owes_it(
    tmp_path: Path, clock: FrozenClock
) -> None:
    watch = Recorder()
    gw = ScriptedGateway({"batch_1": [snap("in_progress", in_progress_at=C + 3)]})
    with CountingStore(tmp_path / "c.db") as store:
        tracker = inline_tracker(store, gw, clock, watch)
        tracker.track(snap("validating"), items=3)
        report = tracker.observe("batch_1")

        assert store.commits == 1  # not commit + claim + finish
        assert report.kind == "advanced" and report.effects_run == ["in_progress#watch"]
        record = store.load("batch_1")
        (entry,) = [e for e in record.outbox if e.key == "in_progress#watch"]
        assert entry.done and entry.attempts == 1 and entry.lease_owner is None
        assert record.items == 3 and record.pending_effects == ()
        assert watch.calls == [("in_progress", "in_progress#watch")]
        kinds = [
            e.kind if not isinstance(e, EventEntry) else e.name for e in store.history("batch_1")
        ]
        assert kinds == ["transition", "ran"]


def test_an_inline_effect_that_raises_stays_owed_and_the_drain_records_its_error(
    store: SQLiteJobStore, clock: FrozenClock
) -> None:
    calls: list[str] = []

    def watch(ctx: EffectContext) -> None:
        calls.append(ctx.record.state.value)
        if ctx.record.state.value == "in_progress" and calls.count("in_progress") <= 2:
            raise RuntimeError("clock went backwards")

    gw = ScriptedGateway({"batch_1": [snap("in_progress", in_progress_at=C + 3)]})
    tracker = inline_tracker(store, gw, clock, watch)
    tracker.track(snap("validating"))
    first = tracker.observe("batch_1")
    # Run once inside the commit (raised: left owed), once by the drain (error recorded).
    assert calls == ["in_progress", "in_progress"]
    assert first.kind == "advanced" and first.effects_failed == ["in_progress#watch"]
    (entry,) = store.load("batch_1").pending_effects
    assert entry.attempts == 1 and entry.last_error == "RuntimeError: clock went backwards"
    assert store.load("batch_1").needs_attention

    again = tracker.observe("batch_1")
    assert again.effects_run == ["in_progress#watch"]
    record = store.load("batch_1")
    assert record.pending_effects == ()
    (done,) = [e for e in record.outbox if e.key == "in_progress#watch"]
    assert done.done and done.attempts == 2 and done.last_error is None


def test_an_inline_effect_left_owed_by_a_leasing_poller_is_settled_in_one_write(
    tmp_path: Path, clock: FrozenClock
) -> None:
    watch = Recorder()
    gw = ScriptedGateway({"batch_1": [snap("in_progress", in_progress_at=C + 3)]})
    with CountingStore(tmp_path / "c.db") as store:
        older = tracker_for(store, gw, clock, {"watch": watch})  # watch not inline there
        older.track(snap("validating"))
        older.apply("batch_1", gw.retrieve("batch_1"))  # committed, then the process died
        owed = [e.key for e in store.load("batch_1").pending_effects]
        assert owed == ["in_progress#watch"]

        store.commits = 0
        reports = inline_tracker(store, gw, clock, watch, owner="b").poll_once()
        assert reports[0].effects_run == owed
        assert store.commits == 1  # no lease claimed and released
        assert watch.calls == [("in_progress", "in_progress#watch")]
        assert store.load("batch_1").pending_effects == ()


def test_an_inline_effect_of_a_lost_commit_race_is_recorded_once(
    tmp_path: Path, clock: FrozenClock
) -> None:
    path = tmp_path / "race.db"
    watch = Recorder()
    with SQLiteJobStore(path) as plain, RacingStore(path) as racing:
        gw = ScriptedGateway({"batch_1": [snap("in_progress")]})
        rival = inline_tracker(plain, gw, clock, watch, owner="rival")
        rival.track(snap("validating"))
        racing.rival, racing.rival_snapshot = rival, snap("in_progress", in_progress_at=C + 3)
        ours = inline_tracker(racing, gw, clock, watch, owner="ours")
        report = ours.observe("batch_1", known=plain.load("batch_1"))
        # Both computed the watch; only the rival's commit landed, ours re-read and found
        # nothing left to do.
        assert report.kind == "heartbeat" and report.effects_run == []
        notes = [e for e in plain.history("batch_1") if isinstance(e, EventEntry)]
        assert [(n.name, n.detail["state"]) for n in notes] == [("ran", "in_progress")]
        assert plain.load("batch_1").pending_effects == ()


def test_a_stale_known_record_costs_a_reload_never_a_wrong_state(
    store: SQLiteJobStore, clock: FrozenClock
) -> None:
    gw = ScriptedGateway({"batch_1": [snap("completed", completed_at=C + 40)]})
    tracker = tracker_for(store, gw, clock, {"harvest": Recorder()})
    tracker.track(snap("validating"))
    stale = store.load("batch_1")
    tracker.apply("batch_1", snap("finalizing", finalizing_at=C + 30))  # another poll, since
    report = tracker.observe("batch_1", known=stale)
    record = store.load("batch_1")
    assert report.kind == "advanced" and record.state.value == "completed"
    hops = [
        (e.hop.source.value, e.hop.dest.value)
        for e in store.history("batch_1")
        if isinstance(e, TransitionEntry)
    ]
    assert hops[-1] == ("finalizing", "completed")
    assert ("validating", "in_progress") in hops  # implied by the finalizing snapshot


def test_a_status_the_api_keeps_sending_unrecognised_is_recorded_once_not_every_poll(
    tmp_path: Path, clock: FrozenClock
) -> None:
    gw = ScriptedGateway(
        {
            "batch_1": [
                snap("paused"),
                snap("paused"),
                snap("paused"),
                snap("in_progress", in_progress_at=C + 3),
                snap("paused"),
            ]
        }
    )
    with CountingStore(tmp_path / "c.db") as store:
        tracker = tracker_for(store, gw, clock, {"watch": Recorder()})
        tracker.track(snap("validating"))
        kinds = [tracker.observe("batch_1").kind for _ in range(5)]
        assert kinds == ["rejected", "rejected", "rejected", "advanced", "rejected"]
        # Written: the first rejection, the transition (+ its watch: claim and finish),
        # the rejection after it. The two repeats wrote nothing.
        assert store.commits == 5
        history = store.history("batch_1")
        rejections = [e for e in history if e.kind == "rejection"]
        assert [(r.status, r.line) for r in rejections] == [("paused", 2), ("paused", 4)]
        assert store.load("batch_1").last_rejection == "unknown:paused"
