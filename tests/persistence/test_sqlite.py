"""What only the SQLite store promises: its file, its schema, and several writers on it."""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from batchfsm.errors import (
    StaleJobError,
    StoreError,
    StoreNotInitialisedError,
    StoreUnavailableError,
    UnknownStatusError,
)
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.persistence.sqlite.schema import SCHEMA_VERSION
from batchfsm.persistence.sqlite.store import SQLiteJobStore

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "state" / "batchfsm.db"


@pytest.fixture
def store(db: pathlib.Path) -> Iterator[SQLiteJobStore]:
    with SQLiteJobStore(db) as opened:
        yield opened


def raw(db: pathlib.Path) -> sqlite3.Connection:
    """A plain connection beside the store, to inspect or damage the file."""
    return sqlite3.connect(db, isolation_level=None)


def tables(db: pathlib.Path) -> set[str]:
    with raw(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


# -- file and schema ---------------------------------------------------------------------


def test_file_and_directory_are_created_on_first_use_not_before(db: pathlib.Path) -> None:
    store = SQLiteJobStore(db)
    assert not db.exists()

    assert store.list_batches() == []

    assert db.exists()
    assert store.schema_version() == SCHEMA_VERSION
    assert {"batches", "history", "jobs", "intents", "ledger", "ledger_batches"} <= tables(db)
    store.close()


def test_the_file_and_its_wal_are_private_whatever_the_umask(db: pathlib.Path) -> None:
    """The store keeps every original request line: 0600, like the result files."""
    previous = os.umask(0o002)  # a umask that would leave new files group-writable
    try:
        with SQLiteJobStore(db) as store:
            store.create(BatchRecord(batch_id="b1"))
            companions = [db.with_name(db.name + s) for s in ("-wal", "-shm")]
            assert all(p.exists() for p in companions)  # still open: WAL files present
            for path in (db, *companions):
                assert path.stat().st_mode & 0o777 == 0o600, path
    finally:
        os.umask(previous)


def test_a_store_that_must_exist_creates_nothing(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "typo" / "store.db"
    store = SQLiteJobStore(missing, create=False)
    with pytest.raises(StoreNotInitialisedError, match=f"{missing} does not exist"):
        store.list_batches()
    store.close()
    assert not (tmp_path / "typo").exists()


def test_a_store_that_must_exist_opens_an_existing_file(db: pathlib.Path) -> None:
    with SQLiteJobStore(db) as store:
        store.create(BatchRecord(batch_id="b1"))
    with SQLiteJobStore(db, create=False) as store:
        assert [r.batch_id for r in store.list_batches()] == ["b1"]


def test_an_empty_existing_file_is_migrated(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    assert tables(path) == set()

    with SQLiteJobStore(path) as store:
        store.create(BatchRecord(batch_id="b1"))

    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "batches" in tables(path)


def test_init_is_idempotent_and_keeps_data(db: pathlib.Path, store: SQLiteJobStore) -> None:
    store.init()
    store.create(BatchRecord(batch_id="b1"))
    store.init()
    with SQLiteJobStore(db) as other:
        other.init()
        other.init()
        assert other.load("b1").version == 1


def test_a_newer_schema_is_refused_untouched(db: pathlib.Path) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    store = SQLiteJobStore(db)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        store.list_batches()
    with pytest.raises(StoreError, match="upgrade batchfsm"):
        store.init()
    store.close()

    assert tables(db) == {"future"}


def test_runs_in_wal_mode(db: pathlib.Path, store: SQLiteJobStore) -> None:
    store.init()
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_attention_reads_the_attention_index(db: pathlib.Path, store: SQLiteJobStore) -> None:
    store.init()
    with raw(db) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM batches WHERE needs_attention = 1 ORDER BY seq"
        ).fetchall()
    assert any("batches_attention" in str(step) for step in plan)


def test_memory_databases_are_private(tmp_path: pathlib.Path) -> None:
    with SQLiteJobStore(":memory:") as one, SQLiteJobStore(":memory:") as two:
        one.create(BatchRecord(batch_id="b1"))
        assert one.url == "sqlite://:memory:"
        assert [r.batch_id for r in one.list_batches()] == ["b1"]
        assert two.list_batches() == []
    assert list(tmp_path.iterdir()) == []


def test_a_closed_store_refuses_use(store: SQLiteJobStore) -> None:
    store.init()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.list_batches()


# -- corrupt or unreadable data ----------------------------------------------------------


def test_unknown_state_column_is_unknown_status_error(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    store.create(BatchRecord(batch_id="b1", state=BatchStatus.IN_PROGRESS))
    with raw(db) as conn:
        conn.execute("UPDATE batches SET state = 'canceled' WHERE batch_id = 'b1'")

    with pytest.raises(UnknownStatusError) as caught:
        store.load("b1")
    assert caught.value.raw == "canceled"
    assert caught.value.batch_id == "b1"
    assert caught.value.where == "the store"
    with pytest.raises(UnknownStatusError):
        store.list_attention()


def test_unknown_state_inside_the_record_is_unknown_status_error(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    store.create(BatchRecord(batch_id="b1"))
    with raw(db) as conn:
        (data,) = conn.execute("SELECT data FROM batches").fetchone()
        bad = json.loads(data) | {"state": "paused"}
        conn.execute("UPDATE batches SET data = ?", (json.dumps(bad),))

    with pytest.raises(UnknownStatusError, match="'paused'") as caught:
        store.load("b1")
    assert caught.value.raw == "paused"


def test_a_damaged_record_names_the_batch_and_field(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    store.create(BatchRecord(batch_id="b1"))
    with raw(db) as conn:
        (data,) = conn.execute("SELECT data FROM batches").fetchone()
        bad = json.loads(data) | {"observations": "many"}
        conn.execute("UPDATE batches SET data = ?", (json.dumps(bad),))

    with pytest.raises(StoreError, match=r"batch b1 is unreadable: field 'observations'"):
        store.load("b1")


def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 200)
    store = SQLiteJobStore(path)
    with pytest.raises(StoreUnavailableError, match=r"notes\.db") as caught:
        store.list_batches()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    store.close()


# -- several writers ---------------------------------------------------------------------


def test_a_held_write_lock_times_out_as_unavailable_and_writes_nothing(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    record = store.create(BatchRecord(batch_id="b1"))
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with (
            SQLiteJobStore(db, busy_timeout=0.05) as impatient,
            pytest.raises(StoreUnavailableError, match="locked"),
        ):
            impatient.commit(record, expected_version=1, history=[EventEntry(name="x")])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.load("b1").version == 1
    assert store.history("b1") == []


def test_two_store_objects_racing_in_threads_win_each_version_once(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    store.create(BatchRecord(batch_id="b1"))
    target = 40
    won: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def poller(name: str) -> None:
        with SQLiteJobStore(db) as mine:
            start.wait()
            while True:
                current = mine.load("b1")
                if current.version >= target:
                    return
                try:
                    saved = mine.commit(
                        current, expected_version=current.version, history=[EventEntry(name=name)]
                    )
                except StaleJobError:
                    continue
                won[name].append(saved.version)

    threads = [threading.Thread(target=poller, args=(n,)) for n in won]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    versions = sorted(won["a"] + won["b"])
    assert versions == list(range(2, target + 1))
    history = store.history("b1")
    assert len(history) == target - 1
    assert sum(1 for e in history if isinstance(e, EventEntry) and e.name == "a") == len(won["a"])


RACER = textwrap.dedent("""
    import json, sys, time
    from batchfsm.errors import JobNotFoundError, StaleJobError
    from batchfsm.fsm.models import EventEntry
    from batchfsm.persistence.sqlite.store import SQLiteJobStore

    path, name, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    won, lost = [], 0
    with SQLiteJobStore(path) as store:
        print("ready", flush=True)
        while True:
            try:
                current = store.load("b1")
            except JobNotFoundError:  # the start gate: the test creates b1 once both run
                time.sleep(0.001)
                continue
            if current.version >= target:
                break
            try:
                saved = store.commit(current, expected_version=current.version,
                                     history=[EventEntry(name=name)])
            except StaleJobError:
                lost += 1
                continue
            won.append(saved.version)
    print(json.dumps({"won": won, "lost": lost}))
""")


def test_two_processes_on_one_file_win_each_version_once(
    db: pathlib.Path, store: SQLiteJobStore
) -> None:
    store.init()
    target = 100
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(db), name, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for name in ("p1", "p2")
    ]
    for racer in racers:  # both imported and connected before the batch exists
        assert racer.stdout is not None
        if racer.stdout.readline().strip() != "ready":
            for other in racers:
                other.kill()
            pytest.fail(f"a racer did not start: {racer.communicate(timeout=10)[1]}")
    store.create(BatchRecord(batch_id="b1"))
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in results]

    reports = [json.loads(out) for out, _ in results]
    versions = sorted(v for r in reports for v in r["won"])
    assert versions == list(range(2, target + 1))
    assert store.load("b1").version == target
    assert len(store.history("b1")) == target - 1
