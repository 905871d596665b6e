"""The history-file parser under arbitrary input: the first bad line is named exactly,
good files keep every line number (blank lines counted)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.errors import InputFileError
from batchfsm.fsm.history_file import read_history

statuses = st.one_of(
    st.sampled_from(["validating", "in_progress", "completed", "canceling"]), st.text(max_size=12)
)
good = st.builds(
    lambda s, n: json.dumps({"status": s, "request_counts": {"total": n}}),
    statuses,
    st.integers(min_value=0, max_value=10**6),
)
blank = st.sampled_from(["", "   ", "\t"])
bad = st.one_of(
    st.just("not json"),
    st.builds(json.dumps, st.lists(st.integers(), max_size=3)),
    st.builds(lambda n: json.dumps({"status": n}), st.integers()),
    st.just(json.dumps({"id": "batch_1"})),
    st.just('{"status": "completed", "request_counts": {"total": "many"}}'),
)
lines = st.lists(
    st.one_of(
        good.map(lambda x: ("good", x)),
        blank.map(lambda x: ("blank", x)),
        bad.map(lambda x: ("bad", x)),
    ),
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(lines)
def test_first_bad_line_is_named_and_good_lines_keep_their_numbers(
    content: list[tuple[str, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.jsonl"
        path.write_text("".join(text + "\n" for _, text in content))
        first_bad = next((i for i, (kind, _) in enumerate(content, 1) if kind == "bad"), None)
        if first_bad is None:
            observed = list(read_history(path))
            assert [o.line for o in observed] == [
                i for i, (kind, _) in enumerate(content, 1) if kind == "good"
            ]
        else:
            with pytest.raises(InputFileError) as caught:
                list(read_history(path))
            assert caught.value.line == first_bad
            assert str(caught.value).startswith(f"{path}, line {first_bad}")
