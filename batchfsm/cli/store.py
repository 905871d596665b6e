"""``batchfsm init``, ``status`` and ``history``: what the store knows.

``history --snapshots FILE`` writes what was observed of the batch as a replayable
history (one Batch object per line, :func:`~batchfsm.cli.views.history_snapshots`):
``batchfsm replay FILE`` then walks the same path. ``replay`` also reads the
``history --json`` output as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from batchfsm.cli.output import plural, print_json, print_line, print_table
from batchfsm.cli.views import history_json, history_snapshots, record_json, usage_json
from batchfsm.config import Settings
from batchfsm.fsm.models import BatchRecord
from batchfsm.ledger.records import ItemState
from batchfsm.persistence import open_store
from batchfsm.ports import JobStore


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
    add_json_option(status)
    status.set_defaults(func=run_status)

    history = subparsers.add_parser(
        "history",
        help="the audit history of one batch",
        description="The audit history of one batch: every transition (implied and "
        "undocumented ones flagged), every rejected observation and every event, with "
        "its details. --json and --snapshots FILE are both readable by `batchfsm replay`.",
    )
    history.add_argument("batch_id", metavar="BATCH", help="the batch id (batch_...)")
    add_store_option(history)
    add_json_option(history)
    history.add_argument(
        "--snapshots", type=Path, default=None, metavar="FILE",
        help="write the observed Batch objects to FILE, one per line, for `batchfsm replay`",
    )  # fmt: skip
    history.set_defaults(func=run_history)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON (shapes: the README's JSON shapes)"
    )


def run_init(args: argparse.Namespace) -> int:
    store = open_store(Settings.from_env(store_url=args.store).store_url)
    try:
        store.init()
        print(f"store ready: {store.url}")
    finally:
        store.close()
    return 0


def open_existing(url: str | None) -> JobStore:
    """The store a read command looks at: never created by reading it, so a mistyped
    path says the store does not exist (exit 2) instead of showing an empty one."""
    return open_store(Settings.from_env(store_url=url).store_url, create=False)


def run_status(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        records = store.list_batches()
        queued: list[dict[str, Any]] = [
            {"job_id": job.job_id, "requests": n}
            for job in store.list_jobs()
            if (n := store.count_ledger(job.job_id)[ItemState.QUEUED])
        ]
    finally:
        store.close()
    rows = [record_json(r) for r in records]
    if args.json:
        print_json({"batches": rows, "queued": queued})
        return 0
    for waiting in queued:
        print_line(
            f"job {waiting['job_id']}: {plural(waiting['requests'], 'request')} queued, "
            "waiting for room in the model's enqueued-token budget"
        )
    print_table(
        f"{plural(len(rows), 'tracked batch')}",
        ["batch", "job", "state", "done/failed/total", "deadline", "owed"],
        [
            (
                r["batch_id"],
                r["job_id"],
                r["state"]
                + (" (lost)" if r["lost"] else "")
                + (f" ({r['undecodable']} unreadable)" if r["undecodable"] else ""),
                _counts(r["request_counts"]),
                r["deadline"],
                ", ".join(r["pending_effects"]),
            )
            for r in rows
        ],
    )
    return 0


def _counts(counts: dict[str, int | None] | None) -> str:
    if not counts:
        return ""
    return "/".join(_known(counts[k]) for k in ("completed", "failed", "total"))


def _known(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _spent(record: BatchRecord) -> str:
    """`` (model M, tokens: I in (C cached), O out (R reasoning), T total)``, or ``""``."""
    model = record.snapshot.model if record.snapshot else None
    usage = usage_json(record)
    parts = [f"model {model}"] if model else []
    if usage is not None:
        parts.append(
            f"tokens: {_known(usage['input_tokens'])} in ({_known(usage['cached_tokens'])} "
            f"cached), {_known(usage['output_tokens'])} out "
            f"({_known(usage['reasoning_tokens'])} reasoning), "
            f"{_known(usage['total_tokens'])} total"
        )
    return f" ({', '.join(parts)})" if parts else ""


def run_history(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        record = store.load(args.batch_id)
        entries = store.history(args.batch_id)
    finally:
        store.close()
    rows = [history_json(e) for e in entries]
    if args.snapshots is not None:
        lines = history_snapshots(args.batch_id, rows)
        write_private(args.snapshots, b"".join(orjson.dumps(line) + b"\n" for line in lines))
        print_line(
            f"wrote {plural(len(lines), 'observation')} of {args.batch_id} to {args.snapshots} "
            f"(`batchfsm replay {args.snapshots}` replays them)"
        )
        return 0
    if args.json:
        model = record.snapshot.model if record.snapshot else None
        usage = usage_json(record)
        print_json({"batch_id": args.batch_id, "model": model, "usage": usage, "history": rows})
        return 0
    print_table(
        f"history of {args.batch_id}{_spent(record)}",
        ["#", "kind", "what", "line", "at"],
        [(i, r["kind"], _describe(r), r.get("line"), r.get("at")) for i, r in enumerate(rows, 1)],
    )
    return 0


def _describe(row: dict[str, Any]) -> str:
    if row["kind"] == "transition":
        flags = [f for f in ("implied", "undocumented") if row.get(f)]
        return f"{row['from']} -> {row['to']}" + (f" ({', '.join(flags)})" if flags else "")
    if row["kind"] == "rejection":
        problems = "; ".join(row.get("problems") or ())
        return f"rejected {row['status']!r} ({row['reason']}) in {row['current']}" + (
            f": {problems}" if problems else ""
        )
    details = "; ".join(_fields(row.get("detail") or {}))
    return f"{row['name']}: {details}" if details else str(row["name"])


def _fields(detail: dict[str, Any], prefix: str = "") -> list[str]:
    """An event's details as ``name=value`` fields: nested objects flattened with dots
    (``usage.input_tokens=9``), lists joined with commas, unknown values left out."""
    fields: list[str] = []
    for key, value in detail.items():
        if isinstance(value, dict):
            fields.extend(_fields(value, f"{prefix}{key}."))
        elif isinstance(value, list | tuple):
            shown = ", ".join(
                orjson.dumps(v).decode() if isinstance(v, dict) else str(v) for v in value
            )
            fields.append(f"{prefix}{key}={shown or '(none)'}")
        elif value is not None:
            fields.append(f"{prefix}{key}={value}")
    return fields


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once (a temporary file, then a rename), readable
    by its owner only: exports hold request lines, results and ids."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
