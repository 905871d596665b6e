"""What a record derives and records: when its result files expire, and answers it could
not read (recorded once per change, keeping everything the batch had)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from batchfsm.errors import UndecodableSnapshotError
from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, OutboxEntry
from batchfsm.fsm.spec import BatchStatus

C = 1_774_437_191
DAY = 86_400


def snap(status: str, **fields: Any) -> BatchSnapshot:
    return BatchSnapshot.model_validate({"id": "b", "status": status, "created_at": C, **fields})


def refusal(**fields: Any) -> UndecodableSnapshotError:
    with pytest.raises(UndecodableSnapshotError) as info:
        BatchSnapshot.from_api({"id": "b", "status": "in_progress", **fields}, batch_id="b")
    return info.value


def test_results_expire_from_the_earliest_end_stamp_plus_the_lifetime() -> None:
    done = snap("completed", finalizing_at=C + 100, completed_at=C + 160)
    record = BatchRecord(
        batch_id="b", state=BatchStatus.COMPLETED, snapshot=done, output_expires_after=DAY
    )
    assert record.results_expire_at() == datetime.fromtimestamp(C + 100 + DAY, UTC)
    expired = snap("expired", expired_at=C + DAY)
    record = BatchRecord(
        batch_id="b", state=BatchStatus.EXPIRED, snapshot=expired, output_expires_after=3600
    )
    assert record.results_expire_at() == datetime.fromtimestamp(C + DAY + 3600, UTC)


@pytest.mark.parametrize(
    ("state", "stamps", "lifetime"),
    [
        (BatchStatus.IN_PROGRESS, {"in_progress_at": C + 3}, DAY),  # no files yet
        (BatchStatus.COMPLETED, {"completed_at": C + 9}, None),  # lifetime not sent
        (BatchStatus.COMPLETED, {}, DAY),  # no end stamp: the moment would be a guess
        (BatchStatus.FAILED, {"failed_at": C + 9}, DAY),  # a failed batch has no results
    ],
)
def test_results_expiry_is_unknown_rather_than_guessed(
    state: BatchStatus, stamps: dict[str, int], lifetime: int | None
) -> None:
    record = BatchRecord(
        batch_id="b",
        state=state,
        snapshot=snap(state.value, **stamps),
        output_expires_after=lifetime,
    )
    assert record.results_expire_at() is None


def test_an_undecodable_answer_is_recorded_once_per_change_and_keeps_the_batch() -> None:
    watch = OutboxEntry(key="in_progress#watch", state=BatchStatus.IN_PROGRESS,
                        handler="watch", implied=False, done=True)  # fmt: skip
    had = snap("in_progress", in_progress_at=C + 3, request_counts={"total": 10, "completed": 4})
    record = BatchRecord(
        batch_id="b", state=BatchStatus.IN_PROGRESS, snapshot=had, outbox=(watch,), observations=7
    )
    bad = refusal(request_counts="lots")
    now = datetime(2026, 3, 25, tzinfo=UTC)

    first = record.with_undecodable(bad, at=now)
    assert first is not None
    after, entry = first
    assert (after.undecodable, after.observations) == (1, 8)
    assert (after.state, after.snapshot, after.outbox) == (record.state, had, record.outbox)
    assert (entry.reason, entry.status, entry.current, entry.line, entry.at) == (
        "undecodable", "in_progress", BatchStatus.IN_PROGRESS, 8, now)  # fmt: skip
    assert entry.snapshot["request_counts"] == "lots"
    assert entry.problems == bad.problems

    assert after.with_undecodable(refusal(request_counts="lots"), at=now) is None  # same defect
    other = after.with_undecodable(refusal(created_at="yesterday"), at=now)
    assert other is not None and other[0].undecodable == 2

    # a readable answer in between clears the memory: the defect counts again
    heard = rulebook().apply(after, snap("in_progress", in_progress_at=C + 3))
    assert heard.changed and heard.record.last_rejection is None
    again = heard.record.with_undecodable(bad, at=now)
    assert again is not None and again[0].undecodable == 2
