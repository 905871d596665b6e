"""``batchfsm replay FILE [--provider P] [--json]``: apply a recorded history and show
what happened.

``FILE`` is JSONL, one Batch object per line (as ``history --snapshots`` writes), or
the output of ``batchfsm history BATCH --json`` as it is, whose observations are
replayed the same way (:func:`~batchfsm.cli.views.history_snapshots`).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from batchfsm.cli.output import print_json, print_table
from batchfsm.cli.views import history_snapshots, replay_json
from batchfsm.config import PROVIDER_NAMES
from batchfsm.errors import InputFileError
from batchfsm.fsm.history_file import read_history
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.fsm.replay import Observation, ReplayResult, replay
from batchfsm.providers import profile_named

_HISTORY_JSON_LIMIT = 64 * 1024 * 1024
"""A ``history --json`` file is read whole; anything larger is taken as JSONL."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a recorded status history (JSONL, one Batch per line)",
        description="Apply each line as an observation, starting from validating.",
    )
    parser.add_argument(
        "file", type=Path,
        help="JSONL, one Batch object per line (`history --snapshots`), or `history --json` output",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--provider",
        choices=PROVIDER_NAMES,
        default=None,
        help="the lines are this provider's Batch objects (e.g. anthropic's MessageBatch), "
        "read through its profile (default: OpenAI's shape)",
    )
    parser.set_defaults(func=run)


def replay_file(path: Path, provider: str | None = None) -> ReplayResult:
    """Read the whole file first, so bad input stops before anything is reported.

    A file with no observation is bad input, not a batch that stayed ``validating``:
    replaying nothing would report a final state nobody observed.
    """
    observations = None if provider else _from_history_json(path)
    if observations is None:
        read = profile_named(provider).read_batch if provider else None
        observations = list(read_history(path, read=read))
    if not observations:
        raise InputFileError(
            "holds no observation (expected one Batch object per line)", path=str(path)
        )
    return replay(observations)


def _from_history_json(path: Path) -> list[Observation] | None:
    """The observations in a ``batchfsm history --json`` file; None for anything else."""
    try:
        with path.open("rb") as handle:
            head = handle.read(256).lstrip()
        big = path.stat().st_size > _HISTORY_JSON_LIMIT
    except OSError:
        return None  # read_history says what is wrong with it
    if big or not head.startswith(b"{"):
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return None  # JSONL: several objects
    if not (isinstance(data, dict) and isinstance(data.get("history"), list)):
        return None
    lines = history_snapshots(str(data.get("batch_id") or "replay"), data["history"])
    return [_observation(path, number, line) for number, line in enumerate(lines, 1)]


def _observation(path: Path, number: int, line: dict[str, Any]) -> Observation:
    observed = line.pop("observed_at", None)
    try:
        snapshot = BatchSnapshot.model_validate(line)
    except ValidationError as exc:
        raise InputFileError(
            f"observation {number}: {exc.errors()[0]['msg']}", path=str(path)
        ) from None
    at = datetime.fromisoformat(observed) if isinstance(observed, str) else None
    return Observation(line=number, snapshot=snapshot, observed_at=at)


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
    result = replay_file(args.file, getattr(args, "provider", None))
    if args.json:
        print_json(replay_json(result))
    else:
        show(result, name=str(args.file))
    return 0
