"""classify_failure: a failed batch is judged from errors.data, never from an error file:
queue full → retry for free; rejected input → failed loudly, never resent blindly."""

from __future__ import annotations

import logging

import orjson
import pytest

from batchfsm.fsm.models import BatchErrorItem
from batchfsm.handlers.failure import judge_failure
from batchfsm.ledger.records import ItemState
from batchfsm.sandbox.testing import batch_input
from tests.handlers.conftest import Rig, error_of


def test_token_limit_exceeded_sends_everything_back_without_spending_attempts(rig: Rig) -> None:
    batch = rig.submit(["a", "b", "c"], fate="token_limit_exceeded", attempts={"c": 2})

    report = rig.run(batch)

    assert report.state == "failed" and report.effects_run == ["failed#classify_failure"]
    ledger = rig.ledger()
    assert {cid: (e.state, e.attempts) for cid, e in ledger.items()} == {
        "a": (ItemState.RETRY, 0),
        "b": (ItemState.RETRY, 0),
        "c": (ItemState.RETRY, 2),
    }
    for entry in ledger.values():
        assert entry.last_error is not None
        assert entry.last_error.category == "queue_full"
        assert entry.last_error.code == "token_limit_exceeded"
    (event,) = rig.events(batch, "queue_full")
    assert event.at == rig.clock.now()  # when, so the retry loop can back off
    assert event.detail["model"] == "text-embedding-3-small"
    assert "input_rejected" not in rig.alerts(batch)


def test_rejected_input_fails_the_named_line_and_holds_back_the_rest(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    lines = batch_input(["a", "b", "c"]).splitlines()
    wrong = orjson.loads(lines[1])
    wrong["url"] = "/v1/chat/completions"
    content = b"\n".join([lines[0], orjson.dumps(wrong), lines[2]]) + b"\n"
    batch = rig.submit(["a", "b", "c"], content=content)

    with caplog.at_level(logging.ERROR, logger="batchfsm.handlers"):
        report = rig.run(batch)

    assert report.state == "failed"
    ledger = rig.ledger()
    for entry in ledger.values():
        assert (entry.state, entry.attempts) == (ItemState.FAILED, 0)
        assert entry.last_error is not None
        assert (entry.last_error.code, entry.last_error.category) == ("url_mismatch", "input")
    assert str(error_of(ledger["b"]).message).startswith("url_mismatch at line 2")
    assert "held back" in str(error_of(ledger["a"]).message)
    assert "input_rejected" in rig.alerts(batch)
    assert any(r.levelno == logging.ERROR and "input rejected" in r.message for r in caplog.records)
    (event,) = rig.events(batch, "failure_classified")
    assert event.detail["verdict"] == "input"
    assert event.detail["errors"][0]["code"] == "url_mismatch"
    assert event.detail["errors"][0]["line"] == 2


def test_duplicate_custom_id_names_the_duplicated_request(rig: Rig) -> None:
    lines = batch_input(["a", "b"]).splitlines()
    content = b"\n".join([lines[0], lines[1], lines[0]]) + b"\n"
    batch = rig.submit(["a", "b"], content=content)

    rig.run(batch)

    ledger = rig.ledger()
    assert str(error_of(ledger["a"]).message).startswith("duplicate_custom_id at line 3")
    assert "held back" in str(error_of(ledger["b"]).message)
    assert {e.state for e in ledger.values()} == {ItemState.FAILED}


def test_input_file_gone_falls_back_to_the_batch_level_reason(rig: Rig) -> None:
    lines = batch_input(["a", "b"]).splitlines()
    content = b"\n".join([lines[0], lines[1], lines[0]]) + b"\n"
    batch = rig.submit(["a", "b"], content=content)
    snapshot = rig.materialise(batch, 60)
    rig.delete_file(snapshot["input_file_id"])

    report = rig.tracker().observe(batch)

    assert report.effects_failed == []
    for entry in rig.ledger().values():
        assert entry.state is ItemState.FAILED
        assert entry.last_error is not None and entry.last_error.code == "duplicate_custom_id"
    assert "input_file_gone" in rig.alerts(batch)


def test_a_failed_batch_is_classified_once(rig: Rig) -> None:
    batch = rig.submit(["a"], fate="token_limit_exceeded")
    rig.run(batch)
    before = rig.ledger()

    rig.tracker(owner="poller-2").drain(batch)
    rig.run(batch, 60, tracker=rig.tracker(owner="poller-3"))

    assert rig.ledger() == before
    assert len(rig.events(batch, "queue_full")) == 1


def _err(code: str | None, line: int | None = None) -> BatchErrorItem:
    return BatchErrorItem(code=code, message=f"{code} says no", line=line)


def test_judge_failure_queue_full_only_when_every_error_says_so() -> None:
    assert judge_failure([_err("token_limit_exceeded")]).queue_full
    mixed = judge_failure([_err("token_limit_exceeded"), _err("model_mismatch", 4)])
    assert not mixed.queue_full
    assert mixed.code == "model_mismatch" and set(mixed.culprits) == {4}


@pytest.mark.parametrize(
    "code",
    ["duplicate_custom_id", "invalid_json_line", "url_mismatch", "model_mismatch",
     "empty_file", "too_many_tasks", "some_future_code", None],
)  # fmt: skip
def test_judge_failure_everything_else_is_rejected_input(code: str | None) -> None:
    verdict = judge_failure([_err(code, 1), _err(code, 1), _err(code, 9)])
    assert not verdict.queue_full
    assert verdict.code == (code or "unknown")
    assert sorted(verdict.culprits) == [1, 9]
    assert "and 2 more errors" in verdict.message


def test_judge_failure_without_errors_is_a_loud_input_failure() -> None:
    verdict = judge_failure([])
    assert not verdict.queue_full and verdict.code == "batch_failed" and not verdict.culprits
