"""``batchfsm items [--job J] [--batch B] [--state S]``: the per-request ledger.

A read command: it never creates a store (a mistyped ``--store`` says the store does
not exist, exit 2), and it never prints a request's original line, which may hold
personal data (:func:`~batchfsm.cli.views.item_json`).
"""

from __future__ import annotations

import argparse
from typing import Any

from batchfsm.cli.output import print_json, print_table
from batchfsm.cli.store import add_store_option, open_existing
from batchfsm.cli.views import item_json
from batchfsm.ledger.records import ItemState

__all__ = ["add_parser", "run_items"]


def add_parser(subparsers: Any) -> None:
    items = subparsers.add_parser("items", help="the per-request ledger")
    items.add_argument("--job", default=None)
    items.add_argument("--batch", default=None)
    items.add_argument("--state", choices=[s.value for s in ItemState], default=None)
    items.add_argument("--json", action="store_true")
    add_store_option(items)
    items.set_defaults(func=run_items)


def run_items(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        state = ItemState(args.state) if args.state else None
        rows = [item_json(e) for e in store.iter_ledger(args.job, batch_id=args.batch, state=state)]
    finally:
        store.close()
    if args.json:
        print_json({"items": rows})
        return 0
    print_table(
        f"{len(rows)} items",
        ["job", "custom_id", "state", "attempts", "batches", "last error"],
        [(r["job_id"], r["custom_id"], r["state"], r["attempts"], " ".join(r["batches"]),
          _error_text(r["last_error"])) for r in rows],
    )  # fmt: skip
    return 0


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    code = error.get("code") or error["category"]
    message = error.get("message") or ""
    return f"{code}: {message}"[:80] if message else str(code)
