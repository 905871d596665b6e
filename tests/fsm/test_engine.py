"""Applying observations: heartbeats, forward paths, rejections, forced moves."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from batchfsm.errors import InvalidTransitionError, TerminalStateError, UnknownStatusError
from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot
from batchfsm.fsm.spec import BatchStatus

S = BatchStatus
C = 1_774_437_191


def snap(status: str, **fields: Any) -> BatchSnapshot:
    return BatchSnapshot.model_validate(
        {"id": "batch_1", "status": status, "created_at": C, **fields}
    )


def at(state: BatchStatus) -> BatchRecord:
    return BatchRecord(batch_id="batch_1", state=state)


def hops(applied: Any) -> list[tuple[str, str, bool, bool]]:
    return [(h.source.value, h.dest.value, h.implied, h.undocumented) for h in applied.hops]


def test_same_status_with_same_fields_is_a_no_write_heartbeat() -> None:
    book = rulebook()
    first = book.apply(at(S.IN_PROGRESS), snap("in_progress", in_progress_at=C + 3))
    again = book.apply(first.record, snap("in_progress", in_progress_at=C + 3))
    assert first.outcome == "heartbeat" and first.changed
    assert again.outcome == "heartbeat" and not again.changed
    assert again.record is first.record


def test_heartbeat_refreshes_counts_without_transition() -> None:
    book = rulebook()
    record = at(S.IN_PROGRESS)
    applied = book.apply(record, snap("in_progress", request_counts={"total": 10, "completed": 4}))
    assert applied.changed and not applied.hops and not applied.history
    assert applied.record.snapshot is not None
    assert applied.record.snapshot.request_counts is not None
    assert applied.record.snapshot.request_counts.completed == 4
    assert applied.record.state is S.IN_PROGRESS


def test_skipped_states_are_fired_and_marked_implied() -> None:
    applied = rulebook().apply(at(S.VALIDATING), snap("completed"), line=7)
    assert hops(applied) == [
        ("validating", "in_progress", True, False),
        ("in_progress", "finalizing", True, False),
        ("finalizing", "completed", False, False),
    ]
    assert {h.line for h in applied.hops} == {7}
    assert [e.key for e in applied.effects] == ["completed#harvest"]


def test_timestamps_decide_the_path_when_the_observed_state_is_stamped() -> None:
    book = rulebook()
    via_cancel = book.apply(
        at(S.VALIDATING),
        snap("expired", in_progress_at=C + 1, cancelling_at=C + 5, expired_at=C + 9),
    )
    assert hops(via_cancel) == [
        ("validating", "in_progress", True, False),
        ("in_progress", "cancelling", True, False),
        ("cancelling", "expired", False, True),
    ]
    direct = book.apply(at(S.VALIDATING), snap("expired", expired_at=C + 9))
    assert hops(direct) == [("validating", "expired", False, True)]


def test_without_the_observed_timestamp_fewest_undocumented_edges_win() -> None:
    applied = rulebook().apply(at(S.VALIDATING), snap("expired"))
    # validating->in_progress->expired is all documented; the direct edge is not.
    assert hops(applied) == [
        ("validating", "in_progress", True, False),
        ("in_progress", "expired", False, False),
    ]


def test_timestamps_that_form_no_allowed_path_fall_back() -> None:
    # finalizing_at set on a cancelled batch: no path visits exactly {in_progress, finalizing}
    # and ends in cancelled without cancelling, so the fallback path is used.
    applied = rulebook().apply(
        at(S.VALIDATING),
        snap("cancelled", in_progress_at=C + 1, finalizing_at=C + 2, cancelled_at=C + 3),
    )
    assert hops(applied) == [
        ("validating", "in_progress", True, False),
        ("in_progress", "cancelling", True, False),
        ("cancelling", "cancelled", False, False),
    ]


def test_undocumented_edge_is_applied_flagged_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    applied = rulebook().apply(at(S.CANCELLING), snap("completed", completed_at=C + 9))
    assert hops(applied) == [("cancelling", "completed", False, True)]
    assert "undocumented edge cancelling -> completed" in caplog.text
    assert caplog.records[-1].levelname == "WARNING"


@pytest.mark.parametrize(
    ("current", "observed"),
    [
        (S.IN_PROGRESS, "validating"),
        (S.FINALIZING, "in_progress"),
        (S.CANCELLING, "finalizing"),
        (S.CANCELLING, "validating"),
    ],
)
def test_earlier_state_is_rejected_as_stale(current: BatchStatus, observed: str) -> None:
    record = at(current)
    applied = rulebook().apply(record, snap(observed), line=4)
    assert applied.outcome == "rejected"
    assert applied.rejection is not None and applied.rejection.reason == "stale"
    assert applied.record.state is current
    assert applied.rejection.snapshot["status"] == observed
    assert applied.history == (applied.rejection,)


@pytest.mark.parametrize("observed", ["in_progress", "cancelled", "validating", "failed"])
def test_terminal_states_absorb(observed: str) -> None:
    applied = rulebook().apply(at(S.COMPLETED), snap(observed))
    assert applied.outcome == "rejected"
    assert applied.rejection is not None and applied.rejection.reason == "terminal"
    assert applied.record.state is S.COMPLETED


def test_same_terminal_status_again_is_a_heartbeat() -> None:
    applied = rulebook().apply(at(S.EXPIRED), snap("expired"))
    assert applied.outcome == "heartbeat"


@pytest.mark.parametrize("raw", ["canceling", "canceled", "paused", ""])
def test_unknown_status_is_recorded_verbatim_never_guessed(raw: str) -> None:
    applied = rulebook().apply(at(S.IN_PROGRESS), snap(raw), line=2)
    assert applied.outcome == "rejected"
    assert applied.rejection is not None
    assert (applied.rejection.reason, applied.rejection.status) == ("unknown", raw)
    assert applied.record.state is S.IN_PROGRESS


def test_the_same_rejection_again_is_returned_but_not_recorded_or_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = rulebook()
    caplog.set_level(logging.DEBUG, logger="batchfsm.fsm.engine")
    first = book.apply(at(S.IN_PROGRESS), snap("paused"), line=2)
    again = book.apply(first.record, snap("paused"), line=3)
    other = book.apply(again.record, snap("queued"), line=4)
    assert first.changed and first.record.last_rejection == "unknown:paused"
    assert again.outcome == "rejected" and not again.changed
    assert again.rejection is not None and again.rejection.line == 3  # a replay lists it
    assert again.record is first.record  # nothing to write
    assert other.changed and other.record.last_rejection == "unknown:queued"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split("observation ")[1][:8] for r in errors] == ["'paused'", "'queued'"]


def test_an_accepted_observation_rearms_the_rejection_it_follows() -> None:
    book = rulebook()
    rejected = book.apply(at(S.IN_PROGRESS), snap("paused"), line=2).record
    cleared = book.apply(rejected, snap("in_progress"), line=3)
    assert cleared.outcome == "heartbeat" and cleared.changed  # one write to clear it
    assert cleared.record.last_rejection is None
    again = book.apply(cleared.record, snap("paused"), line=4)
    assert again.changed and again.history == (again.rejection,)
    moved = book.apply(again.record, snap("finalizing"), line=5)
    assert moved.record.last_rejection is None


def test_forcing_an_invalid_move_names_batch_state_and_request() -> None:
    book = rulebook()
    with pytest.raises(InvalidTransitionError) as invalid:
        book.force(at(S.FINALIZING), "in_progress")
    assert (invalid.value.batch_id, invalid.value.current, invalid.value.requested) == (
        "batch_1",
        "finalizing",
        "in_progress",
    )
    assert "batch_1" in str(invalid.value) and "finalizing -> in_progress" in str(invalid.value)
    with pytest.raises(TerminalStateError, match="completed -> in_progress"):
        book.force(at(S.COMPLETED), S.IN_PROGRESS)
    with pytest.raises(UnknownStatusError, match="canceled"):
        book.force(at(S.IN_PROGRESS), "canceled")
    with pytest.raises(InvalidTransitionError):
        book.force(at(S.IN_PROGRESS), S.VALIDATING)


def test_forcing_a_valid_move_fires_it() -> None:
    applied = rulebook().force(at(S.IN_PROGRESS), "cancelling")
    assert applied.record.state is S.CANCELLING
    assert [e.key for e in applied.effects] == ["cancelling#watch"]


def test_rehydrate_refuses_a_stored_state_outside_the_eight() -> None:
    book = rulebook()
    assert book.rehydrate("finalizing", batch_id="b") is S.FINALIZING
    with pytest.raises(UnknownStatusError, match=r"canceling.*store"):
        book.rehydrate("canceling", batch_id="b")


def test_empty_string_file_ids_mean_no_file() -> None:
    s = snap("completed", output_file_id="file-1", error_file_id="")
    assert s.error_file_id is None and s.output_file_id == "file-1"


def test_errors_list_wrapper_is_flattened() -> None:
    s = snap(
        "failed",
        errors={
            "object": "list",
            "data": [{"code": "invalid_json_line", "message": "bad", "line": 3, "param": None}],
        },
    )
    assert s.errors[0].code == "invalid_json_line" and s.errors[0].line == 3


def test_deadline_prefers_expires_at_and_falls_back_to_created_plus_24h() -> None:
    assert snap("in_progress", expires_at=C + 100).deadline() is not None
    with_expiry = snap("in_progress", expires_at=C + 100).deadline()
    fallback = snap("in_progress").deadline()
    assert with_expiry is not None and with_expiry.timestamp() == C + 100
    assert fallback is not None and fallback.timestamp() == C + 86_400


def test_rulebook_is_built_once_per_process() -> None:
    assert rulebook() is rulebook()


def test_a_record_copy_replaces_only_what_it_is_told_and_refuses_unknown_fields() -> None:
    record = at(S.IN_PROGRESS)
    copy = record.model_copy(update={"version": 7, "alerts": ("x",)})
    assert (copy.version, copy.alerts, copy.state) == (7, ("x",), S.IN_PROGRESS)
    assert (record.version, record.alerts) != (7, ("x",))  # the original is untouched
    with pytest.raises(AttributeError, match=r"BatchRecord has no field\(s\) \['verison'\]"):
        record.model_copy(update={"verison": 8})
