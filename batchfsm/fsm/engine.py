"""The rulebook: one ``transitions.Machine`` that every batch is checked against.

Batches are never registered on the machine: each registered model costs about 7 KB,
and ``add_model`` scans the model list, so registering n of them costs n². Instead each
observation gets a tiny cursor object carrying only ``state``; events are fired on it through
``machine.events[trigger].trigger(cursor)``, so the machine itself validates every hop,
and the entry callback (which does no I/O) records the hop and the effects owed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, Literal, cast

from transitions import EventData, Machine, MachineError, Transition

from batchfsm.errors import InvalidTransitionError, TerminalStateError, UnknownStatusError
from batchfsm.fsm.models import (
    BatchRecord,
    BatchSnapshot,
    HistoryEntry,
    Hop,
    OutboxEntry,
    RejectionEntry,
    RejectReason,
    TransitionEntry,
)
from batchfsm.fsm.paths import Graph, Path, graph
from batchfsm.fsm.spec import (
    EFFECTS,
    INITIAL,
    TERMINAL,
    TRIGGERS,
    BatchStatus,
    by_spelling,
    parse_status,
)

logger = logging.getLogger(__name__)

Outcome = Literal["heartbeat", "advanced", "rejected"]


class _Cursor:
    """The only thing the machine ever sees: a state plus what the callbacks recorded."""

    __slots__ = ("effects", "hops", "state")

    def __init__(self, state: BatchStatus) -> None:
        self.state: str = state.value
        self.hops: list[Hop] = []
        self.effects: list[OutboxEntry] = []


class Applied:
    """The result of applying one observation: the new record and what to persist.

    ``changed`` is False for a heartbeat that carried nothing new and for a rejection
    identical to the one last recorded, the cases where a poller must not write to the
    store. (A plain slotted class: it is built
    on every poll of every batch, and a frozen dataclass costs a setattr per field.)
    """

    __slots__ = ("changed", "effects", "hops", "outcome", "record", "rejection")

    def __init__(
        self,
        outcome: Outcome,
        record: BatchRecord,
        *,
        changed: bool,
        hops: tuple[Hop, ...] = (),
        effects: tuple[OutboxEntry, ...] = (),
        rejection: RejectionEntry | None = None,
    ) -> None:
        self.outcome = outcome
        self.record = record
        self.changed = changed
        self.hops = hops
        self.effects = effects
        self.rejection = rejection

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The entries to append to the batch's history with this commit."""
        if self.rejection is not None:
            return (self.rejection,)
        return tuple(TransitionEntry(hop=h) for h in self.hops)


