"""Three ``batchfsm poll --auto-retry`` processes on one store, one sandbox over HTTP.

The same scenario (:mod:`tests.e2e.pollers`) runs on a DynamoDB table (the moto server
of ``scripts/ddb-server.sh``) and on a SQLite file, with exact reads and with 30% stale
reads (an earlier snapshot of a batch served again). Its first three batches meet three
fates: completed with some requests failed, expired half-done and refused at validation
with ``token_limit_exceeded``. The three pollers race for every effect and every retry.

What must hold, whoever won each race: every terminal effect ran once, every result
landed once, every ledger entry ended where its history says, and the API saw one
upload and one create per batch. ``scripts/stress_pollers.py`` runs the same thing in a
loop (and beside a CPU hog).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchfsm.sandbox import RunningSandbox, running_sandbox
from tests.e2e.pollers import (
    TIME_SCALE,
    Place,
    diagnosis,
    dynamodb_place,
    figures,
    problems,
    run_pollers,
    scenario,
    sqlite_place,
)


@pytest.fixture(params=["dynamodb", "sqlite"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    with sqlite_place(tmp_path) if request.param == "sqlite" else dynamodb_place() as made:
        yield made


@pytest.fixture(params=[0.0, 0.3], ids=["exact", "stale30"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    with running_sandbox(scenario(stale=request.param), time_scale=TIME_SCALE) as running:
        yield running


def test_three_pollers_on_one_store_run_each_effect_once_and_land_each_result_once(
    place: Place, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    run = run_pollers(place, sandbox, tmp_path)
    broken = problems(run)
    assert not broken, "\n".join(broken) + "\n" + diagnosis(run)
    print("\n" + figures(run))
