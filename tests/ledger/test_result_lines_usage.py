"""The ``usage`` a succeeded result line reports, read in each shape the API sends
(chat, embeddings, responses, and Anthropic's Message rewritten into an output line),
and how unknown counts stay unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes, parse_line
from batchfsm.ledger.usage import MAX_COUNT, LineUsage, UsageTotals, parse_usage
from batchfsm.providers.anthropic.mapping import result_line

DATA = Path(__file__).parent.parent / "data"


def success(body: dict[str, Any], custom_id: str = "r1") -> bytes:
    """An output-file line as the Batch API writes it."""
    return orjson.dumps({
        "id": "batch_req_6f1a", "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req_8c21", "body": body},
        "error": None,
    })  # fmt: skip


CHAT_USAGE = {
    "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}  # fmt: skip
RESPONSES_USAGE = {
    "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 192},
    "total_tokens": 1500,
}  # fmt: skip


def test_the_output_files_lines_carry_their_usage_and_the_snapshot_that_served_them() -> None:
    chat = [o.usage for o in iter_outcomes(DATA / "output_chat.jsonl")]
    assert chat == [
        LineUsage("gpt-4o-mini-2024-07-18", input_tokens=22, output_tokens=2),
        LineUsage("gpt-4o-mini-2024-07-18", input_tokens=20, output_tokens=9),
    ]
    embeddings = [o.usage for o in iter_outcomes(DATA / "output_embeddings.jsonl")]
    # an embedding reports no output: its total equals its input, so output is 0
    assert [(u.input_tokens, u.output_tokens) for u in embeddings if u] == [(5, 0), (9, 0), (2, 0)]
    assert {u.model for u in embeddings if u} == {"text-embedding-3-small"}


def test_chat_usage_reads_cached_and_reasoning_tokens_from_the_details() -> None:
    body = {"object": "chat.completion", "model": "gpt-5-mini-2025-08-07", "usage": CHAT_USAGE}
    outcome = parse_line(success(body), 1)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.usage == LineUsage("gpt-5-mini-2025-08-07", 2006, 1920, None, 300, 128)


def test_responses_usage_is_read_from_its_own_field_names() -> None:
    body = {"object": "response", "model": "gpt-5-2025-08-07", "usage": RESPONSES_USAGE}
    assert parse_line(success(body), 1).usage == LineUsage("gpt-5-2025-08-07", 1200, 1024,
                                                          None, 300, 192)  # fmt: skip


def test_anthropic_usage_survives_the_rewrite_and_counts_the_cache_as_input() -> None:
    message = {
        "id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-20250514", "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100,
                  "cache_read_input_tokens": 2048, "output_tokens": 40, "service_tier": "batch"},
    }  # fmt: skip
    raw = orjson.dumps({"custom_id": "r1", "result": {"type": "succeeded", "message": message}})
    outcome = parse_line(result_line(raw), 1)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    # Anthropic's input_tokens leaves out the cache: all input is 12 + 100 + 2048
    assert outcome.usage == LineUsage("claude-sonnet-4-20250514", 2160, 2048, 100, 40, None)


def test_failed_and_never_run_lines_carry_no_usage() -> None:
    assert {o.usage for o in iter_outcomes(DATA / "error_mixed.jsonl")} == {None}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": None, "completion_tokens": 3}, (None, 3)),
        ({"prompt_tokens": -1, "completion_tokens": 3}, (None, 3)),
        ({"prompt_tokens": 2.0, "completion_tokens": True}, (None, None)),
        ({"prompt_tokens": "7", "total_tokens": 9}, (None, None)),
        ({"completion_tokens": 4, "total_tokens": 9}, (5, 4)),  # input from the total
        ({"input_tokens": 8, "total_tokens": 5}, (8, None)),  # a total below input: unknown
        ({"total_tokens": 9}, (None, None)),
        ({"prompt_tokens": 2**60, "completion_tokens": 1}, (None, 1)),
    ],
)
def test_unknown_counts_stay_unknown_never_zero(
    usage: dict[str, Any], expected: tuple[int | None, int | None]
) -> None:
    found = parse_usage({"model": "gpt-4o", "usage": usage})
    assert found is not None
    assert (found.input_tokens, found.output_tokens) == expected
    assert found.complete is (None not in expected)


@pytest.mark.parametrize("body", [None, [], "x", {}, {"usage": None}, {"usage": [1, 2]}])
def test_a_body_without_a_usage_object_has_no_usage(body: object) -> None:
    assert parse_usage(body) is None


def test_totals_count_the_lines_that_reported_nothing_usable() -> None:
    totals = UsageTotals()
    for usage in (
        LineUsage("gpt-4o-mini-2024-07-18", 10, 4, None, 2, None),
        None,
        LineUsage("gpt-4o-mini-2024-07-18", 5, None, None, None, None),  # input only
    ):
        totals.add(usage)
    assert (totals.lines, totals.lines_without_usage) == (3, 2)
    assert (totals.input_tokens, totals.cached_tokens, totals.output_tokens) == (15, 4, 2)
    assert totals.as_json()["models"] == ["gpt-4o-mini-2024-07-18"]


# -- properties ---------------------------------------------------------------------------

COUNT_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
DETAIL_KEYS = (
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
)
scalars = st.one_of(  # what JSON can carry (orjson writes 64-bit integers at most)
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
details = st.dictionaries(st.sampled_from(("cached_tokens", "reasoning_tokens", "x")), values,
                          max_size=3)  # fmt: skip
usages = st.dictionaries(
    st.sampled_from(COUNT_KEYS + DETAIL_KEYS + ("other",)),
    st.one_of(values, details),
    max_size=8,
)
bodies = st.one_of(
    values,
    st.fixed_dictionaries(
        {}, optional={"model": values | st.text(max_size=300), "usage": values | usages}
    ),
)


def _valid(count: int | None) -> bool:
    return count is None or (type(count) is int and 0 <= count <= MAX_COUNT)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_any_body_parses_without_raising_into_known_or_unknown_counts(body: Any) -> None:
    found = parse_usage(body)
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        assert found is None
        return
    assert found is not None
    assert all(_valid(getattr(found, name)) for name in (
        "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
        "reasoning_tokens"))  # fmt: skip
    assert found.model is None or (isinstance(found.model, str) and 0 < len(found.model) <= 200)
    usage = body["usage"]
    chat = "prompt_tokens" in usage or "completion_tokens" in usage
    said = usage.get("prompt_tokens" if chat else "input_tokens")
    if said is None or not _valid(said):
        total = usage.get("total_tokens")
        if type(total) is not int or total < 0:  # nothing to derive it from: unknown
            assert found.input_tokens is None


@settings(max_examples=200, deadline=None)
@given(bodies, st.text(min_size=1, max_size=8))
def test_any_succeeded_line_keeps_its_body_and_its_usage(body: Any, custom_id: str) -> None:
    outcome = parse_line(success(body, custom_id), 1)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.body_json() == body
    assert outcome.usage == parse_usage(body)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.none()
        | st.builds(
            LineUsage,
            input_tokens=st.none() | st.integers(0, 9),
            output_tokens=st.none() | st.integers(0, 9),
        ),
        max_size=20,
    )
)
def test_totals_add_what_is_known_and_count_what_is_not(usages: list[LineUsage | None]) -> None:
    totals = UsageTotals()
    for usage in usages:
        totals.add(usage)
    assert totals.lines == len(usages)
    assert totals.lines_without_usage == sum(1 for u in usages if u is None or not u.complete)
    assert totals.input_tokens == sum(u.input_tokens or 0 for u in usages if u)
    assert totals.output_tokens == sum(u.output_tokens or 0 for u in usages if u)