class Rulebook:
    """Checks and applies observations. Build one per process (see :func:`rulebook`)."""

    def __init__(self, lifecycle: Graph | None = None) -> None:
        self.graph = lifecycle or graph()
        states = [{"name": s.value, "on_enter": [self._entered]} for s in BatchStatus]
        transitions = [
            {"trigger": TRIGGERS[dest], "source": src.value, "dest": dest.value}
            for (src, dest) in self.graph.edges
        ]
        self.machine = Machine(
            model=None,
            states=states,
            transitions=transitions,
            initial=INITIAL.value,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )

    # -- the machine's callback: pure, records only -------------------------------------
    def _entered(self, event: EventData) -> None:
        cursor = cast(_Cursor, event.model)
        transition = cast(Transition, event.transition)
        source = by_spelling(transition.source)
        dest = by_spelling(cast(str, transition.dest))
        kw: Mapping[str, Any] = event.kwargs
        implied: bool = kw["implied"]
        edge = self.graph.edges[(source, dest)]
        hop = Hop.trusted(
            source, dest, implied, edge.undocumented, kw["line"], kw["at"], kw["entered_at"]
        )
        cursor.hops.append(hop)
        cursor.effects.extend(_owed(dest, implied))

    # -- public API ----------------------------------------------------------------------
    def rehydrate(self, stored_state: object, *, batch_id: str) -> BatchStatus:
        """Validate a stored state string; anything outside the eight is corruption."""
        status = parse_status(stored_state)
        if status is None:
            raise UnknownStatusError(stored_state, batch_id=batch_id, where="the store")
        return status

    def fire(
        self,
        record: BatchRecord,
        dest: BatchStatus,
        *,
        line: int,
        implied: bool = False,
        at: datetime | None = None,
        entered_at: int | None = None,
    ) -> tuple[BatchStatus, list[Hop], list[OutboxEntry]]:
        """Fire one edge from the record's state; raises a typed error when refused."""
        return self._fire_path(
            record,
            (record.state, dest),
            line=line,
            at=at,
            entered={dest: entered_at},
            last_implied=implied,
        )

    def _fire_path(
        self,
        record: BatchRecord,
        path: Path,
        *,
        line: int,
        at: datetime | None,
        entered: Mapping[BatchStatus, int | None],
        last_implied: bool = False,
    ) -> tuple[BatchStatus, list[Hop], list[OutboxEntry]]:
        cursor = _Cursor(record.state)
        for index, dest in enumerate(path[1:], start=1):
            current = by_spelling(cursor.state)
            if current in TERMINAL:
                raise TerminalStateError(
                    batch_id=record.batch_id,
                    current=current,
                    requested=dest,
                    reason="current state is terminal",
                )
            trigger = TRIGGERS.get(dest)
            if trigger is None:
                raise InvalidTransitionError(
                    batch_id=record.batch_id,
                    current=current,
                    requested=dest,
                    reason="no edge leads there",
                )
            implied = index < len(path) - 1 or last_implied
            try:
                self.machine.events[trigger].trigger(
                    cursor, implied=implied, line=line, at=at, entered_at=entered.get(dest)
                )
            except MachineError as exc:
                raise InvalidTransitionError(
                    batch_id=record.batch_id,
                    current=current,
                    requested=dest,
                    reason="no edge in the allowed graph",
                ) from exc
        return by_spelling(cursor.state), cursor.hops, cursor.effects

    def force(
        self,
        record: BatchRecord,
        dest: BatchStatus | str,
        *,
        line: int = 0,
        at: datetime | None = None,
    ) -> Applied:
        """Move along one edge on request (not from an observation); refuses invalid moves."""
        status = parse_status(dest)
        if status is None:
            raise UnknownStatusError(dest, batch_id=record.batch_id, where="a forced move")
        new_state, hops, effects = self.fire(record, status, line=line, at=at)
        return self._advanced(
            record, new_state, hops, effects, snapshot=record.snapshot, at=at, count=False
        )

    def apply(
        self,
        record: BatchRecord,
        snapshot: BatchSnapshot,
        *,
        line: int | None = None,
        at: datetime | None = None,
    ) -> Applied:
        """Apply one observed snapshot. Never raises for what the API says: a refused
        observation comes back as ``outcome="rejected"`` with its reason recorded."""
        seq = line if line is not None else record.observations + 1
        observed = parse_status(snapshot.status)
        current = record.state
        if observed is None:
            return self._rejected(record, snapshot, seq, at, "unknown")
        if observed == current:
            return self._heartbeat(record, snapshot, seq, at)
        if current in TERMINAL:
            return self._rejected(record, snapshot, seq, at, "terminal")
        path = self.choose_path(current, observed, snapshot)
        if path is None:
            # With the shipped spec every non-ancestor is reachable; a custom graph may
            # leave a state neither before nor after: still a read we cannot apply.
            return self._rejected(record, snapshot, seq, at, "stale")
        entered = {s: snapshot.entered_at(s) for s in path[1:]}
        new_state, hops, effects = self._fire_path(record, path, line=seq, at=at, entered=entered)
        for hop in hops:
            if hop.undocumented:
                logger.warning(
                    "batch %s: undocumented edge %s -> %s applied (line %d)",
                    record.batch_id,
                    hop.source,
                    hop.dest,
                    hop.line,
                    extra={
                        "batch_id": record.batch_id,
                        "current": hop.source.value,
                        "observed": hop.dest.value,
                    },
                )
        return self._advanced(
            record, new_state, hops, effects, snapshot=snapshot, at=at, count=True
        )

    def choose_path(
        self, current: BatchStatus, observed: BatchStatus, snapshot: BatchSnapshot
    ) -> Path | None:
        """The states passed through between two polls.

        When the snapshot stamps the observed state, trust its timestamps: the path must
        visit exactly the later states it stamps. Otherwise (or if they form no allowed
        path) take the path with the fewest undocumented edges, then the fewest hops.
        """
        candidates = self.graph.paths.get((current, observed), ())
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        if snapshot.entered_at(observed) is not None:
            stamped = {
                s
                for s in self.graph.reachable[current]
                if s != observed and snapshot.entered_at(s) is not None
            }
            for path in candidates:
                if set(path[1:-1]) == stamped:
                    return path
        return min(candidates, key=lambda p: (self.graph.undocumented_count(p), len(p)))

    # -- outcomes ------------------------------------------------------------------------
    def _heartbeat(
        self, record: BatchRecord, snapshot: BatchSnapshot, seq: int, at: datetime | None
    ) -> Applied:
        if record.snapshot == snapshot and record.last_rejection is None:
            return Applied("heartbeat", record, changed=False)
        updated = record.model_copy(
            update={
                "snapshot": snapshot,
                "observed_at": at or record.observed_at,
                "observations": max(record.observations, seq),
                "last_rejection": None,
            }
        )
        return Applied("heartbeat", updated, changed=True)

    def _rejected(
        self,
        record: BatchRecord,
        snapshot: BatchSnapshot,
        seq: int,
        at: datetime | None,
        reason: RejectReason,
    ) -> Applied:
        entry = RejectionEntry(
            line=seq,
            status=snapshot.status,
            reason=reason,
            current=record.state,
            at=at,
            snapshot=snapshot.model_dump(mode="json", exclude_defaults=True),
        )
        fingerprint = f"{reason}:{snapshot.status}"
        if record.last_rejection == fingerprint:
            # Said already and nothing accepted since: the caller gets the rejection
            # (a replay lists every line), the store gets no write, the log no repeat.
            logger.debug(
                "batch %s: %s observation %r again (line %d)",
                record.batch_id,
                reason,
                snapshot.status,
                seq,
            )
            return Applied("rejected", record, changed=False, rejection=entry)
        log = logger.error if reason == "unknown" else logger.warning
        log(
            "batch %s: rejected %s observation %r in state %s (line %d)",
            record.batch_id,
            reason,
            snapshot.status,
            record.state.value,
            seq,
            extra={
                "batch_id": record.batch_id,
                "current": record.state.value,
                "observed": snapshot.status,
            },
        )
        updated = record.model_copy(
            update={"observations": max(record.observations, seq), "last_rejection": fingerprint}
        )
        return Applied("rejected", updated, changed=True, rejection=entry)

    def _advanced(
        self,
        record: BatchRecord,
        new_state: BatchStatus,
        hops: list[Hop],
        effects: list[OutboxEntry],
        *,
        snapshot: BatchSnapshot | None,
        at: datetime | None,
        count: bool,
    ) -> Applied:
        seq = hops[-1].line if hops else record.observations
        update = {
            "state": new_state,
            "snapshot": snapshot,
            "observed_at": at or record.observed_at,
            "observations": max(record.observations, seq) if count else record.observations,
            "outbox": record.outbox + tuple(effects),
        }
        if record.last_rejection is not None:  # (rare: skipped, it costs every apply)
            update["last_rejection"] = None
        updated = record.model_copy(update=update)
        return Applied("advanced", updated, changed=True, hops=tuple(hops), effects=tuple(effects))


@cache
def _owed(state: BatchStatus, implied: bool) -> tuple[OutboxEntry, ...]:
    """The outbox entries entering ``state`` owes; immutable, so built once and shared."""
    return tuple(
        OutboxEntry(
            key=OutboxEntry.key_for(state, spec.handler),
            state=state,
            handler=spec.handler,
            implied=implied,
        )
        for spec in EFFECTS[state]
        if spec.when_implied or not implied
    )


@cache
def rulebook() -> Rulebook:
    """The process-wide rulebook, built on first use."""
    logging.getLogger("transitions").setLevel(logging.WARNING)
    return Rulebook()
