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

    StaleJobError on the first conflict; the caller's transaction then rolls back the
    whole group.
    """
    for write in writes:
        item = write.item
        if write.expected_version == 0:
            written = conn.execute(
                "INSERT INTO ledger (job_id, custom_id, state, version, data) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, custom_id) DO NOTHING",
                (item.job_id, item.custom_id, item.state, item.version, item.data),
            ).rowcount
        else:
            written = conn.execute(
                "UPDATE ledger SET state = ?, version = ?, data = ? "
                "WHERE job_id = ? AND custom_id = ? AND version = ?",
                (
                    item.state,
                    item.version,
                    item.data,
                    item.job_id,
                    item.custom_id,
                    write.expected_version,
                ),
            ).rowcount
        if written == 0:
            row = conn.execute(
                "SELECT version FROM ledger WHERE job_id = ? AND custom_id = ?",
                (item.job_id, item.custom_id),
            ).fetchone()
            raise StaleJobError(
                ledger_key(item.job_id, item.custom_id),
                kind="ledger entry",
                expected_version=write.expected_version,
                actual_version=row[0] if row else None,
            )
        # Membership only grows; the base re-checks ``batches`` on read anyway.
        conn.executemany(
            "INSERT INTO ledger_batches (batch_id, job_id, custom_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(batch, item.job_id, item.custom_id) for batch in item.batches],
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
    strictly after ``after``; ``batch_id`` matches any batch an entry ever ran in."""
    source = "ledger AS l"
    where: list[str] = []
    params: list[str | int] = []
    if batch_id is not None:
        source = (
            "ledger_batches AS m JOIN ledger AS l "
            "ON l.job_id = m.job_id AND l.custom_id = m.custom_id"
        )
        where.append("m.batch_id = ?")
        params.append(batch_id)
    if job_id is not None:
        where.append("l.job_id = ?")
        params.append(job_id)
    if state is not None:
        where.append("l.state = ?")
        params.append(state)
    if after is not None:
        where.append("(l.job_id, l.custom_id) > (?, ?)")
        params.extend(after)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_LEDGER_COLUMNS} FROM {source}{clause} "  # noqa: S608
        "ORDER BY l.job_id, l.custom_id LIMIT ?",
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
