"""The SQLite store's tables, as a list of migrations.

A file's ``PRAGMA user_version`` says how many of :data:`MIGRATIONS` it has had;
:class:`~batchfsm.persistence.sqlite.store.SQLiteJobStore` applies the rest on first use, in
one transaction, and refuses a file whose version is higher than ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from batchfsm.persistence.sqlite.budgets import MIGRATION as BUDGETS_MIGRATION

# Migration N brings a file from user_version N-1 to N. Append, never edit: files in the
# field were built by the entries already here.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # seq orders rows by creation (an INTEGER PRIMARY KEY survives VACUUM unchanged).
        """CREATE TABLE batches (
            seq INTEGER PRIMARY KEY,
            batch_id TEXT NOT NULL UNIQUE,
            job_id TEXT,
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            needs_attention INTEGER NOT NULL,
            data TEXT NOT NULL
        )""",
        # Partial index: list_attention reads only live batches, however many are done.
        "CREATE INDEX batches_attention ON batches (seq) WHERE needs_attention = 1",
        "CREATE INDEX batches_by_job ON batches (job_id, seq)",
        """CREATE TABLE history (
            batch_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            entry TEXT NOT NULL,
            PRIMARY KEY (batch_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL UNIQUE,
            version INTEGER NOT NULL,
            data TEXT NOT NULL
        )""",
        """CREATE TABLE intents (
            seq INTEGER PRIMARY KEY,
            intent_id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX intents_by_job ON intents (job_id, seq)",
        "CREATE INDEX intents_open ON intents (seq) WHERE state IN ('planned', 'uploaded')",
        """CREATE TABLE ledger (
            job_id TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, custom_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX ledger_by_state ON ledger (state, job_id, custom_id)",
        # Every batch an entry went through, so iter_ledger(batch_id=...) is an index read.
        """CREATE TABLE ledger_batches (
            batch_id TEXT NOT NULL,
            job_id TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            PRIMARY KEY (batch_id, job_id, custom_id)
        ) WITHOUT ROWID""",
    ),
    (
        # Webhook receipts: the webhook-id is the dedupe key; expired ones are pruned.
        """CREATE TABLE webhook_events (
            event_id TEXT PRIMARY KEY,
            expires_at REAL NOT NULL,
            data TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX webhook_events_expiry ON webhook_events (expires_at)",
        # The Step Functions task token of the execution waiting on a batch or job.
        """CREATE TABLE wait_tokens (
            scope TEXT PRIMARY KEY,
            token TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
)
MIGRATIONS += (BUDGETS_MIGRATION,)  # 3: token budgets (persistence/sqlite/budgets.py)
SCHEMA_VERSION = len(MIGRATIONS)
