"""Running what a batch owes, exactly once: the outbox half of the tracker's loop.

An effect committed with a state is *owed* (``OutboxEntry.done`` is False). A poller
runs it only after taking its lease in a conditional write (so two pollers never run it
at once), and marks it done only after the handler returned (so a crash leaves it owed,
not lost). A handler that raises is logged with its traceback and its error recorded
on the effect, which stays owed for the next drain; the poller lives on.

Inline effects (:attr:`~batchfsm.handlers.base.HandlerRegistry.inline`: ``watch``) skip
the lease: their whole output is recorded on the batch, so they run before the commit
that makes them owed and are marked done in it (:meth:`OutboxRunner.settle_inline`).
Alerts a handler raises are remembered on the record, so a re-run never repeats them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchfsm.errors import AuthenticationFailedError, HandlerError
from batchfsm.fsm.models import BatchRecord, EventEntry, OutboxEntry
from batchfsm.handlers.base import EffectContext, HandlerRegistry, RecoveryHandler
from batchfsm.persistence.optimistic import retry_on_conflict

if TYPE_CHECKING:
    from batchfsm.ports import Clock, JobStore

__all__ = ["OutboxRunner"]

logger = logging.getLogger("batchfsm.tracker")

ContextFactory = Callable[[BatchRecord, OutboxEntry | None], EffectContext]


@dataclass(frozen=True)
class OutboxRunner:
    """Runs one poller's share of the owed effects. ``owner`` names this poller in
    leases; ``context`` builds the ports a handler may touch."""

    store: JobStore
    handlers: HandlerRegistry
    clock: Clock
    owner: str
    lease_seconds: float
    context: ContextFactory

    def drain(self, record: BatchRecord, ran: list[str], failed: list[str]) -> BatchRecord:
        """Run every effect ``record`` owes; keys run go to ``ran``, failures to
        ``failed``. Returns the record as last committed."""
        for effect in record.pending_effects:
            record = self._run(record, effect.key, ran, failed)
        return record

    def heartbeat(self, record: BatchRecord) -> BatchRecord:
        """Run the handlers that watch every observation of a live batch and commit
        the alerts they raise (each once per key)."""
        for name in self.handlers.on_heartbeat:
            handler = self.handlers.get(name)
            if handler is None:
                continue
            ctx = self.context(record, None)
            handler(ctx)
            if ctx.notes:
                record = self._commit_notes(record, ctx)
        return record

    def settle_inline(self, record: BatchRecord) -> tuple[BatchRecord, list[EventEntry], list[str]]:
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
            ctx = self.context(record, effect)
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

    # -- one effect ------------------------------------------------------------------------
    def _run(self, known: BatchRecord, key: str, ran: list[str], failed: list[str]) -> BatchRecord:
        owed = next((e for e in known.outbox if e.key == key), None)
        if owed is not None and self._is_inline(owed.handler):
            return self._run_inline(known, key, ran, failed)
        record, effect = self._claim(known, key)
        if effect is None:
            return record
        handler = self.handlers.get(effect.handler)
        if handler is None:
            # An effect nobody can run is a deployment error: keep it owed, say so loudly.
            logger.error("batch %s: no handler registered for %s", known.batch_id, effect.handler)
            failed.append(key)
            return self._finish(record, key, error=f"no handler {effect.handler!r}")
        ctx = self.context(record, effect)
        try:
            error = self._call(handler, ctx, key)
        except AuthenticationFailedError as exc:  # the key: release the lease, end the run
            failed.append(key)
            self._finish(record, key, error=f"{type(exc).__name__}: {exc}", ctx=ctx)
            raise
        (ran if error is None else failed).append(key)
        return self._finish(record, key, error=error, ctx=ctx)

    def _claim(self, known: BatchRecord, key: str) -> tuple[BatchRecord, OutboxEntry | None]:
        """Take the lease on one effect; (record, None) when it is done or leased.

        Starts from ``known`` (the record this poller last committed or loaded) instead
        of reading it again: the commit is conditional on its version, so a stale
        ``known`` costs one refused write and a reload, never a wrong claim.
        """

        def attempt(retry: bool) -> tuple[BatchRecord, OutboxEntry | None]:
            record = self.store.load(known.batch_id) if retry else known
            entry = self._takeable(record, key)
            if entry is None:
                return record, None
            claimed = record.with_effect(
                key,
                lease_owner=self.owner,
                attempts=entry.attempts + 1,
                lease_until=self.clock.now() + timedelta(seconds=self.lease_seconds),
            )
            record = self.store.commit(claimed, expected_version=record.version)
            return record, next(e for e in record.outbox if e.key == key)

        return retry_on_conflict(attempt, subject=f"batch {known.batch_id} effect {key}")

    def _finish(
        self,
        known: BatchRecord,
        key: str,
        *,
        error: str | None,
        ctx: EffectContext | None = None,
    ) -> BatchRecord:
        """Release the lease: done on success, owed with its error on failure."""

        def attempt(retry: bool) -> BatchRecord:
            record = self.store.load(known.batch_id) if retry else known
            updated, notes = _released(record, key, error=error, ctx=ctx)
            return self.store.commit(updated, expected_version=record.version, history=notes)

        return retry_on_conflict(attempt, subject=f"batch {known.batch_id} effect {key}")

    def _run_inline(
        self, known: BatchRecord, key: str, ran: list[str], failed: list[str]
    ) -> BatchRecord:
        """An inline effect still owed (it raised before, or an older poller recorded it):
        run it and mark it done, or record its error, in one conditional write."""

        def attempt(retry: bool) -> tuple[BatchRecord, str | None]:
            record = self.store.load(known.batch_id) if retry else known
            entry = self._takeable(record, key)
            handler = self.handlers.get(entry.handler) if entry is not None else None
            if entry is None or handler is None:
                return record, None
            ctx = self.context(record, entry)
            error = self._call(handler, ctx, key)
            updated, notes = _released(
                record, key, error=error, ctx=ctx, attempts=entry.attempts + 1
            )
            saved = self.store.commit(updated, expected_version=record.version, history=notes)
            (ran if error is None else failed).append(key)
            return saved, error

        record, _error = retry_on_conflict(attempt, subject=f"batch {known.batch_id} effect {key}")
        return record

    def _commit_notes(self, known: BatchRecord, ctx: EffectContext) -> BatchRecord:
        """Commit what a heartbeat handler recorded, starting from the record the poll
        holds; reloads only after a refused write."""

        def attempt(retry: bool) -> BatchRecord:
            record = self.store.load(known.batch_id) if retry else known
            notes, fresh = _fresh_notes(record, ctx)
            if not notes:
                return record
            updated = record.model_copy(update={"alerts": record.alerts + fresh})
            return self.store.commit(updated, expected_version=record.version, history=notes)

        return retry_on_conflict(attempt, subject=f"batch {known.batch_id} alerts")

    def _is_inline(self, name: str) -> bool:
        return name in self.handlers.inline and self.handlers.get(name) is not None

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
        except AuthenticationFailedError:
            raise  # not this effect's fault: every effect would fail the same way
        except HandlerError as exc:  # explained in one line: no traceback
            logger.error(
                "batch %s: effect %s failed: %s",
                batch_id,
                key,
                exc.detail,
                extra={"batch_id": batch_id, "effect": key, "cause": exc.detail},
            )
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            logger.exception(
                "batch %s: effect %s failed",
                batch_id,
                key,
                extra={"batch_id": batch_id, "effect": key},
            )
            return f"{type(exc).__name__}: {exc}"
        return None


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
