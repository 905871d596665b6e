"""``batchfsm init``, ``status`` and ``history``: what the store knows."""

from __future__ import annotations

import argparse
from typing import Any

from batchfsm.cli.output import print_json, print_table
from batchfsm.cli.views import history_json, record_json
from batchfsm.config import Settings
from batchfsm.persistence import open_store


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        help="store URL: sqlite:///PATH (default sqlite:///batchfsm.db, or $BATCHFSM_STORE), "
        "memory://, dynamodb://TABLE?region=R&endpoint_url=URL",
    )


def add_parsers(subparsers: Any) -> None:
    init = subparsers.add_parser("init", help="create what the store needs (idempotent)")
    add_store_option(init)
    init.set_defaults(func=run_init)

    status = subparsers.add_parser("status", help="every tracked batch and where it stands")
    add_store_option(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run_status)

    history = subparsers.add_parser("history", help="the audit history of one batch")
    history.add_argument("batch_id")
    add_store_option(history)
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=run_history)


def run_init(args: argparse.Namespace) -> int:
    store = open_store(Settings.from_env(store_url=args.store).store_url)
    try:
        store.init()
        print(f"store ready: {store.url}")
    finally:
        store.close()
    return 0


def run_status(args: argparse.Namespace) -> int:
    store = open_store(Settings.from_env(store_url=args.store).store_url)
    try:
        records = store.list_batches()
    finally:
        store.close()
    rows = [record_json(r) for r in records]
    if args.json:
        print_json({"batches": rows})
        return 0
    print_table(
        f"{len(rows)} tracked batches",
        ["batch", "job", "state", "done/failed/total", "deadline", "owed"],
        [
            (
                r["batch_id"],
                r["job_id"],
                r["state"] + (" (lost)" if r["lost"] else ""),
                _counts(r["request_counts"]),
                r["deadline"],
                ", ".join(r["pending_effects"]),
            )
            for r in rows
        ],
    )
    return 0


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return ""
    return f"{counts['completed']}/{counts['failed']}/{counts['total']}"


def run_history(args: argparse.Namespace) -> int:
    store = open_store(Settings.from_env(store_url=args.store).store_url)
    try:
        store.load(args.batch_id)
        entries = store.history(args.batch_id)
    finally:
        store.close()
    rows = [history_json(e) for e in entries]
    if args.json:
        print_json({"batch_id": args.batch_id, "history": rows})
        return 0
    print_table(
        f"history of {args.batch_id}",
        ["#", "kind", "what", "line", "at"],
        [(i, r["kind"], _describe(r), r.get("line"), r.get("at")) for i, r in enumerate(rows, 1)],
    )
    return 0


def _describe(row: dict[str, Any]) -> str:
    if row["kind"] == "transition":
        flags = [f for f in ("implied", "undocumented") if row.get(f)]
        return f"{row['from']} -> {row['to']}" + (f" ({', '.join(flags)})" if flags else "")
    if row["kind"] == "rejection":
        return f"rejected {row['status']!r} ({row['reason']}) in {row['current']}"
    return f"{row['name']} {row.get('detail') or ''}".strip()
