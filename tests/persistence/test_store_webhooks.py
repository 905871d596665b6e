"""The store contract's webhook half (``record_event``, ``get_event``,
``save_wait_token``, ``pop_wait_token``), run against every backend in
``factories.STORE_FACTORIES`` like ``test_store_contract.py``.

The promises: a ``webhook-id`` is recorded once (a redelivery is told apart, even when
deliveries race), and a wait token is taken by exactly one caller.
"""

from __future__ import annotations

import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.persistence import JobStore, SQLiteJobStore
from batchfsm.persistence.sqlite.schema import MIGRATIONS
from batchfsm.ports import WebhookReceipt
from tests.persistence.factories import STORE_FACTORIES

T0 = datetime.now(UTC).replace(microsecond=0)
"""Receipts expire a week after they were received, so the tests receive them now."""


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with STORE_FACTORIES[request.param](tmp_path) as made:
        yield made


def receipt(
    event_id: str, *, batch_id: str | None = "batch_1", known: bool = True
) -> WebhookReceipt:
    return WebhookReceipt(
        event_id=event_id,
        event_type="batch.completed",
        batch_id=batch_id,
        received_at=T0,
        known=known,
    )


def race(count: int, work: Callable[[], object]) -> list[object]:
    """Run ``work`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_an_event_is_recorded_once_and_read_back(store: JobStore) -> None:
    first = receipt("wh_1")
    assert store.get_event("wh_1") is None
    assert store.record_event(first) is True
    assert store.record_event(first) is False
    # A redelivery with other contents changes nothing: the first receipt stands.
    assert store.record_event(receipt("wh_1", batch_id=None, known=False)) is False
    assert store.get_event("wh_1") == first


def test_an_event_for_an_unknown_batch_or_another_kind_is_kept_as_received(
    store: JobStore,
) -> None:
    other = WebhookReceipt("wh_2", "response.completed", None, T0 + timedelta(seconds=1), False)
    assert store.record_event(other) is True
    assert store.get_event("wh_2") == other


def test_racing_deliveries_of_one_event_record_it_once(store: JobStore) -> None:
    results = race(8, lambda: store.record_event(receipt("wh_race")))
    assert results.count(True) == 1 and results.count(False) == 7


def test_a_receipt_needs_an_aware_time_and_a_sane_id(store: JobStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_event(receipt("wh_3")._replace(received_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="webhook-id"):
        store.record_event(receipt(""))
    with pytest.raises(ValueError, match="webhook-id"):
        store.record_event(receipt("x" * 513))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    event_ids=st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=80),
        min_size=1,
        max_size=5,
    )
)
def test_any_ids_dedupe_exactly(store: JobStore, event_ids: list[str]) -> None:
    # Ids are opaque to us: whatever a sender puts in webhook-id must key exactly.
    prefix = f"h{threading.get_ident()}-{datetime.now(UTC).timestamp()}-"
    for event_id in event_ids:
        key = prefix + event_id
        seen_before = store.get_event(key) is not None
        assert store.record_event(receipt(key)) is not seen_before
        assert store.get_event(key) == receipt(key)


def test_a_wait_token_is_taken_once(store: JobStore) -> None:
    assert store.pop_wait_token("batch:b1") is None
    store.save_wait_token("batch:b1", "token-1")
    store.save_wait_token("batch:b1", "token-2")  # a newer wait replaces the older
    store.save_wait_token("job:j1", "token-3")
    assert store.pop_wait_token("batch:b1") == "token-2"
    assert store.pop_wait_token("batch:b1") is None
    assert store.pop_wait_token("job:j1") == "token-3"


def test_racing_takers_get_the_token_once(store: JobStore) -> None:
    store.save_wait_token("batch:race", "only-one")
    results = race(6, lambda: store.pop_wait_token("batch:race"))
    assert results.count("only-one") == 1 and results.count(None) == 5


def test_a_token_needs_a_scope_and_a_value(store: JobStore) -> None:
    with pytest.raises(ValueError, match="scope"):
        store.save_wait_token("", "t")
    with pytest.raises(ValueError, match="empty task token"):
        store.save_wait_token("batch:b", "")


def test_a_version_1_sqlite_file_gains_the_webhook_tables(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with SQLiteJobStore(path) as store:
        assert store.record_event(receipt("wh_old")) is True
        assert store.schema_version() == len(MIGRATIONS) >= 2


def test_an_expired_sqlite_receipt_is_pruned_and_its_id_reusable(tmp_path: pathlib.Path) -> None:
    with SQLiteJobStore(tmp_path / "s.db") as store:
        stale = receipt("wh_old")._replace(received_at=datetime.now(UTC) - timedelta(days=30))
        assert store.record_event(stale) is True
        assert store.record_event(receipt("wh_new")._replace(received_at=datetime.now(UTC)))
        assert store.get_event("wh_old") is None  # pruned: past its week
        assert store.record_event(stale) is True
