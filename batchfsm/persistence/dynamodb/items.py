"""How batchfsm's stored rows become DynamoDB items, and back.

The table's shape (keys, indexes, limits, expression helpers) is in
:mod:`batchfsm.persistence.dynamodb.layout`; this module fills that shape with the
backend-neutral rows of :mod:`batchfsm.persistence.items`. Each builder refuses, before
any request, an item DynamoDB would reject as too big, so nothing is half written.

Like the layout, it is pure: it builds items and never calls AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from batchfsm.persistence.dynamodb.layout import (
    MAX_ITEM_BYTES,
    TTL_ATTRIBUTE,
    AttributeValue,
    Item,
    batch_key,
    history_key,
    intent_key,
    job_key,
    ledger_entry_key,
    ledger_order,
    membership_key,
    n,
    s,
)
from batchfsm.persistence.items import BatchItem, IntentItem, JobItem, LedgerItem, ledger_key

BATCH_OPTIONAL_ATTRIBUTES = (
    "job_id",
    "attention",
    TTL_ATTRIBUTE,
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "window_expires_at",
    "deadline",
    "request_counts",
    "error_codes",
    "pending_effects",
)
"""Attributes a batch item may lack; an update removes those the new record lacks."""


def batch_to_item(record: BatchItem, *, seq: int | None, expires_at: int | None) -> Item:
    """The stored batch: the record as JSON (``data``, the truth) plus copies of the
    fields operators and indexes need, readable in the console without parsing JSON.

    ``seq`` (creation order, the indexes' sort key) is given on insert only: an update
    keeps the stored one.
    """
    item: Item = {
        **batch_key(record.batch_id),
        "kind": s("batch"),
        "batch_id": s(record.batch_id),
        "state": s(record.state),
        "version": n(record.version),
        "data": s(record.data),
    }
    if seq is not None:
        item["seq"] = n(seq)
        item["catalog"] = s("batch")
    if record.job_id is not None:
        item["job_id"] = s(record.job_id)
    if record.needs_attention:
        item["attention"] = s("batch")
    if expires_at is not None:
        item[TTL_ATTRIBUTE] = n(expires_at)
    item.update(_batch_projections(record.data))
    check_size(item, what=f"batch {record.batch_id}")
    return item


def _batch_projections(data: str) -> Item:
    """The snapshot's ids, counts, errors and timestamps, the deadline and pending effects."""
    doc: dict[str, Any] = orjson.loads(data)
    out: Item = {}
    snapshot: dict[str, Any] = doc.get("snapshot") or {}
    for name in ("input_file_id", "output_file_id", "error_file_id"):
        if isinstance(snapshot.get(name), str):
            out[name] = s(snapshot[name])
    for name in (
        "created_at",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    ):
        if isinstance(snapshot.get(name), int):
            out[name] = n(snapshot[name])
    deadline = snapshot.get("expires_at")
    if isinstance(deadline, int):
        # The API's expires_at is the 24 h window; never store it under the TTL's name.
        out["window_expires_at"] = n(deadline)
    elif isinstance(snapshot.get("created_at"), int):
        deadline = snapshot["created_at"] + 24 * 3600
    if isinstance(deadline, int):
        out["deadline"] = s(datetime.fromtimestamp(deadline, UTC).isoformat())
    counts = snapshot.get("request_counts")
    if isinstance(counts, Mapping):
        out["request_counts"] = {
            "M": {k: n(int(v)) for k, v in counts.items() if isinstance(v, int)}
        }
    errors = snapshot.get("errors") or ()
    if errors:
        out["error_codes"] = {"L": [s(str(e.get("code"))) for e in errors if isinstance(e, dict)]}
    pending = [e["key"] for e in doc.get("outbox", ()) if not e.get("done")]
    if pending:
        out["pending_effects"] = {"L": [s(k) for k in pending]}
    return out


def item_to_batch(item: Mapping[str, AttributeValue]) -> BatchItem:
    return BatchItem(
        batch_id=item["batch_id"]["S"],
        job_id=item["job_id"]["S"] if "job_id" in item else None,
        state=item["state"]["S"],
        version=int(item["version"]["N"]),
        needs_attention="attention" in item,
        data=item["data"]["S"],
    )


def history_to_item(
    batch_id: str, version: int, entries: Sequence[str], *, expires_at: int | None
) -> Item:
    item: Item = {
        **history_key(batch_id, version),
        "kind": s("history"),
        "entries": {"L": [s(e) for e in entries]},
    }
    if expires_at is not None:
        item[TTL_ATTRIBUTE] = n(expires_at)
    check_size(item, what=f"history of batch {batch_id} (one commit's entries)")
    return item


def job_to_item(job: JobItem, *, seq: int) -> Item:
    return {
        **job_key(job.job_id),
        "kind": s("job"),
        "job_id": s(job.job_id),
        "version": n(job.version),
        "seq": n(seq),
        "catalog": s("job"),
        "data": s(job.data),
    }


def item_to_job(item: Mapping[str, AttributeValue]) -> JobItem:
    return JobItem(item["job_id"]["S"], int(item["version"]["N"]), item["data"]["S"])


def intent_to_item(intent: IntentItem, *, seq: int) -> Item:
    return {
        **intent_key(intent.intent_id),
        "kind": s("intent"),
        "intent_id": s(intent.intent_id),
        "job_id": s(intent.job_id),
        "state": s(intent.state),
        "version": n(intent.version),
        "seq": n(seq),
        "catalog": s("intent"),
        "data": s(intent.data),
    }


def item_to_intent(item: Mapping[str, AttributeValue]) -> IntentItem:
    return IntentItem(
        item["intent_id"]["S"],
        item["job_id"]["S"],
        item["state"]["S"],
        int(item["version"]["N"]),
        item["data"]["S"],
    )


def ledger_to_item(entry: LedgerItem) -> Item:
    """A ledger entry, indexed by its current (last) batch for ``iter_ledger(batch_id=)``."""
    item: Item = {
        **ledger_entry_key(entry.job_id, entry.custom_id),
        "kind": s("ledger"),
        "job_id": s(entry.job_id),
        "custom_id": s(entry.custom_id),
        "state": s(entry.state),
        "version": n(entry.version),
        "data": s(entry.data),
    }
    if entry.batches:
        item["batches"] = {"L": [s(b) for b in entry.batches]}
        item["ledger_batch"] = s(entry.batches[-1])
        item["ledger_order"] = s(ledger_order(entry.job_id, entry.custom_id))
    check_size(item, what=f"ledger entry {ledger_key(entry.job_id, entry.custom_id)}")
    return item


def item_to_ledger(item: Mapping[str, AttributeValue]) -> LedgerItem:
    batches = tuple(v["S"] for v in item.get("batches", {}).get("L", ()))
    return LedgerItem(
        item["job_id"]["S"],
        item["custom_id"]["S"],
        item["state"]["S"],
        int(item["version"]["N"]),
        batches,
        item["data"]["S"],
    )


def membership_to_item(batch_id: str, job_id: str, custom_id: str) -> Item:
    return {
        **membership_key(batch_id, job_id, custom_id),
        "kind": s("membership"),
        "job_id": s(job_id),
        "custom_id": s(custom_id),
    }


# -- limits ---------------------------------------------------------------------------------


def item_size(item: Mapping[str, AttributeValue]) -> int:
    """DynamoDB's billing size of an item (UTF-8 names and values, per the AWS docs)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: AttributeValue) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return (len(str(raw).lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in raw.items())
    return 1


def check_size(item: Mapping[str, AttributeValue], *, what: str) -> None:
    """Refuse, before any request, an item DynamoDB would reject as over 400 KB."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ValueError(
            f"{what} is {size} bytes as a DynamoDB item; the limit is {MAX_ITEM_BYTES} "
            f"bytes (400 KB): nothing was written"
        )
