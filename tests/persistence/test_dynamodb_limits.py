"""What no local server can show: throttling, transaction conflicts, unprocessed items and
the 25/100 limits that moto does not enforce. botocore's Stubber answers for AWS here;
our code runs unchanged on a real boto3 client, and only the sleeps are recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from batchfsm.errors import StaleJobError, StoreNotInitialisedError, StoreUnavailableError
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.records import LedgerEntry
from batchfsm.persistence.dynamodb.calls import RetryPolicy
from batchfsm.persistence.dynamodb.items import batch_to_item, ledger_to_item
from batchfsm.persistence.dynamodb.store import DynamoDBJobStore
from batchfsm.persistence.items import LedgerItem, encode_batch

THROTTLES = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "TransactionConflictException",
    "RequestLimitExceeded",
]


class Harness:
    """A store on a stubbed client, recording each request and each backoff pause."""

    def __init__(self) -> None:
        self.client = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).client(
            "dynamodb",
            endpoint_url="http://127.0.0.1:9",
            config=Config(retries={"total_max_attempts": 1}),
        )
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.client.meta.events.register("provide-client-params.dynamodb", self._record)
        self.stub = Stubber(self.client)
        self.store = DynamoDBJobStore(
            self.client,
            "t",
            sleep=self.sleeps.append,
            retry=RetryPolicy(max_attempts=4, base_delay=0.1),
        )

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.requests.append((model.name, params))

    def operations(self) -> list[str]:
        return [name for name, _ in self.requests]

    def cancelled(self, *codes: str, item: dict[str, Any] | None = None) -> None:
        reasons: list[dict[str, Any]] = [{"Code": c} for c in codes]
        if item is not None:
            reasons[codes.index("ConditionalCheckFailed")]["Item"] = item
        self.stub.add_client_error(
            "transact_write_items",
            "TransactionCanceledException",
            f"Transaction cancelled [{', '.join(codes)}]",
            modeled_fields={"CancellationReasons": reasons},
        )


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    with harness.stub:
        yield harness
        harness.stub.assert_no_pending_responses()


def stored_batch(batch_id: str, version: int) -> dict[str, Any]:
    record = BatchRecord(batch_id=batch_id, version=version)
    return batch_to_item(encode_batch(record), seq=1, expires_at=None)


def entries(n: int, *, job_id: str = "j") -> list[LedgerEntry]:
    return [
        LedgerEntry(job_id=job_id, custom_id=f"r{i:03d}", line="{}", batches=("b1",))
        for i in range(n)
    ]


@pytest.mark.parametrize("code", THROTTLES)
def test_throttling_is_retried_with_growing_jittered_pauses(h: Harness, code: str) -> None:
    h.stub.add_client_error("get_item", code, "slow down", http_status_code=400)
    h.stub.add_client_error("get_item", code, "slow down", http_status_code=400)
    h.stub.add_response("get_item", {"Item": stored_batch("b", 3)})

    assert h.store.load("b").version == 3
    assert h.operations() == ["GetItem"] * 3
    assert len(h.sleeps) == 2
    assert 0 <= h.sleeps[0] <= 0.1 and 0 <= h.sleeps[1] <= 0.2


def test_throttling_that_never_ends_is_store_unavailable(h: Harness) -> None:
    for _ in range(4):
        h.stub.add_client_error("get_item", "ThrottlingException", "slow down")
    with pytest.raises(StoreUnavailableError, match="ThrottlingException") as caught:
        h.store.load("b")
    assert isinstance(caught.value.__cause__, ClientError)
    assert len(h.requests) == 4


def test_a_cancelled_transaction_with_a_failed_condition_is_stale(h: Harness) -> None:
    h.cancelled("ConditionalCheckFailed", "None", item=stored_batch("b", 5))
    record = BatchRecord(batch_id="b", state=BatchStatus.IN_PROGRESS)
    with pytest.raises(StaleJobError) as caught:
        h.store.commit(record, expected_version=3, history=[EventEntry(name="x")])
    assert (caught.value.expected_version, caught.value.actual_version) == (3, 5)
    assert h.sleeps == []  # a lost race is final, never retried


def test_a_conflicting_transaction_is_retried_with_the_same_token(h: Harness) -> None:
    h.cancelled("TransactionConflict", "None")
    h.stub.add_response("transact_write_items", {})
    record = BatchRecord(batch_id="b", state=BatchStatus.IN_PROGRESS)
    assert h.store.commit(record, expected_version=1, history=[EventEntry(name="x")]).version == 2
    tokens = {p["ClientRequestToken"] for _, p in h.requests}
    assert h.operations() == ["TransactWriteItems"] * 2 and len(tokens) == 1
    assert len(h.sleeps) == 1


def test_a_failed_condition_on_a_single_write_is_stale(h: Harness) -> None:
    h.stub.add_client_error(
        "update_item",
        "ConditionalCheckFailedException",
        "no",
        modeled_fields={"Item": stored_batch("b", 9)},
    )
    with pytest.raises(StaleJobError) as caught:
        h.store.commit(BatchRecord(batch_id="b"), expected_version=4)
    assert caught.value.actual_version == 9


def test_other_client_errors_are_unavailable_not_stale(h: Harness) -> None:
    h.stub.add_client_error("transact_write_items", "ValidationException", "bad request")
    h.stub.add_client_error("get_item", "ResourceNotFoundException", "no table")
    with pytest.raises(StoreUnavailableError, match="ValidationException") as caught:
        h.store.commit(
            BatchRecord(batch_id="b"), expected_version=1, history=[EventEntry(name="x")]
        )
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(StoreNotInitialisedError, match="batchfsm init"):
        h.store.load("b")


def test_batch_writes_hold_25_items_and_unprocessed_ones_are_resubmitted(h: Harness) -> None:
    items = [stored_batch(f"b{i:02d}", 1) for i in range(26)]
    leftover = [{"PutRequest": {"Item": item}} for item in items[22:25]]
    h.stub.add_response("batch_write_item", {"UnprocessedItems": {"t": leftover}})
    h.stub.add_response("batch_write_item", {"UnprocessedItems": {}})
    h.stub.add_response("batch_write_item", {})

    assert h.store._calls.batch_write(items) == 3
    sizes = [len(p["RequestItems"]["t"]) for _, p in h.requests]
    assert sizes == [25, 3, 1]
    assert h.requests[1][1]["RequestItems"]["t"] == leftover
    assert len(h.sleeps) == 1


def test_batch_gets_hold_100_keys_and_unprocessed_ones_are_resubmitted(h: Harness) -> None:
    from batchfsm.persistence.dynamodb.layout import ledger_entry_key

    keys = [ledger_entry_key("j", f"r{i:03d}") for i in range(101)]
    h.stub.add_response(
        "batch_get_item", {"Responses": {"t": []}, "UnprocessedKeys": {"t": {"Keys": keys[:2]}}}
    )
    h.stub.add_response("batch_get_item", {"Responses": {"t": []}})
    h.stub.add_response("batch_get_item", {"Responses": {"t": []}})
    assert h.store.get_ledger("j", [f"r{i:03d}" for i in range(101)]) == {}
    sizes = [len(p["RequestItems"]["t"]["Keys"]) for _, p in h.requests]
    assert sizes == [100, 2, 1]


@pytest.mark.parametrize(("count", "chunks"), [(26, [26]), (100, [100]), (150, [100, 50])])
def test_ledger_updates_are_transactions_of_at_most_100_actions(
    h: Harness, count: int, chunks: list[int]
) -> None:
    for _ in chunks:
        h.stub.add_response("transact_write_items", {})
    h.store.save_ledger([e.model_copy(update={"version": 1}) for e in entries(count)])
    assert [len(p["TransactItems"]) for _, p in h.requests] == chunks
    written = [a["Put"]["Item"]["sk"]["S"] for _, p in h.requests for a in p["TransactItems"]]
    assert sorted(written) == [f"L#r{i:03d}" for i in range(count)]


def test_a_26_entry_insert_holds_the_job_lock_checks_then_writes_25_a_call(h: Harness) -> None:
    h.stub.add_response("update_item", {})
    h.stub.add_response("batch_get_item", {"Responses": {"t": []}})
    h.stub.add_response("batch_write_item", {})
    h.stub.add_response("batch_write_item", {})
    h.stub.add_response("update_item", {})
    h.store.save_ledger(entries(26))
    assert h.operations() == [
        "UpdateItem",
        "BatchGetItem",
        "BatchWriteItem",
        "BatchWriteItem",
        "UpdateItem",
    ]
    lock, release = h.requests[0][1], h.requests[-1][1]
    assert lock["Key"] == release["Key"] == {"pk": {"S": "J#j"}, "sk": {"S": "#L"}}
    assert lock["ConditionExpression"] == "attribute_not_exists(#until) OR #until < :now"
    assert release["ConditionExpression"] == "#lock = :token"
    assert (
        lock["ExpressionAttributeValues"][":token"]
        == release["ExpressionAttributeValues"][":token"]
    )
    assert h.requests[1][1]["RequestItems"]["t"]["ConsistentRead"] is True
    assert [len(p["RequestItems"]["t"]) for _, p in h.requests[2:4]] == [25, 1]


def test_an_insert_waits_while_another_writer_holds_the_job_lock(h: Harness) -> None:
    h.stub.add_client_error("update_item", "ConditionalCheckFailedException", "held")
    h.stub.add_client_error("update_item", "ConditionalCheckFailedException", "held")
    h.stub.add_response("update_item", {})
    h.stub.add_response("batch_get_item", {"Responses": {"t": []}})
    h.stub.add_response("batch_write_item", {})
    h.stub.add_response("update_item", {})
    h.store.save_ledger(entries(2))
    assert h.operations() == ["UpdateItem"] * 3 + ["BatchGetItem", "BatchWriteItem", "UpdateItem"]
    assert len(h.sleeps) == 2


def test_inserting_an_existing_entry_is_stale_writes_nothing_and_releases_the_lock(
    h: Harness,
) -> None:
    (existing,) = entries(1)
    found = ledger_to_item(LedgerItem("j", "r000", "pending", 4, ("b1",), "{}"))
    h.stub.add_response("update_item", {})
    h.stub.add_response("batch_get_item", {"Responses": {"t": [found]}})
    h.stub.add_response("update_item", {})
    with pytest.raises(StaleJobError, match="j/r000") as caught:
        h.store.save_ledger([existing, *entries(3)[1:]])
    assert caught.value.actual_version == 4
    assert h.operations() == ["UpdateItem", "BatchGetItem", "UpdateItem"]


def test_an_entry_and_its_earlier_batches_stay_in_one_transaction(h: Harness) -> None:
    moved = [e.model_copy(update={"batches": ("b1", "b2"), "version": 1}) for e in entries(60)]
    h.stub.add_response("transact_write_items", {})
    h.stub.add_response("transact_write_items", {})
    h.store.save_ledger(moved)
    for _, params in h.requests:
        keys = [a["Put"]["Item"]["sk"]["S"] for a in params["TransactItems"]]
        assert len(keys) <= 100 and len(keys) % 2 == 0  # entry + membership, never split


def test_a_commit_is_one_transaction_of_two_actions_however_long_its_history(
    h: Harness,
) -> None:
    h.stub.add_response("transact_write_items", {})
    history = [EventEntry(name=f"e{i}") for i in range(250)]
    h.store.commit(BatchRecord(batch_id="b"), expected_version=1, history=history)
    (params,) = (p for _, p in h.requests)
    assert len(params["TransactItems"]) == 2


def test_a_history_group_over_400_kb_is_refused_before_any_request(h: Harness) -> None:
    history = [EventEntry(name="e", detail={"blob": "x" * 5000}) for _ in range(90)]
    with pytest.raises(ValueError, match="history of batch b"):
        h.store.commit(BatchRecord(batch_id="b"), expected_version=1, history=history)
    assert h.requests == []
