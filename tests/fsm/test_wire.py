"""Reading Batch objects as providers really send them, and refusing what cannot be read.

The provider samples are the shapes named in their published outputs: Azure's failed
batch with null counts, ``endpoint: null``, ``output_file_id: ""``, ``*_blob`` fields and
``in_progress_at: null`` on a completed batch; Zhipu's null counts while validating;
RFC 3339 timestamps (Voyage, Together); ``0`` for an unset timestamp (DashScope).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.errors import UndecodableSnapshotError
from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, BatchUsage, RequestCounts
from batchfsm.fsm.spec import BatchStatus
from batchfsm.fsm.wire import RAW_LIMIT, flat_usage, raw_answer, unix_seconds

C = 1_774_437_191

AZURE_FAILED = {
    "id": "batch_6ea6b2b4-9ef8-4e1e-bf3c-8e0b10ab1bd6",
    "object": "batch",
    "endpoint": None,
    "errors": {
        "object": "list",
        "data": [{"code": "empty_batch", "message": "empty", "line": None}],
    },
    "input_file_id": "file-c2d9a7881c8a466285e6f76f6321a681",
    "completion_window": "24h",
    "status": "failed",
    "output_file_id": "",
    "error_file_id": None,
    "created_at": C,
    "in_progress_at": None,
    "expires_at": C + 86_400,
    "finalizing_at": None,
    "completed_at": None,
    "failed_at": C + 20,
    "expired_at": None,
    "cancelling_at": None,
    "cancelled_at": None,
    "request_counts": {"total": 0, "completed": None, "failed": None},
    "metadata": None,
    "error_blob": "",
    "output_blob": "",
}
AZURE_COMPLETED = {
    **AZURE_FAILED,
    "errors": None,
    "status": "completed",
    "endpoint": "/chat/completions",
    "in_progress_at": None,
    "finalizing_at": C + 60,
    "completed_at": C + 90,
    "failed_at": None,
    "output_file_id": "file-out",
    "error_file_id": "file-err",
    "request_counts": {"total": 3, "completed": 3, "failed": 0},
    "output_blob": "https://example.blob.core.windows.net/batch/out.jsonl",
}
NULL_COUNTS = {"total": None, "completed": None, "failed": None}
ZHIPU_VALIDATING = {"id": "batch_z", "status": "validating", "created_at": C,
                    "request_counts": NULL_COUNTS}  # fmt: skip
TOGETHER_LIKE = {"id": "batch_t", "status": "in_progress", "created_at": "2026-03-25T11:13:11Z",
                 "in_progress_at": "2026-03-25T11:13:14.512+00:00"}  # fmt: skip
DASHSCOPE_LIKE = {"id": "batch_d", "status": "in_progress", "created_at": C,
                  "in_progress_at": C + 3, "finalizing_at": 0, "completed_at": 0,
                  "cancelled_at": 0, "expires_at": 0}  # fmt: skip


def test_azure_failed_batch_is_taken_with_its_unknown_counts() -> None:
    snap = BatchSnapshot.from_api(AZURE_FAILED)
    assert snap.status == "failed"
    assert snap.request_counts == RequestCounts(total=0, completed=None, failed=None)
    assert (snap.endpoint, snap.output_file_id, snap.error_file_id) == (None, None, None)
    assert [e.code for e in snap.errors] == ["empty_batch"]
    applied = rulebook().apply(BatchRecord(batch_id="batch_azure"), snap)
    assert applied.record.state is BatchStatus.FAILED


def test_azure_completed_batch_without_in_progress_at_still_takes_the_documented_path() -> None:
    snap = BatchSnapshot.from_api(AZURE_COMPLETED)
    applied = rulebook().apply(BatchRecord(batch_id="b"), snap)
    assert [h.dest.value for h in applied.hops] == ["in_progress", "finalizing", "completed"]
    assert [h.implied for h in applied.hops] == [True, True, False]
    assert not any(h.undocumented for h in applied.hops)


def test_null_counts_while_validating_are_unknown_not_zero() -> None:
    snap = BatchSnapshot.from_api(ZHIPU_VALIDATING)
    assert snap.request_counts == RequestCounts(None, None, None)
    assert BatchSnapshot.from_api({"status": "validating", "request_counts": {}}).request_counts \
        == RequestCounts(None, None, None)  # fmt: skip


def test_rfc3339_timestamps_become_unix_seconds() -> None:
    snap = BatchSnapshot.from_api(TOGETHER_LIKE)
    assert snap.created_at == int(datetime(2026, 3, 25, 11, 13, 11, tzinfo=UTC).timestamp())
    assert snap.in_progress_at == snap.created_at + 3  # fractional seconds are floored
    assert snap.deadline() == datetime(2026, 3, 26, 11, 13, 11, tzinfo=UTC)


def test_zero_timestamps_mean_unset() -> None:
    snap = BatchSnapshot.from_api(DASHSCOPE_LIKE)
    assert (snap.finalizing_at, snap.completed_at, snap.cancelled_at) == (None, None, None)
    # expires_at 0 would have put the deadline in 1970: the fallback is created_at + 24 h
    assert snap.deadline() == datetime.fromtimestamp(C, UTC) + timedelta(hours=24)


def test_usage_is_folded_flat_and_survives_the_store_round_trip() -> None:
    api_usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 200},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 40},
        "total_tokens": 1500,
    }
    snap = BatchSnapshot.from_api({"status": "completed", "model": "gpt-5", "usage": api_usage})
    assert snap.usage == BatchUsage(1200, 200, 300, 40, 1500)
    assert snap.model == "gpt-5"
    record = BatchRecord(batch_id="b", snapshot=snap)
    assert BatchRecord.model_validate_json(record.model_dump_json()) == record
    assert BatchSnapshot.from_api({"status": "completed", "usage": None}).usage is None
    partial = BatchSnapshot.from_api({"status": "completed", "usage": {"total_tokens": 9}})
    assert partial.usage == BatchUsage(total_tokens=9)


WRONG = [
    ({"request_counts": "lots"}, "request_counts"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"created_at": True}, "created_at"),
    ({"expires_at": -5}, "expires_at"),
    ({"in_progress_at": "2026-03-25T11:13:11"}, "in_progress_at"),  # no offset
    ({"request_counts": {"total": "many"}}, "request_counts.total"),
    ({"usage": {"input_tokens_details": "none"}}, "usage.cached_tokens"),
    ({"usage": 12}, "usage"),
    ({"errors": {"data": [{"line": "first"}]}}, "errors.0.line"),
    ({"status": None}, "status"),
    ({"status": 3}, "status"),
]


@pytest.mark.parametrize(("fields", "where"), WRONG, ids=[w for _, w in WRONG])
def test_a_field_of_the_wrong_kind_refuses_the_answer_naming_field_and_value(
    fields: dict[str, Any], where: str
) -> None:
    answer = {"id": "batch_1", "status": "in_progress", **fields}
    with pytest.raises(UndecodableSnapshotError) as info:
        BatchSnapshot.from_api(answer, batch_id="batch_1")
    err = info.value
    assert str(err).startswith("batch batch_1: ")
    assert any(p.startswith(f"{where}: ") for p in err.problems), err.problems
    assert err.raw == json.loads(json.dumps(answer))  # the answer as sent, JSON-ready
    status = answer["status"]
    assert err.status == (status if isinstance(status, str) else None)


def test_several_problems_are_all_named() -> None:
    bad = {"status": "in_progress", "request_counts": "lots", "created_at": "yesterday"}
    with pytest.raises(UndecodableSnapshotError) as info:
        BatchSnapshot.from_api(bad)
    assert [p.split(":")[0] for p in info.value.problems] == ["created_at", "request_counts"]
    assert "'yesterday'" in str(info.value) and "'lots'" in str(info.value)


@pytest.mark.parametrize(
    "answer", ["<html><body>502 Bad Gateway</body></html>", b"\x00\x01", [1, 2], 7, None]
)
def test_an_answer_that_is_no_object_is_refused_with_its_body(answer: object) -> None:
    with pytest.raises(UndecodableSnapshotError) as info:
        BatchSnapshot.from_api(answer)
    assert "not a JSON object" in info.value.problems[0]
    assert set(info.value.raw) == {"body"}
    if isinstance(answer, str):
        assert info.value.raw == {"body": answer}


def test_a_large_body_is_kept_cut_with_its_length() -> None:
    page = "<html>" + "x" * (3 * RAW_LIMIT) + "</html>"
    assert raw_answer(page) == {"body": page[:RAW_LIMIT], "truncated_from": len(page)}
    big = {"status": "x", "blob": "y" * (2 * RAW_LIMIT)}
    kept = raw_answer(big)
    assert set(kept) == {"body", "truncated_from"} and len(kept["body"]) == RAW_LIMIT


# -- properties -------------------------------------------------------------------------

offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)


@settings(max_examples=300, deadline=None)
@given(instants)
def test_rfc3339_text_is_read_as_the_instant_it_names(when: datetime) -> None:
    expected = math.floor(when.timestamp())
    assert unix_seconds(when.isoformat()) == expected
    assert unix_seconds(when.astimezone(UTC).isoformat().replace("+00:00", "Z")) == expected
    with pytest.raises(ValueError, match="offset"):
        unix_seconds(when.replace(tzinfo=None).isoformat())


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=2**40))
def test_unix_seconds_pass_as_they_are(seconds: int) -> None:
    assert unix_seconds(seconds) == seconds
    assert unix_seconds(str(seconds)) == seconds
    assert unix_seconds(seconds + 0.75) == seconds


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.floats(), st.integers(), st.booleans(), st.none()))
def test_any_value_is_a_timestamp_unknown_or_a_value_error(value: object) -> None:
    try:
        seconds = unix_seconds(value)
    except ValueError:
        return
    assert seconds is None or (isinstance(seconds, int) and seconds > 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["status", "id", "endpoint", "output_file_id", "created_at", "completed_at",
          "expires_at", "request_counts", "errors", "metadata", "model", "usage"]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
def test_any_json_object_is_a_snapshot_or_a_refusal_that_names_its_fields(
    fields: dict[str, Any],
) -> None:
    answer = {"status": "in_progress", **fields}
    try:
        snap = BatchSnapshot.from_api(answer)
    except UndecodableSnapshotError as exc:
        refused = exc
    else:
        assert BatchSnapshot.model_validate(snap.model_dump()) == snap
        return
    assert refused.problems
    named = {p.split(":")[0].split(".")[0] for p in refused.problems}
    assert named <= set(answer)
    json.dumps(refused.raw)  # whatever it keeps can be written to the history


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_flat_usage_never_raises(value: object) -> None:
    flat_usage(value)
