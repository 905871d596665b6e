"""DynamoDB-specific promises, against the moto server over HTTP (the shared contract is
in test_store_contract.py): table shape, missing table, index use, TTL, URLs, limits."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from batchfsm.errors import (
    JobNotFoundError,
    StoreNotInitialisedError,
    StoreURLError,
    UnknownStatusError,
)
from batchfsm.fsm.models import BatchRecord, EventEntry, OutboxEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.dynamodb.layout import table_definition
from batchfsm.persistence.dynamodb.store import DynamoDBJobStore
from batchfsm.persistence.url import open_store
from batchfsm.ports import FrozenClock
from tests.persistence.dynamodb_server import client, fresh_store, server, unique_table

S = BatchStatus
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store() -> Iterator[DynamoDBJobStore]:
    # One table for the module: tests use distinct batch and job ids.
    with fresh_store(unique_table("batchfsm-ddb")) as made:
        yield made


def harvest(done: bool) -> OutboxEntry:
    return OutboxEntry(
        key="completed#harvest", state=S.COMPLETED, handler="harvest", implied=False, done=done
    )


def calls_made(store: DynamoDBJobStore) -> list[str]:
    """Every operation the store's client sends from now on (a botocore event hook)."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    store._calls.client.meta.events.register("before-call.dynamodb", record)
    return seen


# -- the table ------------------------------------------------------------------------------


def test_init_creates_an_on_demand_table_with_sparse_indexes_and_ttl(
    store: DynamoDBJobStore,
) -> None:
    ddb = store._calls.client
    table = ddb.describe_table(TableName=store.table)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {
        "catalog",
        "attention",
        "ledger_by_batch",
    }
    ttl = ddb.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    store.init()  # idempotent on an existing table


def test_cloudformation_snippet_declares_the_same_table() -> None:
    text = (REPO / "deploy" / "dynamodb-table.yaml").read_text()
    template = yaml.safe_load(text)
    props = template["Resources"]["BatchFsmTable"]["Properties"]
    wanted = table_definition("x")
    for key in ("BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"):
        assert props[key] == wanted[key], key
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_iam_policy_allows_only_what_the_store_calls() -> None:
    policy = json.loads((REPO / "deploy" / "iam-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    used = {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "Query",
        "BatchGetItem",
        "BatchWriteItem",
        "DescribeTable",
        "CreateTable",
        "DescribeTimeToLive",
        "UpdateTimeToLive",
    }
    assert actions == {f"dynamodb:{a}" for a in used}
    assert not any("*" in a for a in actions)
    assert all("Scan" not in a and "Delete" not in a for a in actions)


def test_every_operation_on_a_missing_table_says_to_run_init() -> None:
    missing = DynamoDBJobStore(client(), unique_table("batchfsm-missing"))
    attempts: list[Callable[[], object]] = [
        lambda: missing.load("b"),
        lambda: missing.create(BatchRecord(batch_id="b")),
        missing.list_attention,
        lambda: missing.save_ledger([LedgerEntry(job_id="j", custom_id="c", line="{}")]),
        lambda: list(missing.iter_ledger(batch_id="b")),
    ]
    for attempt in attempts:
        with pytest.raises(StoreNotInitialisedError, match="batchfsm init"):
            attempt()


# -- no scans -------------------------------------------------------------------------------


def test_list_attention_queries_the_sparse_index_only(store: DynamoDBJobStore) -> None:
    store.create(BatchRecord(batch_id="att-live", job_id="att"))
    done = store.create(
        BatchRecord(
            batch_id="att-done", state=S.COMPLETED, job_id="att", outbox=(harvest(done=False),)
        )
    )
    store.commit(done.with_effect("completed#harvest", done=True), expected_version=1)

    seen = calls_made(store)
    ids = {r.batch_id for r in store.list_attention()}
    assert "att-live" in ids and "att-done" not in ids
    assert seen == ["Query"]
    # Sparse: the finished batch is not in the index at all.
    indexed = store._calls.client.query(
        TableName=store.table,
        IndexName="attention",
        KeyConditionExpression="attention = :a",
        ExpressionAttributeValues={":a": {"S": "batch"}},
    )
    assert "att-done" not in {i["batch_id"]["S"] for i in indexed["Items"]}


def test_ledger_by_batch_never_scans(store: DynamoDBJobStore) -> None:
    entries = store.save_ledger(
        [
            LedgerEntry(job_id="scan-job", custom_id=f"r{n}", line="{}", batches=("scan-b1",))
            for n in range(5)
        ]
    )
    store.save_ledger([entries[0].model_copy(update={"batches": ("scan-b1", "scan-b2")})])
    seen = calls_made(store)
    assert [e.custom_id for e in store.iter_ledger(batch_id="scan-b1")] == [
        f"r{n}" for n in range(5)
    ]
    assert [e.custom_id for e in store.iter_ledger(batch_id="scan-b2")] == ["r0"]
    assert "Scan" not in seen


def test_unknown_stored_state_is_refused_on_load(store: DynamoDBJobStore) -> None:
    store.create(BatchRecord(batch_id="corrupt"))
    store._calls.client.update_item(
        TableName=store.table,
        Key={"pk": {"S": "B#corrupt"}, "sk": {"S": "#"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "canceled"}},
    )
    with pytest.raises(UnknownStatusError) as caught:
        store.load("corrupt")
    assert caught.value.raw == "canceled"


def test_an_oversize_ledger_entry_names_itself_and_writes_nothing(
    store: DynamoDBJobStore,
) -> None:
    small = LedgerEntry(job_id="big-job", custom_id="small", line="{}")
    huge = LedgerEntry(job_id="big-job", custom_id="huge-one", line="x" * 420_000)
    with pytest.raises(ValueError, match="big-job/huge-one"):
        store.save_ledger([small, huge])
    assert store.get_ledger("big-job", ["small", "huge-one"]) == {}


# -- TTL ------------------------------------------------------------------------------------


def test_ttl_is_off_by_default(store: DynamoDBJobStore) -> None:
    record = store.create(BatchRecord(batch_id="ttl-off", state=S.FAILED))
    assert not record.needs_attention
    item = store._calls.client.get_item(
        TableName=store.table, Key={"pk": {"S": "B#ttl-off"}, "sk": {"S": "#"}}
    )
    assert "expires_at" not in item["Item"]


def test_finished_batches_expire_after_ttl_days_even_if_never_deleted() -> None:
    clock = FrozenClock(T0)
    with fresh_store(ttl_days=2, clock=clock) as store:
        record = store.create(
            BatchRecord(batch_id="ttl-1", state=S.IN_PROGRESS, job_id="j"),
            history=[EventEntry(name="tracked", at=T0)],
        )
        record = store.commit(
            record.model_copy(update={"state": S.COMPLETED, "outbox": (harvest(done=False),)}),
            expected_version=1,
            history=[EventEntry(name="finished", at=T0)],
        )
        clock.advance(30 * 86400)  # still owes the harvest: no TTL however long it waits
        assert store.load("ttl-1").version == 2
        store.commit(record.with_effect("completed#harvest", done=True), expected_version=2)
        expires = int(clock.now().timestamp()) + 2 * 86400
        groups = store._calls.client.query(
            TableName=store.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "B#ttl-1"}},
        )["Items"]
        assert {int(g["expires_at"]["N"]) for g in groups} == {expires}  # record + history

        clock.advance(2 * 86400 - 1)
        assert len(store.history("ttl-1")) == 2
        assert [b.batch_id for b in store.list_batches("j")] == ["ttl-1"]
        clock.advance(1)  # moto never deletes it; the store must not return it either
        with pytest.raises(JobNotFoundError):
            store.load("ttl-1")
        with pytest.raises(JobNotFoundError):
            store.history("ttl-1")
        assert store.list_batches("j") == []
        # An expired id may be tracked again (AWS deletes it lazily, maybe days later).
        assert store.create(BatchRecord(batch_id="ttl-1")).version == 1


