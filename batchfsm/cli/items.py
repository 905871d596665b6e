"""``batchfsm items [--job J] [--batch B] [--state S] [--export FILE]``: the ledger.

A read command: it never creates a store (a mistyped ``--store`` says the store does
not exist, exit 2), and it never prints a request's original line, which may hold
personal data (:func:`~batchfsm.cli.views.item_json`). ``--export FILE`` writes those
lines, and only them, to a file of mode 0600: ``items --state failed --export
fix.jsonl`` gives the failed requests as they were sent, to correct and submit again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from batchfsm.cli.output import plural, print_json, print_line, print_table
from batchfsm.cli.store import add_json_option, add_store_option, open_existing, write_private
from batchfsm.cli.views import item_json
from batchfsm.ledger.records import ItemState

__all__ = ["add_parser", "run_items"]


def add_parser(subparsers: Any) -> None:
    items = subparsers.add_parser(
        "items",
        help="the per-request ledger: every request's state, attempts and last error",
        description="Every request of every job (or of one job or batch, or in one "
        "state): its state, attempts, the batches it went through and its last error. "
        "--export FILE writes the matching requests' original lines instead.",
    )
    items.add_argument("--job", default=None, help="only this job's requests")
    items.add_argument("--batch", default=None, help="only requests that went through this batch")
    items.add_argument(
        "--state", choices=[s.value for s in ItemState], default=None,
        help="only requests in this state",
    )  # fmt: skip
    items.add_argument(
        "--export", type=Path, default=None, metavar="FILE",
        help="write the matching requests' original JSONL lines to FILE (mode 0600), "
        "ready to fix and submit again; nothing is printed but a count",
    )  # fmt: skip
    add_json_option(items)
    add_store_option(items)
    items.set_defaults(func=run_items)


def run_items(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        state = ItemState(args.state) if args.state else None
        entries = store.iter_ledger(args.job, batch_id=args.batch, state=state)
        if args.export is not None:
            lines = [e.line.rstrip("\n").encode() + b"\n" for e in entries]
        else:
            rows = [item_json(e) for e in entries]
    finally:
        store.close()
    if args.export is not None:
        write_private(args.export, b"".join(lines))
        print_line(f"wrote {plural(len(lines), 'request line')} to {args.export}")
        return 0
    if args.json:
        print_json({"items": rows})
        return 0
    print_table(
        plural(len(rows), "item"),
        ["job", "custom_id", "state", "attempts", "batches", "last error"],
        [(r["job_id"], r["custom_id"], r["state"], r["attempts"], " ".join(r["batches"]),
          _error_text(r["last_error"])) for r in rows],
    )  # fmt: skip
    return 0


def _error_text(error: dict[str, Any] | None) -> str:
    """The whole message: a terminal table folds it, a pipe gets it on one line."""
    if not error:
        return ""
    code = error.get("code") or error["category"]
    message = " ".join(str(error.get("message") or "").split())
    return f"{code}: {message}" if message else str(code)
