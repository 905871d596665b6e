"""The single-table layout of the DynamoDB store: keys, indexes, limits and expressions.

Every kind of record lives in one table with a string partition key ``pk`` and sort key
``sk``; ``docs/dynamodb.md`` lists the access pattern each key serves. In short::

    item              pk                 sk                    indexes it appears in
    batch record      B#<batch_id>       #                     catalog, attention (sparse)
    history group     B#<batch_id>       H#<version:010d>      -
    job               J#<job_id>         #                     catalog
    ledger marker     J#<job_id>         #L                    catalog ("this job has a ledger")
    ledger entry      J#<job_id>         L#<custom_id>         ledger_by_batch (current batch)
    old membership    LB#<batch_id>      <job_id>\\0<custom_id> -  (entry's earlier batches)
    submit intent     I#<intent_id>      #                     catalog
    sequence counter  #META              #SEQ                  -

One *history group* holds all entries one commit appended, so a commit is always two
actions (record update + group put) however many hops it carries. The sort key
``<job_id>\\0<custom_id>`` sorts exactly like the tuple ``(job_id, custom_id)``, because
no character sorts below NUL.

This module is the table's shape, shared by everything that talks to it: the store,
its ledger queries (:mod:`batchfsm.persistence.dynamodb.ledger`) and the call layer's
batching limits (:mod:`batchfsm.persistence.dynamodb.calls`). Turning records into items
is :mod:`batchfsm.persistence.dynamodb.items`. It is pure: it builds keys and request
fragments, and never calls AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

AttributeValue = dict[str, Any]
"""One DynamoDB attribute value in the low-level client's shape, e.g. ``{"S": "x"}``."""
Item = dict[str, AttributeValue]

PK, SK = "pk", "sk"
RECORD_SK = "#"
LEDGER_MARKER_SK = "#L"
HISTORY_PREFIX = "H#"
LEDGER_PREFIX = "L#"
ORDER_SEP = "\x00"

CATALOG_INDEX = "catalog"
ATTENTION_INDEX = "attention"
LEDGER_BATCH_INDEX = "ledger_by_batch"
TTL_ATTRIBUTE = "expires_at"

MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit; :func:`~batchfsm.persistence.dynamodb.items.check_size`
refuses bigger items before any request."""
MAX_TRANSACTION_ACTIONS = 100
MAX_BATCH_WRITE = 25
MAX_BATCH_GET = 100


def table_definition(table: str) -> dict[str, Any]:
    """The ``CreateTable`` request: on-demand billing, three indexes (all projecting ALL).

    ``deploy/dynamodb-table.yaml`` is the same table for CloudFormation; a test checks
    the two agree.
    """

    def index(name: str, hash_key: str, range_key: str) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }

    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in (
                (PK, "S"),
                (SK, "S"),
                ("catalog", "S"),
                ("seq", "N"),
                ("attention", "S"),
                ("ledger_batch", "S"),
                ("ledger_order", "S"),
            )
        ],
        "GlobalSecondaryIndexes": [
            index(CATALOG_INDEX, "catalog", "seq"),
            index(ATTENTION_INDEX, "attention", "seq"),
            index(LEDGER_BATCH_INDEX, "ledger_batch", "ledger_order"),
        ],
    }


# -- keys -----------------------------------------------------------------------------------


def s(value: str) -> AttributeValue:
    return {"S": value}


def n(value: int) -> AttributeValue:
    return {"N": str(value)}


def batch_key(batch_id: str) -> Item:
    return {PK: s(f"B#{batch_id}"), SK: s(RECORD_SK)}


def history_key(batch_id: str, version: int) -> Item:
    return {PK: s(f"B#{batch_id}"), SK: s(f"{HISTORY_PREFIX}{version:010d}")}


def job_key(job_id: str) -> Item:
    return {PK: s(f"J#{job_id}"), SK: s(RECORD_SK)}


def ledger_marker_key(job_id: str) -> Item:
    return {PK: s(f"J#{job_id}"), SK: s(LEDGER_MARKER_SK)}


def ledger_entry_key(job_id: str, custom_id: str) -> Item:
    return {PK: s(f"J#{job_id}"), SK: s(f"{LEDGER_PREFIX}{custom_id}")}


def ledger_order(job_id: str, custom_id: str) -> str:
    return f"{job_id}{ORDER_SEP}{custom_id}"


def membership_key(batch_id: str, job_id: str, custom_id: str) -> Item:
    return {PK: s(f"LB#{batch_id}"), SK: s(ledger_order(job_id, custom_id))}


def intent_key(intent_id: str) -> Item:
    return {PK: s(f"I#{intent_id}"), SK: s(RECORD_SK)}


SEQUENCE_KEY: Item = {PK: s("#META"), SK: s("#SEQ")}


# -- expressions ----------------------------------------------------------------------------


def update_request(
    item: Mapping[str, AttributeValue], *, remove: Sequence[str] = ()
) -> dict[str, Any]:
    """An ``UpdateItem`` body setting every non-key attribute of ``item`` and removing the
    ``remove`` attributes it lacks. Names go through ``#`` placeholders only, so reserved
    words (``state``, ``data``, ``version``...) never reach the expression."""
    names: dict[str, str] = {}
    values: dict[str, AttributeValue] = {}
    sets: list[str] = []
    for index, (name, value) in enumerate(item.items()):
        if name in (PK, SK):
            continue
        names[f"#a{index}"] = name
        values[f":a{index}"] = value
        sets.append(f"#a{index} = :a{index}")
    drops = [name for name in remove if name not in item]
    for index, name in enumerate(drops):
        names[f"#r{index}"] = name
    expression = "SET " + ", ".join(sets)
    if drops:
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(drops)))
    return {
        "Key": {PK: item[PK], SK: item[SK]},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def with_condition(
    request: dict[str, Any],
    condition: str,
    names: Mapping[str, str],
    values: Mapping[str, AttributeValue],
) -> dict[str, Any]:
    """``request`` plus a condition whose placeholders are merged into its own."""
    merged = {**request, "ConditionExpression": condition}
    all_names = {**request.get("ExpressionAttributeNames", {}), **names}
    all_values = {**request.get("ExpressionAttributeValues", {}), **values}
    if all_names:
        merged["ExpressionAttributeNames"] = all_names
    if all_values:  # DynamoDB refuses an empty map
        merged["ExpressionAttributeValues"] = all_values
    return merged
