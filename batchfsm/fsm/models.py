"""Records the engine reads and writes: pure data, validated by pydantic.

A :class:`BatchSnapshot` is what the API said; a :class:`BatchRecord` is what we
believe, plus what we still owe (the outbox). History entries are append-only and live
beside the record in the store, so the record itself stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from batchfsm.errors import UndecodableSnapshotError
from batchfsm.fsm.slotted import SlottedModel
from batchfsm.fsm.snapshot import (
    COMPLETION_WINDOW,
    BatchErrorItem,
    BatchSnapshot,
    BatchUsage,
    RequestCounts,
)
from batchfsm.fsm.spec import TERMINAL, BatchStatus
from batchfsm.fsm.wire import problem_fingerprint

__all__ = [
    "COMPLETION_WINDOW",
    "BatchErrorItem",
    "BatchRecord",
    "BatchSnapshot",
    "BatchUsage",
    "EventEntry",
    "HistoryEntry",
    "Hop",
    "OutboxEntry",
    "RejectReason",
    "RejectionEntry",
    "RequestCounts",
    "SlottedModel",
    "TransitionEntry",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


@dataclass(slots=True, kw_only=True, config=ConfigDict(extra="forbid", populate_by_name=True))
class Hop(SlottedModel):
    """One fired edge. ``implied``: we never saw this state, only passed through it.

    A value, like every :class:`SlottedModel`; :meth:`trusted` is its hot-path builder.
    """

    source: BatchStatus = Field(serialization_alias="from", validation_alias="from")
    dest: BatchStatus = Field(serialization_alias="to", validation_alias="to")
    implied: bool
    undocumented: bool
    line: int
    at: datetime | None = None
    entered_at: int | None = None

    @classmethod
    def trusted(
        cls,
        source: BatchStatus,
        dest: BatchStatus,
        implied: bool,
        undocumented: bool,
        line: int,
        at: datetime | None,
        entered_at: int | None,
    ) -> Hop:
        """Build without validation: the engine's own values, on the hot path."""
        hop = object.__new__(cls)
        hop.source = source
        hop.dest = dest
        hop.implied = implied
        hop.undocumented = undocumented
        hop.line = line
        hop.at = at
        hop.entered_at = entered_at
        return hop


RejectReason = Literal["stale", "terminal", "unknown", "undecodable"]
"""Why an observation was refused: an earlier state (``stale``), after the end
(``terminal``), a status outside the eight (``unknown``), or an answer that is not a
Batch object we can read (``undecodable``, see :meth:`BatchRecord.with_undecodable`)."""


class TransitionEntry(_Frozen):
    kind: Literal["transition"] = "transition"
    hop: Hop


class RejectionEntry(_Frozen):
    """An observation we refused; the raw snapshot is kept for diagnosis.

    For an ``undecodable`` answer, ``snapshot`` is the answer as sent (or
    ``{"body": text}``), ``status`` its raw status if it had a string one, and
    ``problems`` says what could not be read, field by field.
    """

    kind: Literal["rejection"] = "rejection"
    line: int
    status: str
    reason: RejectReason
    current: BatchStatus
    at: datetime | None = None
    snapshot: dict[str, Any] = Field(default_factory=dict)
    problems: tuple[str, ...] = ()


class EventEntry(_Frozen):
    """Something that happened to the batch outside the machine (cancel asked, lost...)."""

    kind: Literal["event"] = "event"
    name: str
    at: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


HistoryEntry = Annotated[TransitionEntry | RejectionEntry | EventEntry, Field(discriminator="kind")]


@dataclass(slots=True, config=ConfigDict(extra="forbid"))
class OutboxEntry(SlottedModel):
    """A handler run owed by entering a state, committed together with that state.

    ``key`` is unique per batch because the lifecycle has no cycles: a state is entered
    at most once, so ``state#handler`` names the effect for ever.
    """

    key: str
    state: BatchStatus
    handler: str
    implied: bool
    done: bool = False
    attempts: int = 0
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @staticmethod
    def key_for(state: BatchStatus, handler: str) -> str:
        return f"{state.value}#{handler}"


