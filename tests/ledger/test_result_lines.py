"""Classification of output/error lines, on the line shapes of the output and error files
(https://platform.openai.com/docs/guides/batch)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.ledger.result_lines import (
    LineOutcome,
    OutcomeKind,
    classify,
    iter_outcomes,
    parse_line,
)

DATA = Path(__file__).parent.parent / "data"


def by_id(outcomes: list[LineOutcome]) -> dict[str | None, LineOutcome]:
    return {o.custom_id: o for o in outcomes if o.custom_id is not None}


def test_output_file_lines_succeed_with_the_exact_body_bytes() -> None:
    path = DATA / "output_embeddings.jsonl"
    outcomes = list(iter_outcomes(path))
    assert [o.kind for o in outcomes] == [OutcomeKind.SUCCEEDED] * 3
    for outcome, raw in zip(outcomes, path.read_bytes().splitlines(), strict=True):
        expected = orjson.loads(raw)["response"]["body"]
        assert outcome.body is not None
        assert outcome.body_json() == expected
        # raw bytes taken from the line itself: present verbatim, not re-serialised
        assert outcome.body in raw
        assert outcome.status_code == 200
        assert outcome.spends_attempt
    assert outcomes[2].custom_id == 'doc-3 {"body": }'


def test_body_with_braces_and_body_keys_inside_strings_is_sliced_correctly() -> None:
    outcomes = list(iter_outcomes(DATA / "output_chat.jsonl"))
    first = outcomes[0]
    assert first.kind is OutcomeKind.SUCCEEDED
    body = first.body_json()
    assert body["choices"][0]["message"]["content"].endswith('{"nested": 1} in it }}}')
    assert body["id"] == "chatcmpl-123"
    assert [o.custom_id for o in outcomes] == ["request-2", "request-1"]  # file order kept


EXPECTED_ERROR_FILE: dict[str, tuple[OutcomeKind, int | None, str | None]] = {
    "bad-request": (OutcomeKind.PERMANENT, 400, "invalid_request_error"),
    "rate-limited": (OutcomeKind.RETRYABLE, 429, "rate_limit_exceeded"),
    "server-error": (OutcomeKind.RETRYABLE, 500, "server_error"),
    "expired": (OutcomeKind.NOT_RUN, None, "batch_expired"),
    "cancelled": (OutcomeKind.NOT_RUN, None, "batch_cancelled"),
    "timed-out": (OutcomeKind.RETRYABLE, None, "request_timeout"),
    "not-found-model": (OutcomeKind.PERMANENT, 404, "model_not_found"),
    "status-zero": (OutcomeKind.RETRYABLE, 0, None),
    "unknown-code": (OutcomeKind.RETRYABLE, None, "something_new"),
    "redirect": (OutcomeKind.RETRYABLE, 302, None),
    "teapot": (OutcomeKind.PERMANENT, 418, "invalid_request_error"),
}


def test_error_file_both_shapes_are_classified_from_content() -> None:
    counts: collections.Counter[OutcomeKind] = collections.Counter()
    outcomes = list(iter_outcomes(DATA / "error_mixed.jsonl", counts=counts))
    found = by_id(outcomes)
    for custom_id, (kind, status, code) in EXPECTED_ERROR_FILE.items():
        outcome = found[custom_id]
        assert (outcome.kind, outcome.status_code, outcome.error_code) == (kind, status, code), (
            custom_id
        )
        assert outcome.body is None  # failures never carry a body to the sink
    assert found["bad-request"].error_message == (
        "'input' : input must be a string or an array of strings"
    )
    assert found["expired"].error_message is not None
    assert not found["expired"].spends_attempt
    assert found["timed-out"].spends_attempt
    assert counts[OutcomeKind.MALFORMED] == 5
    assert sum(counts.values()) == len(outcomes) == 16


def test_malformed_lines_keep_line_number_raw_text_and_reason() -> None:
    outcomes = list(iter_outcomes(DATA / "error_mixed.jsonl"))
    malformed = [o for o in outcomes if o.kind is OutcomeKind.MALFORMED]
    assert [(o.line, o.reason) for o in malformed] == [
        (10, "blank line"),
        (11, "not valid JSON"),
        (12, "not a JSON object"),
        (13, "no string custom_id"),
        (14, "neither a response with a status code nor an error"),
    ]
    assert malformed[1].raw == b"not json at all\n"
    assert malformed[4].custom_id == "neither"
    assert not any(o.spends_attempt for o in malformed)


def test_success_in_the_error_file_is_still_a_success(tmp_path: Path) -> None:
    # Which file a line came from never decides; its status code does.
    line = {"custom_id": "x", "response": {"status_code": 201, "body": {"ok": True}}, "error": None}
    path = tmp_path / "error.jsonl"
    path.write_bytes(orjson.dumps(line) + b"\n")
    (outcome,) = iter_outcomes(path)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.body_json() == {"ok": True}


def test_expired_code_wins_over_a_status_code() -> None:
    raw = orjson.dumps({
        "custom_id": "x",
        "response": {"status_code": 500, "body": {}},
        "error": {"code": "batch_expired", "message": "m"},
    })  # fmt: skip
    assert parse_line(raw, 1).kind is OutcomeKind.NOT_RUN


def test_2xx_without_body_is_malformed_not_a_silent_success() -> None:
    raw = b'{"custom_id": "x", "response": {"status_code": 200}, "error": null}'
    outcome = parse_line(raw, 7)
    assert outcome.kind is OutcomeKind.MALFORMED
    assert (outcome.line, outcome.custom_id) == (7, "x")


def test_non_object_body_falls_back_and_is_kept() -> None:
    raw = b'{"custom_id": "x", "response": {"status_code": 200, "body": [1, "two"]}}'
    outcome = parse_line(raw, 1)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.body_json() == [1, "two"]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (200, None, OutcomeKind.SUCCEEDED),
        (299, None, OutcomeKind.SUCCEEDED),
        (400, None, OutcomeKind.PERMANENT),
        (401, None, OutcomeKind.PERMANENT),
        (403, None, OutcomeKind.PERMANENT),
        (404, None, OutcomeKind.PERMANENT),
        (422, None, OutcomeKind.PERMANENT),
        (413, None, OutcomeKind.PERMANENT),
        (408, None, OutcomeKind.RETRYABLE),
        (409, None, OutcomeKind.RETRYABLE),
        (429, None, OutcomeKind.RETRYABLE),
        (503, None, OutcomeKind.RETRYABLE),
        (0, None, OutcomeKind.RETRYABLE),
        (None, "request_timeout", OutcomeKind.RETRYABLE),
        (None, "batch_expired", OutcomeKind.NOT_RUN),
        (None, "batch_cancelled", OutcomeKind.NOT_RUN),
        (200, "batch_cancelled", OutcomeKind.NOT_RUN),
    ],
)
def test_classification_table(status: int | None, code: str | None, kind: OutcomeKind) -> None:
    assert classify(status, code) is kind


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab{}[]":,\\ body\n')),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["body", "error", "x", "response"]), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["body", "error", "id", "data"]), json_values),
    custom_id=st.text(alphabet=st.sampled_from('ab{}"body: \\')),
    extra=st.dictionaries(st.sampled_from(["id", "body", "zz"]), json_values, max_size=2),
    indent=st.booleans(),
    body_first=st.booleans(),
)
def test_raw_body_always_equals_the_parsed_body(
    body: dict[str, Any], custom_id: str, extra: dict[str, Any], indent: bool, body_first: bool
) -> None:
    response: dict[str, Any] = (
        {"body": body, "status_code": 200} if body_first else {"status_code": 200, "body": body}
    )
    line = {**extra, "custom_id": custom_id, "response": response, "error": None}
    raw = orjson.dumps(line)
    if indent:
        raw = raw.replace(b'":', b'" : ').replace(b",", b" , ")
        if orjson.loads(raw) != orjson.loads(orjson.dumps(line)):  # spaces inside strings
            return
    outcome = parse_line(raw, 1)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.custom_id == custom_id
    assert outcome.body is not None
    assert b"\n" not in outcome.body
    assert orjson.loads(outcome.body) == body


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    outcome = parse_line(raw, 3)
    assert outcome.line == 3
    if outcome.kind is OutcomeKind.MALFORMED:
        assert outcome.raw == raw


def test_streaming_keeps_memory_flat(tmp_path: Path) -> None:
    import tracemalloc

    line = orjson.dumps({
        "custom_id": "c",
        "response": {"status_code": 200, "body": {"data": [0.001] * 2000}},
        "error": None,
    }) + b"\n"  # fmt: skip
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        for _ in range(2000):  # ~22 MB
            fh.write(line)
    tracemalloc.start()
    try:
        n = sum(1 for _ in iter_outcomes(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 2000
    assert peak < 2 * 1024 * 1024