# -- URLs -----------------------------------------------------------------------------------


def test_open_store_builds_a_working_store_from_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, region = server()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    table = unique_table("batchfsm-url")
    url = f"dynamodb://{table}?region={region}&endpoint_url={endpoint}&ttl_days=7"
    store = open_store(url)
    assert isinstance(store, DynamoDBJobStore)
    assert (store.table, store.ttl_days) == (table, 7)
    try:
        store.init()
        store.create(BatchRecord(batch_id="via-url"))
        assert store.load("via-url").version == 1
    finally:
        client().delete_table(TableName=table)
        store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.load("via-url")


def test_the_endpoint_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, region = server()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = DynamoDBJobStore.from_url("dynamodb://no-such-table-here")
    with store, pytest.raises(StoreNotInitialisedError, match="no-such-table-here"):
        store.load("x")


def test_from_url_builds_its_client_on_the_session_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """The Lambda shares one boto3 session between its clients (botocore then loads its
    data once): the store must use that session's credentials and region, since here
    nothing else provides any."""
    import boto3
    from botocore.exceptions import NoCredentialsError, NoRegionError

    endpoint, region = server()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with fresh_store() as existing:
        url = f"dynamodb://{existing.table}?endpoint_url={endpoint}"
        with pytest.raises((NoCredentialsError, NoRegionError, StoreURLError)):
            DynamoDBJobStore.from_url(url).load("x")  # no session: nothing to sign with
        session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=region
        )
        with DynamoDBJobStore.from_url(url, session=session) as store:
            store.create(BatchRecord(batch_id="on-session", job_id="j"))
            assert existing.load("on-session").job_id == "j"
            assert store.url == f"dynamodb://{existing.table}?endpoint_url={endpoint}"


@pytest.mark.parametrize(
    "url",
    [
        "dynamodb://",
        "dynamodb://t?regoin=eu-west-1",
        "dynamodb://t?ttl_days=soon",
        "dynamodb://user:secret@t",
    ],
)
def test_bad_urls_are_refused_without_leaking_secrets(url: str) -> None:
    with pytest.raises(StoreURLError) as caught:
        DynamoDBJobStore.from_url(url)
    assert "secret" not in str(caught.value)


def test_the_printed_url_drops_credentials_in_the_endpoint() -> None:
    store = DynamoDBJobStore.from_url(
        "dynamodb://t?region=eu-west-1&endpoint_url=http://key:secret@127.0.0.1:9/"
    )
    with store:
        assert "secret" not in store.url and "127.0.0.1:9" in store.url


def test_ledger_counts_and_states_round_trip(store: DynamoDBJobStore) -> None:
    saved = store.save_ledger(
        [
            LedgerEntry(job_id="cnt", custom_id=f"c{n}", line="{}", batches=("cb",))
            for n in range(30)
        ]
    )
    store.save_ledger([e.model_copy(update={"state": ItemState.SUCCEEDED}) for e in saved[:12]])
    assert store.count_ledger("cnt") == {
        ItemState.PENDING: 18,
        ItemState.QUEUED: 0,
        ItemState.SUCCEEDED: 12,
        ItemState.RETRY: 0,
        ItemState.FAILED: 0,
    }