@dataclass(slots=True, config=ConfigDict(extra="forbid"))
class BatchRecord(SlottedModel):
    """What we know of one batch, as the store keeps it.

    ``version`` is the optimistic-concurrency counter: every commit bumps it and states
    the version it read.
    """

    batch_id: str
    state: BatchStatus = BatchStatus.VALIDATING
    version: int = 0
    job_id: str | None = None
    parent_batch_id: str | None = None
    snapshot: BatchSnapshot | None = None
    observed_at: datetime | None = None
    observations: int = 0
    outbox: tuple[OutboxEntry, ...] = ()
    lost: bool = False
    cancel_requested: bool = False
    alerts: tuple[str, ...] = ()
    """Keys of alerts already raised (deadline warnings, stuck states): each fires once."""
    last_rejection: str | None = None
    """``reason:status`` of the latest rejected observation, until one is accepted. The
    same rejection again (an unknown status the API keeps sending, a lagging replica)
    is then not recorded, logged at ERROR or written to the store on every poll."""
    items: int | None = None
    """How many ledger items the batch was created with (None: not submitted through a
    job). Until the batch is terminal every one of them is ``pending``, so a poll can
    answer with counts without reading the ledger."""
    undecodable: int = 0
    """Answers for this batch that were not a Batch object we could read, each recorded
    in the history; a run of the same defect counts once (as it is recorded once)."""
    input_tokens: int | None = None
    """Input tokens of the requests it was created with, counted at submit (None: not
    counted); what it holds of its model's enqueued-token queue until it ends."""
    output_expires_after: int | None = None
    """The ``output_expires_after`` seconds the batch was created with (None: not sent,
    the files' lifetime is the provider's and unknown); see :meth:`results_expire_at`."""

    @model_validator(mode="after")
    def _keys_unique(self) -> Self:
        keys = [e.key for e in self.outbox]
        if len(keys) != len(set(keys)):
            raise ValueError(f"batch {self.batch_id}: duplicate outbox keys {keys}")
        return self

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def pending_effects(self) -> tuple[OutboxEntry, ...]:
        return tuple(e for e in self.outbox if not e.done)

    @property
    def needs_attention(self) -> bool:
        """Whether a poller must look at it: work owed, or neither terminal nor lost.

        A batch the API no longer knows (404) is not polled again: that would be an
        endless loop of 404s. Its items are released by the effect recorded when lost.
        """
        if any(not e.done for e in self.outbox):
            return True
        return not self.terminal and not self.lost

    def deadline(self) -> datetime | None:
        return self.snapshot.deadline() if self.snapshot else None

    def results_expire_at(self) -> datetime | None:
        """When the output and error files stop being downloadable, if that is known.

        The API counts ``output_expires_after`` from each file's creation, which the
        Batch object does not carry; the files are written while the batch finalizes or
        as it ends, so the earliest of ``finalizing_at`` and its end stamp stands in.
        That can only make the moment early, never late: warnings come in time. None
        before the batch ends, or when the lifetime or the stamps are unknown.
        """
        snap = self.snapshot
        if self.output_expires_after is None or snap is None or not self.terminal:
            return None
        stamps = [
            s
            for s in (snap.finalizing_at, snap.completed_at, snap.expired_at, snap.cancelled_at)
            if s is not None
        ]
        if not stamps:
            return None
        return datetime.fromtimestamp(min(stamps) + self.output_expires_after, UTC)

    def with_undecodable(
        self, error: UndecodableSnapshotError, *, at: datetime | None
    ) -> tuple[BatchRecord, RejectionEntry] | None:
        """The record after an answer it cannot take, and the rejection to record; None
        when the same defect was recorded last and nothing was accepted since (nothing
        to write, nothing to log at ERROR again). State, snapshot and outbox are kept:
        the batch loses nothing it had."""
        fingerprint = problem_fingerprint(error.problems)
        if self.last_rejection == fingerprint:
            return None
        seq = self.observations + 1
        entry = RejectionEntry(
            line=seq,
            status=error.status or "",
            reason="undecodable",
            current=self.state,
            at=at,
            snapshot=dict(error.raw),
            problems=error.problems,
        )
        update = {
            "observations": seq,
            "last_rejection": fingerprint,
            "undecodable": self.undecodable + 1,
        }
        return self.model_copy(update=update), entry

    def with_effect(self, key: str, **changes: Any) -> BatchRecord:
        """A copy with one outbox entry changed (e.g. ``done=True``)."""
        if key not in {e.key for e in self.outbox}:
            raise KeyError(f"batch {self.batch_id} owes no effect {key!r}")
        outbox = tuple(e.model_copy(update=changes) if e.key == key else e for e in self.outbox)
        return self.model_copy(update={"outbox": outbox})
