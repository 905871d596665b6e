"""Replay of recorded histories: the library call, the fixture and the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfsm.errors import InputFileError
from batchfsm.fsm.history_file import read_history
from batchfsm.fsm.replay import replay
from batchfsm.pytest_plugin import ReplayHistory

EXAMPLES = Path(__file__).resolve().parents[2] / "batchfsm" / "examples"


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"status": "validating"}\n\n   \n{"status": "completed"}\n')
    result = replay(list(read_history(path)))
    assert [h.line for h in result.transitions] == [4, 4, 4]


def test_the_fixture_replays_paths_and_lists(replay_history: ReplayHistory) -> None:
    from_list = replay_history([{"status": "in_progress"}, {"status": "validating"}])
    assert from_list.final_state.value == "in_progress"
    assert [(r.line, r.reason) for r in from_list.rejected] == [(2, "stale")]
    from_file = replay_history(EXAMPLES / "fast_completion.jsonl")
    assert from_file.final_state.value == "completed"


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"status": "validating"}\n[1, 2]\n', 2, "expected a JSON object"),
        ('{"status": "validating"}\n\n{"status": 3}\n', 3, "'status': must be a string"),
        ('{"id": "b"}\n', 1, "'status': missing"),
        ('{"status": "validating"}\n{"status": "in_pr\n', 2, "not valid JSON"),
        (
            '{"status": "completed", "request_counts": {"total": "many"}}\n',
            1,
            "request_counts.total",
        ),
        ('{"status": "completed", "observed_at": "yesterday"}\n', 1, "observed_at"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputFileError) as caught:
        list(read_history(path))
    assert caught.value.line == line
    assert f"line {line}" in str(caught.value)
    assert message in str(caught.value)


EXPECTED = {
    "fast_completion.jsonl": (
        "completed",
        ["validating>in_progress*", "in_progress>finalizing*", "finalizing>completed"],
        [],
    ),
    "stale_read.jsonl": (
        "completed",
        ["validating>in_progress", "in_progress>finalizing", "finalizing>completed"],
        [(5, "stale"), (7, "terminal")],
    ),
    "expired_partial.jsonl": ("expired", ["validating>in_progress", "in_progress>expired"], []),
    "cancel_race.jsonl": (
        "completed",
        ["validating>in_progress", "in_progress>cancelling", "cancelling>completed!"],
        [],
    ),
    "cancelled_mid_run.jsonl": (
        "cancelled",
        ["validating>in_progress", "in_progress>cancelling", "cancelling>cancelled"],
        [],
    ),
    "validation_failed.jsonl": ("failed", ["validating>failed"], []),
    "token_limit_exceeded.jsonl": ("failed", ["validating>failed"], []),
    "foreign_spelling.jsonl": (
        "cancelled",
        ["validating>in_progress", "in_progress>cancelling", "cancelling>cancelled"],
        [(2, "unknown")],
    ),
}


def test_every_shipped_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.jsonl")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_examples_replay_as_documented(name: str) -> None:
    final, path, rejected = EXPECTED[name]
    result = replay(list(read_history(EXAMPLES / name)))
    assert result.final_state.value == final
    drawn = [
        f"{h.source}>{h.dest}" + ("*" if h.implied else "") + ("!" if h.undocumented else "")
        for h in result.transitions
    ]
    assert drawn == path
    assert [(r.line, r.reason) for r in result.rejected] == rejected
    terminal_effects = [e for e in result.effects if e.state.value == final]
    assert len(terminal_effects) == 1
