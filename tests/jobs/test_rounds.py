"""Bounded retry rounds: a job whose batches keep expiring is not resent for ever."""

from __future__ import annotations

from pathlib import Path

from batchfsm.config import Settings
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ErrorCategory, ItemState
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.wiring import build_runtime
from tests.e2e.support import EMBEDDINGS


def test_items_that_never_run_fail_after_max_rounds(tmp_path: Path) -> None:
    clock = FrozenClock()
    never = Fate(kind="expire", expire_fraction=0.0)
    app = SandboxApp(World(Scenario(default=never), clock=clock))
    runtime = build_runtime(
        Settings(results_dir=tmp_path / "results", max_rounds=3),
        store=SQLiteJobStore(tmp_path / "store.db"),
        gateway=OpenAIGateway(openai_client(app), sleep=lambda _s: None),
        sink=DirectorySink(tmp_path / "results"),
        handlers=default_registry(),
        clock=clock,
        workdir=tmp_path,
    )
    path = tmp_path / "in.jsonl"
    path.write_bytes(batch_input(["a", "b", "c"]))
    submit_job(runtime.tracker, path, EMBEDDINGS, job_id="expiring")
    summary = Poller(runtime.tracker, clock=clock, sleep=clock.advance).run(
        until_done=True, auto_retry=True, interval=3600, timeout=20 * 86_400
    )
    assert summary.done and not summary.timed_out
    entries = list(runtime.store.iter_ledger("expiring"))
    assert len(app.world.batch_ids()) == 3  # the first batch and two retry rounds, no more
    for entry in entries:
        assert entry.state is ItemState.FAILED and len(entry.batches) == 3
        assert entry.attempts == 0  # never ran: no attempt spent
        assert entry.last_error is not None
        assert (entry.last_error.code, entry.last_error.category) == (
            "max_rounds",
            ErrorCategory.ROUNDS,
        )
    runtime.close()
