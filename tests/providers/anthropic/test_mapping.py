"""The Anthropic mapping as properties (hypothesis): statuses and timestamps through the
real rulebook, and every result line through the real line classifier and ledger rules.

Each expectation is written from the issue's table, not from the code under test: an
``ended`` batch is ``cancelled`` when a cancel was initiated, else ``expired`` when any
request expired, else ``completed``; ``succeeded`` succeeds, ``errored`` with
``invalid_request_error`` fails for good, other errors are retried spending an attempt,
``canceled``/``expired`` are retried spending none; anything else is recorded, not
guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.fsm.models import BatchSnapshot
from batchfsm.fsm.replay import replay
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.result_lines import OutcomeKind, parse_line
from batchfsm.ledger.rules import fate_for_line
from batchfsm.providers import PROFILES
from batchfsm.providers.anthropic.mapping import ERROR_STATUS, read_anthropic, result_line

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
COUNT = st.integers(min_value=0, max_value=100_000)
KNOWN_WORDS = ("in_progress", "canceling", "ended")


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def message_batch(
    word: str,
    counts: dict[str, int],
    *,
    cancel_at: float | None = None,
    ended_at: float | None = None,
) -> dict[str, Any]:
    """A ``MessageBatch`` as the API sends it (RFC 3339 stamps)."""
    ended = word == "ended"
    return {
        "id": "msgbatch_01",
        "type": "message_batch",
        "processing_status": word,
        "request_counts": counts,
        "created_at": stamp(0),
        "expires_at": stamp(24 * 3600),
        "cancel_initiated_at": None if cancel_at is None else stamp(cancel_at),
        "ended_at": stamp(ended_at) if ended and ended_at is not None else None,
        "archived_at": None,
        "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_01/results"
        if ended
        else None,
    }


counts_st = st.fixed_dictionaries(
    dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), COUNT)
)


def expected_end(batch: dict[str, Any]) -> BatchStatus:
    if batch["cancel_initiated_at"] is not None:
        return BatchStatus.CANCELLED
    if batch["request_counts"]["expired"] > 0:
        return BatchStatus.EXPIRED
    return BatchStatus.COMPLETED


@given(
    counts=counts_st,
    cancelled=st.booleans(),
    cancel_at=st.floats(min_value=1, max_value=3600),
    ends_after=st.floats(min_value=1, max_value=20 * 3600),
)
def test_an_ended_batch_lands_where_the_table_says_with_its_stamps(
    counts: dict[str, int], cancelled: bool, cancel_at: float, ends_after: float
) -> None:
    ended = message_batch(
        "ended",
        counts,
        cancel_at=cancel_at if cancelled else None,
        ended_at=cancel_at + ends_after,
    )
    snapshot = BatchSnapshot.from_api(read_anthropic(ended))
    want = expected_end(ended)
    assert snapshot.status == want.value
    assert snapshot.entered_at(want) == int(T0.timestamp() + cancel_at + ends_after)
    assert snapshot.in_progress_at == snapshot.created_at == int(T0.timestamp())
    assert snapshot.request_counts is not None
    assert snapshot.request_counts.total == sum(counts.values())
    assert (snapshot.request_counts.completed, snapshot.request_counts.failed) == (
        counts["succeeded"],
        counts["errored"],
    )
    assert snapshot.output_file_id == "msgbatch_01"  # results are fetched by batch id

    history = [message_batch("in_progress", counts)]
    if cancelled:
        history.append(message_batch("canceling", counts, cancel_at=cancel_at))
    result = replay([read_anthropic(b) for b in [*history, ended]])
    assert result.final_state is want
    assert result.rejected == ()
    implied = {(h.source, h.dest) for h in result.transitions if h.implied}
    if want is BatchStatus.COMPLETED:  # Anthropic never shows finalizing
        assert implied == {(BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING)}
    else:
        assert implied == set()


@given(counts=counts_st, cancel_at=st.floats(min_value=1, max_value=3600))
def test_a_read_older_than_the_state_is_a_stale_read(
    counts: dict[str, int], cancel_at: float
) -> None:
    seen = [
        message_batch("in_progress", counts),
        message_batch("canceling", counts, cancel_at=cancel_at),
        message_batch("in_progress", counts),  # a lagging replica
        message_batch("ended", counts, cancel_at=cancel_at, ended_at=cancel_at + 60),
    ]
    result = replay([read_anthropic(b) for b in seen])
    assert [r.reason for r in result.rejected] == ["stale"]
    assert result.final_state is BatchStatus.CANCELLED


ENGINE_WORDS = [s.value for s in BatchStatus if s.value not in KNOWN_WORDS]


@given(
    word=(st.text(min_size=1) | st.sampled_from(ENGINE_WORDS)).filter(
        lambda w: w not in KNOWN_WORDS
    ),
    counts=counts_st,
)
def test_an_unknown_word_is_recorded_never_guessed(word: str, counts: dict[str, int]) -> None:
    """Not even one of the engine's own words, which Anthropic does not use: a batch
    reading ``completed`` is not taken as completed, it is recorded as unknown."""
    mapped = read_anthropic(message_batch(word, counts))
    shown = f"anthropic:{word}" if word in ENGINE_WORDS else word
    assert mapped["status"] == shown
    result = replay([mapped])
    assert [(r.status, r.reason) for r in result.rejected] == [(shown, "unknown")]
    assert result.final_state is BatchStatus.VALIDATING


def test_an_ended_batch_whose_counts_cannot_say_is_rejected_not_guessed() -> None:
    batch = message_batch("ended", {"succeeded": 1}, ended_at=60)  # no "expired" count
    result = replay([read_anthropic(batch)])
    assert [(r.status, r.reason) for r in result.rejected] == [("ended", "unknown")]


def test_the_profile_reads_the_same_way() -> None:
    batch = message_batch("canceling", dict.fromkeys(("processing",), 3), cancel_at=5)
    assert PROFILES["anthropic"].read_batch(batch) == read_anthropic(batch)


# -- result lines --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
custom_ids = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)
error_types = st.sampled_from(sorted(ERROR_STATUS)) | st.text(min_size=1)
SPEC_PERMANENT = {"invalid_request_error", "request_too_large"}


def line(custom_id: str, result: object) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": result})


@given(custom_id=custom_ids, message=st.dictionaries(st.text(), json_values, max_size=4))
def test_a_succeeded_line_delivers_its_message(custom_id: str, message: dict[str, Any]) -> None:
    outcome = parse_line(result_line(line(custom_id, {"type": "succeeded", "message": message})), 1)
    assert (outcome.kind, outcome.custom_id) == (OutcomeKind.SUCCEEDED, custom_id)
    assert outcome.body_json() == message
    assert fate_for_line(outcome).spends_attempt


@given(custom_id=custom_ids, kind=error_types, message=st.text(), wrapped=st.booleans())
def test_an_errored_line_fails_for_good_only_when_the_request_was_invalid(
    custom_id: str, kind: str, message: str, wrapped: bool
) -> None:
    error: dict[str, Any] = {"type": kind, "message": message}
    if wrapped:  # the ErrorResponse the API sends; a bare error object is read too
        error = {"type": "error", "error": error, "request_id": "req_1"}
    outcome = parse_line(result_line(line(custom_id, {"type": "errored", "error": error})), 1)
    want = OutcomeKind.PERMANENT if kind in SPEC_PERMANENT else OutcomeKind.RETRYABLE
    assert (outcome.kind, outcome.custom_id) == (want, custom_id)
    assert outcome.error_code == kind  # the API's own word, kept
    assert fate_for_line(outcome).spends_attempt  # it ran


@given(custom_id=custom_ids, kind=st.sampled_from(["canceled", "expired"]))
def test_a_request_that_never_ran_is_resent_without_an_attempt(custom_id: str, kind: str) -> None:
    outcome = parse_line(result_line(line(custom_id, {"type": kind})), 1)
    assert (outcome.kind, outcome.custom_id) == (OutcomeKind.NOT_RUN, custom_id)
    assert not fate_for_line(outcome).spends_attempt


@given(
    custom_id=custom_ids,
    result=json_values.filter(
        lambda r: (
            not (
                isinstance(r, dict)
                and r.get("type") in ("succeeded", "errored", "canceled", "expired")
            )
        )
    ),
)
def test_anything_else_is_kept_aside_as_malformed(custom_id: str, result: object) -> None:
    converted = result_line(line(custom_id, result))
    outcome = parse_line(converted, 1)
    assert outcome.kind is OutcomeKind.MALFORMED
    assert orjson.loads(outcome.raw or b"")["result"] == result  # verbatim, for a person


@given(raw=st.binary())
def test_a_line_that_is_no_result_never_crashes_and_is_never_a_success(raw: bytes) -> None:
    outcome = parse_line(result_line(raw), 1)
    assert outcome.kind in (OutcomeKind.MALFORMED, OutcomeKind.RETRYABLE, OutcomeKind.NOT_RUN,
                            OutcomeKind.PERMANENT, OutcomeKind.SUCCEEDED)  # fmt: skip
    if outcome.kind is OutcomeKind.SUCCEEDED:  # only a real succeeded result
        assert orjson.loads(raw)["result"]["type"] == "succeeded"
