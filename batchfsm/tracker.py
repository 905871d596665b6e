"""Observe → apply → commit → drain the outbox: the one loop every poller runs.

The order is what makes crashes harmless. A snapshot is applied by the pure rulebook;
the new state, its history and the effects it owes are committed in one conditional
write; only then do effects run, each claimed with a lease (so two pollers never run it
at once) and marked done after it returns (so a crash leaves it owed, not lost).

Inline effects (:attr:`~batchfsm.handlers.base.HandlerRegistry.inline`: ``watch``) are
the exception: their whole output is recorded on the batch, so they run before that
commit and are marked done in it. A transition into a non-terminal state then costs
one write, not three (commit, claim, finish), and still runs its effect exactly once.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from batchfsm.config import Settings
from batchfsm.errors import BatchNotFoundError, GatewayError, StaleJobError
from batchfsm.fsm.engine import Applied, rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry, HistoryEntry, OutboxEntry
from batchfsm.handlers.base import EffectContext, HandlerRegistry, RecoveryHandler
from batchfsm.ports import BatchGateway, Clock, SystemClock

if TYPE_CHECKING:
    from batchfsm.ports import JobStore, ResultSink

logger = logging.getLogger(__name__)

LOST_EFFECT = "release_lost"
MAX_CONFLICT_RETRIES = 8

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

    # -- tracking ------------------------------------------------------------------------
    def track(
        self,
        snapshot: BatchSnapshot,
        *,
        job_id: str | None = None,
        parent_batch_id: str | None = None,
        items: int | None = None,
    ) -> BatchRecord:
        """Start tracking a batch from its first snapshot (usually ``create``'s reply);
        ``items``: how many ledger items it carries."""
        if not snapshot.id:
            raise ValueError("a snapshot without an id cannot be tracked")
        record = BatchRecord(
            batch_id=snapshot.id, job_id=job_id, parent_batch_id=parent_batch_id, items=items
        )
        applied = self.book.apply(record, snapshot, at=self.clock.now())
        record, notes, _ran = self._settle_inline(applied.record)
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
        self, batch_id: str, snapshot: BatchSnapshot, known: BatchRecord | None
    ) -> tuple[Applied, BatchRecord, list[str]]:
        """:meth:`apply`, also naming the inline effects its commit ran."""
        record = known
        for _ in range(MAX_CONFLICT_RETRIES):
            record = record or self.store.load(batch_id)
            applied = self.book.apply(record, snapshot, at=self.clock.now())
            if not applied.changed:
                return applied, record, []
            settled, notes, ran = self._settle_inline(applied.record)
            try:
                saved = self.store.commit(
                    settled,
                    expected_version=record.version,
                    history=(*applied.history, *notes),
                )
            except StaleJobError:
                logger.info("batch %s: lost a commit race, re-applying", batch_id)
                record = None
                continue
            return applied, saved, ran
        raise StaleJobError(batch_id, expected_version=-1, actual_version=None)

    def observe(
        self,
        batch_id: str,
        snapshot: BatchSnapshot | None = None,
        *,
        known: BatchRecord | None = None,
    ) -> PollReport:
        """One poll of one batch: a single retrieve, apply, commit, then owed effects.
        ``known``: the record just read (see :meth:`apply`)."""
        if snapshot is None:
            if self.gateway is None:
                raise ValueError("no gateway configured and no snapshot given")
            try:
                snapshot = self.gateway.retrieve(batch_id)
            except BatchNotFoundError as exc:
                return self._mark_lost(batch_id, exc)
            except GatewayError as exc:
                record = known or self.store.load(batch_id)
                logger.warning("batch %s: retrieve failed: %s", batch_id, exc)
                return self._report(
                    PollReport(batch_id, record.state.value, "error", error=str(exc), record=record)
                )
        applied, record, ran = self._apply(batch_id, snapshot, known)
        report = PollReport(
            batch_id, record.state.value, applied.outcome, changed=applied.changed, record=record
        )
        report.effects_run.extend(ran)
        if not record.terminal:
            record = self._heartbeat_handlers(record, report)
        record = self._drain(record, report)
        report.record = record
        report.state = record.state.value
        return self._report(report)

    def drain(self, batch_id: str) -> PollReport:
        """Run the effects a batch still owes, without polling the API."""
        record = self.store.load(batch_id)
        report = PollReport(batch_id, record.state.value, "heartbeat", record=record)
        report.record = self._drain(record, report)
        return self._report(report)

    def poll_once(self) -> list[PollReport]:
        """Look at every batch the store lists as needing attention, once."""
        reports = []
        for record in self.store.list_attention():
            if record.terminal or record.lost:
                reports.append(self.drain(record.batch_id))
            else:
                reports.append(self.observe(record.batch_id, known=record))
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

    def _heartbeat_handlers(self, record: BatchRecord, report: PollReport) -> BatchRecord:
        for name in self.handlers.on_heartbeat:
            handler = self.handlers.get(name)
            if handler is None:
                continue
            ctx = self._context(record, None)
            handler(ctx)
            if ctx.notes:
                record = self._commit_notes(record, ctx)
        return record

    def _commit_notes(self, known: BatchRecord, ctx: EffectContext) -> BatchRecord:
        """Commit what a heartbeat handler recorded (alerts are raised once per key),
        starting from the record the poll holds; reloads only after a refused write."""
        record: BatchRecord | None = known
        for _ in range(MAX_CONFLICT_RETRIES):
            record = record or self.store.load(known.batch_id)
            notes, fresh = _fresh_notes(record, ctx)
            if not notes:
                return record
            updated = record.model_copy(update={"alerts": record.alerts + fresh})
            try:
                return self.store.commit(updated, expected_version=record.version, history=notes)
            except StaleJobError:
                record = None
        return record or self.store.load(known.batch_id)

    def _drain(self, record: BatchRecord, report: PollReport) -> BatchRecord:
        for effect in record.pending_effects:
            record = self._run_effect(record, effect.key, report)
        return record

    def _claim(self, known: BatchRecord, key: str) -> tuple[BatchRecord, OutboxEntry | None]:
        """Take the lease on one effect; (record, None) when it is done or leased.

        Starts from ``known`` (the record this poller last committed or loaded) instead of
        reading it again: the commit is conditional on its version, so a stale ``known``
        costs one refused write and a reload, never a wrong claim.
        """
        batch_id = known.batch_id
        record: BatchRecord | None = known
        for _ in range(MAX_CONFLICT_RETRIES):
            record = record or self.store.load(batch_id)
            entry = self._takeable(record, key)
            if entry is None:
                return record, None
            claimed = record.with_effect(
                key,
                lease_owner=self.owner,
                attempts=entry.attempts + 1,
                lease_until=self.clock.now() + timedelta(seconds=self.settings.lease_seconds),
            )
            try:
                record = self.store.commit(claimed, expected_version=record.version)
            except StaleJobError:
                record = None
                continue
            return record, next(e for e in record.outbox if e.key == key)
        return self.store.load(batch_id), None

    def _finish(
        self,
        known: BatchRecord,
        key: str,
        *,
        error: str | None,
        ctx: EffectContext | None = None,
    ) -> BatchRecord:
        """Release the lease: done on success, owed with its error on failure. Alerts the
        handler raised are remembered on the record, so a re-run never repeats them.
        Starts from the record the claim committed; reloads only after a refused write."""
        batch_id = known.batch_id
        record: BatchRecord | None = known
        for _ in range(MAX_CONFLICT_RETRIES):
            record = record or self.store.load(batch_id)
            updated, notes = _released(record, key, error=error, ctx=ctx)
            try:
                return self.store.commit(updated, expected_version=record.version, history=notes)
            except StaleJobError:
                record = None
                continue
        raise StaleJobError(batch_id, expected_version=-1, actual_version=None)

    def _settle_inline(
        self, record: BatchRecord
    ) -> tuple[BatchRecord, list[EventEntry], list[str]]:
        """Run the owed inline effects on ``record`` (not yet committed): the record with
        them done and their alerts, the notes for its history, the keys run.

        One that raises is left owed, untouched: the drain that follows runs it under a
        lease, which logs the error and records it on the effect.
        """
        notes: list[EventEntry] = []
        ran: list[str] = []
        for effect in record.pending_effects:
            handler = self.handlers.get(effect.handler)
            if handler is None or not self._is_inline(effect.handler):
                continue
            ctx = self._context(record, effect)
            try:
                handler(ctx)
            except Exception:  # not swallowed: left owed, the drain re-runs and reports it
                logger.debug("batch %s: inline %s raised", record.batch_id, effect.key)
                continue
            fresh_notes, fresh = _fresh_notes(record, ctx)
            record = record.with_effect(effect.key, done=True, attempts=effect.attempts + 1)
            if fresh:
                record = record.model_copy(update={"alerts": record.alerts + fresh})
            notes.extend(fresh_notes)
            ran.append(effect.key)
        return record, notes, ran

    def _is_inline(self, name: str) -> bool:
        return name in self.handlers.inline and self.handlers.get(name) is not None

    def _run_inline(self, known: BatchRecord, key: str, report: PollReport) -> BatchRecord:
        """An inline effect still owed (it raised before, or an older poller recorded it):
        run it and mark it done, or record its error, in one conditional write."""
        batch_id = known.batch_id
        record: BatchRecord | None = known
        for _ in range(MAX_CONFLICT_RETRIES):
            record = record or self.store.load(batch_id)
            entry = self._takeable(record, key)
            handler = self.handlers.get(entry.handler) if entry is not None else None
            if entry is None or handler is None:
                return record
            ctx = self._context(record, entry)
            error = self._call(handler, ctx, key)
            updated, notes = _released(
                record, key, error=error, ctx=ctx, attempts=entry.attempts + 1
            )
            try:
                saved = self.store.commit(updated, expected_version=record.version, history=notes)
            except StaleJobError:
                record = None
                continue
            (report.effects_run if error is None else report.effects_failed).append(key)
            return saved
        raise StaleJobError(batch_id, expected_version=-1, actual_version=None)

    def _run_effect(self, known: BatchRecord, key: str, report: PollReport) -> BatchRecord:
        batch_id = known.batch_id
        owed = next((e for e in known.outbox if e.key == key), None)
        if owed is not None and self._is_inline(owed.handler):
            return self._run_inline(known, key, report)
        record, effect = self._claim(known, key)
        if effect is None:
            return record
        handler = self.handlers.get(effect.handler)
        if handler is None:
            # An effect nobody can run is a deployment error: keep it owed, say so loudly.
            logger.error("batch %s: no handler registered for %s", batch_id, effect.handler)
            report.effects_failed.append(key)
            return self._finish(record, key, error=f"no handler {effect.handler!r}")
        ctx = self._context(record, effect)
        error = self._call(handler, ctx, key)
        (report.effects_run if error is None else report.effects_failed).append(key)
        return self._finish(record, key, error=error, ctx=ctx)

    def _takeable(self, record: BatchRecord, key: str) -> OutboxEntry | None:
        """The effect, if it is still owed and no other poller holds a live lease on it."""
        entry = next((e for e in record.outbox if e.key == key), None)
        if entry is None or entry.done:
            return None
        leased = entry.lease_owner and entry.lease_owner != self.owner
        if leased and entry.lease_until is not None and entry.lease_until > self.clock.now():
            return None
        return entry

    def _call(self, handler: RecoveryHandler, ctx: EffectContext, key: str) -> str | None:
        """Run one effect's handler: None, or its error (logged with the traceback; the
        effect stays owed and the poller lives on)."""
        batch_id = ctx.record.batch_id
        try:
            handler(ctx)
        except Exception as exc:
            logger.exception(
                "batch %s: effect %s failed",
                batch_id,
                key,
                extra={"batch_id": batch_id, "effect": key},
            )
            return f"{type(exc).__name__}: {exc}"
        return None

    def _mark_lost(self, batch_id: str, exc: GatewayError) -> PollReport:
        for _ in range(MAX_CONFLICT_RETRIES):
            record = self.store.load(batch_id)
            if record.lost:
                break
            key = f"lost#{LOST_EFFECT}"
            effect = OutboxEntry(key=key, state=record.state, handler=LOST_EFFECT, implied=False)
            updated = record.model_copy(update={"lost": True, "outbox": (*record.outbox, effect)})
            event = EventEntry(
                name="lost",
                at=self.clock.now(),
                detail={"status_code": exc.status_code, "error": str(exc)},
            )
            try:
                record = self.store.commit(
                    updated, expected_version=record.version, history=[event]
                )
            except StaleJobError:
                continue
            logger.error("batch %s: the API no longer knows this batch (%s)", batch_id, exc)
            break
        report = PollReport(
            batch_id, record.state.value, "lost", changed=True, error=str(exc), record=record
        )
        report.record = self._drain(record, report)
        return self._report(report)

    def _report(self, report: PollReport) -> PollReport:
        if self.on_event is not None:
            self.on_event(report)
        return report


def _released(
    record: BatchRecord,
    key: str,
    *,
    error: str | None,
    ctx: EffectContext | None,
    **changes: Any,
) -> tuple[BatchRecord, list[EventEntry]]:
    """``record`` with the effect's lease released (done on success, owed with its error
    on failure) and the alerts its handler raised, plus the notes to record with it."""
    notes, fresh = _fresh_notes(record, ctx)
    updated = record.with_effect(
        key,
        done=error is None,
        lease_owner=None,
        lease_until=None,
        last_error=None if error is None else error[:500],
        **changes,
    )
    if fresh:
        updated = updated.model_copy(update={"alerts": record.alerts + fresh})
    return updated, notes


def _fresh_notes(
    record: BatchRecord, ctx: EffectContext | None
) -> tuple[list[EventEntry], tuple[str, ...]]:
    """A handler's notes minus alerts the record already carries, and the new alert keys."""
    if ctx is None:
        return [], ()
    fresh = tuple(k for k in dict.fromkeys(ctx.raised) if k not in record.alerts)
    notes = [n for n in ctx.notes if n.name != "alert" or n.detail.get("key") in fresh]
    return notes, fresh
