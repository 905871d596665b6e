"""The poll loop, as a library call: what ``batchfsm poll`` runs, for your own pollers.

One *cycle* is: close open submit intents (only when some are old enough to be
orphans), poll every batch the store lists as needing attention (one retrieve each,
apply, commit, run owed effects under a lease: :meth:`Tracker.poll_once`), then, with
``auto_retry``, send the ledger's ``retry`` items as new batches (queue-full items after
their backoff). :meth:`Poller.run` repeats cycles with a sleep between them.

"Done" means nothing is left that a poller could move: no batch needs attention (every
one terminal or lost, with its owed effects run), no submit intent is open, and, only
with ``auto_retry``, no item waits in ``retry``. Several pollers may run on one store at
once: the tracker's version checks and leases make each effect run once.

Time comes from an injected :class:`~batchfsm.ports.Clock` and waiting from an injected
``sleep``, so a test drives a 24-hour run with a :class:`~batchfsm.ports.FrozenClock`::

    clock = FrozenClock()
    poller = Poller(tracker, clock=clock, sleep=clock.advance)
    summary = poller.run(until_done=True, interval=60, timeout=26 * 3600)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from batchfsm.errors import AuthenticationFailedError, GatewayError
from batchfsm.fsm.models import BatchRecord
from batchfsm.jobs.admission import Admission
from batchfsm.jobs.claims import release_stranded
from batchfsm.jobs.concurrent_poll import poll_concurrently
from batchfsm.jobs.input_file import Limits
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.reconcile import ReconcileReport, reconcile_intents
from batchfsm.jobs.retry import Backoff, Waiting, retry_items
from batchfsm.ledger.records import ItemState
from batchfsm.webhooks.schedule import StretchedSchedule

if TYPE_CHECKING:
    from batchfsm.ports import Clock
    from batchfsm.tracker import PollReport, Tracker

__all__ = ["CycleReport", "PollSummary", "Poller"]

logger = logging.getLogger(__name__)


@dataclass
class CycleReport:
    """What one cycle did."""

    number: int
    at: datetime
    reports: list[PollReport]
    """One per batch looked at (see :class:`~batchfsm.tracker.PollReport`)."""
    retried: list[BatchRecord] = field(default_factory=list)
    """Retry batches created by this cycle (``auto_retry``)."""
    waiting: list[Waiting] = field(default_factory=list)
    reconciled: ReconcileReport | None = None
    released: list[str] = field(default_factory=list)
    """Stranded items handed back to ``retry``
    (:func:`batchfsm.jobs.claims.release_stranded`)."""
    errors: list[str] = field(default_factory=list)
    """API failures the cycle survived (retrieve, retry upload, reconcile)."""
    open_intents: int = 0
    retry_items: int = 0
    admitted: list[BatchRecord] = field(default_factory=list)
    """Batches created from queued requests as their model's budget allowed."""
    queued: int = 0
    """Requests still waiting for room in their model's enqueued-token budget."""
    attention: int = 0
    """Batches still needing attention after the cycle."""

    @property
    def done(self) -> bool:
        return self.attention == 0 and self.open_intents == 0 and self.queued == 0


@dataclass
class PollSummary:
    """The outcome of :meth:`Poller.run`."""

    done: bool
    timed_out: bool
    cycles: int
    started_at: datetime
    finished_at: datetime
    batches: dict[str, BatchRecord] = field(default_factory=dict)
    """Every batch seen during the run, as last seen."""
    retried: list[str] = field(default_factory=list)
    retry_items: int = 0
    """Items still waiting in ``retry`` at the end."""
    errors: int = 0


