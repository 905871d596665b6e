"""Every fate, driven by a frozen clock: statuses, timestamps, counts and file lines.

Default phases: validating 2 s, in_progress 10 s, finalizing 2 s, cancelling 5 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from batchfsm.sandbox import Fate, Phases, Scenario

from .conftest import Harness

IDS = [f"r{i}" for i in range(10)]


def _counts(batch: Any) -> tuple[int, int, int]:
    c = batch.request_counts
    return (c.total, c.completed, c.failed)


def _ids(lines: list[dict[str, Any]]) -> list[str]:
    return [line["custom_id"] for line in lines]


def test_complete_walks_every_state_with_moving_counts(harness: Harness) -> None:
    batch = harness.submit(IDS)
    t0 = batch.created_at
    assert harness.at(batch.id, 1).status == "validating"

    running = harness.at(batch.id, 1)
    assert running.status == "in_progress"
    assert running.in_progress_at == t0 + 2
    assert _counts(running) == (10, 0, 0)
    assert _counts(harness.at(batch.id, 5)) == (10, 5, 0)
    assert _counts(harness.at(batch.id, 4)) == (10, 9, 0)

    finalizing = harness.at(batch.id, 1)
    assert finalizing.status == "finalizing"
    assert finalizing.finalizing_at == t0 + 12
    assert _counts(finalizing) == (10, 10, 0)
    assert finalizing.output_file_id is None

    done = harness.at(batch.id, 2)
    assert done.status == "completed"
    assert done.completed_at == t0 + 14
    assert (done.in_progress_at, done.finalizing_at) == (t0 + 2, t0 + 12)
    assert done.failed_at is done.expired_at is done.cancelling_at is done.cancelled_at is None
    assert done.expires_at == t0 + 86400
    assert _counts(done) == (10, 10, 0)
    assert done.error_file_id == ""  # the observed empty string, the default
    assert done.usage is not None
    assert done.usage.input_tokens == 30
    assert done.usage.total_tokens == 30

    lines = harness.lines(done.output_file_id)
    assert sorted(_ids(lines)) == sorted(IDS)
    assert _ids(lines) != IDS  # shuffled, like the real API
    output = harness.client.files.retrieve(done.output_file_id or "")
    assert output.purpose == "batch_output"
    assert output.filename == f"{batch.id}_output.jsonl"
    assert output.created_at == t0 + 14
    # Terminal is absorbing and the file ids are stable.
    assert harness.at(batch.id, 86400 * 3) == done


def test_clean_batch_error_file_id_can_be_null(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(clean_error_file_id="null")))
    assert h.at(h.submit(["a"]).id, 60).error_file_id is None


def test_clean_error_file_id_is_drawn_with_the_seeded_rate(
    make_harness: Callable[..., Harness],
) -> None:
    def draw() -> list[str | None]:
        h = make_harness(Scenario(seed=7, empty_error_file_id_rate=0.5))
        file_id = h.upload(b'{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}')
        batches = [h.create(file_id) for _ in range(12)]
        h.clock.advance(60)
        return [h.client.batches.retrieve(b.id).error_file_id for b in batches]

    first = draw()
    assert set(first) == {"", None}
    assert draw() == first


def test_marked_requests_fail_in_both_line_shapes(harness: Harness) -> None:
    ids = ["ok1", "ok2", "x#fail=400", "y#fail=429", "z#fail=500", "t#fail=timeout"]
    done = harness.at(harness.submit(ids).id, 60)
    assert done.status == "completed"
    assert _counts(done) == (6, 2, 4)
    assert sorted(_ids(harness.lines(done.output_file_id))) == ["ok1", "ok2"]
    errors = {line["custom_id"]: line for line in harness.lines(done.error_file_id)}
    assert set(errors) == {"x#fail=400", "y#fail=429", "z#fail=500", "t#fail=timeout"}
    for custom_id, status, kind in (
        ("x#fail=400", 400, "invalid_request_error"),
        ("y#fail=429", 429, "requests"),
        ("z#fail=500", 500, "server_error"),
    ):
        line = errors[custom_id]
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        response = line["response"]
        assert set(response) == {"status_code", "request_id", "body"}
        assert response["status_code"] == status
        assert response["request_id"].startswith("req_")
        assert set(response["body"]["error"]) == {"message", "type", "param", "code"}
        assert response["body"]["error"]["type"] == kind
    assert errors["y#fail=429"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
    timeout = errors["t#fail=timeout"]
    assert timeout["response"] is None
    assert timeout["error"] == {"code": "request_timeout", "message": "The request timed out."}


def test_seeded_failure_rate_repeats(make_harness: Callable[..., Harness]) -> None:
    scenario = Scenario(seed=3, default=Fate(failure_rate=0.5, failure_codes=(400, 500)))
    runs = []
    for _ in range(2):
        h = make_harness(scenario)
        done = h.at(h.submit([f"r{i}" for i in range(40)]).id, 60)
        errors = h.lines(done.error_file_id)
        assert {line["response"]["status_code"] for line in errors} == {400, 500}
        assert done.request_counts is not None
        assert done.request_counts.failed == len(errors)
        assert 8 < len(errors) < 32
        runs.append(
            (sorted(_ids(errors)), h.client.files.content(done.error_file_id or "").content)
        )
    assert runs[0] == runs[1]


def test_all_fail_completes_without_output_file(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(kind="all_fail", failure_codes=(500,))))
    done = h.at(h.submit(IDS).id, 60)
    assert done.status == "completed"
    assert done.output_file_id is None
    assert _counts(done) == (10, 0, 10)
    assert done.usage is not None
    assert done.usage.total_tokens == 0
    lines = h.lines(done.error_file_id)
    assert sorted(_ids(lines)) == sorted(IDS)
    assert {line["response"]["status_code"] for line in lines} == {500}


def test_expire_with_partial_output(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(kind="expire", expire_fraction=0.3)))
    batch = h.submit(IDS)
    assert batch.expires_at is not None
    late = h.at(batch.id, 86400 - 1)
    assert late.status == "in_progress"
    assert _counts(late) == (10, 2, 0)
    expired = h.at(batch.id, 1)
    assert expired.status == "expired"
    assert expired.expired_at == batch.expires_at
    assert expired.finalizing_at is None
    assert expired.completed_at is None
    # Never-run requests are not counted as failed (as observed in reality).
    assert _counts(expired) == (10, 3, 0)
    done = _ids(h.lines(expired.output_file_id))
    assert len(done) == 3
    errors = h.lines(expired.error_file_id)
    assert sorted(done + _ids(errors)) == sorted(IDS)
    for line in errors:
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired"
        assert set(line["error"]) == {"code", "message"}


def test_too_slow_batch_expires_naturally(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(phases=Phases(in_progress_s=86400 * 2))))
    expired = h.at(h.submit(IDS).id, 86400)
    assert expired.status == "expired"
    assert _counts(expired) == (10, 4, 0)  # half the run minus validating, floored


def test_expire_with_nothing_done_has_no_output(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(kind="expire", expire_fraction=0.0)))
    expired = h.at(h.submit(IDS).id, 86400)
    assert expired.status == "expired"
    assert expired.output_file_id is None
    assert len(h.lines(expired.error_file_id)) == 10


def test_slow_cancellation_keeps_partial_output(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(phases=Phases(cancelling_s=600))))
    batch = h.submit(IDS)
    assert _counts(h.at(batch.id, 2 + 5)) == (10, 5, 0)
    cancelling = h.client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at == batch.created_at + 7
    assert cancelling.in_progress_at == batch.created_at + 2
    # A second cancel is harmless and does not restart the clock.
    assert h.at(batch.id, 300).status == "cancelling"
    assert h.client.batches.cancel(batch.id).cancelling_at == cancelling.cancelling_at
    assert h.at(batch.id, 299).status == "cancelling"
    cancelled = h.at(batch.id, 1)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at == batch.created_at + 7 + 600
    assert cancelled.finalizing_at is None
    assert _counts(cancelled) == (10, 5, 0)
    done = _ids(h.lines(cancelled.output_file_id))
    errors = h.lines(cancelled.error_file_id)
    assert len(done) == 5
    assert sorted(done + _ids(errors)) == sorted(IDS)
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert all(line["response"] is None for line in errors)


def test_cancel_while_validating(harness: Harness) -> None:
    batch = harness.submit(IDS)
    assert harness.client.batches.cancel(batch.id).status == "cancelling"
    cancelled = harness.at(batch.id, 5)
    assert cancelled.status == "cancelled"
    assert cancelled.in_progress_at is None
    assert cancelled.output_file_id is None
    assert len(harness.lines(cancelled.error_file_id)) == 10


def test_stuck_finalizing(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(kind="stuck_finalizing", stuck_finalizing_s=30 * 3600)))
    batch = h.submit(IDS)
    stuck = h.at(batch.id, 25 * 3600)
    assert stuck.status == "finalizing"
    assert _counts(stuck) == (10, 10, 0)
    assert stuck.output_file_id is None
    assert batch.expires_at is not None
    assert h.clock.now().timestamp() > batch.expires_at
    done = h.at(batch.id, 5 * 3600 + 12)
    assert done.status == "completed"
    assert done.completed_at == batch.created_at + 12 + 30 * 3600


def test_batch_disappears_after_terminal(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(disappear_after_s=60)))
    batch = h.submit(["a"])
    done = h.at(batch.id, 14 + 59)
    assert done.status == "completed"
    h.clock.advance(1)
    with pytest.raises(openai.NotFoundError):
        h.client.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        h.client.batches.cancel(batch.id)
    assert h.client.batches.list().data == []
    # The files outlive the batch.
    assert len(h.lines(done.output_file_id)) == 1


def test_batch_disappears_mid_flight(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(disappear_after_s=5, disappear_from="created")))
    batch = h.submit(["a"])
    assert h.at(batch.id, 4).status == "in_progress"
    with pytest.raises(openai.NotFoundError):
        h.at(batch.id, 1)


def test_fates_by_order_metadata_and_kind_name(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(
        Scenario(
            by_order=(Fate(kind="all_fail"), Fate(kind="token_limit_exceeded")),
            named={"slow": Fate(phases=Phases(in_progress_s=1000))},
        )
    )
    first = h.submit(["a"])
    second = h.submit(["a"])
    third = h.submit(["a"])  # past by_order: the default
    named = h.submit(["a"], metadata={"sandbox_fate": "slow"})
    kind = h.submit(["a"], metadata={"sandbox_fate": "expire"})
    h.clock.advance(100)
    status = {b.id: h.client.batches.retrieve(b.id) for b in (first, second, third, named, kind)}
    assert status[first.id].status == "completed"
    assert status[first.id].output_file_id is None
    assert status[second.id].status == "failed"
    assert status[third.id].status == "completed"
    assert status[named.id].status == "in_progress"
    assert status[kind.id].status == "in_progress"
    assert status[named.id].metadata == {"sandbox_fate": "slow"}


def test_time_scale_compresses_the_window(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(Scenario(default=Fate(kind="expire")), time_scale=3600)
    batch = h.submit(IDS)
    assert h.at(batch.id, 23).status == "in_progress"  # 23 sandbox hours
    assert h.at(batch.id, 1).status == "expired"


def test_zero_length_phases_jump_straight_to_completed(
    make_harness: Callable[..., Harness],
) -> None:
    phases = Phases(validating_s=0, in_progress_s=0, finalizing_s=0)
    h = make_harness(Scenario(default=Fate(phases=phases)))
    batch = h.submit(IDS)
    assert batch.status == "completed"
    assert batch.in_progress_at == batch.finalizing_at == batch.completed_at == batch.created_at
    assert _counts(batch) == (10, 10, 0)
