"""``batchfsm replay FILE [--json]``: apply a recorded history and show what happened."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from batchfsm.cli.output import print_json, print_table
from batchfsm.cli.views import replay_json
from batchfsm.errors import InputFileError
from batchfsm.fsm.history_file import read_history
from batchfsm.fsm.replay import ReplayResult, replay


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a recorded status history (JSONL, one Batch per line)",
        description="Apply each line as an observation, starting from validating.",
    )
    parser.add_argument("file", type=Path, help="JSONL file: one Batch snapshot per line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def replay_file(path: Path) -> ReplayResult:
    """Read the whole file first, so bad input stops before anything is reported.

    A file with no observation is bad input, not a batch that stayed ``validating``:
    replaying nothing would report a final state nobody observed.
    """
    observations = list(read_history(path))
    if not observations:
        raise InputFileError(
            "holds no observation (expected one Batch object per line)", path=str(path)
        )
    return replay(observations)


def show(result: ReplayResult, *, name: str) -> None:
    print_table(
        f"{name}: final state {result.final_state.value}",
        ["line", "from", "to", "implied", "undocumented"],
        [
            (
                h.line,
                h.source.value,
                h.dest.value,
                "yes" if h.implied else "",
                "yes" if h.undocumented else "",
            )
            for h in result.transitions
        ],
    )
    if result.rejected:
        print_table(
            "rejected observations",
            ["line", "status", "reason"],
            [(r.line, r.status, r.reason) for r in result.rejected],
        )
    if result.effects:
        print_table(
            "effects owed",
            ["state", "handler"],
            [(e.state.value, e.handler) for e in result.effects],
        )


def run(args: argparse.Namespace) -> int:
    result = replay_file(args.file)
    if args.json:
        print_json(replay_json(result))
    else:
        show(result, name=str(args.file))
    return 0
