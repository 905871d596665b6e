"""Concurrent writers against the moto server: exactly one winner per version, and the
winners' history is all there. Each thread has its own client (its own HTTP requests)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from batchfsm.errors import StaleJobError
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.dynamodb.store import DynamoDBJobStore
from tests.persistence.dynamodb_server import client, fresh_store

WRITERS = 6
ROUNDS = 8


@pytest.fixture(scope="module")
def table() -> Iterator[str]:
    with fresh_store() as store:
        yield store.table


def race(n: int, attempt: Callable[[int], str]) -> list[str]:
    """Run ``attempt(i)`` in ``n`` threads released together; each returns an outcome."""
    start = threading.Barrier(n)
    outcomes: list[str] = [""] * n

    def run(i: int) -> None:
        start.wait()
        outcomes[i] = attempt(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_commits_have_one_winner_per_version_and_lose_no_history(table: str) -> None:
    stores = [DynamoDBJobStore(client(), table) for _ in range(WRITERS)]
    record = stores[0].create(BatchRecord(batch_id="race-1"))
    winners: list[str] = []
    for round_no in range(ROUNDS):
        version = record.version

        def commit(
            i: int, record: BatchRecord = record, version: int = version, round_no: int = round_no
        ) -> str:
            name = f"writer{i}-round{round_no}"
            try:
                stores[i].commit(
                    record.model_copy(update={"observations": i}),
                    expected_version=version,
                    history=[EventEntry(name=name)],
                )
            except StaleJobError as exc:
                return "stale" if exc.actual_version == version + 1 else f"odd: {exc}"
            return name

        outcomes = race(WRITERS, commit)
        won = [o for o in outcomes if o != "stale"]
        assert len(won) == 1, outcomes
        winners.extend(won)
        record = stores[0].load("race-1")
        assert record.version == version + 1

    assert record.version == 1 + ROUNDS
    history = stores[0].history("race-1")
    assert [e.name for e in history if isinstance(e, EventEntry)] == winners


def test_concurrent_ledger_updates_of_one_entry_have_one_winner(table: str) -> None:
    stores = [DynamoDBJobStore(client(), table) for _ in range(WRITERS)]
    (entry,) = stores[0].save_ledger(
        [LedgerEntry(job_id="race-job", custom_id="r1", line="{}", batches=("b1",))]
    )
    states = [ItemState.SUCCEEDED, ItemState.FAILED, ItemState.RETRY]

    def update(i: int) -> str:
        try:
            stores[i].save_ledger(
                [entry.model_copy(update={"state": states[i % 3], "attempts": i})]
            )
        except StaleJobError:
            return "stale"
        return str(i)

    outcomes = race(WRITERS, update)
    assert Counter(o == "stale" for o in outcomes) == {True: WRITERS - 1, False: 1}
    (winner,) = (int(o) for o in outcomes if o != "stale")
    stored = stores[0].get_ledger("race-job", ["r1"])["r1"]
    assert (stored.version, stored.attempts) == (2, winner)
