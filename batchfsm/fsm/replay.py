"""Replay a recorded status history through the rulebook, with no I/O.

Users record what their own pollers saw (one Batch object per line) and replay it in
tests; we ship example histories built from real reports. Every observation is applied
in order from ``validating``, exactly as a live poller would apply it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, Hop, OutboxEntry, RejectionEntry
from batchfsm.fsm.spec import BatchStatus


@dataclass(frozen=True)
class Observation:
    """One line of a history: the snapshot, its line number and when it was seen."""

    line: int
    snapshot: BatchSnapshot
    observed_at: datetime | None = None


@dataclass(frozen=True)
class ReplayResult:
    final_state: BatchStatus
    transitions: tuple[Hop, ...]
    rejected: tuple[RejectionEntry, ...]
    effects: tuple[OutboxEntry, ...]
    record: BatchRecord


def _as_observation(
    index: int, item: Observation | BatchSnapshot | Mapping[str, Any]
) -> Observation:
    if isinstance(item, Observation):
        return item
    if isinstance(item, BatchSnapshot):
        return Observation(line=index, snapshot=item)
    return Observation(line=index, snapshot=BatchSnapshot.model_validate(item))


def replay(
    observations: Iterable[Observation | BatchSnapshot | Mapping[str, Any]],
    *,
    batch_id: str = "replay",
) -> ReplayResult:
    """Apply each observation in order; plain snapshots are numbered from 1."""
    book = rulebook()
    record = BatchRecord(batch_id=batch_id)
    hops: list[Hop] = []
    rejected: list[RejectionEntry] = []
    effects: list[OutboxEntry] = []
    for index, item in enumerate(observations, start=1):
        obs = _as_observation(index, item)
        applied = book.apply(record, obs.snapshot, line=obs.line, at=obs.observed_at)
        record = applied.record
        hops.extend(applied.hops)
        effects.extend(applied.effects)
        if applied.rejection is not None:
            rejected.append(applied.rejection)
    return ReplayResult(
        final_state=record.state,
        transitions=tuple(hops),
        rejected=tuple(rejected),
        effects=tuple(effects),
        record=record,
    )
