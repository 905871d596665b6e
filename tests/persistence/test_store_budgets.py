"""The store contract's token budgets (``load_budget``, ``save_budget``), against every
backend in ``factories.STORE_FACTORIES``: conditional on the version like every other
record, so racing reservations never take more than the budget between them."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator

import pytest

from batchfsm.errors import StaleJobError
from batchfsm.ledger.budget import TokenBudget
from batchfsm.persistence import JobStore
from batchfsm.persistence.optimistic import retry_on_conflict
from tests.persistence.factories import STORE_FACTORIES


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with STORE_FACTORIES[request.param](tmp_path) as made:
        yield made


def test_an_unwritten_budget_is_empty_at_version_0(store: JobStore) -> None:
    assert store.load_budget("gpt-4o-mini") == TokenBudget(model="gpt-4o-mini")


def test_a_budget_round_trips_and_versions(store: JobStore) -> None:
    saved = store.save_budget(TokenBudget(model="m").reserve("job/intent_1", 120))
    assert saved.version == 1
    assert store.load_budget("m") == saved
    again = store.save_budget(saved.release("job/intent_1", queue_full=True))
    assert store.load_budget("m") == again
    assert again.version == 2 and again.held == {} and again.factor == 0.5
    assert store.load_budget("other") == TokenBudget(model="other")


def test_a_stale_budget_write_is_refused_and_writes_nothing(store: JobStore) -> None:
    first = store.save_budget(TokenBudget(model="m").reserve("a", 1))
    store.save_budget(first.reserve("b", 2))
    with pytest.raises(StaleJobError):
        store.save_budget(first.reserve("c", 3))
    with pytest.raises(StaleJobError):
        store.save_budget(TokenBudget(model="m").reserve("d", 4))  # insert over an existing
    assert set(store.load_budget("m").held) == {"a", "b"}


def test_racing_reservations_never_pass_the_budget(store: JobStore) -> None:
    limit, each, racers = 100, 30, 8
    barrier = threading.Barrier(racers)
    won: list[str] = []

    def reserve(key: str) -> None:
        barrier.wait()

        def attempt(_retry: bool) -> bool:
            budget = store.load_budget("m")
            if not budget.fits(each, limit) or key in budget.held:
                return False
            store.save_budget(budget.reserve(key, each))
            return True

        if retry_on_conflict(attempt, subject="budget", attempts=50):
            won.append(key)

    threads = [threading.Thread(target=reserve, args=(f"k{i}",)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = store.load_budget("m").held
    assert sorted(held) == sorted(won)
    assert len(won) == limit // each and sum(held.values()) <= limit
