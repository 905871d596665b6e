"""One batch's unreadable answers never stop the poll of the others.

Real parts: the sandbox speaks the Batch API to the official ``openai`` client (in
process, through httpx2's WSGI transport), our gateway, a SQLite store, the tracker and
the poll loop. :class:`RewritingApp` is the sandbox with some batches' ``GET
/v1/batches/{id}`` answers rewritten on the way out, the way a misbehaving provider or a
proxy in front of it answers: fields of the wrong type, an HTML page with status 200,
or the shapes other providers send (null counts, RFC 3339 and ``0`` timestamps,
``endpoint: null``, extra ``*_blob`` fields).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from batchfsm.cli.views import record_json
from batchfsm.fsm.models import RejectionEntry
from batchfsm.gateway import OpenAIGateway
from batchfsm.ledger.records import ItemState
from batchfsm.persistence import SQLiteJobStore
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import World
from batchfsm.sandbox.testing import openai_client
from tests.handlers.conftest import SCENARIO, Rig
from tests.rewriting import HTML, Rewrite, RewritingApp, first


def wrong_types(batch: dict[str, Any]) -> dict[str, Any]:
    return {**batch, "request_counts": "lots", "created_at": "yesterday"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = FrozenClock()
    app = RewritingApp(World(SCENARIO, clock=clock))
    client = openai_client(app)
    store = SQLiteJobStore(tmp_path / "batchfsm.db")
    store.init()
    try:
        yield Rig(
            tmp=tmp_path,
            clock=clock,
            app=app,
            client=client,
            gateway=OpenAIGateway(client, sleep=lambda _s: None),
            store=store,
            sink=DirectorySink(tmp_path / "results"),
        )
    finally:
        store.close()
        client.close()


def rewrites(rig: Rig) -> dict[str, Rewrite]:
    assert isinstance(rig.app, RewritingApp)
    return rig.app.rewrites


def rejections(rig: Rig, batch_id: str) -> list[RejectionEntry]:
    return [e for e in rig.store.history(batch_id) if isinstance(e, RejectionEntry)]


def unreadable_logs(caplog: pytest.LogCaptureFixture, batch_id: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    return [m for m in messages if batch_id in m and "not recorded as a snapshot" in m]


def test_a_wrong_typed_answer_is_recorded_for_its_batch_and_every_batch_finishes(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    good = rig.submit(["a1", "a2"], job_id="job-a")
    bad = rig.submit(["b1", "b2", "b3"], job_id="job-b")
    other = rig.submit(["c1"], job_id="job-c")
    rewrites(rig)[bad] = first(6, wrong_types)
    caplog.set_level(logging.DEBUG)

    tracker = rig.tracker()
    summary = Poller(tracker, clock=rig.clock, sleep=rig.clock.advance).run(
        until_done=True, interval=5, timeout=3600
    )

    assert summary.done and not summary.timed_out
    for job, batch in (("job-a", good), ("job-b", bad), ("job-c", other)):
        assert rig.store.load(batch).state.value == "completed"
        assert set(rig.states(job).values()) == {ItemState.SUCCEEDED}
    record = rig.store.load(bad)
    assert record.undecodable == 1  # six unreadable answers, one defect: recorded once
    (entry,) = rejections(rig, bad)
    assert entry.reason == "undecodable" and entry.status == "validating"
    assert entry.snapshot["request_counts"] == "lots"
    assert entry.snapshot["created_at"] == "yesterday"
    assert [p.split(":")[0] for p in entry.problems] == ["created_at", "request_counts"]
    assert len(unreadable_logs(caplog, bad)) == 1
    assert record_json(record)["undecodable"] == 1
    assert all(rig.store.load(b).undecodable == 0 for b in (good, other))


def test_the_batch_keeps_what_it_had_and_an_unchanged_defect_writes_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    bad = rig.submit(["b1", "b2"], fate="slow", job_id="job-b")
    good = rig.submit(["g1"], fate="slow", job_id="job-g")
    tracker = rig.tracker()
    rig.clock.advance(30)
    tracker.poll_once()
    before = rig.store.load(bad)
    assert before.state.value == "in_progress" and before.snapshot is not None
    assert before.snapshot.request_counts is not None

    rewrites(rig)[bad] = lambda batch: {**batch, "request_counts": {"total": "many"}}
    reports = {}
    for _ in range(3):
        rig.clock.advance(10)
        reports = {r.batch_id: r for r in tracker.poll_once()}
        assert reports[bad].kind == "rejected" and reports[bad].error
    after = rig.store.load(bad)
    assert after.version == before.version + 1  # one write for three identical answers
    assert (after.state, after.snapshot) == (before.state, before.snapshot)
    assert reports[good].kind in ("heartbeat", "advanced") and not reports[good].error

    rewrites(rig)[bad] = lambda _batch: HTML  # another defect: recorded again
    rig.clock.advance(10)
    tracker.poll_once()
    record = rig.store.load(bad)
    assert record.undecodable == 2
    html = rejections(rig, bad)[-1]
    assert html.snapshot == {"body": HTML} and html.status == ""
    assert "not a JSON object" in html.problems[0]
    assert len(unreadable_logs(caplog, bad)) == 2

    del rewrites(rig)[bad]
    rig.clock.advance(200)
    tracker.poll_once()
    assert rig.store.load(bad).state.value == "completed"
    assert set(rig.states("job-b").values()) == {ItemState.SUCCEEDED}


def provider_shapes(batch: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's answer as other providers would shape it (see the module doc)."""
    shaped = dict(batch)
    for name, value in batch.items():
        if name.endswith("_at"):  # unset: 0 (DashScope); set: RFC 3339 (Voyage, Together)
            shaped[name] = 0 if value is None else datetime.fromtimestamp(value, UTC).isoformat()
    shaped["endpoint"] = None
    shaped["output_blob"] = shaped["error_blob"] = ""
    shaped["in_progress_at"] = None
    if batch["status"] == "validating":
        shaped["request_counts"] = {"total": None, "completed": None, "failed": None}
    return shaped


def test_the_shapes_providers_send_are_taken_with_unknown_values(rig: Rig) -> None:
    batch_id = rig.submit(["p1", "p2"], job_id="job-p")
    rewrites(rig)[batch_id] = provider_shapes
    tracker = rig.tracker()
    report = tracker.observe(batch_id)
    assert report.kind == "heartbeat" and not report.error
    row = record_json(rig.store.load(batch_id))
    assert row["request_counts"] == {"total": None, "completed": None, "failed": None}
    assert row["deadline"] is not None  # from the RFC 3339 expires_at

    report = rig.run(batch_id, 60, tracker)
    assert report.kind == "advanced" and not report.error
    record = rig.store.load(batch_id)
    assert record.state.value == "completed" and record.undecodable == 0
    assert set(rig.states("job-p").values()) == {ItemState.SUCCEEDED}
    history = [h for h in rig.store.history(batch_id) if h.kind == "transition"]
    assert [h.hop.dest.value for h in history] == ["in_progress", "finalizing", "completed"]
