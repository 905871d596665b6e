"""Three ``batchfsm poll --auto-retry`` processes on one store, one sandbox over HTTP.

The same scenario runs on a DynamoDB table (the moto server of ``scripts/ddb-server.sh``)
and on a SQLite file. Its first three batches meet three fates: completed with some
requests failed (400: permanent, 500: retried), expired half-done (the rest retried for
free) and refused at validation with ``token_limit_exceeded`` (queue full: every item
retried after the backoff). The three pollers race for every effect and every retry.

What must hold, whoever won each race: every terminal effect ran once, every result
landed once, every ledger entry ended where its history says, and the API saw one
upload and one create per batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from batchfsm.fsm.models import EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.records import IntentState, ItemState
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import JobStore
from batchfsm.sandbox import Fate, Phases, RunningSandbox, Scenario, running_sandbox
from tests.e2e.support import BATCHES_ROUTE, EMBEDDINGS, RETRIEVE_ROUTE, UPLOAD_ROUTE, write_input
from tests.persistence.dynamodb_server import fresh_store, server

BATCHFSM = str(Path(sys.executable).parent / "batchfsm")
POLLERS = 3
# 24 sandbox hours in about 1.7 s, so the expiring batch expires while pollers watch;
# the other batches take ~0.25 s, long enough to be seen in progress.
TIME_SCALE = 50_000.0
SLOW = Phases(validating_s=2_000, in_progress_s=10_000, finalizing_s=500)
FIRST_FATES = (
    Fate(phases=SLOW, failure_rate=0.5, failure_codes=(500,)),
    Fate(kind="expire", phases=SLOW, expire_fraction=0.5),
    Fate(kind="token_limit_exceeded", phases=SLOW),
)
SCENARIO = Scenario(seed=11, by_order=FIRST_FATES, default=Fate(phases=SLOW))
PERMANENT = {"q01#fail=400", "q08#fail=400"}  # one in the completed batch, one expiring
IDS = [f"q{i:02d}" if f"q{i:02d}#fail=400" not in PERMANENT else f"q{i:02d}#fail=400"
       for i in range(18)]  # fmt: skip
HARVESTED = {BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}


@dataclass
class Place:
    """Where the pollers keep their state: a store URL plus the test's own handle on it."""

    url: str
    store: JobStore
    environ: dict[str, str]


