"""Every store the contract suite runs against, by name.

Each factory takes a fresh temporary directory and returns a context manager yielding an
empty, ready store; leaving the context releases it. Add a backend by adding an entry.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Iterator

from batchfsm.persistence import JobStore, MemoryJobStore, SQLiteJobStore
from tests.persistence.dynamodb_server import dynamodb_store


@contextlib.contextmanager
def memory_store(tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with MemoryJobStore() as store:
        yield store


@contextlib.contextmanager
def sqlite_store(tmp_path: pathlib.Path) -> Iterator[JobStore]:
    # A real file, so WAL, locking and the migration run as they do for users.
    with SQLiteJobStore(tmp_path / "store.db") as store:
        yield store


StoreFactory = Callable[[pathlib.Path], contextlib.AbstractContextManager[JobStore]]

STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "dynamodb": dynamodb_store,
}
