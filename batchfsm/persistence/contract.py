"""The store contract: what every backend promises, typed as :class:`JobStore`.

Promises (tested for every backend by ``tests/persistence/test_store_contract.py``):

* ``commit`` writes the record, its history entries and its outbox in one atomic step,
  only if the stored version is still ``expected_version``; otherwise it raises
  :class:`~batchfsm.errors.StaleJobError` and writes nothing.
* A stored state outside the eight raises :class:`~batchfsm.errors.UnknownStatusError`
  on load, never a silent default.
* ``list_attention`` returns every non-terminal batch plus terminal ones with effects
  still owed, without scanning every record ever tracked where the backend can avoid it.
* Ledger writes are conditional per entry on its ``version`` and atomic as a group
  where the backend allows (SQLite: one transaction; DynamoDB: chunks of 100).

Callers type against :class:`JobStore` (a Protocol, so a store need not inherit
anything); the shared implementation every built-in backend inherits is
:class:`~batchfsm.persistence.base.BaseJobStore`, which also re-exports this Protocol
under its long-standing import path ``batchfsm.persistence.base.JobStore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from batchfsm.fsm.models import BatchRecord, HistoryEntry
from batchfsm.ledger.records import ItemState, JobRecord, LedgerEntry, SubmitIntent

__all__ = ["JobStore"]


@runtime_checkable
class JobStore(Protocol):
    """Where batch records, their history, jobs, intents and the ledger live."""

    url: str
    """The store's URL with any secret removed (safe to print)."""

    ledger_group_atomic: bool
    """True if a ``save_ledger`` call that hits a conflict writes none of its entries."""

    def init(self) -> None:
        """Create tables/schema; idempotent."""

    def close(self) -> None: ...

    # -- batches -------------------------------------------------------------------------
    def create(self, record: BatchRecord, history: Sequence[HistoryEntry] = ()) -> BatchRecord:
        """Start tracking a batch; returns it at version 1. DuplicateJobError if tracked."""

    def load(self, batch_id: str) -> BatchRecord:
        """Rehydrate; JobNotFoundError if unknown, UnknownStatusError if corrupt."""

    def commit(
        self,
        record: BatchRecord,
        *,
        expected_version: int,
        history: Sequence[HistoryEntry] = (),
    ) -> BatchRecord:
        """Save ``record`` (state, snapshot, outbox) plus ``history`` atomically if the
        stored version equals ``expected_version``; returns it at version + 1."""

    def history(self, batch_id: str) -> list[HistoryEntry]:
        """Every history entry of the batch, oldest first."""

    def list_attention(self) -> list[BatchRecord]:
        """Non-terminal batches plus terminal ones with pending effects."""

    def list_batches(self, job_id: str | None = None) -> list[BatchRecord]:
        """Every tracked batch (of one job), oldest first."""

    # -- jobs and submit intents -----------------------------------------------------------
    def put_job(self, job: JobRecord) -> JobRecord:
        """Create a job (version 1); DuplicateJobError if it exists."""

    def load_job(self, job_id: str) -> JobRecord: ...

    def list_jobs(self) -> list[JobRecord]: ...

    def save_intent(self, intent: SubmitIntent) -> SubmitIntent:
        """Create (version 0 → 1) or update conditionally on ``intent.version``."""

    def list_intents(
        self, job_id: str | None = None, *, open_only: bool = False
    ) -> list[SubmitIntent]:
        """Intents (of one job); ``open_only``: state ``planned`` or ``uploaded``."""

    # -- ledger ----------------------------------------------------------------------------
    def save_ledger(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Insert (version 0) or update (conditional on version) every entry; returns
        them at version + 1. On any conflict raises StaleJobError and, where the backend
        is transactional for the group, writes none of them."""

    def get_ledger(self, job_id: str, custom_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries that exist among ``custom_ids``."""

    def iter_ledger(
        self,
        job_id: str | None = None,
        *,
        batch_id: str | None = None,
        state: ItemState | None = None,
    ) -> Iterator[LedgerEntry]:
        """Ledger entries matching every filter given, ordered by (job_id, custom_id)."""

    def count_ledger(self, job_id: str | None = None) -> dict[ItemState, int]:
        """How many entries are in each state."""
