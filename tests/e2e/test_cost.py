"""``batchfsm cost`` and ``submit --max-cost`` through the CLI, against the sandbox and
the official client: the Batch object's ``usage`` while a batch runs, each result line's
once it is harvested (also when the batch expired part-way and its Batch object says
nothing), priced at batch rates."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchfsm.jobs.cost import PER, load_prices
from batchfsm.ledger.tokens import count_line
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.testing import batch_input
from tests.e2e.conftest import TIME_SCALE, Env
from tests.e2e.support import EMBEDDINGS, result_lines, write_input

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


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("time_scale", [TIME_SCALE])
@pytest.mark.parametrize(
    "scenario", [Scenario(default=Fate(kind="expire", expire_fraction=0.5, batch_usage="missing"))]
)
def test_a_batch_expired_part_way_is_costed_from_its_finished_lines(env: Env) -> None:
    path = env.workdir / "chat.jsonl"
    path.write_bytes(batch_input(IDS, endpoint=CHAT, model="gpt-4o-mini"))
    assert env.cli("submit", str(path), "--endpoint", CHAT, "--job-id", "j1").code == 0
    assert env.cli("poll", "--until-done", "--interval", "0.02", "--timeout", "20").code == 0
    (batch,) = env.cli("status", "--json").json()["batches"]
    assert (batch["state"], batch["usage"]) == ("expired", None)  # the Batch object billed none
    bodies = {row["custom_id"]: row["response"]  # the sink keeps each body as "response"
              for row in map(orjson.loads, result_lines(env.results))}  # fmt: skip
    assert len(bodies) == len(IDS) // 2
    used_in = sum(b["usage"]["prompt_tokens"] for b in bodies.values())
    used_out = sum(b["usage"]["completion_tokens"] for b in bodies.values())

    data = env.cli("cost", "--json").json()

    (job,) = data["jobs"]
    (model,) = job["models"]
    rate = load_prices().price_of("gpt-4o-mini")
    assert rate is not None and rate.output is not None
    assert (model["input_tokens"], model["output_tokens"]) == (used_in, used_out)
    assert model["cost_usd"] == pytest.approx((used_in * rate.input + used_out * rate.output)
                                              / PER * 0.5)  # fmt: skip
    assert (model["source"], model["unreported_batches"], model["lines_without_usage"]) == (
        "lines", 0, 0)  # fmt: skip
    assert model["from_lines"]["lines"] == len(bodies)
    assert model["from_lines"]["models"] == ["gpt-4o-mini"]
    (expired,) = job["batches"]
    assert (expired["state"], expired["source"], expired["lines"]) == ("expired", "lines", 6)
    assert expired["cost_usd"] == pytest.approx(model["cost_usd"])
    assert set(data) == {"jobs", "cost_usd", "estimate_usd", "prices"}  # extended, not renamed
    assert data["cost_usd"] == pytest.approx(model["cost_usd"])
    items = {i["custom_id"]: i for i in env.cli("items", "--json").json()["items"]}
    for cid, item in items.items():
        usage = bodies[cid]["usage"] if cid in bodies else None
        shown = item["usage"]
        assert (shown is None) is (usage is None)
        if shown is not None and usage is not None:
            assert (shown["input_tokens"], shown["output_tokens"], shown["model"]) == (
                usage["prompt_tokens"], usage["completion_tokens"], "gpt-4o-mini")  # fmt: skip
    assert "lines" in env.cli("cost").out
