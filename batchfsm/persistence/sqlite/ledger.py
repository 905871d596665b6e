"""The per-request ledger on SQLite: conditional group writes, lookups and listings.

The ledger is the store's high-volume part (one row per request, a million for a big
job), so its SQL lives here, next to :mod:`batchfsm.persistence.dynamodb.ledger` for the
other backend. Every function runs on a connection the caller holds:
:class:`~batchfsm.persistence.sqlite.store.SQLiteJobStore` opens the transaction (one
``BEGIN IMMEDIATE`` for a whole ``save_ledger`` group, so a conflict writes none of it)
and turns ``sqlite3.Error`` into a store error.

Tables (see :mod:`batchfsm.persistence.sqlite.schema`): ``ledger`` holds each entry,
keyed by ``(job_id, custom_id)``; ``ledger_batches`` records every batch an entry ever
ran in, so ``iter_ledger(batch_id=old)`` finds entries that have moved on to a retry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from batchfsm.errors import StaleJobError
from batchfsm.persistence.items import LedgerItem, LedgerWrite, ledger_key

# Queries are assembled only from this constant, column names and "?" placeholders
# (hence the S608 waivers below); every value travels as a bound parameter.
_LEDGER_COLUMNS = "l.job_id, l.custom_id, l.state, l.version, l.data"
_CHUNK = 500
"""``custom_id``s per lookup statement: SQLite caps the ``?`` parameters of one."""


def put_ledger(conn: sqlite3.Connection, writes: Sequence[LedgerWrite]) -> None:
    """Insert (expected version 0) or update every entry conditionally on its version.

    One ``executemany`` per kind of write (a 50,000-entry submit makes 200 calls into
    SQLite, not 100,000); when fewer rows changed than asked, some write lost its
    condition: StaleJobError names it, and the caller's transaction rolls back the
    whole group.
    """
    inserts = [w for w in writes if w.expected_version == 0]
    updates = [w for w in writes if w.expected_version != 0]
    if inserts:
        changed = conn.executemany(
            "INSERT INTO ledger (job_id, custom_id, state, version, data) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, custom_id) DO NOTHING",
            [
                (i.job_id, i.custom_id, i.state, i.version, i.data)
                for i in (w.item for w in inserts)
            ],
        ).rowcount
        if changed != len(inserts):
            _raise_conflict(conn, inserts)
    if updates:
        changed = conn.executemany(
            "UPDATE ledger SET state = ?, version = ?, data = ? "
            "WHERE job_id = ? AND custom_id = ? AND version = ?",
            [
                (w.item.state, w.item.version, w.item.data, w.item.job_id, w.item.custom_id,
                 w.expected_version)
                for w in updates
            ],
        ).rowcount  # fmt: skip
        if changed != len(updates):
            _raise_conflict(conn, updates)
    # Membership only grows; the base re-checks ``batches`` on read anyway.
    memberships = [(b, w.item.job_id, w.item.custom_id) for w in writes for b in w.item.batches]
    if memberships:
        conn.executemany(
            "INSERT INTO ledger_batches (batch_id, job_id, custom_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            memberships,
        )


def _raise_conflict(conn: sqlite3.Connection, writes: Sequence[LedgerWrite]) -> None:
    """Name the first write of ``writes`` that did not land: its row is not what it
    wrote (the group is rolled back by the caller)."""
    for write in writes:
        item = write.item
        row = conn.execute(
            "SELECT version, data FROM ledger WHERE job_id = ? AND custom_id = ?",
            (item.job_id, item.custom_id),
        ).fetchone()
        if row is None or tuple(row) != (item.version, item.data):
            raise StaleJobError(
                ledger_key(item.job_id, item.custom_id),
                kind="ledger entry",
                expected_version=write.expected_version,
                actual_version=row[0] if row else None,
            )
    first = writes[0].item  # every row reads as written: a rival wrote the same bytes
    raise StaleJobError(
        ledger_key(first.job_id, first.custom_id),
        kind="ledger entry",
        expected_version=writes[0].expected_version,
        actual_version=None,
    )


def get_ledger(
    conn: sqlite3.Connection, job_id: str, custom_ids: Sequence[str]
) -> list[LedgerItem]:
    """The entries of ``job_id`` that exist among ``custom_ids``."""
    found: list[LedgerItem] = []
    for start in range(0, len(custom_ids), _CHUNK):
        chunk = custom_ids[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger AS l "  # noqa: S608
            f"WHERE l.job_id = ? AND l.custom_id IN ({marks})",
            [job_id, *chunk],
        ).fetchall()
        found.extend(_ledger_item(row) for row in rows)
    return found


def scan_ledger(
    conn: sqlite3.Connection,
    *,
    job_id: str | None,
    batch_id: str | None,
    state: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[LedgerItem]:
    """Up to ``limit`` entries matching every filter, ordered by (job_id, custom_id),
    strictly after ``after``; ``batch_id`` matches any batch an entry ever ran in.

    Every page is an index seek to ``after`` (never a read of the entries before it),
    so reading a million-entry ledger page by page stays linear: with a job, ``after``
    is ``custom_id > ?`` within it (SQLite does not seek a row value ``(job_id,
    custom_id) > (?, ?)`` next to ``job_id = ?``); with a batch, the seek and the order
    are on the membership table's key; with a state, on ``ledger_by_state``.
    """
    if job_id is not None and after is not None and after[0] > job_id:
        return []  # the job's entries all sort before ``after``
    keys = "m" if batch_id is not None else "l"
    if batch_id is not None:
        source = (
            "ledger_batches AS m JOIN ledger AS l "
            "ON l.job_id = m.job_id AND l.custom_id = m.custom_id"
        )
        where, params = ["m.batch_id = ?"], [batch_id]
    else:
        source = "ledger AS l INDEXED BY ledger_by_state" if state is not None else "ledger AS l"
        where, params = [], []
    if state is not None:
        where.append("l.state = ?")
        params.append(state)
    if job_id is not None:
        where.append(f"{keys}.job_id = ?")
        params.append(job_id)
        if after is not None and after[0] == job_id:
            where.append(f"{keys}.custom_id > ?")
            params.append(after[1])
    elif after is not None:
        where.append(f"({keys}.job_id, {keys}.custom_id) > (?, ?)")
        params.extend(after)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_LEDGER_COLUMNS} FROM {source}{clause} "  # noqa: S608
        f"ORDER BY {keys}.job_id, {keys}.custom_id LIMIT ?",
        [*params, limit],
    ).fetchall()
    # The join proves membership of ``batch_id``; other batches stay in ``data``.
    member = (batch_id,) if batch_id is not None else ()
    return [_ledger_item(row, member) for row in rows]


def count_ledger(conn: sqlite3.Connection, job_id: str | None) -> dict[str, int]:
    """Entries per stored state string (of one job, or of all)."""
    if job_id is None:
        rows = conn.execute("SELECT state, count(*) FROM ledger GROUP BY state")
    else:
        rows = conn.execute(
            "SELECT state, count(*) FROM ledger WHERE job_id = ? GROUP BY state", (job_id,)
        )
    return dict(rows.fetchall())


def _ledger_item(row: tuple[str, str, str, int, str], batches: tuple[str, ...] = ()) -> LedgerItem:
    job_id, custom_id, state, version, data = row
    return LedgerItem(job_id, custom_id, state, version, batches, data)