@pytest.fixture(params=["dynamodb", "sqlite"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "sqlite":
        store = SQLiteJobStore(tmp_path / "store.db")
        store.init()
        try:
            yield Place(f"sqlite:///{tmp_path / 'store.db'}", store, {})
        finally:
            store.close()
        return
    endpoint, region = server()
    with fresh_store() as ddb:
        fake_keys = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": region,
        }
        yield Place(
            f"dynamodb://{ddb.table}?region={region}&endpoint_url={endpoint}", ddb, fake_keys
        )


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(SCENARIO, time_scale=TIME_SCALE) as running:
        yield running


def test_three_pollers_on_one_store_run_each_effect_once_and_land_each_result_once(
    place: Place, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BATCHFSM_"))},
        **place.environ,
        "OPENAI_BASE_URL": sandbox.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "BATCHFSM_STORE": place.url,
        "BATCHFSM_RESULTS_DIR": str(results),
        "BATCHFSM_RETRY_BACKOFF_BASE": "0.3",  # queue-full items wait this long (from Settings)
        "BATCHFSM_RETRY_BACKOFF_CAP": "1",
    }
    path = write_input(tmp_path / "requests.jsonl", IDS)
    submitted = subprocess.run(
        [BATCHFSM, "submit", str(path), "--endpoint", EMBEDDINGS, "--max-requests", "6"],
        env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "3 batches" in submitted.stdout

    argv = [BATCHFSM, "poll", "--until-done", "--auto-retry", "--interval", "0.05",
            "--timeout", "40", "--json"]  # fmt: skip
    pollers = [
        subprocess.Popen(
            argv,
            env=environ,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(POLLERS)
    ]
    outputs = [p.communicate(timeout=60) for p in pollers]
    summaries = []
    for poller, (out, err) in zip(pollers, outputs, strict=True):
        assert poller.returncode == 0, err[-3000:]
        summaries.append(orjson.loads(out))
        assert summaries[-1]["done"] is True

    store = place.store
    records = {r.batch_id: r for r in store.list_batches()}
    entries = {e.custom_id: e for e in store.iter_ledger()}
    world = sandbox.app.world
    stats = sandbox.app.stats

    # The three fates happened, and their items were retried in new batches.
    first = [records[b] for b in world.batch_ids()[:3]]
    assert [r.state for r in first] == [
        BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.FAILED,
    ]  # fmt: skip
    assert len(records) == len(world.batch_ids()) > 3
    assert all(r.state in HARVESTED | {BatchStatus.FAILED} for r in records.values())

    # Every terminal effect ran once: one settlement event per batch, every effect done.
    for record in records.values():
        events = Counter(
            e.name for e in store.history(record.batch_id) if isinstance(e, EventEntry)
        )
        settled = "harvested" if record.state in HARVESTED else "failure_classified"
        assert events[settled] == 1, (record.batch_id, record.state, events)
        assert record.outbox and all(e.done for e in record.outbox)
        assert {e.attempts for e in record.outbox if e.handler == "harvest"} <= {1}

    # Every result landed once, and only successes landed.
    delivered = Counter(
        orjson.loads(line)["custom_id"]
        for file in results.glob("*/*.jsonl")
        for line in file.read_bytes().splitlines()
    )
    succeeded = {cid for cid, e in entries.items() if e.state is ItemState.SUCCEEDED}
    assert set(delivered) == succeeded and set(delivered.values()) == {1}

    # Every ledger entry ended right: permanent failures failed, all else succeeded,
    # nothing stranded, and each request was sent exactly once per attempt it made
    # (plus free resends of what expired unrun or was refused for a full queue).
    assert {cid for cid, e in entries.items() if e.state is ItemState.FAILED} == PERMANENT
    assert succeeded == set(IDS) - PERMANENT
    assert all(e.state in (ItemState.SUCCEEDED, ItemState.FAILED) for e in entries.values())
    sent: Counter[str] = Counter()
    for batch_id in world.batch_ids():
        content = world.get_file(world.retrieve_batch(batch_id)["input_file_id"]).content
        sent.update(orjson.loads(line)["custom_id"] for line in content.splitlines())
    for cid, entry in entries.items():
        assert sent[cid] == len(entry.batches), cid  # no batch carried an item twice
        assert entry.result_batch_id in (entry.batches[-1] if entry.batches else None, None)
        assert entry.attempts <= len(entry.batches)
    assert store.count_ledger()[ItemState.PENDING] == 0
    intents = Counter(i.state for i in store.list_intents())
    assert set(intents) <= {"created", "abandoned"}  # every intent closed
    assert intents[IntentState.CREATED] == len(records)

    # API calls: one upload and one create per batch, whichever poller sent it; at most
    # one retrieve per batch needing attention per poller cycle.
    batches = len(records)
    assert stats.count(UPLOAD_ROUTE) == stats.count(BATCHES_ROUTE) == batches
    cycles = sum(s["cycles"] for s in summaries)
    retrieves = stats.count(RETRIEVE_ROUTE)
    assert retrieves <= cycles * batches
    downloads = stats.count("GET /v1/files/{file_id}/content")
    assert downloads <= 2 * sum(1 for r in records.values() if r.state in HARVESTED)
    print(
        f"\n{place.url.split(':')[0]}: {batches} batches, {cycles} cycles over {POLLERS} "
        f"pollers, {retrieves} retrieves ({retrieves / batches:.1f} per batch, "
        f"{retrieves / cycles:.2f} per cycle), {downloads} file downloads, "
        f"{intents[IntentState.ABANDONED]} intents lost every item to a rival"
    )
