"""submit -> poll -> items -> retry -> cancel through ``batchfsm.cli.main.main``, over HTTP."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchfsm.fsm.models import EventEntry
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.sandbox import Fate, Faults, Phases, Scenario
from tests.e2e.conftest import Env
from tests.e2e.support import (
    BATCHES_ROUTE,
    EMBEDDINGS,
    RETRIEVE_ROUTE,
    UPLOAD_ROUTE,
    result_lines,
    write_input,
)

POLL = ("poll", "--until-done", "--interval", "0.02", "--timeout", "20", "--json")


def _submit(env: Env, ids: list[str], *extra: str) -> dict[str, Any]:
    path = write_input(env.workdir / "requests.jsonl", ids)
    result = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--json", *extra)
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def _items(env: Env, *filters: str) -> dict[str, dict[str, Any]]:
    result = env.cli("items", "--json", *filters)
    assert result.code == 0, result.err
    items: list[dict[str, Any]] = result.json()["items"]
    return {item["custom_id"]: item for item in items}


def test_a_bad_line_exits_2_naming_the_line_and_uploads_nothing(env: Env) -> None:
    path = write_input(env.workdir / "requests.jsonl", ["a", "b"])
    path.write_text(path.read_text() + "{not json\n")

    result = env.cli("submit", str(path), "--endpoint", EMBEDDINGS)

    assert result.code == 2
    assert "requests.jsonl, line 3" in result.err and "invalid_json_line" in result.err
    assert env.sandbox.stats.count(UPLOAD_ROUTE) == 0
    assert env.sandbox.stats.count() == 0


def test_bad_metadata_exits_2_before_any_call(env: Env) -> None:
    path = write_input(env.workdir / "requests.jsonl", ["a"])
    result = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--metadata", "k" * 65 + "=v")
    assert result.code == 2 and "metadata" in result.err
    assert env.sandbox.stats.count() == 0


@pytest.mark.parametrize(
    "scenario", [Scenario(default=Fate(failure_rate=0.25, failure_codes=(400, 500)))]
)
def test_submit_split_poll_until_done_with_failures_and_items_filters(env: Env) -> None:
    ids = [f"r{i:02d}" for i in range(20)]
    data = _submit(env, ids, "--max-requests", "8", "--metadata", "team=search")

    assert set(data) == {"job", "batches", "open_intents"}
    job = data["job"]
    assert job["requests"] == 20 and job["endpoint"] == EMBEDDINGS and not job["resumed"]
    assert job["metadata"] == {"team": "search"}
    assert [b["requests"] for b in data["batches"]] == [8, 8, 4]
    assert all(
        b["job_id"] == job["job_id"] and b["parent_batch_id"] is None for b in data["batches"]
    )

    poll = env.cli(*POLL)
    assert poll.code == 0, poll.err
    summary = poll.json()
    assert summary["done"] is True and summary["timed_out"] is False
    assert {b["state"] for b in summary["batches"]} == {"completed"}

    items = _items(env)
    assert sorted(items) == ids
    assert set(items["r00"]) == {
        "job_id",
        "custom_id",
        "state",
        "attempts",
        "batches",
        "last_error",
        "usage",
    }
    by_state: dict[str, set[str]] = {}
    for cid, item in items.items():
        by_state.setdefault(item["state"], set()).add(cid)
    assert by_state.get("failed") and by_state.get("succeeded") and by_state.get("retry")
    failed = items[next(iter(by_state["failed"]))]
    assert failed["last_error"]["category"] == "permanent" and failed["attempts"] == 1
    # Results: one line per success, nothing else.
    assert len(result_lines(env.results)) == len(by_state["succeeded"])
    # Filters.
    assert set(_items(env, "--state", "retry")) == by_state["retry"]
    first = data["batches"][0]["batch_id"]
    assert set(_items(env, "--batch", first)) == set(ids[:8])
    assert _items(env, "--job", "nope") == {}

    # retry sends only the retry items, linked to their parents.
    retry = env.cli("retry", "--json")
    assert retry.code == 0, retry.err
    (batch,) = retry.json()["batches"]
    assert batch["requests"] == len(by_state["retry"]) and batch["parent_batch_id"]
    after = _items(env)
    for cid in by_state["retry"]:
        assert after[cid]["state"] == "pending" and after[cid]["batches"][-1] == batch["batch_id"]
    assert all(after[cid] == items[cid] for cid in by_state["failed"] | by_state["succeeded"])


@pytest.mark.parametrize(
    "scenario", [Scenario(default=Fate(kind="expire", expire_fraction=0.5, failure_rate=0.0))]
)
def test_an_expired_batch_keeps_its_finished_half_and_retries_the_rest(env: Env) -> None:
    ids = [f"e{i}" for i in range(10)]
    _submit(env, ids)

    poll = env.cli(*POLL)

    assert poll.code == 0, poll.err
    (batch,) = poll.json()["batches"]
    assert batch["state"] == "expired"
    items = _items(env)
    succeeded = {c for c, i in items.items() if i["state"] == "succeeded"}
    retry = {c for c, i in items.items() if i["state"] == "retry"}
    assert len(succeeded) == 5 and succeeded | retry == set(ids)
    assert {items[c]["last_error"]["category"] for c in retry} == {"not_run"}
    assert {items[c]["attempts"] for c in retry} == {0}  # never ran: no attempt spent
    assert len(result_lines(env.results)) == 5


@pytest.mark.parametrize("scenario", [Scenario(by_order=(Fate(kind="token_limit_exceeded"),))])
def test_poll_auto_retry_resends_after_token_limit_exceeded(env: Env) -> None:
    _submit(env, ["a", "b", "c"])

    poll = env.cli(*POLL, "--auto-retry", "--backoff-base", "0.2")

    assert poll.code == 0, poll.err
    summary = poll.json()
    states = sorted(b["state"] for b in summary["batches"])
    assert states == ["completed", "failed"] and len(summary["retry_batches"]) == 1
    assert {i["state"] for i in _items(env).values()} == {"succeeded"}
    assert len(result_lines(env.results)) == 3


@pytest.mark.parametrize("time_scale", [50.0])
@pytest.mark.parametrize(
    "scenario",
    [Scenario(default=Fate(phases=Phases(validating_s=0, in_progress_s=3600, cancelling_s=5)))],
)
def test_cancel_records_the_wish_then_poll_follows_it_to_cancelled(env: Env) -> None:
    data = _submit(env, [f"c{i}" for i in range(4)])
    batch_id = data["batches"][0]["batch_id"]

    cancel = env.cli("cancel", batch_id, "--json")

    assert cancel.code == 0, cancel.err
    row = cancel.json()
    assert row["cancel_requested"] is True and row["state"] == "cancelling"
    store = SQLiteJobStore(env.workdir / "store.db")
    try:
        events = [h.name for h in store.history(batch_id) if isinstance(h, EventEntry)]
    finally:
        store.close()
    assert "cancel_requested" in events

    poll = env.cli(*POLL)
    assert poll.code == 0, poll.err
    (batch,) = poll.json()["batches"]
    assert batch["state"] == "cancelled"
    # Requests that never ran go back to retry, free of charge.
    items = _items(env)
    assert {i["state"] for i in items.values()} <= {"retry", "succeeded"}
    # An ended batch cannot be cancelled: exit 2, and no API call.
    calls = env.sandbox.stats.count()
    again = env.cli("cancel", batch_id)
    assert again.code == 2 and "already ended" in again.err
    assert env.sandbox.stats.count() == calls


@pytest.mark.parametrize("time_scale", [1.0])
def test_poll_once_makes_one_retrieve_per_batch(env: Env) -> None:
    _submit(env, [f"p{i}" for i in range(9)], "--max-requests", "3")
    before = env.sandbox.stats.count(RETRIEVE_ROUTE)

    result = env.cli("poll", "--once")

    assert result.code == 0, result.err
    assert env.sandbox.stats.count(RETRIEVE_ROUTE) - before == 3
    assert env.sandbox.stats.count(BATCHES_ROUTE) == 3
    assert "cycle 1" in result.out


@pytest.mark.parametrize("time_scale", [1.0])
@pytest.mark.parametrize(
    "scenario", [Scenario(default=Fate(kind="stuck_finalizing", phases=Phases(validating_s=0)))]
)
def test_poll_until_done_exits_3_on_timeout(env: Env) -> None:
    _submit(env, ["t"])
    result = env.cli("poll", "--until-done", "--interval", "0.05", "--timeout", "0.3")
    assert result.code == 3
    assert "timed out" in result.out


def test_rerunning_submit_resumes_the_job(env: Env, tmp_path: Path) -> None:
    first = _submit(env, ["a", "b"])
    second = _submit(env, ["a", "b"])
    assert second["job"]["job_id"] == first["job"]["job_id"] and second["job"]["resumed"]
    assert env.sandbox.stats.count(BATCHES_ROUTE) == 1


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(
            seed=11,
            default=Fate(failure_rate=0.2, failure_codes=(500,)),
            faults=Faults(
                rate_limit_rate=0.15,
                server_error_rate=0.15,
                routes=(RETRIEVE_ROUTE, "GET /v1/files/{file_id}/content"),
            ),
        )
    ],
)
def test_poll_survives_429_and_500_storms(env: Env) -> None:
    ids = [f"s{i}" for i in range(12)]
    _submit(env, ids, "--max-requests", "4")

    poll = env.cli(*POLL, "--auto-retry")

    assert poll.code == 0, poll.err
    assert env.sandbox.app.faults.injected
    items = _items(env)
    assert {i["state"] for i in items.values()} <= {"succeeded", "failed"}
    succeeded = [c for c, i in items.items() if i["state"] == "succeeded"]
    assert sorted(result_lines_ids(env.results)) == sorted(succeeded)


def result_lines_ids(results: Path) -> list[str]:
    return [orjson.loads(line)["custom_id"] for line in result_lines(results)]


def test_the_api_key_is_never_printed_logged_or_stored(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-DoNotLeakThisKey0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    outputs = [
        env.cli("-vv", "submit", str(write_input(env.workdir / "r.jsonl", ["a", "b"])),
                "--endpoint", EMBEDDINGS),
        env.cli("-vv", *POLL),
        env.cli("-vv", "items"),
    ]  # fmt: skip

    assert all(o.code == 0 for o in outputs)
    assert all(key not in o.out + o.err for o in outputs)
    assert key not in caplog.text
    for path in env.workdir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
