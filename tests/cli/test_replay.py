"""``batchfsm replay`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchfsm.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "batchfsm" / "examples"


def test_json_output_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(EXAMPLES / "stale_read.jsonl"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "final_state": "completed",
        "transitions": [
            {
                "from": "validating",
                "to": "in_progress",
                "implied": False,
                "undocumented": False,
                "line": 2,
            },
            {
                "from": "in_progress",
                "to": "finalizing",
                "implied": False,
                "undocumented": False,
                "line": 4,
            },
            {
                "from": "finalizing",
                "to": "completed",
                "implied": False,
                "undocumented": False,
                "line": 6,
            },
        ],
        "rejected": [
            {"line": 5, "status": "in_progress", "reason": "stale"},
            {"line": 7, "status": "finalizing", "reason": "terminal"},
        ],
        "effects": [
            {"state": "in_progress", "handler": "watch"},
            {"state": "finalizing", "handler": "watch"},
            {"state": "completed", "handler": "harvest"},
        ],
    }


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_table_output_for_people(
    tmp_path: Path,
    columns: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whatever the terminal width and however deep the checkout: the status line is
    never wrapped and no cell is folded (the file name alone is over 100 characters)."""
    monkeypatch.setenv("COLUMNS", columns)
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / ("another-one-" * 4)
    deep.mkdir(parents=True)
    path = deep / "foreign_spelling.jsonl"
    path.write_bytes((EXAMPLES / "foreign_spelling.jsonl").read_bytes())

    assert main(["replay", str(path)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# {path}: final state cancelled"
    assert any("canceling" in line and "unknown" in line for line in lines)


def test_bad_input_exits_2_names_the_line_and_prints_no_result(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"status": "validating"}\n{"status": "in_progress"}\n\n\n\n\n"oops"\n')
    assert main(["replay", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 7" in captured.err and "Traceback" not in captured.err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
