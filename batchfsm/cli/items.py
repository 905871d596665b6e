"""``batchfsm items [--job J] [--batch B] [--state S] [--limit N] [--after ID] [--export FILE]``.

A read command: it never creates a store (a mistyped ``--store`` says the store does
not exist, exit 2), and it never prints a request's original line, which may hold
personal data (:func:`~batchfsm.cli.views.item_json`). ``--export FILE`` writes those
lines, and only them, to a file of mode 0600: ``items --state failed --export
fix.jsonl`` gives the failed requests as they were sent, to correct and submit again.

A job may hold a million requests, so nothing here holds the ledger: entries are read
page by page in (job, custom_id) order and printed, exported or written as JSON one at a
time. ``--limit N`` stops after N and ``--after`` starts after the last ``custom_id`` of
the previous page (``JOB/CUSTOM_ID`` without ``--job``: job ids hold no ``/``); when a
page was cut, stderr names the command for the next one (``--json``: ``next_after``). A
table on a terminal, which must hold its rows to size its columns, stops at
:data:`TERMINAL_ROWS` unless ``--limit`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchfsm.cli.output import (
    is_terminal,
    plural,
    positive_int,
    print_json_list,
    print_line,
    print_long_table,
)
from batchfsm.cli.store import add_json_option, add_store_option, open_existing
from batchfsm.cli.views import item_json
from batchfsm.errors import ConfigError
from batchfsm.ledger.records import ItemState, LedgerEntry

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = ["TERMINAL_ROWS", "add_parser", "run_items"]

TERMINAL_ROWS = 1_000
"""The rows a table on a terminal shows when no ``--limit`` is given."""
COLUMNS = ("job", "custom_id", "state", "attempts", "batches", "last error")


def add_parser(subparsers: Any) -> None:
    items = subparsers.add_parser(
        "items",
        help="the per-request ledger: every request's state, attempts and last error",
        description="Every request of every job (or of one job or batch, or in one "
        "state), in job and custom_id order: its state, attempts, the batches it went "
        "through and its last error. --export FILE writes the matching requests' "
        "original lines instead. --limit and --after page through a large ledger.",
    )
    items.add_argument("--job", default=None, help="only this job's requests")
    items.add_argument("--batch", default=None, help="only requests that went through this batch")
    items.add_argument(
        "--state", choices=[s.value for s in ItemState], default=None,
        help="only requests in this state",
    )  # fmt: skip
    items.add_argument(
        "--limit", type=positive_int, default=None, metavar="N",
        help="at most N requests; when more follow, the command for the next page is "
        f"printed on stderr (a table on a terminal stops at {TERMINAL_ROWS:,} unless "
        "this says otherwise)",
    )  # fmt: skip
    items.add_argument(
        "--after", default=None, metavar="CUSTOM_ID",
        help="start after this request: the last custom_id of the previous page "
        "(JOB/CUSTOM_ID without --job)",
    )  # fmt: skip
    items.add_argument(
        "--export", type=Path, default=None, metavar="FILE",
        help="write the matching requests' original JSONL lines to FILE (mode 0600), "
        "ready to fix and submit again; nothing is printed but a count",
    )  # fmt: skip
    add_json_option(items)
    add_store_option(items)
    items.set_defaults(func=run_items)


class _Page:
    """The entries of one page: at most ``limit``; ``more`` once one more was seen."""

    def __init__(self, entries: Iterator[LedgerEntry], limit: int | None) -> None:
        self.entries, self.limit = entries, limit
        self.count = 0
        self.last: LedgerEntry | None = None
        self.more = False

    def __iter__(self) -> Iterator[LedgerEntry]:
        for entry in self.entries:
            if self.limit is not None and self.count >= self.limit:
                self.more = True
                return
            self.count += 1
            self.last = entry
            yield entry


def run_items(args: argparse.Namespace) -> int:
    after = _after(args)
    capped = args.limit is None and args.export is None and not args.json and is_terminal()
    page_size = TERMINAL_ROWS if capped else args.limit
    store = open_existing(args.store)
    try:
        page = _Page(_entries(store, args, after), page_size)
        if args.export is not None:
            _export(page, args.export)
        elif args.json:
            tail = (lambda: {"next_after": _next_after(args, page)}) if args.limit else None
            print_json_list("items", (item_json(e) for e in page), tail=tail)
        else:
            rows = (_row(item_json(e)) for e in page)
            print_long_table("item", COLUMNS, rows)
    finally:
        store.close()
    if args.export is not None:
        print_line(f"wrote {plural(page.count, 'request line')} to {args.export}")
    if page.more and not args.json:
        _hint(args, page, page_size, capped=capped)
    return 0


def _after(args: argparse.Namespace) -> tuple[str, str] | None:
    """``--after`` as a ledger key: ``(job, custom_id)``."""
    if args.after is None:
        return None
    if args.job is not None:
        return args.job, args.after
    job, slash, custom_id = args.after.partition("/")
    if not slash or not job:
        raise ConfigError(
            f"--after {args.after!r}: without --job it names the job too, as "
            "JOB/CUSTOM_ID (or give --job JOB --after CUSTOM_ID)"
        )
    return job, custom_id


def _entries(
    store: JobStore, args: argparse.Namespace, after: tuple[str, str] | None
) -> Iterator[LedgerEntry]:
    state = ItemState(args.state) if args.state else None
    return store.iter_ledger(args.job, batch_id=args.batch, state=state, after=after)


def _export(page: _Page, path: Path) -> None:
    """The lines, one at a time, to a private temporary file beside ``path``, renamed
    over it at the end: ``path`` is whole or untouched, never half written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as handle:
            for entry in page:
                handle.write(entry.line.rstrip("\n").encode() + b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _row(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item["job_id"], item["custom_id"], item["state"], item["attempts"],
            " ".join(item["batches"]), _error_text(item["last_error"]))  # fmt: skip


def _next_after(args: argparse.Namespace, page: _Page) -> str | None:
    """What ``--after`` takes for the next page; None when nothing follows."""
    if not page.more or page.last is None:
        return None
    if args.job is not None:
        return page.last.custom_id
    return f"{page.last.job_id}/{page.last.custom_id}"


def _hint(args: argparse.Namespace, page: _Page, size: int | None, *, capped: bool) -> None:
    """On stderr, so the rows stay clean: the command that prints the next page."""
    command = ["batchfsm", "items"]
    for option, value in (("--store", args.store), ("--job", args.job),
                          ("--batch", args.batch), ("--state", args.state)):  # fmt: skip
        if value is not None:
            command += [option, value]
    command += ["--after", _next_after(args, page) or "", "--limit", str(size)]
    if args.export is not None:
        command += ["--export", "NEXT_FILE"]
    what = "items" if args.export is None else "request lines"
    text = f"more {what} follow; the next page: {shlex.join(command)}"
    if capped:
        text = (
            f"a table on a terminal stops at {plural(TERMINAL_ROWS, 'item')}: {text} "
            "(or all of them: pipe it, or --json)"
        )
    print_line(text, sys.stderr)


def _error_text(error: dict[str, Any] | None) -> str:
    """The whole message: a terminal table folds it, a pipe gets it on one line."""
    if not error:
        return ""
    code = error.get("code") or error["category"]
    message = " ".join(str(error.get("message") or "").split())
    return f"{code}: {message}" if message else str(code)
