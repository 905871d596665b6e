"""Two ``batchfsm poll`` processes (real subprocesses) on one SQLite file, one sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from batchfsm.ledger.records import ItemState
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.sandbox import Fate, Faults, Scenario
from tests.e2e.conftest import Env
from tests.e2e.support import EMBEDDINGS, RETRIEVE_ROUTE, write_input

BATCHFSM = str(Path(sys.executable).parent / "batchfsm")


@pytest.mark.parametrize("time_scale", [20.0])
@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(
            seed=7,
            default=Fate(failure_rate=0.3, failure_codes=(500,)),
            faults=Faults(server_error_rate=0.05, routes=(RETRIEVE_ROUTE,)),
        )
    ],
)
def test_two_poller_processes_run_every_effect_once_and_deliver_every_result_once(
    env: Env,
) -> None:
    ids = [f"q{i:02d}" for i in range(24)]
    path = write_input(env.workdir / "requests.jsonl", ids)
    submitted = subprocess.run(
        [BATCHFSM, "submit", str(path), "--endpoint", EMBEDDINGS, "--max-requests", "6"],
        env={**os.environ, **env.environ()},
        cwd=env.workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "4 batches" in submitted.stdout

    argv = [BATCHFSM, "poll", "--until-done", "--auto-retry", "--interval", "0.05",
            "--timeout", "30", "--json"]  # fmt: skip
    pollers = [
        subprocess.Popen(
            argv,
            env={**os.environ, **env.environ()},
            cwd=env.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=40) for p in pollers]

    for poller, (out, err) in zip(pollers, outputs, strict=True):
        assert poller.returncode == 0, err
        assert orjson.loads(out)["done"] is True
    store = SQLiteJobStore(env.workdir / "store.db")
    try:
        records = store.list_batches()
        entries = {e.custom_id: e for e in store.iter_ledger()}
    finally:
        store.close()
    # Every owed effect ran, and exactly once (a second claim would bump attempts).
    effects = [e for r in records for e in r.outbox]
    assert effects and all(e.done for e in effects)
    assert {e.attempts for e in effects if e.handler == "harvest"} == {1}
    # No duplicate batch: each request was sent once per attempt it made.
    sent: Counter[str] = Counter()
    for batch_id in env.sandbox.world.batch_ids():
        batch = env.sandbox.world.retrieve_batch(batch_id)
        content = env.sandbox.world.get_file(batch["input_file_id"]).content
        sent.update(orjson.loads(line)["custom_id"] for line in content.splitlines())
    assert len(records) == len(env.sandbox.world.batch_ids()) > 4
    assert {cid: sent[cid] for cid in ids} == {cid: entries[cid].attempts for cid in ids}
    # Every success landed once, and only successes.
    delivered = [
        orjson.loads(line)["custom_id"]
        for result in env.results.glob("*/*.jsonl")
        for line in result.read_bytes().splitlines()
    ]
    succeeded = {cid for cid, e in entries.items() if e.state is ItemState.SUCCEEDED}
    assert sorted(delivered) == sorted(succeeded)
    assert {e.state for e in entries.values()} <= {ItemState.SUCCEEDED, ItemState.FAILED}
