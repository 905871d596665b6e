"""Run the demo: the whole job end to end, with no API key and no network.

:func:`run_demo` starts the sandbox in-process (a real HTTP server on a free 127.0.0.1
port, which the official ``openai`` client reaches through ``base_url``), submits the
five jobs of :mod:`batchfsm.demo.scenario`, polls them with the live progress display,
cancels one batch while it runs, lets the recovery handlers settle every ending, sends
the resulting retry items once (``auto_retry``), and reads back what became of every
request (:mod:`batchfsm.demo.report`).

The sandbox runs on a sped-up clock (``time_scale``, sandbox seconds per real second)
shared with the tracker, so the expiring batch really uses up its 24 h window and the
display counts that window down, in seconds of real time.

Everything lands under ``out``: ``store.db`` (its own SQLite store; the user's
``./batchfsm.db`` is never touched), ``results/``, ``inputs/`` (the generated request
files) and ``lifecycle.mmd`` (plus ``lifecycle.svg`` when Graphviz is installed) with
the paths the batches took. A re-run empties those first. ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` are ignored: the demo only ever talks to its own sandbox, with a
throwaway key it never prints.

The ``batchfsm demo`` command (options, the printed summary, exit codes) is
:mod:`batchfsm.cli.demo`; ``BatchOutcome`` and ``DemoReport`` are re-exported here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

from batchfsm.demo.report import BatchOutcome, DemoReport, collect_outcomes, write_diagrams

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord
    from batchfsm.poller import CycleReport, PollSummary
    from batchfsm.ports import Clock
    from batchfsm.tracker import Tracker

__all__ = ["BatchOutcome", "DemoReport", "run_demo"]

DEFAULT_TIME_SCALE = 3 * 3600.0
"""Sandbox seconds per real second: the 24 h window passes in 8 s."""
MIN_TIME_SCALE, MAX_TIME_SCALE = 600.0, 43_200.0
"""Slower takes hours; faster lets batches end between two polls (the cancel misses)."""
POLL_INTERVAL_S = 2 * 3600.0
QUEUE_FULL_BACKOFF_S = 3 * 3600.0
GIVE_UP_AFTER_S = 48 * 3600.0
LEASE_S = 12 * 3600.0
"""Sandbox seconds: far longer than any effect runs."""
CANCEL_AFTER_S = 4 * 3600.0
"""A batch whose counts stay at zero until it ends (Anthropic's) is cancelled after this
long in progress, since "has done work" cannot be seen."""
_SANDBOX_KEY = "sk-sandbox-demo"  # only ever sent to the in-process sandbox


def run_demo(
    out: Path,
    *,
    time_scale: float = DEFAULT_TIME_SCALE,
    progress: TextIO | None = None,
    live: bool | None = None,
    say: Callable[[str], object] = print,
    provider: str = "openai",
) -> DemoReport:
    """Run the demo into ``out``; ``progress`` gets the poll display (live on a tty).
    ``provider="anthropic"`` rehearses Anthropic's Message Batches instead: the
    sandbox's Anthropic dialect, the official ``anthropic`` client and the four jobs of
    :mod:`batchfsm.demo.anthropic`."""
    script = _script(provider)
    script.prepare_out(out)
    with _sandbox(provider, out, time_scale) as (base_url, clock, tracker):
        window = 24 * 3600 / time_scale
        say(f"sandbox on {base_url} (24 h of batch time pass in {window:.0f} s)")
        batch_of = _submit_jobs(tracker, out / "inputs", say, script)
        canceller = _Canceller(tracker, batch_of["demo-cancelled"], say)
        summary = _poll_until_settled(
            tracker, canceller, clock, time_scale, progress=progress, live=live
        )
        report = _read_back(tracker, out, summary, canceller.cancelled, script)
    report.diagrams = write_diagrams(out, report.batches)
    report.provider = provider
    return report


def _script(provider: str) -> ModuleType:
    """The demo's script for ``provider``: its jobs, requests, endpoint and scenario."""
    if provider not in ("openai", "anthropic"):
        raise ValueError(f"the demo rehearses openai or anthropic, not {provider!r}")
    name = "anthropic" if provider == "anthropic" else "scenario"
    return importlib.import_module(f"batchfsm.demo.{name}")


@contextmanager
def _sandbox(provider: str, out: Path, time_scale: float) -> Iterator[tuple[str, Clock, Tracker]]:
    """The sandbox speaking ``provider``'s API and a tracker on ``out`` that reaches only
    it, sharing its sped-up clock: (its URL, the clock, the tracker)."""
    if provider == "anthropic":
        from batchfsm.demo.anthropic import sandbox_tracker

        with sandbox_tracker(
            out, time_scale, lease_seconds=LEASE_S, poll_interval=POLL_INTERVAL_S
        ) as made:
            yield made
        return
    from batchfsm.demo import scenario as script
    from batchfsm.sandbox import SandboxApp, World, running_sandbox

    # A cold import of the openai client can take a second, hours of sandbox time: load
    # it before the sandbox clock starts, so the first poll sees the batches young.
    importlib.import_module("batchfsm.gateway")
    app = SandboxApp(World(script.demo_scenario(), time_scale=time_scale))
    clock = app.world.clock  # the tracker shares the sandbox's sped-up time
    with (
        running_sandbox(app=app) as sandbox,
        _sandbox_tracker(out, sandbox.base_url, clock) as tracker,
    ):
        yield sandbox.base_url, clock, tracker


def _submit_jobs(
    tracker: Tracker, inputs: Path, say: Callable[[str], object], script: ModuleType
) -> dict[str, str]:
    """Write and submit every scripted job; the first batch of each, by job id."""
    from batchfsm.jobs.submit import submit_job

    batch_of: dict[str, str] = {}
    for job in script.DEMO_JOBS:
        path = script.write_requests(job, inputs)
        submitted = submit_job(tracker, path, script.ENDPOINT, job_id=job.job_id)
        batch_of[job.job_id] = submitted.launched[0]
        say(
            f"submitted {path} as {submitted.launched[0]}: {job.requests} requests, "
            f"scripted to: {job.label}"
        )
    return batch_of


def _poll_until_settled(
    tracker: Tracker,
    canceller: _Canceller,
    clock: Clock,
    time_scale: float,
    *,
    progress: TextIO | None,
    live: bool | None,
) -> PollSummary:
    """Poll on the sandbox clock, retrying once, until every batch has ended."""
    from batchfsm.cli.progress import make_progress
    from batchfsm.jobs.retry import Backoff
    from batchfsm.poller import Poller

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
        return poller.run(
            until_done=True,
            interval=POLL_INTERVAL_S,
            timeout=GIVE_UP_AFTER_S,
            auto_retry=True,
        )


def _read_back(
    tracker: Tracker, out: Path, summary: PollSummary, cancelled: list[str], script: ModuleType
) -> DemoReport:
    """What became of every batch and request, from the store (no diagrams yet)."""
    from batchfsm.ledger.records import ItemState

    labels = {job.job_id: (job.label, job.expected.value) for job in script.DEMO_JOBS}
    return DemoReport(
        out=out,
        done=summary.done,
        cycles=summary.cycles,
        batches=collect_outcomes(tracker.store, out / "results", labels),
        cancelled=cancelled,
        waiting_for_retry=tracker.store.count_ledger()[ItemState.RETRY],
    )


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
            worked = counts is not None and bool(counts.completed)
            if record.state is BatchStatus.IN_PROGRESS and (worked or self._long(record)):
                cancelled = cancel_batch(self.tracker, self.batch_id)
                self.cancelled.append(self.batch_id)
                done = (
                    f"{counts.completed} of {counts.total} done"
                    if worked and counts
                    else (f"{CANCEL_AFTER_S / 3600:g} h in progress")
                )
                self.say(
                    f"cancelling {self.batch_id} mid-run ({done}): now {cancelled.state.value}"
                )

    def _long(self, record: BatchRecord) -> bool:
        """In progress for :data:`CANCEL_AFTER_S` (for counts that stay at zero)."""
        started = record.snapshot.in_progress_at if record.snapshot else None
        now = self.tracker.clock.now().timestamp()
        return started is not None and now >= started + CANCEL_AFTER_S


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
        lease_seconds=LEASE_S,
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
