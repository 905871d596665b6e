"""The action contract: derived from the spec, paced by state and progress, bounded by
the deadline. Property-based where the inputs vary (states, counts, times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from batchfsm.aws.contract import (
    ACTIONS,
    CONTRACT_FIELDS,
    MAX_REPORTED_BATCHES,
    action_for,
    actions_by_status,
    aggregate,
    batch_result,
    poll_delay,
)
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, RequestCounts
from batchfsm.fsm.spec import TERMINAL, BatchStatus
from batchfsm.ledger.records import ItemState

NOW = datetime(2026, 1, 2, tzinfo=UTC)
CREATED = int((NOW - timedelta(hours=1)).timestamp())


def record(
    state: BatchStatus,
    *,
    output: str | None = None,
    total: int = 0,
    done: int = 0,
    started: int | None = CREATED,
    expires_at: int | None = None,
    **extra: object,
) -> BatchRecord:
    snapshot = BatchSnapshot(
        status=state.value,
        id="batch_1",
        created_at=CREATED,
        in_progress_at=started,
        expires_at=expires_at,
        output_file_id=output,
        request_counts=RequestCounts(total=total, completed=done, failed=0),
    )
    return BatchRecord(batch_id="batch_1", state=state, snapshot=snapshot, job_id="job", **extra)  # type: ignore[arg-type]


def test_every_status_has_an_action_and_only_terminal_ones_stop_waiting() -> None:
    table = actions_by_status()
    assert set(table) == set(BatchStatus)
    assert set(table.values()) <= set(ACTIONS)
    assert {s for s, a in table.items() if a != "wait"} == set(TERMINAL)
    assert table[BatchStatus.COMPLETED] == "process_results"
    assert table[BatchStatus.FAILED] == "handle_failure"


def test_partial_states_salvage_only_when_there_is_output() -> None:
    for state in (BatchStatus.EXPIRED, BatchStatus.CANCELLED):
        assert action_for(record(state, output="file-1")) == "process_partial"
        assert action_for(record(state)) == "handle_failure"
    assert action_for(record(BatchStatus.IN_PROGRESS, lost=True)) == "handle_failure"


def test_the_pace_follows_the_state() -> None:
    assert poll_delay(record(BatchStatus.VALIDATING), NOW) == (30, False)
    assert poll_delay(record(BatchStatus.FINALIZING), NOW) == (15, False)
    assert poll_delay(record(BatchStatus.CANCELLING), NOW) == (30, False)
    assert poll_delay(record(BatchStatus.COMPLETED), NOW) == (0, False)
    # An hour in with 90% done: about 400 s left, poll in half that.
    assert poll_delay(record(BatchStatus.IN_PROGRESS, total=100, done=90), NOW) == (200, False)


@given(
    state=st.sampled_from([s for s in BatchStatus if s not in TERMINAL]),
    total=st.integers(0, 50_000),
    done_share=st.floats(0, 1),
    started_ago=st.integers(0, 30 * 3600),
    deadline_in=st.integers(-3600, 30 * 3600),
)
def test_a_waiting_batch_is_polled_soon_enough_and_never_after_its_deadline(
    state: BatchStatus, total: int, done_share: float, started_ago: int, deadline_in: int
) -> None:
    deadline = int(NOW.timestamp()) + deadline_in
    r = record(
        state,
        total=total,
        done=int(total * done_share),
        started=int(NOW.timestamp()) - started_ago,
        expires_at=deadline,
    )

    seconds, near = poll_delay(r, NOW)

    assert 1 <= seconds <= 1800 + 5
    if deadline_in > 0:  # never sleeps through the deadline; wakes just after it if near
        assert seconds <= deadline_in or NOW.timestamp() + seconds == deadline + 5
        assert near == (NOW.timestamp() + seconds == deadline + 5)
    else:
        assert seconds <= 60 and not near
    result = batch_result(r, {}, NOW)
    assert result["action"] == "wait" and result["poll_at"] is not None
    poll_at = datetime.fromisoformat(result["poll_at"].replace("Z", "+00:00"))
    assert abs((poll_at - NOW).total_seconds() - seconds) < 1


@given(actions=st.lists(st.sampled_from(ACTIONS), max_size=150))
def test_an_aggregate_waits_while_any_batch_waits_and_stays_small(actions: list[str]) -> None:
    results = [
        {
            **batch_result(record(BatchStatus.COMPLETED), {ItemState.SUCCEEDED: 1}, NOW),
            "batch_id": f"b{i:03}",
            "action": a,
            "next_poll_seconds": 0 if a != "wait" else 10 + i,
        }
        for i, a in enumerate(actions)
    ]

    answer = aggregate(results, NOW)

    assert set(CONTRACT_FIELDS) <= set(answer)
    assert answer["batches_total"] == len(actions)
    assert len(answer["batches"]) == min(len(actions), MAX_REPORTED_BATCHES)
    assert answer["succeeded"] == len(actions)
    if "wait" in actions:
        assert answer["action"] == "wait"
        assert answer["next_poll_seconds"] == 10 + actions.index("wait")
        assert answer["batches"][0]["action"] == "wait"  # waiting ones are listed first
    else:
        order = ["process_results", "process_partial", "handle_failure"]
        worst = max(actions, key=order.index, default="process_results")
        assert answer["action"] == worst and answer["next_poll_seconds"] == 0


def test_a_cancel_you_asked_for_is_not_retried() -> None:
    counts = {ItemState.RETRY: 4}
    plain = batch_result(record(BatchStatus.EXPIRED, output="f"), counts, NOW)
    asked = batch_result(
        record(BatchStatus.CANCELLED, output="f", cancel_requested=True), counts, NOW
    )
    assert plain["retry_job_ids"] == ["job"] and plain["retry"] == 4
    assert asked["retry_job_ids"] == [] and asked["retry"] == 4
