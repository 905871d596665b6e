"""``append_batch``: recording a created batch on the entries its intent claimed, on
every backend (SQLite does it in SQL, the others by conditional rewrites; the promise
is the same)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from batchfsm.errors import StaleJobError
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence import JobStore
from tests.persistence.factories import STORE_FACTORIES


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with STORE_FACTORIES[request.param](tmp_path) as made:
        yield made


def claimed(custom_id: str, intent: str | None, **update: object) -> LedgerEntry:
    entry = LedgerEntry(
        job_id="job-1",
        custom_id=custom_id,
        line=f'{{"custom_id": "{custom_id}"}}',
        intent_id=intent,
        input_tokens=7,
    )
    return entry.model_copy(update=update)


def test_only_the_intents_entries_get_the_batch_and_each_once(store: JobStore) -> None:
    store.save_ledger(
        [
            claimed("a", "intent_1"),
            claimed("b", "intent_1", batches=("batch_old",), state=ItemState.RETRY),
            claimed("c", "intent_2"),  # a rival intent took it
            claimed("d", None),  # never claimed
        ]
    )
    for _ in range(2):  # a crash after the first call repeats it: nothing doubles
        store.append_batch(
            "job-1", ["a", "b", "c", "d", "missing"], intent_id="intent_1", batch_id="batch_new"
        )
    entries = store.get_ledger("job-1", ["a", "b", "c", "d", "missing"])
    assert set(entries) == {"a", "b", "c", "d"}  # nothing created
    assert entries["a"].batches == ("batch_new",)
    assert entries["a"].state is ItemState.PENDING
    assert entries["a"].input_tokens == 7 and entries["a"].line == '{"custom_id": "a"}'
    assert entries["b"].batches == ("batch_old", "batch_new")
    assert entries["b"].state is ItemState.PENDING
    assert entries["c"].batches == () and entries["d"].batches == ()
    found = sorted(e.custom_id for e in store.iter_ledger("job-1", batch_id="batch_new"))
    assert found == ["a", "b"]
    assert sorted(e.custom_id for e in store.iter_ledger("job-1", batch_id="batch_old")) == ["b"]


def test_a_writer_holding_the_entry_from_before_loses_its_race(store: JobStore) -> None:
    (before,) = store.save_ledger([claimed("a", "intent_1")])
    store.append_batch("job-1", ["a"], intent_id="intent_1", batch_id="batch_1")
    after = store.get_ledger("job-1", ["a"])["a"]
    assert after.version == before.version + 1
    with pytest.raises(StaleJobError):
        store.save_ledger([before.model_copy(update={"state": ItemState.FAILED})])
    assert store.get_ledger("job-1", ["a"])["a"] == after


def test_stale_known_entries_are_read_again_not_trusted(store: JobStore) -> None:
    (first,) = store.save_ledger([claimed("a", "intent_1")])
    store.save_ledger([first.model_copy(update={"attempts": 1})])  # someone moved it on
    store.append_batch("job-1", ["a"], intent_id="intent_1", batch_id="batch_1", known={"a": first})
    entry = store.get_ledger("job-1", ["a"])["a"]
    assert entry.batches == ("batch_1",) and entry.attempts == 1


def test_intent_states_name_every_intent_of_the_job_and_only_its(store: JobStore) -> None:
    from datetime import UTC, datetime

    from batchfsm.ledger.records import IntentState, SubmitIntent

    def intent(intent_id: str, job_id: str) -> SubmitIntent:
        return SubmitIntent(
            intent_id=intent_id,
            job_id=job_id,
            created_at=datetime(2026, 3, 1, tzinfo=UTC),
            custom_ids=tuple(f"r{n}" for n in range(1_000)),
        )

    planned = store.save_intent(intent("intent_a", "job-1"))
    store.save_intent(planned.model_copy(update={"state": IntentState.CREATED}))
    store.save_intent(intent("intent_b", "job-1"))
    store.save_intent(intent("intent_c", "job-2"))
    assert store.intent_states("job-1") == {
        "intent_a": IntentState.CREATED,
        "intent_b": IntentState.PLANNED,
    }
    assert store.intent_states("job-3") == {}


def test_a_fresh_jobs_claims_are_inserted_all_or_none(store: JobStore) -> None:
    from batchfsm.ledger.records import NewClaim

    claims = [NewClaim("a", '{"custom_id": "a"}', 7), NewClaim("b", '{"custom_id": "b"}', None)]
    inserted = store.insert_claimed("job-1", "intent_1", claims)
    entries = store.get_ledger("job-1", ["a", "b"])
    if not store.ledger_group_atomic:  # DynamoDB: it cannot promise all or none
        assert inserted is False and entries == {}
        return
    assert inserted is True
    # The very entries a claim through the models would have written, at version 1.
    assert entries == {
        c.custom_id: LedgerEntry(
            job_id="job-1",
            custom_id=c.custom_id,
            line=c.line,
            input_tokens=c.input_tokens,
            intent_id="intent_1",
            version=1,
        )
        for c in claims
    }
    # One request already has an entry (a racing submit claimed it): nothing is written.
    again = [NewClaim("c", '{"custom_id": "c"}', 1), NewClaim("a", "other", 1)]
    assert store.insert_claimed("job-1", "intent_2", again) is False
    assert set(store.get_ledger("job-1", ["a", "b", "c"])) == {"a", "b"}
    assert store.get_ledger("job-1", ["a"])["a"].intent_id == "intent_1"
