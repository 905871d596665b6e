"""harvest: completed / expired / cancelled batches settle every request exactly once,
deliver each result exactly once, and survive crashes, re-polls and vanished files."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
import pytest

from batchfsm.handlers import default_registry
from batchfsm.handlers.harvest import harvest
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.persistence import ledger_writer as reconcile_module
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.sandbox.testing import batch_input
from batchfsm.tracker import Tracker
from tests.handlers.conftest import ENDPOINT, Rig, error_of

DAY = 24 * 3600.0


class CrashingSink(DirectorySink):
    """A real DirectorySink whose process "dies" right after a batch was published."""

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        super().write_batch(job_id, batch_id, results)
        raise RuntimeError("crash after the sink write")


class CrashingStore(SQLiteJobStore):
    """A second connection to the same SQLite file whose ``save_ledger`` crashes on the
    ``crash_on``-th call (after the earlier chunks were durably saved)."""

    def __init__(self, path: Path, crash_on: int) -> None:
        super().__init__(path)
        self.calls = 0
        self.crash_on = crash_on

    def save_ledger(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        self.calls += 1
        if self.calls == self.crash_on:
            raise RuntimeError("crash in the middle of settling")
        return super().save_ledger(entries)


def test_completed_batch_settles_each_request_by_its_line(rig: Rig) -> None:
    ids = ["ok-1", "ok-2", "bad#fail=400", "busy#fail=429", "boom#fail=500", "slow#fail=timeout"]
    batch = rig.submit([*ids, "tired#fail=500"], attempts={"tired#fail=500": 2})

    report = rig.run(batch)

    assert report.state == "completed"
    assert "completed#harvest" in report.effects_run
    ledger = rig.ledger()
    for cid in ("ok-1", "ok-2"):
        assert ledger[cid].state is ItemState.SUCCEEDED
        assert ledger[cid].attempts == 1
        assert ledger[cid].result_batch_id == batch
    bad = ledger["bad#fail=400"]
    assert (bad.state, bad.attempts) == (ItemState.FAILED, 1)
    assert bad.last_error is not None and bad.last_error.category == "permanent"
    for cid in ("busy#fail=429", "boom#fail=500", "slow#fail=timeout"):
        entry = ledger[cid]
        assert (entry.state, entry.attempts) == (ItemState.RETRY, 1), cid
        assert entry.last_error is not None and entry.last_error.category == "retryable"
    assert error_of(ledger["slow#fail=timeout"]).code == "request_timeout"
    assert error_of(ledger["busy#fail=429"]).code == "rate_limit_exceeded"
    tired = ledger["tired#fail=500"]
    assert (tired.state, tired.attempts) == (ItemState.FAILED, 3)  # out of attempts
    assert tired.last_error is not None and tired.last_error.category == "retryable"

    assert sorted(rig.results(batch)) == ["ok-1", "ok-2"]
    bodies = dict(rig.sink.read_batch("job-1", batch))
    assert orjson.loads(bodies["ok-1"])["object"] == "list"  # the embeddings response body
    (event,) = rig.events(batch, "harvested")
    assert event.detail["missing"] == 0
    assert event.detail["states"] == {"failed": 2, "retry": 3, "succeeded": 2}


def test_completed_with_every_request_failed_has_no_output_file(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c"], fate="all_429")

    report = rig.run(batch)

    assert report.state == "completed" and report.effects_failed == []
    snapshot = rig.store.load(batch).snapshot
    assert snapshot is not None and snapshot.output_file_id is None
    assert all(e.state is ItemState.RETRY and e.attempts == 1 for e in rig.ledger().values())
    assert rig.results(batch) == []


def test_expired_batch_salvages_finished_work_and_retries_the_rest_for_free(rig: Rig) -> None:
    ids = [f"item-{i}" for i in range(10)]
    batch = rig.submit(ids, fate="expire_half")
    assert rig.run(batch).state == "in_progress"

    report = rig.run(batch, DAY)

    assert report.state == "expired"
    ledger = rig.ledger()
    done = sorted(c for c, e in ledger.items() if e.state is ItemState.SUCCEEDED)
    rest = [e for e in ledger.values() if e.state is not ItemState.SUCCEEDED]
    assert len(done) == 5 and sorted(rig.results(batch)) == done
    assert all(ledger[c].attempts == 1 for c in done)
    for entry in rest:
        assert (entry.state, entry.attempts) == (ItemState.RETRY, 0)
        assert entry.last_error is not None
        assert (entry.last_error.code, entry.last_error.category) == ("batch_expired", "not_run")


def test_cancelled_mid_run_keeps_what_ran(rig: Rig) -> None:
    ids = [f"item-{i}" for i in range(10)]
    batch = rig.submit(ids, fate="slow")  # 100 s of work
    assert rig.run(batch, 52).state == "in_progress"  # 2 s validating + half the work
    rig.gateway.cancel(batch)

    report = rig.run(batch, 60)

    assert report.state == "cancelled"
    ledger = rig.ledger()
    done = sorted(c for c, e in ledger.items() if e.state is ItemState.SUCCEEDED)
    assert len(done) == 5 and sorted(rig.results(batch)) == done
    for entry in (e for e in ledger.values() if e.state is not ItemState.SUCCEEDED):
        assert (entry.state, entry.attempts) == (ItemState.RETRY, 0)
        assert entry.last_error is not None and entry.last_error.code == "batch_cancelled"


def test_submitted_requests_in_neither_file_are_missing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    batch = rig.submit(["a", "b"], ledger_only=["ghost-1", "ghost-2"])

    with caplog.at_level(logging.WARNING, logger="batchfsm.handlers"):
        rig.run(batch)

    ledger = rig.ledger()
    assert ledger["a"].state is ItemState.SUCCEEDED
    for cid in ("ghost-1", "ghost-2"):
        assert (ledger[cid].state, ledger[cid].attempts) == (ItemState.RETRY, 0)
        assert ledger[cid].last_error is not None
        assert error_of(ledger[cid]).category == "missing"
    (event,) = rig.events(batch, "harvested")
    assert event.detail["missing"] == 2
    assert "2 submitted requests are in neither result file" in caplog.text
    assert "ghost-1" in caplog.text


def test_malformed_lines_are_quarantined_counted_and_never_crash(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c"])
    output_id = rig.materialise(batch, 60)["output_file_id"]
    lines = rig.file_content(output_id).splitlines(keepends=True)
    kept = [raw for raw in lines if orjson.loads(raw)["custom_id"] != "c"]
    junk = [
        b'{"custom_id": "c", "response": {"status_code": 200}, "error": null}\n',  # no body
        b"this is not json\n",
        b"\n",
        b'{"custom_id": 7, "response": null, "error": null}\n',
        b'{"custom_id": "stranger", "response": {"status_code": 200, "body": {}}}\n',
    ]
    rig.set_file_content(output_id, b"".join([*kept, *junk]))

    report = rig.tracker().observe(batch)

    assert report.effects_run == ["completed#harvest"]
    ledger = rig.ledger()
    assert ledger["a"].state is ItemState.SUCCEEDED and ledger["b"].state is ItemState.SUCCEEDED
    c = ledger["c"]
    assert (c.state, c.attempts) == (ItemState.RETRY, 1)
    assert c.last_error is not None and c.last_error.category == "malformed"
    assert sorted(rig.results(batch)) == ["a", "b"]  # the stranger is never delivered
    quarantine = rig.tmp / "results.quarantine" / "job-1" / f"{batch}.jsonl"
    rows = [orjson.loads(raw) for raw in quarantine.read_bytes().splitlines()]
    assert len(rows) == 4 and {r["source"] for r in rows} == {"output"}
    assert {r["reason"] for r in rows} >= {"blank line", "not valid JSON"}
    (event,) = rig.events(batch, "harvested")
    assert event.detail["quarantined"] == 4
    assert event.detail["foreign_lines"] == 1
    assert "quarantined_lines" in rig.alerts(batch)


def test_output_file_404_is_recorded_and_its_items_retried_not_looped(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c#fail=500"])
    snapshot = rig.materialise(batch, 60)
    rig.delete_file(snapshot["output_file_id"])

    report = rig.tracker().observe(batch)

    assert report.effects_failed == [] and report.effects_run == ["completed#harvest"]
    ledger = rig.ledger()
    for cid in ("a", "b"):
        assert (ledger[cid].state, ledger[cid].attempts) == (ItemState.RETRY, 0)
        assert ledger[cid].last_error is not None
        assert error_of(ledger[cid]).category == "missing"
    assert (ledger["c#fail=500"].state, ledger["c#fail=500"].attempts) == (ItemState.RETRY, 1)
    (gone,) = rig.events(batch, "file_gone")
    assert gone.detail["file"] == "output"
    assert rig.alerts(batch) == ["output_file_gone"]
    assert rig.events(batch, "results_recovered_from_sink") == []
    assert rig.store.load(batch).pending_effects == ()
    assert not rig.store.load(batch).needs_attention  # no endless loop of 404s


def test_crash_between_commit_and_effect_runs_the_owed_harvest_once(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c"])
    rig.clock.advance(60)
    first = rig.tracker()
    first.apply(batch, rig.gateway.retrieve(batch))  # committed, then the process died
    assert [e.key for e in rig.store.load(batch).pending_effects] == ["completed#harvest"]
    assert rig.results(batch) == []

    report = rig.tracker(owner="poller-2").drain(batch)
    again = rig.tracker(owner="poller-3").drain(batch)

    assert report.effects_run == ["completed#harvest"]
    assert again.effects_run == []
    assert sorted(rig.results(batch)) == ["a", "b", "c"]
    assert set(rig.states().values()) == {ItemState.SUCCEEDED}


def test_crash_after_the_sink_write_then_rerun_delivers_once(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c#fail=429"])
    crashing = rig.tracker(sink=CrashingSink(rig.tmp / "results"))

    report = rig.run(batch, tracker=crashing)

    assert report.effects_failed == ["completed#harvest"]
    assert set(rig.states().values()) == {ItemState.PENDING}  # nothing settled yet
    published = rig.sink.path_for("job-1", batch)
    before = published.stat()

    rerun = rig.tracker().drain(batch)

    assert rerun.effects_run == ["completed#harvest"]
    after = published.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(rig.results(batch)) == ["a", "b"]
    ledger = rig.ledger()
    assert ledger["a"].state is ItemState.SUCCEEDED
    assert (ledger["c#fail=429"].state, ledger["c#fail=429"].attempts) == (ItemState.RETRY, 1)
    (event,) = rig.events(batch, "harvested")
    assert event.detail["already_delivered"] is True and event.detail["results_written"] == 0


def test_output_gone_after_delivery_is_recovered_from_the_sink(rig: Rig) -> None:
    batch = rig.submit(["a", "b"])
    rig.run(batch, tracker=rig.tracker(sink=CrashingSink(rig.tmp / "results")))
    snapshot = rig.store.load(batch).snapshot
    assert snapshot is not None and snapshot.output_file_id
    rig.delete_file(snapshot.output_file_id)

    rig.tracker().drain(batch)

    assert set(rig.states().values()) == {ItemState.SUCCEEDED}
    assert sorted(rig.results(batch)) == ["a", "b"]
    assert rig.events(batch, "results_recovered_from_sink")[0].detail["items"] == 2


def test_crash_in_the_middle_of_settling_counts_each_attempt_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_module, "LEDGER_CHUNK", 2)
    ids = ["a", "b", "c#fail=500", "d#fail=500", "e", "f#fail=400"]
    batch = rig.submit(ids)
    store = CrashingStore(rig.tmp / "batchfsm.db", crash_on=2)
    try:
        crashing = rig.tracker()
        crashing.store = store
        assert rig.run(batch, tracker=crashing).effects_failed == ["completed#harvest"]
        halfway = rig.states()
        assert ItemState.PENDING in halfway.values()
        assert set(halfway.values()) != {ItemState.PENDING}  # the first chunk was saved
    finally:
        store.close()

    rig.tracker().drain(batch)

    ledger = rig.ledger()
    assert all(e.attempts == 1 for e in ledger.values())
    assert ledger["c#fail=500"].state is ItemState.RETRY
    assert ledger["f#fail=400"].state is ItemState.FAILED
    assert sorted(rig.results(batch)) == ["a", "b", "e"]


def test_reingesting_a_harvested_batch_changes_and_writes_nothing(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c#fail=500"])
    rig.run(batch)
    before = rig.ledger()
    published = rig.sink.path_for("job-1", batch).stat()
    downloads = rig.app.stats.count("GET /v1/files/{file_id}/content")

    for _ in range(2):
        ctx = rig.context(rig.store.load(batch))
        harvest(ctx)
        assert ctx.notes == []

    assert rig.ledger() == before  # same states, attempts and versions
    assert rig.sink.path_for("job-1", batch).stat().st_mtime_ns == published.st_mtime_ns
    assert rig.app.stats.count("GET /v1/files/{file_id}/content") == downloads
    assert len(rig.events(batch, "harvested")) == 1


def test_a_retried_item_is_only_settled_by_its_current_batch(rig: Rig) -> None:
    first = rig.submit(["a", "b#fail=500"])
    rig.run(first)
    # What retry does: append the new batch, back to pending.
    entry = rig.ledger()["b#fail=500"]
    second = rig.submit(["c"], job_id="job-1")
    rig.store.save_ledger(
        [entry.model_copy(update={"state": ItemState.PENDING, "batches": (first, second)})]
    )

    # Re-harvesting the first batch must not touch b, which now belongs to the second.
    harvest(rig.context(rig.store.load(first)))

    b = rig.ledger()["b#fail=500"]
    assert (b.state, b.attempts, b.batches) == (ItemState.PENDING, 1, (first, second))


def test_a_lost_batch_releases_its_items_without_spending_attempts(rig: Rig) -> None:
    batch = rig.submit(["a", "b"], fate="vanish")

    report = rig.run(batch, 10)

    assert report.kind == "lost"
    assert report.effects_run == ["lost#release_lost"]
    for entry in rig.ledger().values():
        assert (entry.state, entry.attempts) == (ItemState.RETRY, 0)
        assert entry.last_error is not None and entry.last_error.category == "lost"
    assert rig.events(batch, "released_lost")[0].detail["settled"] == 2


def test_without_a_sink_results_stay_owed_rather_than_dropped(rig: Rig) -> None:
    batch = rig.submit(["a", "b"])
    sinkless = Tracker(
        rig.store, rig.gateway, default_registry(), clock=rig.clock, workdir=rig.tmp / "w"
    )

    report = rig.run(batch, tracker=sinkless)

    assert report.effects_failed == ["completed#harvest"]
    (owed,) = rig.store.load(batch).pending_effects
    assert owed.last_error is not None and "no result sink" in owed.last_error
    assert set(rig.states().values()) == {ItemState.PENDING}
    assert rig.tracker().drain(batch).effects_run == ["completed#harvest"]
    assert sorted(rig.results(batch)) == ["a", "b"]


def test_a_batch_of_no_job_is_noted_not_settled(rig: Rig) -> None:
    file_id = rig.upload(batch_input(["a"]))
    snapshot = rig.gateway.create(file_id, ENDPOINT, {})
    assert snapshot.id is not None
    rig.tracker().track(snapshot)

    report = rig.run(snapshot.id)

    assert report.effects_run == ["completed#harvest"]
    (event,) = rig.events(snapshot.id, "harvest_skipped")
    assert "no job" in event.detail["reason"]
