"""DynamoDBJobStore: the store for several pollers on several hosts.

One table (layout in :mod:`batchfsm.persistence.dynamodb.layout`, items in
:mod:`~batchfsm.persistence.dynamodb.items`, access patterns in ``docs/dynamodb.md``).
Every state change is one conditional write on ``version``; a commit that also appends
history is one ``TransactWriteItems`` of two actions. This module is the store's data
access; around it: calls, retries and error translation
(:mod:`~batchfsm.persistence.dynamodb.calls`), the ledger
(:mod:`~batchfsm.persistence.dynamodb.ledger`), creating the table
(:mod:`~batchfsm.persistence.dynamodb.table`) and the ``dynamodb://`` URL
(:mod:`~batchfsm.persistence.dynamodb.url`).

botocore is imported only when :meth:`DynamoDBJobStore.from_url` builds a client (on a
session of its own unless given one), never at import time.

>>> store = DynamoDBJobStore.from_url("dynamodb://batchfsm?region=eu-west-1")  # doctest: +SKIP
>>> store.init()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from batchfsm.errors import DuplicateJobError, JobNotFoundError, StaleJobError, StoreError
from batchfsm.persistence.base import BaseJobStore
from batchfsm.persistence.dynamodb import layout as L
from batchfsm.persistence.dynamodb.calls import ConflictHandler, DynamoCalls, RetryPolicy
from batchfsm.persistence.dynamodb.items import (
    BATCH_OPTIONAL_ATTRIBUTES,
    batch_to_item,
    history_to_item,
    intent_to_item,
    item_to_batch,
    item_to_intent,
    item_to_job,
    item_to_ledger,
    job_to_item,
)
from batchfsm.persistence.dynamodb.ledger import count_ledger, put_ledger, scan_ledger
from batchfsm.persistence.dynamodb.mixins import DynamoBudgets, DynamoReceipts
from batchfsm.persistence.dynamodb.table import provision_table
from batchfsm.persistence.dynamodb.url import build_client, parse_dynamodb_url
from batchfsm.persistence.items import BatchItem, IntentItem, JobItem, LedgerItem, LedgerWrite
from batchfsm.ports import Clock, SystemClock

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from batchfsm.persistence.botocore_clients import AnySession

logger = logging.getLogger(__name__)


class DynamoDBJobStore(DynamoBudgets, DynamoReceipts, BaseJobStore):
    """A :class:`~batchfsm.persistence.base.JobStore` on one DynamoDB table.

    Parameters
    ----------
    client:
        A low-level DynamoDB client (botocore's or boto3's); the store never builds one itself here
        (use :meth:`from_url` for that), so tests and Lambda handlers inject theirs.
    table:
        The table name; :meth:`init` creates it.
    ttl_days:
        Keep finished batches (nothing owed, no more polling) and their history this many
        days, then let DynamoDB's TTL delete them. ``None`` (the default) keeps them.
    clock, retry, sleep:
        Where "now" comes from (TTL), and the backoff on throttling.
    """

    ledger_group_atomic = False
    """A ``save_ledger`` group is atomic per transaction of at most 100 actions; a bigger
    group is written as several transactions, each atomic, in order."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        ttl_days: float | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        url: str | None = None,
        owns_client: bool = False,
    ) -> None:
        if not table:
            raise ValueError("DynamoDBJobStore needs a table name")
        if ttl_days is not None and ttl_days <= 0:
            raise ValueError(f"ttl_days must be positive, got {ttl_days}")
        self.table = table
        self.ttl_days = ttl_days
        self.url = url or f"dynamodb://{table}"
        self._calls = DynamoCalls(client, table, retry=retry, sleep=sleep)
        self._clock = clock or SystemClock()
        self._owns_client = owns_client
        self._closed = False
        self._marked_jobs: set[str] = set()

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, session: AnySession | None = None
    ) -> DynamoDBJobStore:
        """``dynamodb://TABLE?region=R&endpoint_url=URL&ttl_days=N`` (all optional but
        the table). Credentials come from botocore's usual chain, never from the URL;
        region and endpoint default to its settings (``AWS_REGION``...). ``session``: the
        botocore or boto3 session to build the client on (see
        :func:`~batchfsm.persistence.dynamodb.url.build_client`; default: a new one).
        """
        parsed = parse_dynamodb_url(url)
        return cls(
            build_client(parsed, session),
            parsed.table,
            ttl_days=parsed.ttl_days,
            clock=clock,
            url=parsed.redacted,
            owns_client=True,
        )

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """Create the table with its indexes and enable TTL; does nothing if both exist."""
        provision_table(self._open(), self.table)

    def close(self) -> None:
        if not self._closed and self._owns_client:
            self._calls.client.close()
        self._closed = True

    def _open(self) -> DynamoCalls:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return self._calls

    # -- helpers -------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    def _expires_at(self, item: BatchItem) -> int | None:
        """When a finished batch may be deleted; None while it is not finished."""
        if self.ttl_days is None or item.needs_attention:
            return None
        return self._now() + int(self.ttl_days * 86400)

    def _live(self, item: Mapping[str, Any]) -> bool:
        """False for an item past its TTL: DynamoDB deletes them late (moto never)."""
        expires = item.get(L.TTL_ATTRIBUTE)
        return expires is None or int(expires["N"]) > self._now()

    def _next_seq(self) -> int:
        """A table-wide creation counter: the order every listing promises."""
        answer = self._open().call(
            "update_item",
            TableName=self.table,
            Key=L.SEQUENCE_KEY,
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":one": L.n(1)},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["n"]["N"])

    def _absent_or_expired(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        return (
            "attribute_not_exists(#pk) OR (attribute_exists(#exp) AND #exp <= :now)",
            {"#pk": L.PK, "#exp": L.TTL_ATTRIBUTE},
            {":now": L.n(self._now())},
        )

    # -- batches -------------------------------------------------------------------------
    def _insert_batch(self, item: BatchItem, history: Sequence[str]) -> None:
        expires = self._expires_at(item)
        stored = batch_to_item(item, seq=self._next_seq(), expires_at=expires)
        put = L.with_condition(
            {"TableName": self.table, "Item": stored}, *self._absent_or_expired()
        )
        conflict: ConflictHandler = lambda _old, _i: DuplicateJobError(item.batch_id)  # noqa: E731
        if not history:
            self._open().call("put_item", conflict, **put)
            return
        group = history_to_item(item.batch_id, item.version, history, expires_at=expires)
        self._open().transact(
            [{"Put": put}, {"Put": {"TableName": self.table, "Item": group}}], conflict
        )

    def _get_batch(self, batch_id: str) -> BatchItem | None:
        answer = self._open().call(
            "get_item", TableName=self.table, Key=L.batch_key(batch_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return item_to_batch(item) if item and self._live(item) else None

    def _swap_batch(
        self, item: BatchItem, *, expected_version: int, history: Sequence[str]
    ) -> None:
        expires = self._expires_at(item)
        update = L.with_condition(
            {
                "TableName": self.table,
                **L.update_request(
                    batch_to_item(item, seq=None, expires_at=expires),
                    remove=BATCH_OPTIONAL_ATTRIBUTES,
                ),
            },
            "#cv = :expected",
            {"#cv": "version"},
            {":expected": L.n(expected_version)},
        )
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"

        def conflict(old: Mapping[str, Any] | None, _index: int | None) -> StoreError:
            if old is None or "version" not in old:
                return JobNotFoundError(item.batch_id)
            return StaleJobError(
                item.batch_id,
                expected_version=expected_version,
                actual_version=int(old["version"]["N"]),
            )

        if history:
            # Unconditional: the version check above decides. A group left over from an
            # expired, re-tracked batch id (TTL deletes late) is simply overwritten.
            group = history_to_item(item.batch_id, item.version, history, expires_at=expires)
            put = {"TableName": self.table, "Item": group}
            self._open().transact([{"Update": update}, {"Put": put}], conflict)
        else:
            self._open().call("update_item", conflict, **update)
        if expires is not None:
            self._expire_history(item.batch_id, expires)

    def _expire_history(self, batch_id: str, expires: int) -> None:
        """Stamp the TTL on the history groups written before the batch finished.

        Best effort and idempotent (groups never change once written): if it fails, the
        commit has still happened, and the groups merely outlive the record.
        """
        try:
            groups = [
                {**g, L.TTL_ATTRIBUTE: L.n(expires)}
                for g in self._history_items(batch_id)
                if L.TTL_ATTRIBUTE not in g
            ]
            self._open().batch_write(groups)
        except StoreError:
            logger.warning(
                "batch %s: could not set the TTL on its history; it will outlive the record",
                batch_id,
                exc_info=True,
                extra={"batch_id": batch_id},
            )

    def _history_items(self, batch_id: str) -> Iterator[dict[str, Any]]:
        yield from self._open().query(
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :h)",
            ExpressionAttributeNames={"#pk": L.PK, "#sk": L.SK},
            ExpressionAttributeValues={":pk": L.s(f"B#{batch_id}"), ":h": L.s(L.HISTORY_PREFIX)},
            ConsistentRead=True,
        )

    def _get_history(self, batch_id: str) -> list[str] | None:
        # One query reads the record ("#" sorts first) and every history group after it.
        items = list(
            self._open().query(
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": L.PK},
                ExpressionAttributeValues={":pk": L.s(f"B#{batch_id}")},
                ConsistentRead=True,
            )
        )
        if not items or items[0]["sk"]["S"] != L.RECORD_SK or not self._live(items[0]):
            return None
        return [
            entry["S"]
            for group in items[1:]
            if group["sk"]["S"].startswith(L.HISTORY_PREFIX) and self._live(group)
            for entry in group["entries"]["L"]
        ]

    def _scan_batches(self, *, job_id: str | None, attention_only: bool) -> list[BatchItem]:
        index, key = (
            (L.ATTENTION_INDEX, "attention") if attention_only else (L.CATALOG_INDEX, "catalog")
        )
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": "#k = :batch",
            "ExpressionAttributeNames": {"#k": key},
            "ExpressionAttributeValues": {":batch": L.s("batch")},
        }
        if job_id is not None:
            request["FilterExpression"] = "#job = :job"
            request["ExpressionAttributeNames"]["#job"] = "job_id"
            request["ExpressionAttributeValues"][":job"] = L.s(job_id)
        return [item_to_batch(i) for i in self._open().query(**request) if self._live(i)]

    # -- jobs and intents ----------------------------------------------------------------
    def _insert_job(self, item: JobItem) -> None:
        put = L.with_condition(
            {"TableName": self.table, "Item": job_to_item(item, seq=self._next_seq())},
            "attribute_not_exists(#pk)",
            {"#pk": L.PK},
            {},
        )
        self._open().call("put_item", lambda _o, _i: DuplicateJobError(item.job_id), **put)

    def _get_job(self, job_id: str) -> JobItem | None:
        answer = self._open().call(
            "get_item", TableName=self.table, Key=L.job_key(job_id), ConsistentRead=True
        )
        return item_to_job(answer["Item"]) if "Item" in answer else None

    def _scan_jobs(self) -> list[JobItem]:
        return [item_to_job(i) for i in self._catalog("job")]

    def _catalog(self, kind: str, **extra: Any) -> Iterator[dict[str, Any]]:
        names = {"#c": "catalog", **extra.pop("names", {})}
        values = {":c": L.s(kind), **extra.pop("values", {})}
        yield from self._open().query(
            IndexName=L.CATALOG_INDEX,
            KeyConditionExpression="#c = :c",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            **extra,
        )

    def _put_intent(self, item: IntentItem, *, expected_version: int) -> None:
        def conflict(old: Mapping[str, Any] | None, _index: int | None) -> StoreError:
            actual = int(old["version"]["N"]) if old and "version" in old else None
            return StaleJobError(
                item.intent_id, expected_version=expected_version, actual_version=actual
            )

        if expected_version == 0:
            request = L.with_condition(
                {"TableName": self.table, "Item": intent_to_item(item, seq=self._next_seq())},
                "attribute_not_exists(#pk)",
                {"#pk": L.PK},
                {},
            )
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            self._open().call("put_item", conflict, **request)
            return
        stored = intent_to_item(item, seq=0)
        del stored["seq"], stored["catalog"]  # an update keeps the creation order
        request = L.with_condition(
            {"TableName": self.table, **L.update_request(stored)},
            "#cv = :expected",
            {"#cv": "version"},
            {":expected": L.n(expected_version)},
        )
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self._open().call("update_item", conflict, **request)

    def _scan_intents(
        self, *, job_id: str | None, states: frozenset[str] | None
    ) -> list[IntentItem]:
        filters: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if job_id is not None:
            filters.append("#job = :job")
            names["#job"], values[":job"] = "job_id", L.s(job_id)
        if states:
            names["#state"] = "state"
            keys = [f":s{i}" for i in range(len(states))]
            values.update({k: L.s(v) for k, v in zip(keys, sorted(states), strict=True)})
            filters.append(f"#state IN ({', '.join(keys)})")
        extra: dict[str, Any] = {"names": names, "values": values}
        if filters:
            extra["FilterExpression"] = " AND ".join(filters)
        return [item_to_intent(i) for i in self._catalog("intent", **extra)]

    # -- ledger (in dynamodb_ledger.py) --------------------------------------------------
    def _put_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        put_ledger(self._open(), writes, marked_jobs=self._marked_jobs)

    def _get_ledger(self, job_id: str, custom_ids: Sequence[str]) -> list[LedgerItem]:
        keys = [L.ledger_entry_key(job_id, c) for c in custom_ids]
        return [item_to_ledger(i) for i in self._open().batch_get(keys)]

    def _scan_ledger(
        self,
        *,
        job_id: str | None,
        batch_id: str | None,
        state: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[LedgerItem]:
        return scan_ledger(
            self._open(), job_id=job_id, batch_id=batch_id, state=state, after=after, limit=limit
        )

    def _count_ledger(self, job_id: str | None) -> dict[str, int]:
        return count_ledger(self._open(), job_id)


__all__ = ["DynamoDBJobStore"]
