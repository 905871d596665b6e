"""BaseJobStore: the shared half of every backend, written once.

The contract itself (the promises, and the :class:`JobStore` Protocol callers type
against) is :mod:`batchfsm.ports`; ``JobStore`` is re-exported here, its
long-standing import path. :class:`BaseJobStore` is the shared half (template method, as
powertools' ``BasePersistenceLayer``): it owns the version rule, the filters and the
record <-> item mapping of :mod:`batchfsm.persistence.items`, and leaves a backend only
its ``_`` primitives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Self

from batchfsm.errors import JobNotFoundError, StoreError
from batchfsm.fsm.models import BatchRecord, HistoryEntry
from batchfsm.ledger.records import (
    OPEN_INTENT_STATES,
    IntentState,
    ItemState,
    JobRecord,
    LedgerEntry,
    SubmitIntent,
)
from batchfsm.persistence.adoption import BatchAdoption
from batchfsm.persistence.budgets import TokenBudgets
from batchfsm.persistence.claiming import BulkClaims
from batchfsm.persistence.items import (
    BatchItem,
    IntentItem,
    JobItem,
    LedgerItem,
    LedgerWrite,
    decode_batch,
    decode_history,
    decode_model,
    encode_batch,
    encode_history,
    ledger_key,
)
from batchfsm.persistence.receipts import WebhookReceipts
from batchfsm.ports import JobStore

__all__ = [
    "LEDGER_PAGE",
    "BaseJobStore",
    "BatchItem",
    "IntentItem",
    "JobItem",
    "JobStore",
    "LedgerItem",
    "LedgerWrite",
    "ledger_key",
]


LEDGER_PAGE = 500
"""How many ledger entries one ``_scan_ledger`` call returns while iterating."""


class BaseJobStore(BatchAdoption, BulkClaims, TokenBudgets, WebhookReceipts, ABC):
    """Everything a backend shares, written once (template method).

    This class maps records to stored items (pydantic JSON) and back, applies the
    version rule (create -> 1, every accepted write -> expected + 1), checks stored
    states on read, and filters. A backend writes only the ``_`` primitives below, each
    a single conditional read or write, so that all backends keep the same promises and
    are tested by the same contract suite. The test fake
    (:class:`~batchfsm.persistence.memory.MemoryJobStore`) is such a subclass too.
    """

    url: str = ""
    ledger_group_atomic: bool = False
    """Whether a ``save_ledger`` call with one conflict writes none of its entries."""

    # -- lifecycle -----------------------------------------------------------------------
    @abstractmethod
    def init(self) -> None:
        """Create tables/schema; idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; using the store afterwards raises RuntimeError."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- primitives a backend writes -----------------------------------------------------
    @abstractmethod
    def _insert_batch(self, item: BatchItem, history: Sequence[str]) -> None:
        """Insert the item and its first history entries; DuplicateJobError if present."""

    @abstractmethod
    def _get_batch(self, batch_id: str) -> BatchItem | None: ...

    @abstractmethod
    def _swap_batch(
        self, item: BatchItem, *, expected_version: int, history: Sequence[str]
    ) -> None:
        """Replace the item and append ``history`` in one atomic step, only if the stored
        version is ``expected_version``: else StaleJobError (JobNotFoundError if absent)
        and nothing written."""

    @abstractmethod
    def _get_history(self, batch_id: str) -> list[str] | None:
        """The batch's history entries oldest first; None if the batch is unknown."""

    @abstractmethod
    def _scan_batches(self, *, job_id: str | None, attention_only: bool) -> list[BatchItem]:
        """Batches in creation order; ``attention_only`` uses the needs_attention index."""

    @abstractmethod
    def _insert_job(self, item: JobItem) -> None:
        """Insert; DuplicateJobError if the job exists."""

    @abstractmethod
    def _get_job(self, job_id: str) -> JobItem | None: ...

    @abstractmethod
    def _scan_jobs(self) -> list[JobItem]:
        """Every job in creation order."""

    @abstractmethod
    def _put_intent(self, item: IntentItem, *, expected_version: int) -> None:
        """Insert (``expected_version`` 0, must be absent) or replace if the stored version
        equals it; StaleJobError otherwise."""

    @abstractmethod
    def _scan_intents(
        self, *, job_id: str | None, states: frozenset[str] | None
    ) -> list[IntentItem]:
        """Intents in creation order, restricted to ``states`` when given."""

    @abstractmethod
    def _put_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        """Apply every write conditionally; StaleJobError on the first conflict (with
        nothing written when ``ledger_group_atomic``)."""

    @abstractmethod
    def _get_ledger(self, job_id: str, custom_ids: Sequence[str]) -> list[LedgerItem]: ...

    @abstractmethod
    def _scan_ledger(
        self,
        *,
        job_id: str | None,
        batch_id: str | None,
        state: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[LedgerItem]:
        """Up to ``limit`` entries ordered by (job_id, custom_id), strictly after
        ``after``. May return extra entries (the base filters again), never miss one."""

    @abstractmethod
    def _count_ledger(self, job_id: str | None) -> dict[str, int]:
        """Entries per stored state string."""

    # -- batches -------------------------------------------------------------------------
    def create(self, record: BatchRecord, history: Sequence[HistoryEntry] = ()) -> BatchRecord:
        """Start tracking a batch; returns it at version 1. DuplicateJobError if tracked."""
        stored = record.model_copy(update={"version": 1})
        self._insert_batch(encode_batch(stored), encode_history(history))
        return stored

    def load(self, batch_id: str) -> BatchRecord:
        """Rehydrate; JobNotFoundError if unknown, UnknownStatusError if corrupt."""
        item = self._get_batch(batch_id)
        if item is None:
            raise JobNotFoundError(batch_id)
        return decode_batch(item, store=self.url)

    def commit(
        self,
        record: BatchRecord,
        *,
        expected_version: int,
        history: Sequence[HistoryEntry] = (),
    ) -> BatchRecord:
        """Save ``record`` (state, snapshot, outbox) plus ``history`` atomically if the
        stored version equals ``expected_version``; returns it at version + 1.

        The stored version decides, not ``record.version``: a poller passes the version
        it loaded, and loses with StaleJobError if anyone committed since.
        """
        if expected_version < 1:
            raise ValueError(f"expected_version must be >= 1, got {expected_version}")
        stored = record.model_copy(update={"version": expected_version + 1})
        self._swap_batch(
            encode_batch(stored),
            expected_version=expected_version,
            history=encode_history(history),
        )
        return stored

    def history(self, batch_id: str) -> list[HistoryEntry]:
        """Every history entry of the batch, oldest first; JobNotFoundError if unknown."""
        raw = self._get_history(batch_id)
        if raw is None:
            raise JobNotFoundError(batch_id)
        return [decode_history(entry, store=self.url, batch_id=batch_id) for entry in raw]

    def list_attention(self) -> list[BatchRecord]:
        """Non-terminal batches plus terminal ones with pending effects, oldest first."""
        items = self._scan_batches(job_id=None, attention_only=True)
        return [decode_batch(item, store=self.url) for item in items if item.needs_attention]

    def list_batches(self, job_id: str | None = None) -> list[BatchRecord]:
        """Every tracked batch (of one job), oldest first."""
        items = self._scan_batches(job_id=job_id, attention_only=False)
        return [
            decode_batch(item, store=self.url)
            for item in items
            if job_id is None or item.job_id == job_id
        ]

    # -- jobs and submit intents ---------------------------------------------------------
    def put_job(self, job: JobRecord) -> JobRecord:
        """Create a job (version 1); DuplicateJobError if it exists."""
        stored = job.model_copy(update={"version": 1})
        self._insert_job(JobItem(job.job_id, 1, stored.model_dump_json()))
        return stored

    def load_job(self, job_id: str) -> JobRecord:
        item = self._get_job(job_id)
        if item is None:
            raise JobNotFoundError(job_id, kind="job")
        return decode_model(
            JobRecord, item.data, store=self.url, what=f"job {job_id}", version=item.version
        )

    def list_jobs(self) -> list[JobRecord]:
        return [
            decode_model(
                JobRecord, i.data, store=self.url, what=f"job {i.job_id}", version=i.version
            )
            for i in self._scan_jobs()
        ]

    def save_intent(self, intent: SubmitIntent) -> SubmitIntent:
        """Create (version 0 -> 1) or update conditionally on ``intent.version``."""
        if intent.version < 0:
            raise ValueError(f"intent {intent.intent_id}: negative version {intent.version}")
        stored = intent.model_copy(update={"version": intent.version + 1})
        item = IntentItem(
            intent.intent_id,
            intent.job_id,
            intent.state,
            stored.version,
            stored.model_dump_json(),
        )
        self._put_intent(item, expected_version=intent.version)
        return stored

    def list_intents(
        self, job_id: str | None = None, *, open_only: bool = False
    ) -> list[SubmitIntent]:
        """Intents (of one job) in creation order; ``open_only``: planned or uploaded."""
        states = OPEN_INTENT_STATES if open_only else None
        items = self._scan_intents(job_id=job_id, states=states)
        return [
            decode_model(
                SubmitIntent,
                i.data,
                store=self.url,
                what=f"intent {i.intent_id}",
                version=i.version,
            )
            for i in items
            if (job_id is None or i.job_id == job_id) and (states is None or i.state in states)
        ]

    def intent_states(self, job_id: str) -> dict[str, IntentState]:
        """Each intent of the job by id, with its state, read off the stored items
        without decoding them (see :class:`~batchfsm.ports.JobStore`)."""
        return {
            i.intent_id: IntentState(i.state)
            for i in self._scan_intents(job_id=job_id, states=None)
            if i.job_id == job_id
        }

    # -- ledger --------------------------------------------------------------------------
    def save_ledger(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Insert (version 0) or update (conditional on version) every entry; returns
        them at version + 1. On any conflict raises StaleJobError and, where the backend
        is transactional for the group, writes none of them."""
        keys = [(e.job_id, e.custom_id) for e in entries]
        if len(keys) != len(set(keys)):
            raise ValueError("save_ledger got the same (job_id, custom_id) twice")
        stored = [e.model_copy(update={"version": e.version + 1}) for e in entries]
        writes = []
        for before, after in zip(entries, stored, strict=True):
            if before.version < 0:
                raise ValueError(
                    f"ledger {ledger_key(before.job_id, before.custom_id)}: negative version"
                )
            item = LedgerItem(
                after.job_id,
                after.custom_id,
                str(after.state),  # a StrEnum: its value, without the enum descriptor
                after.version,
                after.batches,
                after.model_dump_json(),
            )
            writes.append(LedgerWrite(item, before.version))
        if writes:
            self._put_ledger(writes)
        return stored

    def get_ledger(self, job_id: str, custom_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries that exist among ``custom_ids``."""
        wanted = dict.fromkeys(custom_ids)  # ordered, deduplicated, O(1) membership
        if not wanted:
            return {}
        found = self._get_ledger(job_id, list(wanted))
        return {
            i.custom_id: self._decode_ledger(i)
            for i in found
            if i.job_id == job_id and i.custom_id in wanted
        }

    def iter_ledger(
        self,
        job_id: str | None = None,
        *,
        batch_id: str | None = None,
        state: ItemState | None = None,
        after: tuple[str, str] | None = None,
    ) -> Iterator[LedgerEntry]:
        """Ledger entries matching every filter given, ordered by (job_id, custom_id),
        strictly after ``after`` (a ``(job_id, custom_id)`` key) when given.

        Read page by page, so a million-entry ledger never sits in memory at once, and
        ``after`` starts at the key (an index seek), so ``batchfsm items --after`` reads
        only the page it prints, wherever it lies in the ledger.
        """
        while True:
            page = self._scan_ledger(
                job_id=job_id,
                batch_id=batch_id,
                state=state.value if state is not None else None,
                after=after,
                limit=LEDGER_PAGE,
            )
            for item in page:
                if job_id is not None and item.job_id != job_id:
                    continue
                entry = self._decode_ledger(item)
                if state is not None and entry.state is not state:
                    continue
                if batch_id is not None and batch_id not in entry.batches:
                    continue
                yield entry
            if len(page) < LEDGER_PAGE:
                return
            after = (page[-1].job_id, page[-1].custom_id)

    def count_ledger(self, job_id: str | None = None) -> dict[ItemState, int]:
        """How many entries are in each state (every state present, zero included)."""
        counts = dict.fromkeys(ItemState, 0)
        for raw, n in self._count_ledger(job_id).items():
            try:
                counts[ItemState(raw)] += n
            except ValueError as exc:
                raise StoreError(f"{self.url}: ledger holds unknown item state {raw!r}") from exc
        return counts

    def _decode_ledger(self, item: LedgerItem) -> LedgerEntry:
        return decode_model(
            LedgerEntry,
            item.data,
            store=self.url,
            what=f"ledger entry {ledger_key(item.job_id, item.custom_id)}",
            version=item.version,
        )
