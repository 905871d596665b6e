"""Every port: the interfaces between the engine and the outside world, in one place.

The core (``batchfsm.fsm``, ``batchfsm.ledger``) never reads a clock, a file, a store
or the network itself; the tracker, handlers and jobs are handed these, so tests run on
a frozen clock, an in-memory store and the sandbox:

* :class:`Clock` — where "now" comes from;
* :class:`BatchGateway` — the Batch API (:class:`~batchfsm.gateway.OpenAIGateway`);
* :class:`JobStore` — where records, history, jobs, intents and the ledger live
  (:mod:`batchfsm.persistence`);
* :class:`ResultSink` / :class:`ReplayableSink` — where succeeded results go
  (:mod:`batchfsm.persistence.sinks`, :mod:`batchfsm.persistence.s3_sink`).

The store's promises (tested for every backend by
``tests/persistence/test_store_contract.py``):
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
* ``record_event`` inserts a webhook receipt only if its ``webhook-id`` is new (one
  conditional write: of racing deliveries exactly one is first); ``pop_wait_token``
  hands a stored task token to exactly one caller.
* ``save_budget`` writes a model's token budget only if its stored version is still the
  one read (insert when 0), so of racing reservations exactly one is first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord, BatchSnapshot, HistoryEntry
    from batchfsm.ledger.budget import TokenBudget
    from batchfsm.ledger.records import (
        IntentState,
        ItemState,
        JobRecord,
        LedgerEntry,
        NewClaim,
        SubmitIntent,
    )


@runtime_checkable
class Clock(Protocol):
    """Where "now" comes from: always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, replays, the sandbox)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = when


class BatchGateway(Protocol):
    """The OpenAI Batch API as the engine needs it. One ``retrieve`` per batch per poll."""

    def retrieve(self, batch_id: str) -> BatchSnapshot: ...

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        """Stream a file to ``dest``; None (and no request) for an absent file id."""

    def upload(self, path: Path) -> str: ...

    def create(
        self, input_file_id: str, endpoint: str, metadata: Mapping[str, str]
    ) -> BatchSnapshot: ...

    def cancel(self, batch_id: str) -> BatchSnapshot: ...

    def iter_batches(self, limit: int = 100) -> Iterator[BatchSnapshot]: ...


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

    def intent_states(self, job_id: str) -> dict[str, IntentState]:
        """Each intent of the job by id, with its state, without decoding the intents
        (together they list every custom_id of the job: a million for a big one)."""

    # -- ledger ----------------------------------------------------------------------------
    def save_ledger(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Insert (version 0) or update (conditional on version) every entry; returns
        them at version + 1. On any conflict raises StaleJobError and, where the backend
        is transactional for the group, writes none of them."""

    def get_ledger(self, job_id: str, custom_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries that exist among ``custom_ids``."""

    def insert_claimed(self, job_id: str, intent_id: str, claims: Sequence[NewClaim]) -> bool:
        """Insert one ``pending`` entry per claim stamped with ``intent_id``, all or none;
        False (nothing written) when one exists or the backend cannot promise all or
        none (:mod:`batchfsm.persistence.claiming`)."""

    def append_batch(
        self,
        job_id: str,
        custom_ids: Sequence[str],
        *,
        intent_id: str,
        batch_id: str,
        known: Mapping[str, LedgerEntry] | None = None,
    ) -> None:
        """Put ``batch_id`` on the entries among ``custom_ids`` still claimed by
        ``intent_id`` (and not holding it yet), making them ``pending``; each write
        conditional as always (:mod:`batchfsm.persistence.adoption`)."""

    def iter_ledger(
        self,
        job_id: str | None = None,
        *,
        batch_id: str | None = None,
        state: ItemState | None = None,
        after: tuple[str, str] | None = None,
    ) -> Iterator[LedgerEntry]:
        """Ledger entries matching every filter given, ordered by (job_id, custom_id),
        strictly after the ``(job_id, custom_id)`` key ``after`` when given."""

    def count_ledger(self, job_id: str | None = None) -> dict[ItemState, int]:
        """How many entries are in each state."""

    # -- enqueued-token budgets (batchfsm.jobs.admission) --------------------------------
    def load_budget(self, model: str) -> TokenBudget:
        """``model``'s budget as stored (version 0 and empty if never written)."""

    def save_budget(self, budget: TokenBudget) -> TokenBudget:
        """Write if the stored version is still ``budget.version`` (StaleJobError)."""

    # -- webhooks (batchfsm.webhooks, batchfsm.aws.webhooks) ---------------------------------
    def record_event(self, receipt: WebhookReceipt) -> bool:
        """Remember a webhook event by its ``webhook-id``: True the first time, False for
        a redelivery (nothing written), so the same event does one thing however often
        it is delivered. Kept at least :data:`RECEIPT_DAYS` days."""

    def get_event(self, event_id: str) -> WebhookReceipt | None:
        """The receipt of an event recorded earlier, or None."""

    def save_wait_token(self, scope: str, token: str) -> None:
        """Remember the Step Functions task token of the execution waiting on ``scope``
        (``batch:<id>`` or ``job:<id>``), replacing an earlier one."""

    def pop_wait_token(self, scope: str) -> str | None:
        """Read and forget, in one atomic step, the token waiting on ``scope``: of two
        callers, only one gets it."""


RECEIPT_DAYS = 7
"""How long a webhook receipt is kept: OpenAI retries a delivery for up to 72 hours."""


class WebhookReceipt(NamedTuple):
    """A webhook event as first received: its ``webhook-id`` (the dedupe key), its type
    and the batch it names (None for an event about anything else)."""

    event_id: str
    event_type: str
    batch_id: str | None
    received_at: datetime
    known: bool
    """Whether the store tracked the batch when the event arrived (an event for an
    unknown batch is recorded and acknowledged, and does nothing else)."""


class QuarantinedLine(NamedTuple):
    """A result-file line that could not be used, kept verbatim for inspection."""

    source: str
    """Which file it came from, e.g. ``"output"`` or ``"error"``."""
    line: int
    raw: bytes
    reason: str


@runtime_checkable
class ResultSink(Protocol):
    """Receives the successful results of each batch, exactly once per (job, batch)."""

    def has(self, job_id: str, batch_id: str) -> bool:
        """Whether this batch's results were already delivered."""

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        """Publish ``(custom_id, raw JSON body)`` pairs atomically; returns the lines
        written, 0 if the batch was already delivered."""

    def quarantine(self, job_id: str, batch_id: str, lines: Iterable[QuarantinedLine]) -> int:
        """Keep unusable lines aside (not with the results); same once-only rule."""


@runtime_checkable
class ReplayableSink(Protocol):
    """A sink that can stream back what it delivered (``DirectorySink.read_batch``)."""

    def read_batch(self, job_id: str, batch_id: str) -> Iterator[tuple[str, bytes]]: ...
