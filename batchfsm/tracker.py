"""Observe → apply → commit → drain the outbox: the one loop every poller runs.

The order is what makes crashes harmless. A snapshot is applied by the pure rulebook;
the new state, its history and the effects it owes are committed in one conditional
write; only then do effects run, each claimed with a lease (so two pollers never run it
at once) and marked done after it returns (so a crash leaves it owed, not lost).

Inline effects (:attr:`~batchfsm.handlers.base.HandlerRegistry.inline`: ``watch``) are
the exception: their whole output is recorded on the batch, so they run before that
commit and are marked done in it. A transition into a non-terminal state then costs
one write, not three (commit, claim, finish), and still runs its effect exactly once.
Running owed effects is :class:`~batchfsm.handlers.outbox.OutboxRunner`'s; every
conditional write here and there goes through
:func:`~batchfsm.persistence.optimistic.retry_on_conflict`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from batchfsm.config import Settings
from batchfsm.errors import (
    AuthenticationFailedError,
    BatchNotFoundError,
    ConflictRetriesExhaustedError,
    GatewayError,
    UndecodableSnapshotError,
)
from batchfsm.fsm.engine import Applied, rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry, HistoryEntry, OutboxEntry
from batchfsm.fsm.spec import LOST_EFFECT
from batchfsm.handlers.base import EffectContext, HandlerRegistry
from batchfsm.handlers.outbox import OutboxRunner
from batchfsm.persistence.optimistic import retry_on_conflict
from batchfsm.ports import BatchGateway, Clock, SystemClock

if TYPE_CHECKING:
    from batchfsm.ports import JobStore, ResultSink

logger = logging.getLogger(__name__)


PollKind = Literal["heartbeat", "advanced", "rejected", "lost", "error"]


@dataclass
class PollReport:
    """What one poll did to one batch (for progress displays and the Lambda contract)."""

    batch_id: str
    state: str
    kind: PollKind
    changed: bool = False
    effects_run: list[str] = field(default_factory=list)
    effects_failed: list[str] = field(default_factory=list)
    error: str | None = None
    record: BatchRecord | None = None


def default_owner() -> str:
    """A lease owner id unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Tracker:
    def __init__(
        self,
        store: JobStore,
        gateway: BatchGateway | None,
        handlers: HandlerRegistry,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        sink: ResultSink | None = None,
        workdir: Path | None = None,
        owner: str | None = None,
        on_event: Callable[[PollReport], None] | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.handlers = handlers
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.sink = sink
        self.workdir = workdir
        self.owner = owner or default_owner()
        self.on_event = on_event
        self.book = rulebook()
        self.outbox = OutboxRunner(
            store=store,
            handlers=handlers,
            clock=self.clock,
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            context=self._context,
        )

    # -- tracking ------------------------------------------------------------------------
    def track(
        self,
        snapshot: BatchSnapshot,
        *,
        job_id: str | None = None,
        parent_batch_id: str | None = None,
        items: int | None = None,
        input_tokens: int | None = None,
    ) -> BatchRecord:
        """Start tracking a batch from its first snapshot (usually ``create``'s reply);
        ``items``: how many ledger items it carries, ``input_tokens`` their tokens."""
        if not snapshot.id:
            raise ValueError("a snapshot without an id cannot be tracked")
        record = BatchRecord(
            batch_id=snapshot.id,
            job_id=job_id,
            parent_batch_id=parent_batch_id,
            items=items,
            input_tokens=input_tokens,
            # what the gateway sends with every create (None: unknown, e.g. a custom one)
            output_expires_after=getattr(self.gateway, "output_expires_after", None),
        )
        applied = self.book.apply(record, snapshot, at=self.clock.now())
        record, notes, _ran = self.outbox.settle_inline(applied.record)
        history: tuple[HistoryEntry, ...] = (*applied.history, *notes)
        if parent_batch_id:
            history = (
                EventEntry(
                    name="retry_of",
                    at=self.clock.now(),
                    detail={"parent_batch_id": parent_batch_id},
                ),
                *history,
            )
        return self.store.create(record, history)

    def apply(
        self, batch_id: str, snapshot: BatchSnapshot, *, known: BatchRecord | None = None
    ) -> tuple[Applied, BatchRecord]:
        """Apply one snapshot and commit it; a stale writer reloads and re-applies.

        ``known``: the record as this poller just read it, used instead of reading it
        again. The commit is conditional on its version, so a stale one costs a refused
        write and a reload, never a wrong state.
        """
        applied, record, _ran = self._apply(batch_id, snapshot, known)
        return applied, record

    def _apply(
        self,
        batch_id: str,
        snapshot: BatchSnapshot,
        known: BatchRecord | None,
        via: str | None = None,
    ) -> tuple[Applied, BatchRecord, list[str]]:
        """:meth:`apply`, also naming the inline effects its commit ran. ``via``: the
        path that asked for this observation, recorded with a transition it makes."""

        def attempt(retry: bool) -> tuple[Applied, BatchRecord, list[str]]:
            record = known if known is not None and not retry else self.store.load(batch_id)
            applied = self.book.apply(record, snapshot, at=self.clock.now())
            if not applied.changed:
                return applied, record, []
            settled, notes, ran = self.outbox.settle_inline(applied.record)
            noticed: tuple[HistoryEntry, ...] = ()
            if via is not None and applied.outcome == "advanced":
                noticed = (EventEntry(name="noticed", at=self.clock.now(), detail={"via": via}),)
            saved = self.store.commit(
                settled,
                expected_version=record.version,
                history=(*noticed, *applied.history, *notes),
            )
            return applied, saved, ran

        return retry_on_conflict(attempt, subject=f"batch {batch_id}")

    def observe(
        self,
        batch_id: str,
        snapshot: BatchSnapshot | None = None,
        *,
        known: BatchRecord | None = None,
        via: str | None = None,
    ) -> PollReport:
        """One poll of one batch: a single retrieve, apply, commit, then owed effects.
        ``known``: the record just read (see :meth:`apply`). ``via``: which path asked
        (``"poll"``, ``"webhook"``); a transition this observation makes is recorded
        with it (a ``noticed`` event), so the history says which path saw the end."""
        if snapshot is None:
            if self.gateway is None:
                raise ValueError("no gateway configured and no snapshot given")
            try:
                snapshot = self.gateway.retrieve(batch_id)
            except BatchNotFoundError as exc:
                return self._mark_lost(batch_id, exc)
            except UndecodableSnapshotError as exc:
                return self._undecodable(batch_id, exc, known)
            except AuthenticationFailedError:
                raise  # the key, not this batch: every other batch would fail the same way
            except GatewayError as exc:
                record = known or self.store.load(batch_id)
                logger.warning("batch %s: retrieve failed: %s", batch_id, exc)
                return self._report(
                    PollReport(batch_id, record.state.value, "error", error=str(exc), record=record)
                )
        applied, record, ran = self._apply(batch_id, snapshot, known, via)
        report = PollReport(
            batch_id, record.state.value, applied.outcome, changed=applied.changed, record=record
        )
        report.effects_run.extend(ran)
        if not record.terminal:
            record = self.outbox.heartbeat(record)
        record = self._drain(record, report)
        report.record = record
        report.state = record.state.value
        return self._report(report)

    def _drain(self, record: BatchRecord, report: PollReport) -> BatchRecord:
        return self.outbox.drain(record, report.effects_run, report.effects_failed)

    def drain(self, batch_id: str) -> PollReport:
        """Run the effects a batch still owes, without polling the API."""
        record = self.store.load(batch_id)
        report = PollReport(batch_id, record.state.value, "heartbeat", record=record)
        report.record = self._drain(record, report)
        return self._report(report)

    def poll_once(
        self, *, due: Callable[[BatchRecord], bool] | None = None, via: str | None = None
    ) -> list[PollReport]:
        """Look at every batch the store lists as needing attention, once. A batch whose
        writes keep losing races is reported (``error``) and left for the next poll;
        it never stops the others. ``due``: which live batches to retrieve this time (a
        stretched schedule); owed effects are drained whatever it says. ``via``: see
        :meth:`observe`."""
        reports = []
        for record in self.store.list_attention():
            try:
                if record.terminal or record.lost:
                    reports.append(self.drain(record.batch_id))
                elif due is None or due(record):
                    reports.append(self.observe(record.batch_id, known=record, via=via))
            except ConflictRetriesExhaustedError as exc:
                logger.error("batch %s: %s", record.batch_id, exc)
                reports.append(
                    self._report(
                        PollReport(
                            record.batch_id,
                            record.state.value,
                            "error",
                            error=str(exc),
                            record=record,
                        )
                    )
                )
        return reports

    # -- effects -------------------------------------------------------------------------
    def _context(self, record: BatchRecord, effect: OutboxEntry | None) -> EffectContext:
        return EffectContext(
            record=record,
            effect=effect,
            store=self.store,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings,
            sink=self.sink,
            workdir=self.workdir,
        )

    def _undecodable(
        self, batch_id: str, exc: UndecodableSnapshotError, known: BatchRecord | None
    ) -> PollReport:
        """Record an answer that is no Batch object on this batch only (history, counter;
        once per change, like a repeated rejection) and keep everything it had."""

        def attempt(retry: bool) -> tuple[BatchRecord, bool]:
            record = known if known is not None and not retry else self.store.load(batch_id)
            changed = record.with_undecodable(exc, at=self.clock.now())
            if changed is None:
                return record, False
            updated, entry = changed
            saved = self.store.commit(updated, expected_version=record.version, history=[entry])
            return saved, True

        record, recorded = retry_on_conflict(attempt, subject=f"batch {batch_id}")
        log = logger.error if recorded else logger.debug
        log("batch %s: answer not recorded as a snapshot: %s", batch_id, exc,
            extra={"batch_id": batch_id, "undecodable": record.undecodable})  # fmt: skip
        report = PollReport(
            batch_id, record.state.value, "rejected", recorded, error=str(exc), record=record
        )
        if not record.terminal:  # deadline alerts still come, from what the batch had
            record = self.outbox.heartbeat(record)
        report.record = self._drain(record, report)
        return self._report(report)

    def _mark_lost(self, batch_id: str, exc: GatewayError) -> PollReport:
        def attempt(_retry: bool) -> BatchRecord:
            record = self.store.load(batch_id)
            if record.lost:
                return record
            key = f"lost#{LOST_EFFECT}"
            effect = OutboxEntry(key=key, state=record.state, handler=LOST_EFFECT, implied=False)
            updated = record.model_copy(update={"lost": True, "outbox": (*record.outbox, effect)})
            event = EventEntry(
                name="lost",
                at=self.clock.now(),
                detail={"status_code": exc.status_code, "error": str(exc)},
            )
            record = self.store.commit(updated, expected_version=record.version, history=[event])
            logger.error("batch %s: the API no longer knows this batch (%s)", batch_id, exc)
            return record

        record = retry_on_conflict(attempt, subject=f"batch {batch_id}")
        report = PollReport(
            batch_id, record.state.value, "lost", changed=True, error=str(exc), record=record
        )
        report.record = self._drain(record, report)
        return self._report(report)

    def _report(self, report: PollReport) -> PollReport:
        if self.on_event is not None:
            self.on_event(report)
        return report
