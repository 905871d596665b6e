"""Admission control end to end: ten jobs against an enqueued-token limit that fits three.

The sandbox enforces the limit per model the way the API does (a batch past it fails
``token_limit_exceeded``) and counts tokens as the project's counter documents; the
official client talks to it. Two pollers, each with its own handle on one store (a
SQLite file, or a DynamoDB table on the moto server), share one budget through it. They
take turns on one frozen clock that is also the sandbox's, so every run is the same.

What must hold: every request delivered exactly once; at most one
``token_limit_exceeded``; the queue used (its peak at least half the limit) and never
past it; the jobs' queued work visible while it waits.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchfsm.config import Settings
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ItemState
from batchfsm.ledger.tokens import count_line
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock, JobStore
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.tracker import Tracker
from batchfsm.wiring import build_runtime
from tests.e2e.support import EMBEDDINGS

MODEL = "text-embedding-3-small"
JOBS = 10
PER_JOB = 20
FITS = 3


def _ids(job: int) -> list[str]:
    return [f"job{job}-req{i}" for i in range(PER_JOB)]


def _job_tokens(job: int) -> int:
    return sum(count_line(line, EMBEDDINGS) for line in batch_input(_ids(job)).splitlines())


@contextlib.contextmanager
def _stores(kind: str, tmp_path: Path) -> Iterator[tuple[JobStore, JobStore]]:
    if kind == "sqlite":
        first, second = SQLiteJobStore(tmp_path / "store.db"), SQLiteJobStore(tmp_path / "store.db")
        first.init()
        try:
            yield first, second
        finally:
            first.close()
            second.close()
        return
    from batchfsm.persistence.dynamodb import DynamoDBJobStore
    from tests.persistence.dynamodb_server import client, fresh_store

    with fresh_store() as ddb:
        other: JobStore = DynamoDBJobStore(client(), ddb.table)
        try:
            yield ddb, other
        finally:
            other.close()


def _tracker(store: JobStore, app: SandboxApp, clock: FrozenClock, tmp_path: Path) -> Tracker:
    settings = Settings(results_dir=tmp_path / "results", queue_limits={MODEL: LIMIT})
    return build_runtime(
        settings,
        store=store,
        gateway=OpenAIGateway(openai_client(app), sleep=lambda _s: None),
        sink=DirectorySink(tmp_path / "results"),
        handlers=default_registry(),
        clock=clock,
        workdir=tmp_path,
    ).tracker


LIMIT = FITS * _job_tokens(0) + _job_tokens(0) // 2  # three jobs and a half
"""Every job's requests count alike here, so three fit whole and a fourth is split."""


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_ten_jobs_against_a_limit_that_fits_three(kind: str, tmp_path: Path) -> None:
    clock = FrozenClock()
    app = SandboxApp(World(Scenario(queue_limits={MODEL: LIMIT}), clock=clock))
    with _stores(kind, tmp_path) as (store_a, store_b):
        first = _tracker(store_a, app, clock, tmp_path)
        for job in range(JOBS):
            path = tmp_path / f"in-{job}.jsonl"
            path.write_bytes(batch_input(_ids(job)))
            submit_job(first, path, EMBEDDINGS, job_id=f"job-{job:02d}")
            clock.advance(1)
        queued = first.store.count_ledger()[ItemState.QUEUED]
        assert (JOBS - FITS - 1) * PER_JOB < queued < (JOBS - FITS) * PER_JOB  # 4th one split
        pollers = [
            Poller(first, clock=clock),
            Poller(_tracker(store_b, app, clock, tmp_path), clock=clock),
        ]
        for _cycle in range(400):
            reports = [p.cycle(auto_retry=True) for p in pollers]
            if all(r.done and r.retry_items == 0 for r in reports):
                break
            clock.advance(5)
        else:
            pytest.fail(f"not done: {first.store.count_ledger()}")
        counts = first.store.count_ledger()
        budget = first.store.load_budget(MODEL)
    assert counts[ItemState.SUCCEEDED] == JOBS * PER_JOB, counts
    delivered = Counter(
        orjson.loads(line)["custom_id"]
        for path in (tmp_path / "results").rglob("*.jsonl")
        for line in path.read_bytes().splitlines()
    )
    assert set(delivered.values()) == {1} and len(delivered) == JOBS * PER_JOB
    stats = app.world.queue.snapshot()
    assert LIMIT // 2 <= stats["peak"][MODEL] <= LIMIT
    refusals = sum(
        1
        for batch_id in app.world.batch_ids()
        if (app.world.retrieve_batch(batch_id).get("errors") or {}).get("data")
    )
    print(f"\n{kind}: limit {LIMIT}, peak {stats['peak'][MODEL]}, "
          f"{len(app.world.batch_ids())} batches, {refusals} refused")  # fmt: skip
    assert refusals <= 1
    assert len(app.world.batch_ids()) > JOBS  # jobs were split to keep the queue full
    assert budget.held == {}  # every reservation released at the end


def test_the_budget_shrinks_after_a_refusal_and_nothing_loops(tmp_path: Path) -> None:
    """A sandbox limit below the configured budget (another user of the organisation):
    the refusal halves the budget, and the job still finishes."""
    clock = FrozenClock()
    app = SandboxApp(World(Scenario(queue_limits={MODEL: LIMIT // 2}), clock=clock))
    with _stores("sqlite", tmp_path) as (store, _other):
        tracker = _tracker(store, app, clock, tmp_path)
        for job in range(4):
            path = tmp_path / f"in-{job}.jsonl"
            path.write_bytes(batch_input(_ids(job)))
            submit_job(tracker, path, EMBEDDINGS, job_id=f"job-{job:02d}")
        poller = Poller(tracker, clock=clock)
        for _cycle in range(400):
            report = poller.cycle(auto_retry=True)
            if report.done and report.retry_items == 0:
                break
            clock.advance(5)
        else:
            pytest.fail(f"not done: {store.count_ledger()}")
        budget = store.load_budget(MODEL)
        assert store.count_ledger()[ItemState.SUCCEEDED] == 4 * PER_JOB
    creates = len(app.world.batch_ids())
    print(f"\nshrinks {budget.shrinks}, factor {budget.factor}, {creates} batches")
    assert budget.shrinks >= 1 and budget.factor < 1
    assert creates <= 4 * 3  # refused at most a few times, never a blind loop
