"""What only the in-memory store promises (the rest is in the contract suite)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading

import pytest

from batchfsm.errors import StaleJobError, StoreError, UnknownStatusError
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.ledger.records import LedgerEntry
from batchfsm.persistence.memory import MemoryJobStore


def test_unknown_stored_state_is_unknown_status_error() -> None:
    store = MemoryJobStore()
    store.create(BatchRecord(batch_id="b1"))
    # Damage the stored item the way a bad migration or hand edit would.
    item = store._batches["b1"]
    store._batches["b1"] = dataclasses.replace(item, state="canceled")

    with pytest.raises(UnknownStatusError) as caught:
        store.load("b1")
    assert (caught.value.raw, caught.value.batch_id) == ("canceled", "b1")


def test_unknown_ledger_state_is_a_store_error() -> None:
    store = MemoryJobStore()
    store.save_ledger([LedgerEntry(job_id="j", custom_id="c", line="{}")])
    item = store._ledger[("j", "c")]
    store._ledger[("j", "c")] = dataclasses.replace(item, state="lost")

    with pytest.raises(StoreError, match="'lost'"):
        store.count_ledger()


def test_records_are_copies_not_shared_objects() -> None:
    store = MemoryJobStore()
    store.create(BatchRecord(batch_id="b1", snapshot=None))
    first, second = store.load("b1"), store.load("b1")
    assert first == second
    assert first is not second


def test_threads_committing_at_once_win_each_version_once() -> None:
    store = MemoryJobStore()
    store.create(BatchRecord(batch_id="b1"))
    won: list[int] = []
    start = threading.Barrier(4)

    def poller() -> None:
        start.wait()
        for _ in range(50):
            current = store.load("b1")
            with contextlib.suppress(StaleJobError):
                won.append(
                    store.commit(
                        current, expected_version=current.version, history=[EventEntry(name="x")]
                    ).version
                )

    threads = [threading.Thread(target=poller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(won) == list(range(2, len(won) + 2))
    assert store.load("b1").version == len(won) + 1
    assert len(store.history("b1")) == len(won)


def test_a_closed_store_refuses_use() -> None:
    store = MemoryJobStore()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.list_batches()
