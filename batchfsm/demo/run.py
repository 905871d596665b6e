"""``batchfsm demo``: the whole job end to end, with no API key and no network.

It starts the sandbox in-process (a real HTTP server on a free 127.0.0.1 port, which
the official ``openai`` client reaches through ``base_url``), submits the five jobs of
:mod:`batchfsm.demo.scenario`, polls them with the live progress display, cancels one
batch while it runs, lets the recovery handlers settle every ending, sends the
resulting retry items once (``auto_retry``), and prints what became of every request.

The sandbox runs on a sped-up clock (``--time-scale``, sandbox seconds per real
second) shared with the tracker, so the expiring batch really uses up its 24 h window
and the display counts that window down, in seconds of real time.

Everything lands under ``--out`` (default ``./batchfsm-demo``): ``store.db`` (its own
SQLite store; the user's ``./batchfsm.db`` is never touched), ``results/``,
``inputs/`` (the generated request files) and ``lifecycle.mmd`` (plus
``lifecycle.svg`` when Graphviz is installed) with the paths the batches took. A
re-run empties those first. ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` are ignored: the
demo only ever talks to its own sandbox, with a throwaway key it never prints.

``batchfsm demo --json`` prints, instead of the tables::

    {"out": "batchfsm-demo", "store_url": "sqlite:///batchfsm-demo/store.db",
     "done": true, "cycles": 15, "cancelled": ["batch_..."],
     "batches": [{"batch_id", "job_id", "fate", "expected_state", "state",
                  "path": ["validating", ...], "succeeded", "retry", "failed",
                  "results": "batchfsm-demo/results/<job>/<batch>.jsonl" | null,
                  "parent_batch_id": null | "batch_..."}],
     "retry_batches": ["batch_..."], "waiting_for_retry": 0,
     "diagram": {"mermaid": ".../lifecycle.mmd", "svg": ".../lifecycle.svg" | null}}

Per batch, ``retry`` counts the requests that batch handed to the retry round (for the
retry round's own batches: those still waiting), ``failed`` those failed for good.

This module runs the demo; reading back and presenting what it did is
:mod:`batchfsm.demo.report` (whose ``BatchOutcome`` and ``DemoReport`` are re-exported).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from batchfsm.demo.report import (
    BatchOutcome,
    DemoReport,
    collect_outcomes,
    print_summary,
    write_diagrams,
)

if TYPE_CHECKING:
    from batchfsm.poller import CycleReport
    from batchfsm.ports import Clock
    from batchfsm.tracker import Tracker

__all__ = ["BatchOutcome", "DemoReport", "add_parser", "run", "run_demo"]

DEFAULT_OUT = Path("batchfsm-demo")
DEFAULT_TIME_SCALE = 3 * 3600.0
"""Sandbox seconds per real second: the 24 h window passes in 8 s."""
MIN_TIME_SCALE, MAX_TIME_SCALE = 600.0, 43_200.0
POLL_INTERVAL_S = 2 * 3600.0
QUEUE_FULL_BACKOFF_S = 3 * 3600.0
GIVE_UP_AFTER_S = 48 * 3600.0
_SANDBOX_KEY = "sk-sandbox-demo"  # only ever sent to the in-process sandbox


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    # Slower takes hours; faster lets batches end between two polls (the cancel misses).
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batchfsm.cli.output import print_json

    say = (lambda _text: None) if args.json else print
    report = run_demo(
        args.out,
        time_scale=args.time_scale,
        progress=sys.stderr if args.json else sys.stdout,
        say=say,
    )
    if args.json:
        print_json(report.to_json())
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


def run_demo(
    out: Path,
    *,
    time_scale: float = DEFAULT_TIME_SCALE,
    progress: TextIO | None = None,
    live: bool | None = None,
    say: Callable[[str], object] = print,
) -> DemoReport:
    """Run the demo into ``out``; ``progress`` gets the poll display (live on a tty)."""
    from batchfsm.cli.progress import make_progress
    from batchfsm.demo import scenario as script
    from batchfsm.jobs.retry import Backoff
    from batchfsm.jobs.submit import submit_job
    from batchfsm.ledger.records import ItemState
    from batchfsm.poller import Poller
    from batchfsm.sandbox import SandboxApp, World, running_sandbox

    script.prepare_out(out)
    # A cold import of the openai client can take a second, hours of sandbox time: load
    # it before the sandbox clock starts, so the first poll sees the batches young.
    importlib.import_module("batchfsm.gateway")
    app = SandboxApp(World(script.demo_scenario(), time_scale=time_scale))
    clock = app.world.clock  # the tracker shares the sandbox's sped-up time
    with (
        running_sandbox(app=app) as sandbox,
        _sandbox_tracker(out, sandbox.base_url, clock) as tracker,
    ):
        window = 24 * 3600 / time_scale
        say(f"sandbox on {sandbox.base_url} (24 h of batch time pass in {window:.0f} s)")
        batch_of: dict[str, str] = {}
        for job in script.DEMO_JOBS:
            path = script.write_requests(job, out / "inputs")
            submitted = submit_job(tracker, path, script.ENDPOINT, job_id=job.job_id)
            batch_of[job.job_id] = submitted.launched[0]
            say(
                f"submitted {path} as {submitted.launched[0]}: {job.requests} requests, "
                f"scripted to: {job.label}"
            )
        canceller = _Canceller(tracker, batch_of["demo-cancelled"], say)
        with make_progress(progress, live=live, clock=clock) as display:

            def on_cycle(report: CycleReport) -> None:
                display.on_cycle(report)
                canceller.on_cycle(report)

            poller = Poller(
                tracker,
                backoff=Backoff(QUEUE_FULL_BACKOFF_S, 4 * QUEUE_FULL_BACKOFF_S),
                clock=clock,
                sleep=lambda seconds: time.sleep(seconds / time_scale),
                on_cycle=on_cycle,
            )
            summary = poller.run(
                until_done=True,
                interval=POLL_INTERVAL_S,
                timeout=GIVE_UP_AFTER_S,
                auto_retry=True,
            )
        labels = {job.job_id: (job.label, job.expected.value) for job in script.DEMO_JOBS}
        outcomes = collect_outcomes(tracker.store, out / "results", labels)
        report = DemoReport(
            out=out,
            done=summary.done,
            cycles=summary.cycles,
            batches=outcomes,
            cancelled=canceller.cancelled,
            waiting_for_retry=tracker.store.count_ledger()[ItemState.RETRY],
        )
    report.diagrams = write_diagrams(out, outcomes)
    return report


class _Canceller:
    """Cancels one batch, through batchfsm's own cancel, once it runs and has done work."""

    def __init__(self, tracker: Tracker, batch_id: str, say: Callable[[str], object]) -> None:
        self.tracker, self.batch_id, self.say = tracker, batch_id, say
        self.cancelled: list[str] = []

    def on_cycle(self, report: CycleReport) -> None:
        from batchfsm.fsm.spec import BatchStatus
        from batchfsm.jobs.cancel import cancel_batch

        if self.cancelled:
            return
        for poll in report.reports:
            record = poll.record
            if record is None or record.batch_id != self.batch_id:
                continue
            counts = record.snapshot.request_counts if record.snapshot else None
            if record.state is BatchStatus.IN_PROGRESS and counts and counts.completed:
                cancelled = cancel_batch(self.tracker, self.batch_id)
                self.cancelled.append(self.batch_id)
                self.say(
                    f"cancelling {self.batch_id} mid-run ({counts.completed} of "
                    f"{counts.total} done): now {cancelled.state.value}"
                )


@contextmanager
def _sandbox_tracker(out: Path, base_url: str, clock: Clock) -> Iterator[Tracker]:
    """A tracker on ``out/store.db`` whose client can only reach the sandbox."""
    import openai

    from batchfsm.config import Settings
    from batchfsm.gateway import OpenAIGateway
    from batchfsm.persistence.sqlite.store import SQLiteJobStore
    from batchfsm.wiring import build_runtime

    # Explicit base_url and key: the user's OPENAI_* variables play no part, and
    # trust_env=False keeps a configured HTTP proxy away from 127.0.0.1.
    client = openai.OpenAI(
        api_key=_SANDBOX_KEY,
        base_url=base_url,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    settings = Settings(
        store_url=f"sqlite:///{out / 'store.db'}",
        results_dir=out / "results",
        lease_seconds=12 * 3600.0,  # sandbox seconds: far longer than any effect runs
        poll_interval=POLL_INTERVAL_S,
    )
    (out / "work").mkdir()
    runtime = build_runtime(
        settings,
        store=SQLiteJobStore(out / "store.db"),
        gateway=OpenAIGateway(client),
        clock=clock,
        workdir=out / "work",
    )
    try:
        yield runtime.tracker
    finally:
        runtime.close()
        client.close()
