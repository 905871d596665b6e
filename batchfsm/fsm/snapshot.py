"""What the API said: the Batch object of one retrieve, as the engine reads it.

Tolerant where providers differ and a value is merely absent (nulls, ``0`` timestamps,
RFC 3339 strings, fields we do not name: see :mod:`batchfsm.fsm.wire`), strict where a
value is of the wrong kind: such an answer is refused whole with
:class:`~batchfsm.errors.UndecodableSnapshotError`, which the tracker records on the
batch instead of applying.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ConfigDict, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from batchfsm.errors import UndecodableSnapshotError
from batchfsm.fsm.slotted import SlottedModel
from batchfsm.fsm.spec import ENTERED_AT_FIELD, BatchStatus
from batchfsm.fsm.wire import flat_usage, problems_of, raw_answer, unix_seconds

__all__ = ["COMPLETION_WINDOW", "BatchErrorItem", "BatchSnapshot", "BatchUsage", "RequestCounts"]

COMPLETION_WINDOW = timedelta(hours=24)

_SLOTTED = ConfigDict(extra="ignore")


@dataclass(slots=True, config=_SLOTTED)
class BatchErrorItem(SlottedModel):
    """One entry of ``batch.errors.data``: why a batch failed validation."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


@dataclass(slots=True, config=_SLOTTED)
class RequestCounts(SlottedModel):
    """``request_counts``; a count the API left out or sent as null is ``None``
    (unknown), never 0: Azure sends nulls on failed batches, Zhipu while validating."""

    total: int | None = None
    completed: int | None = None
    failed: int | None = None


@dataclass(slots=True, config=_SLOTTED)
class BatchUsage(SlottedModel):
    """The Batch object's ``usage``, its two detail objects folded in (see
    :func:`~batchfsm.fsm.wire.flat_usage`). Only batches created after 2025-09-07 carry
    it, and other servers may not: every count may be ``None`` (unknown)."""

    input_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None


_TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "expires_at",
)


@dataclass(slots=True, config=_SLOTTED)
class BatchSnapshot(SlottedModel):
    """The Batch object as one retrieve returned it; every decision of a poll uses one.

    ``status`` stays the raw string so that an unknown value can be recorded verbatim.
    Empty-string file ids (seen on clean batches) are normalised to ``None``; timestamps
    are read by :func:`~batchfsm.fsm.wire.unix_seconds` (RFC 3339 strings taken, ``0``
    is "not set"); fields the model does not name (Azure's ``*_blob`` ids) are ignored.
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
    usage: BatchUsage | None = None

    @field_validator("output_file_id", "error_file_id", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(*_TIMESTAMPS, mode="before")
    @classmethod
    def _timestamp(cls, value: object) -> int | None:
        if type(value) is int and value > 0:  # the API's own shape: the fast path
            return value
        return unix_seconds(value)

    @field_validator("usage", mode="before")
    @classmethod
    def _flat_usage(cls, value: object) -> object:
        return flat_usage(value)

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
    def from_api(cls, obj: Any, *, batch_id: str | None = None) -> BatchSnapshot:
        """From a plain mapping (or an object with ``model_dump``, such as an ``openai``
        Batch); ``batch_id`` names the batch asked for, for the error.

        :raises UndecodableSnapshotError: it is not a Batch object we can read (not a
            mapping, no string ``status``, a field of the wrong kind); the error lists
            every problem by field and keeps the raw answer.
        """
        data = obj
        if not isinstance(obj, Mapping) and callable(getattr(obj, "model_dump", None)):
            data = obj.model_dump()
        who = f"batch {batch_id}: " if batch_id else ""
        if not isinstance(data, Mapping):
            kind = "text" if isinstance(data, str | bytes) else type(data).__name__
            problem = f"the answer is {kind}, not a JSON object"
            raise UndecodableSnapshotError(
                f"{who}the API's answer is not a Batch object: {problem}",
                batch_id=batch_id,
                problems=(problem,),
                raw=raw_answer(data),
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = problems_of(exc)
            status = data.get("status")
            raise UndecodableSnapshotError(
                f"{who}the API's answer is not a Batch object batchfsm can read: "
                + "; ".join(problems),
                batch_id=batch_id,
                problems=problems,
                raw=raw_answer(data),
                status=status if isinstance(status, str) else None,
            ) from None
