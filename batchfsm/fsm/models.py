"""Records the engine reads and writes: pure data, validated by pydantic.

A :class:`BatchSnapshot` is what the API said; a :class:`BatchRecord` is what we
believe, plus what we still owe (the outbox). History entries are append-only and live
beside the record in the store, so the record itself stays small.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from batchfsm.fsm.spec import ENTERED_AT_FIELD, TERMINAL, BatchStatus

COMPLETION_WINDOW = timedelta(hours=24)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class BatchErrorItem(BaseModel):
    """One entry of ``batch.errors.data``: why a batch failed validation."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class RequestCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchSnapshot(BaseModel):
    """The Batch object as one retrieve returned it; every decision of a poll uses one.

    ``status`` stays the raw string so that an unknown value can be recorded verbatim.
    Empty-string file ids (seen on clean batches) are normalised to ``None``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str | None = None
    status: str
    endpoint: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    created_at: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    expires_at: int | None = None
    request_counts: RequestCounts | None = None
    errors: tuple[BatchErrorItem, ...] = ()
    metadata: dict[str, str] | None = None

    @field_validator("output_file_id", "error_file_id", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("errors", mode="before")
    @classmethod
    def _flatten_errors(cls, value: object) -> object:
        # The API wraps them: {"object": "list", "data": [...]}; null means none.
        if value is None:
            return ()
        if isinstance(value, Mapping):
            return value.get("data") or ()
        return value

    def entered_at(self, status: BatchStatus) -> int | None:
        value: int | None = getattr(self, ENTERED_AT_FIELD[status])
        return value

    def deadline(self) -> datetime | None:
        """When the 24 h window closes: ``expires_at``, else ``created_at`` + 24 h."""
        if self.expires_at is not None:
            return datetime.fromtimestamp(self.expires_at, UTC)
        if self.created_at is not None:
            return datetime.fromtimestamp(self.created_at, UTC) + COMPLETION_WINDOW
        return None

    @classmethod
    def from_api(cls, obj: Any) -> BatchSnapshot:
        """From an ``openai`` Batch object or a plain mapping."""
        if isinstance(obj, Mapping):
            return cls.model_validate(obj)
        return cls.model_validate(obj.model_dump())


class Hop(_Frozen):
    """One fired edge. ``implied``: we never saw this state, only passed through it."""

    source: BatchStatus = Field(serialization_alias="from", validation_alias="from")
    dest: BatchStatus = Field(serialization_alias="to", validation_alias="to")
    implied: bool
    undocumented: bool
    line: int
    at: datetime | None = None
    entered_at: int | None = None


RejectReason = Literal["stale", "terminal", "unknown"]


class TransitionEntry(_Frozen):
    kind: Literal["transition"] = "transition"
    hop: Hop


class RejectionEntry(_Frozen):
    """An observation we refused; the raw snapshot is kept for diagnosis."""

    kind: Literal["rejection"] = "rejection"
    line: int
    status: str
    reason: RejectReason
    current: BatchStatus
    at: datetime | None = None
    snapshot: dict[str, Any] = Field(default_factory=dict)


class EventEntry(_Frozen):
    """Something that happened to the batch outside the machine (cancel asked, lost...)."""

    kind: Literal["event"] = "event"
    name: str
    at: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


HistoryEntry = Annotated[
    TransitionEntry | RejectionEntry | EventEntry, Field(discriminator="kind")
]


class OutboxEntry(_Frozen):
    """A handler run owed by entering a state, committed together with that state.

    ``key`` is unique per batch because the lifecycle has no cycles: a state is entered
    at most once, so ``state#handler`` names the effect for ever.
    """

    key: str
    state: BatchStatus
    handler: str
    implied: bool
    line: int
    done: bool = False
    attempts: int = 0
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @staticmethod
    def key_for(state: BatchStatus, handler: str) -> str:
        return f"{state.value}#{handler}"


class BatchRecord(_Frozen):
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

    @model_validator(mode="after")
    def _keys_unique(self) -> BatchRecord:
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

    def with_effect(self, key: str, **changes: Any) -> BatchRecord:
        """A copy with one outbox entry changed (e.g. ``done=True``)."""
        if key not in {e.key for e in self.outbox}:
            raise KeyError(f"batch {self.batch_id} owes no effect {key!r}")
        outbox = tuple(e.model_copy(update=changes) if e.key == key else e for e in self.outbox)
        return self.model_copy(update={"outbox": outbox})
