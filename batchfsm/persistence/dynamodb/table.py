"""Provisioning the DynamoDB store's table: create it, check it, wait for it, enable TTL.

``DynamoDBJobStore.init`` runs this once per deployment (or per test); every other call
of the store reads and writes items. Kept apart from the store because it is the only
code that changes the table itself rather than its items, and it must refuse a table of
the same name that is not a batchfsm table instead of writing into it.
"""

from __future__ import annotations

from batchfsm.errors import StoreError, StoreNotInitialisedError
from batchfsm.persistence.dynamodb import layout as L
from batchfsm.persistence.dynamodb.calls import DynamoCalls

REQUIRED_INDEXES = frozenset({L.CATALOG_INDEX, L.ATTENTION_INDEX, L.LEDGER_BATCH_INDEX})


def provision_table(calls: DynamoCalls, table: str) -> None:
    """Create ``table`` with its indexes and enable TTL; does nothing if both exist.

    StoreError if a table of that name exists without batchfsm's indexes.
    """
    try:
        described = calls.call("describe_table", TableName=table)["Table"]
    except StoreError as exc:
        if not isinstance(exc, StoreNotInitialisedError):
            raise
        calls.call("create_table", **L.table_definition(table))
        described = {}
    if described:
        have = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        missing = REQUIRED_INDEXES - have
        if missing:
            raise StoreError(
                f"DynamoDB table {table!r} exists but lacks the "
                f"index(es) {sorted(missing)}: it is not a batchfsm table"
            )
    _wait_active(calls, table)
    ttl = calls.call("describe_time_to_live", TableName=table)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        calls.call(
            "update_time_to_live",
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": L.TTL_ATTRIBUTE},
        )


def _wait_active(calls: DynamoCalls, table: str) -> None:
    with calls.translated("waiting for the table"):
        waiter = calls.client.get_waiter("table_exists")
        waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