class Poller:
    """Runs poll cycles over every batch of ``tracker``'s store.

    :param backoff: the wait for queue-full items before ``auto_retry`` resends them
        (default: ``Settings.backoff_base`` / ``backoff_cap``).
    :param limits: the per-batch limits retry batches are split to.
    :param clock, sleep: injected time (default: the tracker's clock, ``time.sleep``).
    :param on_cycle: called after every cycle (progress displays, metrics).
    :param webhooks: webhooks are configured, so polling is the fallback: a batch that
        has not moved is polled less and less often, up to ``Settings.poll_ceiling``
        (:class:`~batchfsm.webhooks.schedule.StretchedSchedule`), and a transition a poll
        makes is recorded ``via="poll"``. Default: ``Settings.webhooks_enabled``.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        backoff: Backoff | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], object] = time.sleep,
        on_cycle: Callable[[CycleReport], None] | None = None,
        webhooks: bool | None = None,
        queue_limits: Mapping[str, int] | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.tracker = tracker
        self.concurrency = concurrency or tracker.settings.poll_concurrency
        settings = tracker.settings
        if webhooks if webhooks is not None else settings.webhooks_enabled:
            self.schedule: StretchedSchedule | None = StretchedSchedule(
                interval=settings.poll_interval,
                ceiling=settings.poll_ceiling,
                clock=clock or tracker.clock,
            )
        else:
            self.schedule = None
        self.backoff = backoff or Backoff(settings.backoff_base, settings.backoff_cap)
        self.limits = limits
        limits_by_model = settings.queue_limits if queue_limits is None else queue_limits
        self.admission = Admission(tracker, limits_by_model, limits or Limits())
        self.clock = clock or tracker.clock
        self.sleep = sleep
        self.on_cycle = on_cycle
        self._cycles = 0

    def cycle(self, *, auto_retry: bool = False) -> CycleReport:
        """One cycle: reconcile orphans, poll every batch needing attention, retry."""
        self._cycles += 1
        store = self.tracker.store
        report = CycleReport(number=self._cycles, at=self.clock.now(), reports=[])
        if store.list_intents(open_only=True):
            report.reconciled = reconcile_intents(Intents.of(self.tracker))
            report.errors.extend(f"intent {i}: API failed" for i in report.reconciled.failed)
        if self.schedule is None:
            report.reports = poll_concurrently(self.tracker, self.concurrency)
        else:
            report.reports = poll_concurrently(
                self.tracker, self.concurrency, due=self.schedule.due, via="poll"
            )
            self.schedule.update(report.reports)
        report.errors.extend(f"{r.batch_id}: {r.error}" for r in report.reports if r.error)
        self._admit(report, auto_retry=auto_retry)
        if auto_retry:
            try:
                result = retry_items(self.tracker, limits=self.limits, backoff=self.backoff)
            except AuthenticationFailedError:
                raise  # no cycle can succeed with this key: end the run, loudly
            except GatewayError as exc:
                logger.warning("auto-retry failed this cycle: %s", exc)
                report.errors.append(f"retry: {exc}")
            else:
                report.retried, report.waiting = result.batches, result.waiting
        report.attention = len(store.list_attention())
        report.open_intents = len(store.list_intents(open_only=True))
        counts = store.count_ledger()
        if report.attention == 0 and report.open_intents == 0 and counts[ItemState.PENDING]:
            # Nothing can still send or settle these: claimed by an intent that closed
            # without them. Retry items go back to retry (sent next cycle).
            for job in store.list_jobs():
                report.released.extend(release_stranded(store, job.job_id))
            counts = store.count_ledger() if report.released else counts
        report.retry_items = counts[ItemState.RETRY]
        report.queued = counts[ItemState.QUEUED]
        if self.on_cycle is not None:
            self.on_cycle(report)
        return report

    def run(
        self,
        *,
        until_done: bool = False,
        max_cycles: int | None = None,
        interval: float | None = None,
        timeout: float | None = None,
        auto_retry: bool = False,
    ) -> PollSummary:
        """Cycle until done (``until_done``), ``max_cycles`` cycles, or ``timeout``
        seconds; with none of them, until interrupted. ``interval`` defaults to
        ``Settings.poll_interval``."""
        interval = self.tracker.settings.poll_interval if interval is None else interval
        if interval < 0 or (timeout is not None and timeout < 0):
            raise ValueError("interval and timeout must not be negative")
        if self.schedule is not None and interval > 0:
            self.schedule.interval = interval
        started = self.clock.now()
        summary = PollSummary(
            done=False, timed_out=False, cycles=0, started_at=started, finished_at=started
        )
        while True:
            report = self.cycle(auto_retry=auto_retry)
            self._fold(summary, report)
            finished = report.done and (not auto_retry or report.retry_items == 0)
            summary.done = finished
            if until_done and finished:
                break
            if max_cycles is not None and summary.cycles >= max_cycles:
                break
            elapsed = (self.clock.now() - started).total_seconds()
            if timeout is not None and elapsed >= timeout:
                summary.timed_out = until_done
                break
            pause = interval
            if timeout is not None:
                pause = min(pause, timeout - elapsed)
            self.sleep(max(0.0, pause))
        summary.finished_at = self.clock.now()
        return summary

    def _admit(self, report: CycleReport, *, auto_retry: bool) -> None:
        """Admission control (:mod:`batchfsm.jobs.admission`), when budgets are set or
        requests wait in the queue (one index read, not a count of the whole ledger)."""
        store = self.tracker.store
        if (
            not self.admission.limits
            and next(store.iter_ledger(state=ItemState.QUEUED), None) is None
        ):
            return
        try:
            report.admitted = self.admission.cycle(requeue_retry=auto_retry).launched
        except AuthenticationFailedError:
            raise
        except GatewayError as exc:
            logger.warning("admitting queued requests failed this cycle: %s", exc)
            report.errors.append(f"admission: {exc}")

    def _fold(self, summary: PollSummary, report: CycleReport) -> None:
        summary.cycles += 1
        for record in report.admitted:
            summary.batches[record.batch_id] = record
        for poll in report.reports:
            if poll.record is not None:
                summary.batches[poll.batch_id] = poll.record
        for record in report.retried:
            summary.batches[record.batch_id] = record
            summary.retried.append(record.batch_id)
        summary.retry_items = report.retry_items
        summary.errors += len(report.errors)
