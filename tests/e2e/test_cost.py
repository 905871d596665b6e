"""``batchfsm cost`` and ``submit --max-cost`` through the CLI, against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfsm.jobs.cost import PER, load_prices
from batchfsm.ledger.tokens import count_line
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.sandbox import Fate, Phases, Scenario
from tests.e2e.conftest import Env
from tests.e2e.support import EMBEDDINGS, write_input

IDS = [f"doc-{i}" for i in range(12)]


@pytest.fixture
def time_scale() -> float:
    return 1.0  # real time: the batch is still running when cost first looks


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(default=Fate(phases=Phases(validating_s=1.0, in_progress_s=1.0,
                                               finalizing_s=0.2)))  # fmt: skip


def _tokens(path: Path) -> int:
    return sum(count_line(line, EMBEDDINGS) for line in path.read_bytes().splitlines())


def test_cost_shows_reported_usage_priced_and_the_estimate_for_the_rest(env: Env) -> None:
    path = write_input(env.workdir / "in.jsonl", IDS)
    assert env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--job-id", "j1").code == 0
    before = env.cli("cost", "--json").json()
    (job,) = before["jobs"]
    (model,) = job["models"]
    assert model["model"] == "text-embedding-3-small"
    assert model["running_input_tokens"] == _tokens(path)  # counted at submit, not yet billed
    rate = load_prices().price_of("text-embedding-3-small")
    assert rate is not None
    assert model["estimate_usd"] == pytest.approx(_tokens(path) * rate.input / PER * 0.5)
    assert env.cli("poll", "--until-done", "--timeout", "30").code == 0
    after = env.cli("cost", "--job", "j1", "--json").json()
    (model,) = after["jobs"][0]["models"]
    assert model["input_tokens"] > 0 and model["running_input_tokens"] == 0
    assert model["cost_usd"] == pytest.approx(model["input_tokens"] * rate.input / PER * 0.5)
    assert after["cost_usd"] == model["cost_usd"] and after["estimate_usd"] == 0
    assert set(after) == {"jobs", "cost_usd", "estimate_usd", "prices"}
    assert "cost so far $" in env.cli("cost").out


def test_max_cost_refuses_a_job_over_it_and_creates_nothing(env: Env) -> None:
    path = write_input(env.workdir / "in.jsonl", IDS)
    refused = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--max-cost", "0.0000001")
    assert refused.code == 2
    assert "exceeds --max-cost" in refused.err
    assert env.sandbox.app.stats.count("POST /v1/files") == 0
    store = SQLiteJobStore(env.workdir / "store.db")
    assert store.list_jobs() == [] and store.list_batches() == []
    store.close()
    ok = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--max-cost", "1")
    assert ok.code == 0
