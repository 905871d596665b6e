"""The generated state machine, run by the ASL interpreter against the real handler.

Task states call :meth:`LambdaApp.handle` in-process (AWS Lambda cannot run here); the
function talks to moto's DynamoDB and S3 and to the sandbox over HTTP. Wait states
advance the sandbox's clock instead of sleeping, so a 24-hour batch runs in a second.
Every sandbox fate must end in the terminal action the contract promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from batchfsm.aws.stepfunctions import definition
from batchfsm.jobs.cancel import cancel_batch
from batchfsm.ledger.records import ItemState
from batchfsm.sandbox import Fate, Phases, Scenario
from tests.aws.asl_interpreter import Execution, Interpreter, TaskFailed
from tests.aws.conftest import Deployment

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:batchfsm-poll"
IDS = [f"req-{i}" for i in range(6)]
SLOW = Phases(validating_s=20, in_progress_s=4 * 3600, finalizing_s=60)


def lambda_invoke(dep: Deployment) -> Callable[[str, Any], Any]:
    """What the Lambda service does: run the handler, turn an exception into the error
    name Step Functions sees (the exception's class name, as Lambda's ``errorType``)."""

    def invoke(function: str, payload: Any) -> Any:
        assert function == FUNCTION
        try:
            answer = dep.app.handle(payload, None)
        except Exception as exc:
            raise TaskFailed(type(exc).__name__, json.dumps({"errorMessage": str(exc)})) from exc
        return json.loads(json.dumps(answer))  # the response must survive JSON

    return invoke


def run(
    dep: Deployment, execution_input: Any, invoke: Callable[[str, Any], Any] | None = None
) -> Execution:
    return Interpreter(
        definition(),
        invoke=invoke or lambda_invoke(dep),
        sleep=dep.clock.advance,
        now=dep.clock.now,
        substitutions={"PollFunctionArn": FUNCTION},
    ).run(execution_input)


def ledger(dep: Deployment, job_id: str) -> dict[ItemState, int]:
    return dep.app.runtime.store.count_ledger(job_id)


def delivered(dep: Deployment, job_id: str) -> set[str]:
    from batchfsm.persistence.s3_sink import S3Sink

    sink = dep.app.runtime.sink
    assert isinstance(sink, S3Sink)
    return {cid for b in sink.batches(job_id) for cid, _ in sink.read_batch(job_id, b)}


def test_a_clean_batch_is_followed_to_process_results(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=SLOW)))
    job_id, (batch_id,) = dep.submit(IDS)

    execution = run(dep, {"batch_id": batch_id})

    assert execution.status == "SUCCEEDED", execution
    assert execution.output["poll"]["action"] == "process_results"
    assert execution.output["poll"]["succeeded"] == len(IDS)
    assert "WaitToPoll" in execution.path and "SubmitRetries" not in execution.path
    assert delivered(dep, job_id) == set(IDS)
    # It polled while in progress and paced itself: several waits, none absurdly short.
    assert len(execution.waited) >= 3 and min(execution.waited) >= 15


def test_failed_requests_are_retried_until_attempts_run_out(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=SLOW)), BATCHFSM_MAX_ATTEMPTS="2")
    ids = ["ok-1", "ok-2", "flaky#fail=500", "bad#fail=400"]
    job_id, (batch_id,) = dep.submit(ids)

    execution = run(dep, {"batch_id": batch_id})

    # The 500 is retried once (2 attempts), then given up: partial success, not a failure.
    assert execution.status == "SUCCEEDED", execution
    assert execution.path.count("SubmitRetries") == 1
    assert "FollowRetries" in execution.path
    counts = ledger(dep, job_id)
    assert (counts[ItemState.SUCCEEDED], counts[ItemState.FAILED]) == (2, 2)
    assert counts[ItemState.RETRY] == counts[ItemState.PENDING] == 0
    assert delivered(dep, job_id) == {"ok-1", "ok-2"}
    assert len(dep.app.runtime.store.list_batches(job_id)) == 2


def test_an_expired_batch_is_salvaged_then_the_rest_resent(deploy: Any) -> None:
    scenario = Scenario(by_order=(Fate(kind="expire", expire_fraction=0.5),))
    dep: Deployment = deploy(scenario)
    job_id, (batch_id,) = dep.submit(IDS)

    execution = run(dep, {"batch_id": batch_id})

    assert execution.status == "SUCCEEDED", execution
    # The deadline, not the regular pace, decided when to look: just after expiry.
    assert "WaitForDeadline" in execution.path
    # A day of polling at most every 30 minutes once under way, not every few seconds.
    assert execution.path.count("Poll") <= 24 * 2 + 20, str(execution.waited)
    first = dep.app.handle({"batch_id": batch_id})
    assert (first["status"], first["action"]) == ("expired", "process_partial")
    assert ledger(dep, job_id)[ItemState.SUCCEEDED] == len(IDS)
    assert delivered(dep, job_id) == set(IDS)


def test_a_full_queue_backs_off_then_resends(deploy: Any) -> None:
    scenario = Scenario(by_order=(Fate(kind="token_limit_exceeded"),))
    dep: Deployment = deploy(scenario, BATCHFSM_RETRY_BACKOFF_BASE="600")
    job_id, (batch_id,) = dep.submit(IDS)

    execution = run(dep, {"batch_id": batch_id})

    assert execution.status == "SUCCEEDED", execution
    assert "WaitForRetry" in execution.path
    first_record, resent = dep.app.runtime.store.list_batches(job_id)
    assert first_record.snapshot and resent.snapshot
    assert first_record.snapshot.failed_at and resent.snapshot.created_at
    assert resent.snapshot.created_at >= first_record.snapshot.failed_at + 600
    first = dep.app.handle({"batch_id": batch_id})
    assert (first["status"], first["action"]) == ("failed", "handle_failure")
    assert ledger(dep, job_id)[ItemState.SUCCEEDED] == len(IDS)


@pytest.mark.parametrize(
    ("after_done", "action", "status"),
    [
        (2, "process_partial", "SUCCEEDED"),  # some requests ran: their results are kept
        (0, "handle_failure", "FAILED"),  # cancelled before anything ran: nothing to salvage
    ],
)
def test_a_cancelled_batch_keeps_what_ran_and_is_not_resent(
    deploy: Any, after_done: int, action: str, status: str
) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=SLOW)))
    job_id, (batch_id,) = dep.submit(IDS)
    cancelled = False
    service = lambda_invoke(dep)

    def user_cancels_midway(function: str, payload: Any) -> Any:
        nonlocal cancelled
        answer = service(function, payload)
        running = answer["status"] == "in_progress"
        if not cancelled and running and answer["request_counts"]["completed"] >= after_done:
            cancel_batch(dep.app.runtime.tracker, batch_id)
            cancelled = True
        return answer

    execution = run(dep, {"batch_id": batch_id}, user_cancels_midway)

    assert cancelled
    assert execution.status == status, execution
    assert execution.output["poll"]["action"] == action
    assert "SubmitRetries" not in execution.path  # the user asked for the stop
    answer = dep.app.handle({"batch_id": batch_id})
    assert answer["status"] == "cancelled" and answer["cancel_requested"] is True
    assert ledger(dep, job_id)[ItemState.SUCCEEDED] == len(delivered(dep, job_id)) >= after_done
    assert len(delivered(dep, job_id)) < len(IDS)


def test_a_batch_where_every_request_failed_ends_the_execution_failed(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(kind="all_fail", failure_codes=(400,))))
    job_id, (batch_id,) = dep.submit(IDS)

    execution = run(dep, {"batch_id": batch_id})

    assert (execution.status, execution.error) == ("FAILED", "NothingSucceeded")
    assert execution.output["poll"]["action"] == "process_results"
    assert ledger(dep, job_id)[ItemState.FAILED] == len(IDS)
    assert delivered(dep, job_id) == set()


def test_a_sweep_polls_everything_once_and_leaves_the_rest_to_the_schedule(
    deploy: Any,
) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=SLOW)))
    dep.submit(IDS[:3])
    dep.submit(IDS[3:])

    first = run(dep, {})
    assert first.status == "SUCCEEDED"
    assert first.output["poll"]["action"] == "wait" and "WaitToPoll" not in first.path

    dep.clock.advance(6 * 3600)
    last = run(dep, {})
    assert last.status == "SUCCEEDED"
    assert last.output["poll"]["action"] == "process_results"
    assert last.output["poll"]["succeeded"] == len(IDS)


def test_lambda_throttling_and_timeouts_are_retried_with_backoff(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=SLOW)))
    _job_id, (batch_id,) = dep.submit(IDS)
    faults = [
        "Lambda.TooManyRequestsException",
        "Lambda.TooManyRequestsException",
        "States.Timeout",
    ]
    service = lambda_invoke(dep)

    def flaky_service(function: str, payload: Any) -> Any:
        if faults:
            raise TaskFailed(faults.pop(0), "injected")
        return service(function, payload)

    execution = run(dep, {"batch_id": batch_id}, flaky_service)

    assert execution.status == "SUCCEEDED", execution
    assert execution.waited[:3] == [2.0, 4.0, 10.0]


def test_an_error_that_retrying_cannot_cure_takes_the_failure_path(deploy: Any) -> None:
    dep: Deployment = deploy()

    execution = run(dep, {"batch_id": "batch_nobody_tracks"})

    assert (execution.status, execution.error) == ("FAILED", "PollFailed")
    assert execution.output["error"]["Error"] == "JobNotFoundError"
    assert execution.waited == []  # not retried: a wrong id stays wrong


def test_a_store_outage_is_retried_then_caught(deploy: Any) -> None:
    dep: Deployment = deploy()

    def store_down(function: str, payload: Any) -> Any:
        raise TaskFailed("StoreUnavailableError", "injected: DynamoDB is down")

    execution = run(dep, {}, store_down)

    assert (execution.status, execution.error) == ("FAILED", "PollFailed")
    assert execution.waited == [5.0, 10.0, 20.0, 40.0, 80.0]


@pytest.mark.parametrize(
    "bad", [{"action": "dance"}, {"batch_id": 7}, {"job_ids": "x", "action": "retry"}]
)
def test_a_malformed_event_is_refused_with_a_message(deploy: Any, bad: dict[str, Any]) -> None:
    dep: Deployment = deploy()
    with pytest.raises(ValueError, match=r"event|action"):
        dep.app.handle(bad)
