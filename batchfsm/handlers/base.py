"""The contract between the tracker and the recovery handlers.

A handler is called with an :class:`EffectContext` holding everything it may touch;
it does its I/O through those ports only. Handlers must be idempotent: an effect is
marked done only after the handler returns, so a crash in between runs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchfsm.fsm.models import BatchRecord, EventEntry, OutboxEntry
from batchfsm.ports import BatchGateway, Clock

logger = logging.getLogger("batchfsm.alerts")

if TYPE_CHECKING:
    from batchfsm.config import Settings
    from batchfsm.ports import JobStore, ResultSink


@dataclass
class EffectContext:
    record: BatchRecord
    effect: OutboxEntry | None
    """None when the handler runs for a heartbeat rather than from the outbox."""
    store: JobStore
    gateway: BatchGateway | None
    clock: Clock
    settings: Settings
    sink: ResultSink | None = None
    workdir: Path | None = None
    notes: list[EventEntry] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)

    def note(self, name: str, **detail: Any) -> None:
        """Record an event in the batch's history, committed when the effect is done."""
        self.notes.append(EventEntry(name=name, at=self.clock.now(), detail=detail))

    def alert(self, key: str, message: str, **detail: Any) -> bool:
        """Raise an alert once per batch and key: logged at WARNING and recorded in the
        history (as event ``alert``). Returns False if it was raised before."""
        if key in self.record.alerts or key in self.raised:
            return False
        self.raised.append(key)
        logger.warning(
            "batch %s: %s",
            self.record.batch_id,
            message,
            extra={"batch_id": self.record.batch_id, "alert": key},
        )
        self.note("alert", key=key, message=message, **detail)
        return True

    @property
    def now(self) -> datetime:
        return self.clock.now()


class RecoveryHandler(Protocol):
    def __call__(self, ctx: EffectContext) -> None: ...


@dataclass(frozen=True)
class HandlerRegistry:
    """Handler name → handler. ``on_heartbeat`` names those that also run on every
    observation of a non-terminal batch (deadline warnings, stuck-state alerts)."""

    handlers: Mapping[str, RecoveryHandler]
    on_heartbeat: tuple[str, ...] = ()
    inline: frozenset[str] = frozenset()
    """Handlers whose whole output is what they record on the batch (alerts, notes):
    they touch no port but the clock and settings. The tracker runs them inside the
    commit that makes them owed, so they cost no lease and no write of their own, and a
    commit lost to another poller simply discards what they computed."""

    def get(self, name: str) -> RecoveryHandler | None:
        return self.handlers.get(name)
