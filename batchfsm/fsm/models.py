"""Records the engine reads and writes: pure data, validated by pydantic.

A :class:`BatchSnapshot` is what the API said; a :class:`BatchRecord` is what we
believe, plus what we still owe (the outbox). History entries are append-only and live
beside the record in the store, so the record itself stays small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from pydantic.dataclasses import dataclass

from batchfsm.fsm.spec import ENTERED_AT_FIELD, TERMINAL, BatchStatus

COMPLETION_WINDOW = timedelta(hours=24)


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """One TypeAdapter per class, built on first use (never at import)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


class SlottedModel:
    """The BaseModel calls we use, for slotted pydantic dataclasses.

    Records held per tracked batch are slotted dataclasses rather than ``BaseModel``s:
    a BaseModel keeps a ``__dict__`` and a set of the fields it was given, which made a
    tracked batch cost about 6 KB; slots bring it under 1 KB (see bench/bench_engine.py).
    They are values: never mutate one, derive a new one with :meth:`model_copy`. They
    are not declared frozen only because a frozen dataclass pays a slow
    ``object.__setattr__`` per field, which doubled the cost of applying an observation.
    """

    __slots__ = ()
    _field_names: ClassVar[tuple[str, ...]]

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        result: Self = _adapter(cls).validate_python(data)
        return result

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Self:
        result: Self = _adapter(cls).validate_json(data)
        return result

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] = "python",
        by_alias: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = _adapter(type(self)).dump_python(
            self,
            mode=mode,
            by_alias=by_alias,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        return result

    def model_dump_json(
        self, *, by_alias: bool = False, exclude_defaults: bool = False, exclude_none: bool = False
    ) -> str:
        return (
            _adapter(type(self))
            .dump_json(
                self,
                by_alias=by_alias,
                exclude_defaults=exclude_defaults,
                exclude_none=exclude_none,
            )
            .decode()
        )

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A shallow copy with some fields replaced, without re-validation (trusted
        internal updates only; untrusted data goes through ``model_validate``)."""
        cls = type(self)
        clone = object.__new__(cls)
        names = _NAMES.get(cls) or _names(cls)
        if not update:
            for name in names:
                setattr(clone, name, getattr(self, name))
            return clone
        if not update.keys() <= _NAME_SETS[cls]:
            unknown = sorted(set(update) - _NAME_SETS[cls])
            raise AttributeError(f"{cls.__name__} has no field(s) {unknown}")
        for name in names:  # one setattr per field: the copy is on every apply's path
            setattr(clone, name, update[name] if name in update else getattr(self, name))
        return clone


_NAMES: dict[type[Any], tuple[str, ...]] = {}
_NAME_SETS: dict[type[Any], frozenset[str]] = {}


def _names(cls: type[Any]) -> tuple[str, ...]:
    names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    _NAME_SETS[cls] = frozenset(names)
    return names


_SLOTTED = ConfigDict(extra="ignore")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


@dataclass(slots=True, config=_SLOTTED)
class BatchErrorItem(SlottedModel):
    """One entry of ``batch.errors.data``: why a batch failed validation."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


@dataclass(slots=True, config=_SLOTTED)
class RequestCounts(SlottedModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(slots=True, config=_SLOTTED)
class BatchSnapshot(SlottedModel):
    """The Batch object as one retrieve returned it; every decision of a poll uses one.

    ``status`` stays the raw string so that an unknown value can be recorded verbatim.
    Empty-string file ids (seen on clean batches) are normalised to ``None``.
    """

    status: str
    id: str | None = None
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

    def with_effect(self, key: str, **changes: Any) -> BatchRecord:
        """A copy with one outbox entry changed (e.g. ``done=True``)."""
        if key not in {e.key for e in self.outbox}:
            raise KeyError(f"batch {self.batch_id} owes no effect {key!r}")
        outbox = tuple(e.model_copy(update=changes) if e.key == key else e for e in self.outbox)
        return self.model_copy(update={"outbox": outbox})
