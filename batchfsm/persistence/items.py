"""Records as a backend stores them, and the one mapping between the two.

A backend never sees a pydantic model: it stores *items* (the few columns it must index
or condition on, plus the record as JSON) and hands items back. Turning records into
items and back, and refusing what does not read back cleanly (a status outside the
eight, a damaged field), happens here, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from batchfsm.errors import BatchFSMError, StoreError, UnknownStatusError
from batchfsm.fsm.models import BatchRecord, HistoryEntry
from batchfsm.fsm.spec import parse_status

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """A batch as a backend stores it: the indexed columns plus the record as JSON.

    ``state``, ``version``, ``job_id`` and ``needs_attention`` are copies of fields of
    ``data`` kept apart so a backend can index and condition on them without parsing.
    """

    batch_id: str
    job_id: str | None
    state: str
    version: int
    needs_attention: bool
    data: str


@dataclass(frozen=True, slots=True)
class JobItem:
    job_id: str
    version: int
    data: str


@dataclass(frozen=True, slots=True)
class IntentItem:
    intent_id: str
    job_id: str
    state: str
    version: int
    data: str


@dataclass(frozen=True, slots=True)
class LedgerItem:
    """A ledger entry as stored.

    ``batches`` is what a backend indexes for ``iter_ledger(batch_id=...)``; on read it may
    hold only the batches a query matched (the full list is inside ``data``).
    """

    job_id: str
    custom_id: str
    state: str
    version: int
    batches: tuple[str, ...]
    data: str


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """One conditional ledger write: insert when ``expected_version`` is 0, else update
    only if the stored version still equals it."""

    item: LedgerItem
    expected_version: int


@cache
def _history_adapter() -> TypeAdapter[HistoryEntry]:
    # Built on first use, not at import: a TypeAdapter compiles a validator.
    return TypeAdapter(HistoryEntry)


def ledger_key(job_id: str, custom_id: str) -> str:
    """How a ledger entry is named in errors (``StaleJobError.batch_id``)."""
    return f"{job_id}/{custom_id}"


def encode_batch(record: BatchRecord) -> BatchItem:
    return BatchItem(
        batch_id=record.batch_id,
        job_id=record.job_id,
        state=record.state.value,
        version=record.version,
        needs_attention=record.needs_attention,
        data=record.model_dump_json(by_alias=True),
    )


def encode_history(history: Sequence[HistoryEntry]) -> list[str]:
    adapter = _history_adapter()
    return [adapter.dump_json(entry, by_alias=True).decode() for entry in history]


def decode_batch(item: BatchItem, *, store: str) -> BatchRecord:
    """The record in ``item``; UnknownStatusError for a status outside the eight.

    ``store`` (the store's URL) only names the place in error messages.
    """
    status = parse_status(item.state)
    if status is None:
        raise UnknownStatusError(item.state, batch_id=item.batch_id, where="the store")
    try:
        record = BatchRecord.model_validate_json(item.data)
    except ValidationError as exc:
        raise unreadable(
            exc, store=store, what=f"batch {item.batch_id}", batch_id=item.batch_id
        ) from exc
    if record.state is not status or record.batch_id != item.batch_id:
        raise StoreError(
            f"{store}: batch {item.batch_id}: stored state column {item.state!r} "
            f"disagrees with its record ({record.batch_id}, {record.state.value!r})"
        )
    # The version column is what writes are conditioned on, so it is the truth.
    if record.version != item.version:
        record = record.model_copy(update={"version": item.version})
    return record


def decode_history(raw: str, *, store: str, batch_id: str) -> HistoryEntry:
    try:
        return _history_adapter().validate_json(raw)
    except ValidationError as exc:
        raise unreadable(
            exc, store=store, what=f"history of batch {batch_id}", batch_id=batch_id
        ) from exc


def decode_model(model: type[_M], data: str, *, store: str, what: str, version: int) -> _M:
    """A job, intent or ledger entry from its JSON, at the stored ``version``."""
    try:
        loaded = model.model_validate_json(data)
    except ValidationError as exc:
        raise unreadable(exc, store=store, what=what, batch_id=None) from exc
    if getattr(loaded, "version", None) == version:
        return loaded  # the stored JSON already carries its version: no copy
    return loaded.model_copy(update={"version": version})


def unreadable(
    exc: ValidationError, *, store: str, what: str, batch_id: str | None
) -> BatchFSMError:
    """A typed error for a stored item pydantic refuses (the caller chains ``exc``).

    A batch status outside the eight becomes UnknownStatusError (with the raw value),
    anything else a StoreError naming the item and the first bad field.
    """
    errors = exc.errors()
    if batch_id is not None:
        for error in errors:
            if error["type"] == "enum" and isinstance(error.get("input"), str):
                return UnknownStatusError(error["input"], batch_id=batch_id, where="the store")
    first = errors[0] if errors else None
    field = ".".join(str(p) for p in first["loc"]) if first else "?"
    message = first["msg"] if first else str(exc)
    return StoreError(f"{store}: {what} is unreadable: field {field!r}: {message}")
