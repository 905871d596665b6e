"""``batchfsm demo``: the end-to-end rehearsal, with no API key and no network.

The demo itself (sandbox, submit, poll, cancel, retry, read-back) is
:func:`batchfsm.demo.run.run_demo`; this module turns ``--out``, ``--time-scale`` and
``--json`` into that call and prints what it returns: the closing summary for people
(:func:`batchfsm.demo.report.print_summary`), or for ``--json`` only
:func:`batchfsm.cli.views.demo_json` on stdout, the progress lines then going to stderr.

Exit codes: 0 every batch ended as scripted; 1 one did not, or the batches did not
settle in time; 2 ``--out`` is a directory the demo did not make (nothing is removed
then) or cannot be written (a read-only folder: the message names the path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchfsm.cli.output import print_json
from batchfsm.cli.views import demo_json
from batchfsm.demo.report import print_summary
from batchfsm.demo.run import DEFAULT_TIME_SCALE, MAX_TIME_SCALE, MIN_TIME_SCALE, run_demo

__all__ = ["DEFAULT_OUT", "add_parser", "run"]

DEFAULT_OUT = Path("batchfsm-demo")


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not MIN_TIME_SCALE <= value <= MAX_TIME_SCALE:
        raise argparse.ArgumentTypeError(
            f"expected a number from {MIN_TIME_SCALE:g} to {MAX_TIME_SCALE:g}, not {text!r}"
        )
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo against a local sandbox (no API key, no network)",
        description="Submit five jobs to an in-process sandbox, follow their batches to "
        "completed / failed lines / expired / failed / cancelled, retry what can be "
        "retried, and summarise. Ignores OPENAI_API_KEY and OPENAI_BASE_URL.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory for the demo's store, inputs, results and diagram; emptied of "
        "them on each run (default ./batchfsm-demo)",
    )
    parser.add_argument(
        "--time-scale",
        type=_time_scale,
        default=DEFAULT_TIME_SCALE,
        metavar="X",
        help="sandbox seconds per real second, 600 to 43200 (default %(default)g: the "
        "24 h window passes in 8 s, the whole demo in about 10 s)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary only")
    parser.add_argument(
        "--provider",
        choices=("openai", "anthropic"),
        default="openai",
        help="whose Batch API the sandbox speaks: anthropic rehearses Message Batches with "
        "the anthropic client (four jobs: Anthropic has no failed batch); ignores "
        "ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL too (default %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    say = (lambda _text: None) if args.json else print
    report = run_demo(
        args.out,
        time_scale=args.time_scale,
        progress=sys.stderr if args.json else sys.stdout,
        say=say,
        provider=getattr(args, "provider", "openai"),
    )
    if args.json:
        print_json(demo_json(report))
    else:
        print_summary(report)
    for batch in report.surprises:
        print(
            f"batchfsm demo: {batch.fate} ended {batch.state}, expected {batch.expected_state}",
            file=sys.stderr,
        )
    if not report.done:
        print("batchfsm demo: the batches did not settle in time", file=sys.stderr)
    return 0 if report.done and not report.surprises else 1
