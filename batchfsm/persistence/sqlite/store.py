"""The default store: one SQLite file, safe for several pollers on the same machine.

Every write is one ``BEGIN IMMEDIATE`` transaction whose UPDATE carries
``WHERE version = ?``, so two processes on one file can race and exactly one wins each
version; the loser gets :class:`~batchfsm.errors.StaleJobError` and its transaction is
rolled back whole (record, history and outbox together). The file runs in WAL mode so
readers never block the writer, and waits ``busy_timeout`` for a lock instead of failing.

The file is created private (0600), or refused when it must exist already (read
commands): :mod:`batchfsm.persistence.sqlite.files`.

The schema is versioned with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS`
on first use; a file written by a newer batchfsm is refused rather than misread. This
module owns the connection, its transactions and the batch, job and intent tables; the
ledger's SQL is :mod:`batchfsm.persistence.sqlite.ledger`, run inside those transactions.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from batchfsm.errors import (
    DuplicateJobError,
    JobNotFoundError,
    StaleJobError,
    StoreError,
    StoreUnavailableError,
)
from batchfsm.persistence.base import (
    BaseJobStore,
    BatchItem,
    IntentItem,
    JobItem,
    LedgerItem,
    LedgerWrite,
)
from batchfsm.persistence.sqlite.adoption import SQLiteAdoption
from batchfsm.persistence.sqlite.budgets import SQLiteBudgets
from batchfsm.persistence.sqlite.claiming import SQLiteClaims
from batchfsm.persistence.sqlite.files import ensure_file
from batchfsm.persistence.sqlite.ledger import count_ledger, get_ledger, put_ledger, scan_ledger
from batchfsm.persistence.sqlite.receipts import SQLiteReceipts
from batchfsm.persistence.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

MEMORY = ":memory:"


# Queries are assembled only from this constant, column names and "?" placeholders
# (hence the S608 waivers below); every value travels as a bound parameter.
_BATCH_COLUMNS = "batch_id, job_id, state, version, needs_attention, data"


class SQLiteJobStore(SQLiteAdoption, SQLiteClaims, SQLiteBudgets, SQLiteReceipts, BaseJobStore):
    """A store in one SQLite file (or ``":memory:"``), created and migrated on first use.

    :param path: the database file; its directory is created if missing.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param create: create a missing file (default). ``False``: a missing file raises
        :class:`~batchfsm.errors.StoreNotInitialisedError` on first use, nothing created.
    """

    ledger_group_atomic = True

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, create: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._create_missing = create
        self.url = "sqlite://:memory:" if self.path == MEMORY else f"sqlite:///{self.path}"
        # One connection per store object, shared by threads under this lock.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ready = False
        self._closed = False

    # -- connection and schema -----------------------------------------------------------
    def init(self) -> None:
        """Create the file and bring its schema up to date; safe to call any time."""
        with self._lock:
            self._connection()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with self._translate("close"):
                    conn.close()

    def schema_version(self) -> int:
        """The file's ``user_version`` (for diagnostics and tests)."""
        with self._lock, self._translate("read the schema version"):
            return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is None:
            self._conn = self._open()
        if not self._ready:
            self._migrate(self._conn)
            self._ready = True
        return self._conn

    def _open(self) -> sqlite3.Connection:
        with self._translate("open"):
            if self.path != MEMORY:
                ensure_file(self.path, create=self._create_missing, url=self.url)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE).
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                if self.path != MEMORY:
                    conn.execute("PRAGMA journal_mode = WAL")
                    # FULL, not WAL's usual NORMAL: a commit (an intent written before
                    # its upload, say) must survive a power cut, not just a crash.
                    conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
            return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._translate("migrate"):
            found = self._user_version(conn)
            self._refuse_newer(found)
            if found == SCHEMA_VERSION:
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have migrated meanwhile.
                found = self._user_version(conn)
                self._refuse_newer(found)
                for number in range(found + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[number - 1]:
                        conn.execute(statement)
                    logger.info("%s: applied schema migration %d", self.url, number)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    @staticmethod
    def _user_version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.url}: schema version {found} is newer than this batchfsm knows "
                f"({SCHEMA_VERSION}); upgrade batchfsm to use this store"
            )

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """The one boundary where ``sqlite3.Error`` becomes StoreUnavailableError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self.url}: could not {action}: {exc}") from exc

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate(action):
            yield self._connection()

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any
        exception (a lost version check included), so nothing is half written."""
        with self._lock, self._translate(action):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                # Still open after an exception, or after a COMMIT that failed.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    # -- batches -------------------------------------------------------------------------
    def _insert_batch(self, item: BatchItem, history: Sequence[str]) -> None:
        with self._write(f"create batch {item.batch_id}") as conn:
            inserted = conn.execute(
                f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (batch_id) DO NOTHING",
                _batch_row(item),
            ).rowcount
            if inserted == 0:
                raise DuplicateJobError(item.batch_id)
            _append_history(conn, item.batch_id, history)

    def _get_batch(self, batch_id: str) -> BatchItem | None:
        with self._read(f"load batch {batch_id}") as conn:
            row = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?",  # noqa: S608
                (batch_id,),
            ).fetchone()
        return _batch_item(row) if row else None

    def _swap_batch(
        self, item: BatchItem, *, expected_version: int, history: Sequence[str]
    ) -> None:
        with self._write(f"commit batch {item.batch_id}") as conn:
            updated = conn.execute(
                "UPDATE batches SET job_id = ?, state = ?, version = ?, needs_attention = ?, "
                "data = ? WHERE batch_id = ? AND version = ?",
                (
                    item.job_id,
                    item.state,
                    item.version,
                    int(item.needs_attention),
                    item.data,
                    item.batch_id,
                    expected_version,
                ),
            ).rowcount
            if updated == 0:
                row = conn.execute(
                    "SELECT version FROM batches WHERE batch_id = ?", (item.batch_id,)
                ).fetchone()
                if row is None:
                    raise JobNotFoundError(item.batch_id)
                raise StaleJobError(
                    item.batch_id, expected_version=expected_version, actual_version=row[0]
                )
            _append_history(conn, item.batch_id, history)

    def _get_history(self, batch_id: str) -> list[str] | None:
        with self._read(f"read the history of batch {batch_id}") as conn:
            # One statement, so the existence check and the entries are one snapshot.
            rows = conn.execute(
                "SELECT h.entry FROM batches AS b LEFT JOIN history AS h "
                "ON h.batch_id = b.batch_id WHERE b.batch_id = ? ORDER BY h.seq",
                (batch_id,),
            ).fetchall()
        if not rows:
            return None
        return [entry for (entry,) in rows if entry is not None]

    def _scan_batches(self, *, job_id: str | None, attention_only: bool) -> list[BatchItem]:
        where, params = [], []
        if attention_only:
            where.append("needs_attention = 1")
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read("list batches") as conn:
            rows = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches{clause} ORDER BY seq",  # noqa: S608
                params,
            ).fetchall()
        return [_batch_item(row) for row in rows]

    # -- jobs and intents ----------------------------------------------------------------
    def _insert_job(self, item: JobItem) -> None:
        with self._write(f"create job {item.job_id}") as conn:
            inserted = conn.execute(
                "INSERT INTO jobs (job_id, version, data) VALUES (?, ?, ?) "
                "ON CONFLICT (job_id) DO NOTHING",
                (item.job_id, item.version, item.data),
            ).rowcount
            if inserted == 0:
                raise DuplicateJobError(item.job_id, kind="job")

    def _get_job(self, job_id: str) -> JobItem | None:
        with self._read(f"load job {job_id}") as conn:
            row = conn.execute(
                "SELECT job_id, version, data FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return JobItem(*row) if row else None

    def _scan_jobs(self) -> list[JobItem]:
        with self._read("list jobs") as conn:
            rows = conn.execute("SELECT job_id, version, data FROM jobs ORDER BY seq").fetchall()
        return [JobItem(*row) for row in rows]

    def _put_intent(self, item: IntentItem, *, expected_version: int) -> None:
        with self._write(f"save intent {item.intent_id}") as conn:
            if expected_version == 0:
                written = conn.execute(
                    "INSERT INTO intents (intent_id, job_id, state, version, data) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (intent_id) DO NOTHING",
                    (item.intent_id, item.job_id, item.state, item.version, item.data),
                ).rowcount
            else:
                written = conn.execute(
                    "UPDATE intents SET job_id = ?, state = ?, version = ?, data = ? "
                    "WHERE intent_id = ? AND version = ?",
                    (
                        item.job_id,
                        item.state,
                        item.version,
                        item.data,
                        item.intent_id,
                        expected_version,
                    ),
                ).rowcount
            if written == 0:
                row = conn.execute(
                    "SELECT version FROM intents WHERE intent_id = ?", (item.intent_id,)
                ).fetchone()
                raise StaleJobError(
                    item.intent_id,
                    kind="intent",
                    expected_version=expected_version,
                    actual_version=row[0] if row else None,
                )

    def _scan_intents(
        self, *, job_id: str | None, states: frozenset[str] | None
    ) -> list[IntentItem]:
        where: list[str] = []
        params: list[str] = []
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(sorted(states))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read("list intents") as conn:
            rows = conn.execute(
                f"SELECT intent_id, job_id, state, version, data FROM intents{clause} ORDER BY seq",  # noqa: S608
                params,
            ).fetchall()
        return [IntentItem(*row) for row in rows]

    # -- ledger (in sqlite_ledger.py) ----------------------------------------------------
    def _put_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        with self._write(f"save {len(writes)} ledger entries") as conn:
            put_ledger(conn, writes)

    def _get_ledger(self, job_id: str, custom_ids: Sequence[str]) -> list[LedgerItem]:
        with self._read(f"read the ledger of job {job_id}") as conn:
            return get_ledger(conn, job_id, custom_ids)

    def _scan_ledger(
        self,
        *,
        job_id: str | None,
        batch_id: str | None,
        state: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[LedgerItem]:
        with self._read("read the ledger") as conn:
            return scan_ledger(
                conn, job_id=job_id, batch_id=batch_id, state=state, after=after, limit=limit
            )

    def _count_ledger(self, job_id: str | None) -> dict[str, int]:
        with self._read("count the ledger") as conn:
            return count_ledger(conn, job_id)


def _batch_row(item: BatchItem) -> tuple[str, str | None, str, int, int, str]:
    return (
        item.batch_id,
        item.job_id,
        item.state,
        item.version,
        int(item.needs_attention),
        item.data,
    )


def _batch_item(row: tuple[str, str | None, str, int, int, str]) -> BatchItem:
    batch_id, job_id, state, version, needs_attention, data = row
    return BatchItem(batch_id, job_id, state, version, bool(needs_attention), data)


def _append_history(conn: sqlite3.Connection, batch_id: str, history: Sequence[str]) -> None:
    if not history:
        return
    (last,) = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM history WHERE batch_id = ?", (batch_id,)
    ).fetchone()
    conn.executemany(
        "INSERT INTO history (batch_id, seq, entry) VALUES (?, ?, ?)",
        [(batch_id, last + n, entry) for n, entry in enumerate(history, start=1)],
    )
