"""The per-request ledger on DynamoDB: conditional group writes and the three listings.

Writes (see :func:`put_ledger`): updates are version-conditioned ``Put``s in
``TransactWriteItems`` of at most 100 actions; inserts are written 25 a call with
``BatchWriteItem`` under a per-job *insert lock*, after consistent reads prove them
absent. An entry that moved to a retry batch also carries a small *membership* item for
each of its earlier batches, written with it, so ``iter_ledger(batch_id=old)`` still
finds it without a scan.

Reads, all ordered by ``(job_id, custom_id)`` as the base class pages them:

* by job: a Query on the job's partition (``sk = L#<custom_id>``);
* by batch: the ``ledger_by_batch`` index (entries whose *current* batch it is) merged
  with the batch's membership items (entries that have moved on), both sorted by
  ``<job_id>\\0<custom_id>``;
* everything: the jobs that have a ledger (their marker items in the catalog index), one
  partition Query after another. No listing scans the table.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from batchfsm.errors import StaleJobError, StoreError
from batchfsm.persistence.dynamodb import layout as L
from batchfsm.persistence.dynamodb.calls import DynamoCalls
from batchfsm.persistence.dynamodb.items import item_to_ledger, ledger_to_item, membership_to_item
from batchfsm.persistence.items import LedgerItem, LedgerWrite, ledger_key

INSERT_LOCK_SECONDS = 60.0
"""How long an insert lock holds when its writer dies without releasing it."""


def put_ledger(
    calls: DynamoCalls,
    writes: Sequence[LedgerWrite],
    *,
    marked_jobs: set[str],
    now: Callable[[], float] = time.time,
) -> None:
    """Write every entry; StaleJobError naming the first conflicting one.

    * Updates (``expected_version`` > 0) are ``Put``s conditioned on the stored version,
      packed into transactions of at most 100 actions (an entry and its membership items
      never split). Each transaction is atomic; a group beyond 100 actions is not
      (``ledger_group_atomic`` is False).
    * Inserts (``expected_version`` 0) take the job's insert lock (a conditional update
      of the job's ledger marker item), prove every entry absent with strongly
      consistent reads, write them 25 a call with ``BatchWriteItem`` (the cheapest write
      DynamoDB has, and the only one moto's server does not slow to a crawl), then
      release the lock. While one writer holds it no other can insert into that job, and
      nobody can update an entry before it exists, so an unconditional batch write can
      overwrite nothing: an insert stays a claim (it stamps the entry with the submit
      intent sending it) exactly as a conditional put would make it.

    Every item is built and size-checked before the first request, and inserts are written
    only after every update succeeded.
    """
    updates = [w for w in writes if w.expected_version > 0]
    inserts: dict[str, list[LedgerWrite]] = {}
    for write in writes:
        if write.expected_version == 0:
            inserts.setdefault(write.item.job_id, []).append(write)
    update_groups = [(w, _actions(calls.table, w)) for w in updates]
    insert_items = {
        job_id: [item for w in group for item in _insert_items(w)]
        for job_id, group in inserts.items()
    }
    for owners, chunk in _chunks(update_groups):
        calls.transact(chunk, _conflict_for(owners))
    for job_id in sorted(inserts):
        with _insert_lock(calls, job_id, now):
            _refuse_existing(calls, inserts[job_id])
            calls.batch_write(insert_items[job_id])
        marked_jobs.add(job_id)


class _LockBusy(StoreError):
    pass


@contextmanager
def _insert_lock(calls: DynamoCalls, job_id: str, now: Callable[[], float]) -> Iterator[None]:
    """Hold the job's insert lock; wait (with backoff) while another writer holds it.

    The lock sits on the job's ledger marker item, which the same update creates (the
    marker lets "every entry" listings find the job's ledger without a scan).
    """
    token = uuid.uuid4().hex
    deadline = now() + INSERT_LOCK_SECONDS
    attempt = 0
    while not _try_lock(calls, job_id, token, now()):
        if now() > deadline:
            raise StaleJobError(
                job_id, expected_version=0, actual_version=None, kind="ledger insert lock"
            )
        calls.pause(attempt)
        attempt += 1
    try:
        yield
    finally:
        # If it expired and another writer holds it now, it is theirs to release.
        with suppress(_LockBusy):
            calls.call(
                "update_item",
                _busy,
                TableName=calls.table,
                Key=L.ledger_marker_key(job_id),
                UpdateExpression="REMOVE #lock, #until",
                ConditionExpression="#lock = :token",
                ExpressionAttributeNames={"#lock": "insert_lock", "#until": "insert_lock_until"},
                ExpressionAttributeValues={":token": L.s(token)},
            )


def _busy(_old: Mapping[str, Any] | None, _index: int | None) -> StoreError:
    return _LockBusy("the ledger insert lock is held")


def _try_lock(calls: DynamoCalls, job_id: str, token: str, at: float) -> bool:
    try:
        calls.call(
            "update_item",
            _busy,
            TableName=calls.table,
            Key=L.ledger_marker_key(job_id),
            UpdateExpression=(
                "SET #kind = :kind, #job = :job, #catalog = :kind, "
                "#seq = if_not_exists(#seq, :zero), #lock = :token, #until = :until"
            ),
            ConditionExpression="attribute_not_exists(#until) OR #until < :now",
            ExpressionAttributeNames={
                "#kind": "kind",
                "#job": "job_id",
                "#catalog": "catalog",
                "#seq": "seq",
                "#lock": "insert_lock",
                "#until": "insert_lock_until",
            },
            ExpressionAttributeValues={
                ":kind": L.s("ledger-job"),
                ":job": L.s(job_id),
                ":zero": L.n(0),
                ":token": L.s(token),
                ":until": {"N": repr(at + INSERT_LOCK_SECONDS)},
                ":now": {"N": repr(at)},
            },
        )
    except _LockBusy:
        return False
    return True


def _refuse_existing(calls: DynamoCalls, inserts: Sequence[LedgerWrite]) -> None:
    keys = [L.ledger_entry_key(w.item.job_id, w.item.custom_id) for w in inserts]
    for found in calls.batch_get(keys):
        raise StaleJobError(
            ledger_key(found["job_id"]["S"], found["custom_id"]["S"]),
            expected_version=0,
            actual_version=int(found["version"]["N"]),
            kind="ledger entry",
        )


def _chunks(
    groups: Sequence[tuple[LedgerWrite, list[dict[str, Any]]]],
) -> list[tuple[list[LedgerWrite], list[dict[str, Any]]]]:
    """Pack each write's actions into transactions of at most 100, never splitting one."""
    chunks: list[tuple[list[LedgerWrite], list[dict[str, Any]]]] = []
    for write, actions in groups:
        if not chunks or len(chunks[-1][1]) + len(actions) > L.MAX_TRANSACTION_ACTIONS:
            chunks.append(([], []))
        owners, chunk = chunks[-1]
        owners.extend([write] * len(actions))
        chunk.extend(actions)
    return chunks


def _insert_items(write: LedgerWrite) -> list[L.Item]:
    entry = write.item
    members = [
        membership_to_item(earlier, entry.job_id, entry.custom_id)
        for earlier in dict.fromkeys(entry.batches[:-1])
    ]
    return [ledger_to_item(entry), *members]


def _actions(table: str, write: LedgerWrite) -> list[dict[str, Any]]:
    """An update: the entry conditioned on its stored version, plus membership puts."""
    put = L.with_condition(
        {"TableName": table, "Item": ledger_to_item(write.item)},
        "#v = :expected",
        {"#v": "version"},
        {":expected": L.n(write.expected_version)},
    )
    put["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    members = _insert_items(write)[1:]
    return [{"Put": put}, *({"Put": {"TableName": table, "Item": m}} for m in members)]


def _conflict_for(owners: Sequence[LedgerWrite]) -> Any:
    def conflict(old: Mapping[str, Any] | None, index: int | None) -> StoreError:
        write = owners[index] if index is not None and index < len(owners) else None
        if write is None:
            return StoreError("a ledger transaction failed a condition it does not set")
        actual = int(old["version"]["N"]) if old and "version" in old else None
        return StaleJobError(
            ledger_key(write.item.job_id, write.item.custom_id),
            expected_version=write.expected_version,
            actual_version=actual,
        )

    return conflict


# -- reads ----------------------------------------------------------------------------------


def scan_ledger(
    calls: DynamoCalls,
    *,
    job_id: str | None,
    batch_id: str | None,
    state: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[LedgerItem]:
    if batch_id is not None:
        return _by_batch(calls, batch_id, job_id=job_id, state=state, after=after, limit=limit)
    jobs = [job_id] if job_id is not None else _ledger_jobs(calls)
    found: list[LedgerItem] = []
    for job in jobs:
        if after is not None and job < after[0]:
            continue
        start = after[1] if after is not None and job == after[0] else None
        found.extend(_by_job(calls, job, state=state, after=start, limit=limit - len(found)))
        if len(found) >= limit:
            break
    return found


def count_ledger(calls: DynamoCalls, job_id: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in [job_id] if job_id is not None else _ledger_jobs(calls):
        for item in _job_query(calls, job, state=None, after=None, project_state=True):
            counts[item["state"]["S"]] = counts.get(item["state"]["S"], 0) + 1
    return counts


def _ledger_jobs(calls: DynamoCalls) -> list[str]:
    markers = calls.query(
        IndexName=L.CATALOG_INDEX,
        KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "catalog"},
        ExpressionAttributeValues={":c": L.s("ledger-job")},
    )
    return sorted(m["job_id"]["S"] for m in markers)


def _by_job(
    calls: DynamoCalls, job_id: str, *, state: str | None, after: str | None, limit: int
) -> list[LedgerItem]:
    items = _job_query(calls, job_id, state=state, after=after, limit=limit)
    return [item_to_ledger(i) for i in items]


def _job_query(
    calls: DynamoCalls,
    job_id: str,
    *,
    state: str | None,
    after: str | None,
    limit: int | None = None,
    project_state: bool = False,
) -> Iterator[dict[str, Any]]:
    names = {"#pk": L.PK, "#sk": L.SK}
    values = {":pk": L.s(f"J#{job_id}")}
    if after is None:
        key = "#pk = :pk AND begins_with(#sk, :lo)"
        values[":lo"] = L.s(L.LEDGER_PREFIX)
    else:
        # Ledger keys sort last in a job's partition ("L#" > "#", "#L"), so ">" suffices.
        key = "#pk = :pk AND #sk > :lo"
        values[":lo"] = L.s(L.LEDGER_PREFIX + after)
    request: dict[str, Any] = {"KeyConditionExpression": key, "ConsistentRead": True}
    if state is not None:
        request["FilterExpression"] = "#state = :state"
        names["#state"], values[":state"] = "state", L.s(state)
    if project_state:
        names["#state"] = "state"
        request["ProjectionExpression"] = "#state"
    if limit is not None:
        request["Limit"] = limit
    yield from calls.query(
        limit=limit, ExpressionAttributeNames=names, ExpressionAttributeValues=values, **request
    )


def _by_batch(
    calls: DynamoCalls,
    batch_id: str,
    *,
    job_id: str | None,
    state: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[LedgerItem]:
    """The first ``limit`` entries after ``after`` that ever belonged to the batch."""
    start = L.ledger_order(*after) if after is not None else None
    current = _current_in_batch(calls, batch_id, start, job_id=job_id, state=state, limit=limit)
    moved = _moved_from_batch(calls, batch_id, start, limit=limit)
    merged: list[LedgerItem] = []
    seen: set[tuple[str, str]] = set()
    for entry in heapq.merge(current, moved, key=lambda e: (e.job_id, e.custom_id)):
        if (entry.job_id, entry.custom_id) in seen:
            continue
        seen.add((entry.job_id, entry.custom_id))
        merged.append(entry)
    # Each source gave its first `limit` after `after`, so the union's first `limit` is exact.
    return merged[:limit]


def _current_in_batch(
    calls: DynamoCalls,
    batch_id: str,
    start: str | None,
    *,
    job_id: str | None,
    state: str | None,
    limit: int,
) -> list[LedgerItem]:
    """Entries whose current batch it is, from the ``ledger_by_batch`` index, in order."""
    names = {"#b": "ledger_batch"}
    values = {":b": L.s(batch_id)}
    key = "#b = :b"
    if start is not None:
        key += " AND #o > :after"
        names["#o"], values[":after"] = "ledger_order", L.s(start)
    filters: list[str] = []
    if job_id is not None:
        filters.append("#job = :job")
        names["#job"], values[":job"] = "job_id", L.s(job_id)
    if state is not None:
        filters.append("#state = :state")
        names["#state"], values[":state"] = "state", L.s(state)
    request: dict[str, Any] = {
        "IndexName": L.LEDGER_BATCH_INDEX,
        "KeyConditionExpression": key,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "Limit": limit,
    }
    if filters:
        request["FilterExpression"] = " AND ".join(filters)
    return [item_to_ledger(i) for i in calls.query(limit=limit, **request)]


def _moved_from_batch(
    calls: DynamoCalls, batch_id: str, start: str | None, *, limit: int
) -> list[LedgerItem]:
    """Entries that have moved on from the batch, found by its membership items, in order."""
    names = {"#pk": L.PK}
    values = {":pk": L.s(f"LB#{batch_id}")}
    key = "#pk = :pk"
    if start is not None:
        key += " AND #sk > :after"
        names["#sk"], values[":after"] = L.SK, L.s(start)
    members = list(
        calls.query(
            limit=limit,
            KeyConditionExpression=key,
            Limit=limit,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
    )
    # Not filtered by job or state here: the base filters every page again, and a source
    # cut short by a filter could hide an entry that belongs in this page.
    keys = [L.ledger_entry_key(m["job_id"]["S"], m["custom_id"]["S"]) for m in members]
    return sorted(
        (item_to_ledger(i) for i in calls.batch_get(keys)), key=lambda e: (e.job_id, e.custom_id)
    )
