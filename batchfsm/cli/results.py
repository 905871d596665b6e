"""``batchfsm results --job J [-o FILE] [--order custom_id|input]``: one job's results.

Every result delivered for the job, over all its batches and retry rounds, merged into
one JSONL stream (each line ``{"custom_id", "batch_id", "response"}``, each request
once) in ``custom_id`` order or the order of the input file
(:func:`batchfsm.jobs.export.iter_results`). To stdout, or with ``-o`` to a file of mode
0600 written all at once. What did not succeed is counted on stderr, with the command
that exports those requests' lines (``items --state failed --export``).

Exit codes: 0 written (also when some requests have no result yet); 2 an unknown job,
or results kept in S3 (this command reads a results directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from batchfsm.cli.output import plural, print_line
from batchfsm.cli.store import add_store_option, open_existing
from batchfsm.errors import ConfigError
from batchfsm.jobs.export import ORDERS, iter_results
from batchfsm.ledger.records import ItemState

if TYPE_CHECKING:
    from batchfsm.jobs.export import JobResult

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "results",
        help="one job's results, merged over its batches and retries, as one JSONL file",
        description="Write every result delivered for a job, over all its batches and "
        "retry rounds, as one JSONL stream ({custom_id, batch_id, response} per line, "
        "each request once), in custom_id order or the input file's order.",
    )
    parser.add_argument("--job", required=True, help="the job id (see `batchfsm status`)")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE",
        help="write to FILE (mode 0600, all at once) instead of stdout",
    )  # fmt: skip
    parser.add_argument(
        "--order", choices=ORDERS, default="custom_id",
        help="custom_id (default) or input: the order of the lines in the submitted file",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=None,
        help="where results were delivered (default ./batchfsm-results or $BATCHFSM_RESULTS_DIR)",
    )  # fmt: skip
    add_store_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batchfsm.config import Settings

    settings = Settings.from_env(store_url=args.store, results_dir=args.results_dir)
    if (settings.results_location or "").startswith("s3://"):
        raise ConfigError(
            "results are kept in S3 (BATCHFSM_RESULTS); this command reads a results "
            "directory: pass --results-dir"
        )
    store = open_existing(args.store)
    try:
        results = iter_results(store, settings.results_dir, args.job, order=args.order)
        if args.output is None:
            written = _write(results, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            written = _write_file(results, args.output)
        counts = store.count_ledger(args.job)
    finally:
        store.close()
    _summary(args, written, counts)
    return 0


def _write(results: Iterable[JobResult], out: BinaryIO) -> int:
    written = 0
    for result in results:
        out.write(result.line + b"\n")
        written += 1
    return written


def _write_file(results: Iterable[JobResult], path: Path) -> int:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            written = _write(results, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def _summary(args: argparse.Namespace, written: int, counts: dict[ItemState, int]) -> None:
    total = sum(counts.values())
    where = f" to {args.output}" if args.output is not None else ""
    others = ", ".join(
        f"{n:,} {state.value}"
        for state, n in counts.items()
        if n and state is not ItemState.SUCCEEDED
    )
    line = f"wrote {plural(written, 'result')} of {plural(total, 'request')}{where}"
    line += f", in {args.order} order"
    if others:
        line += (
            f" (no result: {others}; `batchfsm items --job {args.job} --state failed "
            "--export FILE` writes the failed requests' lines)"
        )
    print_line(line, sys.stderr)
