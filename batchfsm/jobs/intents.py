"""Submit intents: write down what we are about to send before sending it.

Creating a batch is the one call that costs money and cannot be repeated safely, so
every batch (a job's first batches and every retry batch) goes through the same steps,
each committed before the next side effect::

    planned   intent saved (its custom_ids), ledger entries claimed  -> nothing sent yet
    uploaded  input file uploaded, file_id saved                      -> no batch yet
    (create)  POST /batches with metadata batchfsm_intent=<intent_id>
    created   ledger entries get the batch id, the batch is tracked, intent closed

:class:`Intents` is that whole life in one place, read top to bottom by
:meth:`Intents.send`: plan, claim (:mod:`batchfsm.jobs.claims`), launch (upload), create,
adopt, or abandon. A crash (or an ambiguous 5xx/timeout) anywhere leaves an *open*
intent, which :func:`batchfsm.jobs.reconcile.reconcile_intents` closes on the next start.
An open intent owns its custom_ids: nothing else plans them until it is closed.

Two processes must not work on one intent at once (both would find no batch and both
create one). An open intent is therefore *leased* (``SubmitIntent.lease_owner`` /
``lease_until``, ``Settings.lease_seconds`` long, renewed at the upload): only once the
lease has run out does a reconciler take it, with a conditional write that renews the
lease in its own name. The first owner, if it is merely slow, then loses its next
intent write (a version conflict) and stops before it could create a second batch.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from batchfsm.errors import (
    BatchNotFoundError,
    DuplicateJobError,
    GatewayError,
    GatewayUnavailableError,
    RateLimitedError,
    StaleJobError,
)
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry
from batchfsm.jobs.claims import claim_owned, owned_entries
from batchfsm.jobs.input_file import write_chunk
from batchfsm.jobs.intent_changes import rejection, release
from batchfsm.jobs.metadata import INTENT_KEY, JOB_KEY
from batchfsm.ledger.records import (
    CLOSED_INTENT_STATES,
    QUEUE_FULL_CODE,
    ErrorCategory,
    IntentState,
    ItemError,
    JobRecord,
    LedgerEntry,
    NewClaim,
    SubmitIntent,
)
from batchfsm.ledger.tokens import total_tokens
from batchfsm.persistence.ledger_writer import Change, update_ledger
from batchfsm.persistence.optimistic import retry_on_conflict

if TYPE_CHECKING:
    from batchfsm.ports import BatchGateway, Clock, JobStore
    from batchfsm.tracker import Tracker

__all__ = ["Intents", "lease_ends"]

logger = logging.getLogger(__name__)


def lease_ends(intent: SubmitIntent, lease_seconds: float) -> datetime:
    """When another process may take ``intent`` over (records from before leases
    existed count from ``created_at``)."""
    if intent.lease_until is not None:
        return intent.lease_until
    return intent.created_at + timedelta(seconds=lease_seconds)


class TrackBatch(Protocol):
    """Start tracking a created batch (:meth:`batchfsm.tracker.Tracker.track`)."""

    def __call__(
        self,
        snapshot: BatchSnapshot,
        *,
        job_id: str | None = None,
        parent_batch_id: str | None = None,
        items: int | None = None,
        input_tokens: int | None = None,
    ) -> BatchRecord: ...


@dataclass(frozen=True)
class Intents:
    """The submit intents of one store, and what it takes to carry them out.

    Needs only the store, the gateway, the clock, this process's lease identity and a
    way to start tracking a batch; :meth:`of` takes them from a tracker.
    """

    store: JobStore
    gateway: BatchGateway | None
    clock: Clock
    owner: str
    lease_seconds: float
    track: TrackBatch
    workdir: Path | None = None

    @classmethod
    def of(cls, tracker: Tracker) -> Intents:
        return cls(
            store=tracker.store,
            gateway=tracker.gateway,
            clock=tracker.clock,
            owner=tracker.owner,
            lease_seconds=tracker.settings.lease_seconds,
            track=tracker.track,
            workdir=tracker.workdir,
        )

    # -- the life of one intent, in order -----------------------------------------------
    def send(
        self,
        job: JobRecord,
        custom_ids: Iterable[str],
        claim: Change,
        *,
        parent_batch_ids: Iterable[str] = (),
        known: Mapping[str, LedgerEntry] | None = None,
    ) -> BatchRecord | None:
        """Plan an intent for ``custom_ids``, claim the entries ``claim`` frees (see
        :func:`~batchfsm.jobs.claims.claim_owned`; ``known``: the entries as the caller
        just read them, ``{}`` for a job it just created), then launch what it owns."""
        intent = self.plan(job.job_id, custom_ids, parent_batch_ids=parent_batch_ids)
        intent, owned = claim_owned(self.store, intent, claim, known=known)
        return self.launch(job, intent, owned=owned)

    def plan(
        self, job_id: str, custom_ids: Iterable[str], *, parent_batch_ids: Iterable[str] = ()
    ) -> SubmitIntent:
        """Save a ``planned`` intent, leased to this process: the promise, written before
        anything is claimed."""
        now = self.clock.now()
        intent = SubmitIntent(
            intent_id=f"intent_{uuid.uuid4().hex[:16]}",
            job_id=job_id,
            created_at=now,
            custom_ids=tuple(custom_ids),
            parent_batch_ids=tuple(dict.fromkeys(parent_batch_ids)),
            lease_owner=self.owner,
            lease_until=now + timedelta(seconds=self.lease_seconds),
        )
        return self.store.save_intent(intent)

    def launch(
        self,
        job: JobRecord,
        intent: SubmitIntent,
        *,
        owned: Mapping[str, LedgerEntry] | None = None,
    ) -> BatchRecord | None:
        """Upload the lines the intent owns (from the ledger), create the batch, record it.

        Only entries claimed by this intent are sent: ``owned``, as its claim just wrote
        them, or else read here, just before the upload (the intent is narrowed to
        them). Returns the tracked batch, or None when there was nothing to send or
        another process took the intent over. A failure that proves no batch exists
        abandons the intent and hands its items back; an ambiguous one leaves it
        ``uploaded`` for the reconcile.
        """
        if owned is None:
            owned = owned_entries(self.store, intent)
        if not owned:
            self.abandon(intent, reason="it owns no ledger entry")
            return None
        if len(owned) != len(intent.custom_ids):
            intent = self.store.save_intent(intent.model_copy(update={"custom_ids": tuple(owned)}))
        lines = [entry.line for entry in owned.values()]
        tokens = total_tokens(e.input_tokens for e in owned.values())
        return self._send(job, intent, lines, tokens, owned=owned)

    def launch_claimed(
        self, job: JobRecord, intent: SubmitIntent, claims: Sequence[NewClaim]
    ) -> BatchRecord | None:
        """:meth:`launch` for an intent whose every entry was just inserted claimed by
        it (:meth:`~batchfsm.persistence.claiming.BulkClaims.insert_claimed` answered
        True): sent from the claims in hand, nothing read back."""
        lines = [claim.line for claim in claims]
        tokens = total_tokens(claim.input_tokens for claim in claims)
        return self._send(job, intent, lines, tokens, owned=None)

    def _send(
        self,
        job: JobRecord,
        intent: SubmitIntent,
        lines: list[str],
        tokens: int | None,
        *,
        owned: Mapping[str, LedgerEntry] | None,
    ) -> BatchRecord | None:
        file_id = self._upload(job, intent, lines)
        try:  # conditional: if the lease ran out and someone took the intent, stop here
            intent = self.store.save_intent(
                intent.model_copy(
                    update={
                        "state": IntentState.UPLOADED,
                        "file_id": file_id,
                        "input_tokens": tokens,
                        **self.lease(self.clock.now()),
                    }
                )
            )
        except StaleJobError:
            logger.warning("intent %s was taken over while uploading; leaving it", intent.intent_id)
            return None
        return self.create(job, intent, owned=owned)

    def _upload(self, job: JobRecord, intent: SubmitIntent, lines: list[str]) -> str:
        if self.gateway is None:
            raise ValueError("submitting needs a gateway")
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="batchfsm-upload-") as tmp:
            path = Path(tmp) / f"{job.job_id}.{intent.intent_id}.jsonl"
            write_chunk(lines, path)
            try:
                return self.gateway.upload(path)
            except GatewayError as exc:
                self.abandon(intent, reason=f"upload failed: {exc}", failure=rejection(exc))
                raise

    def create(
        self,
        job: JobRecord,
        intent: SubmitIntent,
        *,
        owned: Mapping[str, LedgerEntry] | None = None,
    ) -> BatchRecord | None:
        """``POST /batches`` for an uploaded intent, then :meth:`adopt` the answer.

        Only a refusal proves no batch exists: a 4xx abandons the intent (a 404 means the
        uploaded file is gone, so the intent goes back to ``planned`` to upload again). A
        429 or a 5xx/timeout leaves it ``uploaded``; the next reconcile looks for the
        batch first.
        """
        assert self.gateway is not None and intent.file_id is not None
        metadata = {**job.metadata, JOB_KEY: job.job_id, INTENT_KEY: intent.intent_id}
        try:
            snapshot = self.gateway.create(intent.file_id, job.endpoint, metadata)
        except BatchNotFoundError:
            self.close(intent, state=IntentState.PLANNED, file_id=None)
            raise
        except GatewayError as exc:
            if exc.code == QUEUE_FULL_CODE and exc.status_code in (400, 429):
                self._queue_full(intent, exc)
                return None
            if isinstance(exc, RateLimitedError | GatewayUnavailableError):
                raise
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                self.abandon(intent, reason=f"create refused: {exc}", failure=rejection(exc))
            raise
        return self.adopt(job, intent, snapshot, owned=owned)

    def _queue_full(self, intent: SubmitIntent, exc: GatewayError) -> None:
        """The model's enqueued-token queue is full (Azure refuses the create with 400
        ``token_limit_exceeded`` in regions that fail fast; a proxy may answer 429): the
        requests are fine and only have to wait, so they go back to ``retry`` with no
        attempt spent, exactly as after a batch that failed validation with that code,
        and wait out the queue-full backoff (:mod:`batchfsm.jobs.retry`)."""
        failure = ItemError(
            code=QUEUE_FULL_CODE,
            message=str(exc)[:500],
            category=ErrorCategory.QUEUE_FULL,
            at=self.clock.now(),
        )
        self.abandon(intent, reason=f"create refused, the queue is full: {exc}", failure=failure)

    def adopt(
        self,
        job: JobRecord,
        intent: SubmitIntent,
        snapshot: BatchSnapshot,
        *,
        owned: Mapping[str, LedgerEntry] | None = None,
    ) -> BatchRecord:
        """Record a created batch: ledger first (so a harvest racing us finds its items),
        then the tracked record, then the intent closed. Every step is idempotent.
        ``owned``: the entries as the claim wrote them, trusted until a write conflicts."""
        batch_id = snapshot.id
        if not batch_id:
            raise GatewayError("create answered a batch without an id")
        self.store.append_batch(
            job.job_id,
            list(intent.custom_ids),
            intent_id=intent.intent_id,
            batch_id=batch_id,
            known=owned,
        )
        parents = intent.parent_batch_ids
        try:
            record = self.track(
                snapshot,
                job_id=job.job_id,
                parent_batch_id=parents[0] if parents else None,
                items=len(intent.custom_ids),
                input_tokens=intent.input_tokens,
            )
        except DuplicateJobError:
            record = self.store.load(batch_id)
        else:
            if len(parents) > 1:  # the record links one parent; the history names them all
                record = self._note_parents(record, parents)
        self.close(intent, state=IntentState.CREATED, batch_id=batch_id)
        logger.info("job %s: batch %s created from %s", job.job_id, batch_id, intent.intent_id)
        return record

    def _note_parents(self, record: BatchRecord, parents: tuple[str, ...]) -> BatchRecord:
        event = EventEntry(
            name="retry_of", at=self.clock.now(), detail={"parent_batch_ids": parents}
        )
        try:
            return self.store.commit(record, expected_version=record.version, history=[event])
        except StaleJobError:
            logger.info("batch %s: parents not noted (a poller was first)", record.batch_id)
            return record

    def abandon(
        self, intent: SubmitIntent, *, reason: str, failure: ItemError | None = None
    ) -> None:
        """Close an intent that sent nothing.

        When the API refused the input itself (``failure``), the intent's items fail with
        that reason, loudly: sending them again would only be refused again, and putting
        them back in ``retry`` would resubmit them for ever without spending an attempt.
        Otherwise retry items it claimed go back to ``retry`` and never-sent items stay
        ``pending``, free for a resumed submit to claim.
        """
        update_ledger(self.store, intent.job_id, list(intent.custom_ids), release(intent, failure))
        if failure is not None and failure.category == ErrorCategory.QUEUE_FULL:
            logger.warning(
                "intent %s: %d requests wait in retry (no attempt spent): %s",
                intent.intent_id,
                len(intent.custom_ids),
                reason,
            )
        elif failure is not None:
            logger.error(
                "intent %s abandoned, its %d requests failed: %s",
                intent.intent_id,
                len(intent.custom_ids),
                reason,
            )
        else:
            logger.warning("intent %s abandoned: %s", intent.intent_id, reason)
        self.close(intent, state=IntentState.ABANDONED)

    def close(self, intent: SubmitIntent, **update: object) -> None:
        """Write the intent's new state; a rival that already closed it wins."""

        def attempt(retry: bool) -> None:
            current = self._reload(intent) if retry else intent
            if current is None or (retry and current.state in CLOSED_INTENT_STATES):
                return
            self.store.save_intent(current.model_copy(update=update))

        retry_on_conflict(attempt, subject=f"intent {intent.intent_id}")

    # -- helpers ---------------------------------------------------------------------------
    def lease(self, now: datetime) -> dict[str, object]:
        """The fields that lease an intent to this process from ``now``."""
        return {
            "lease_owner": self.owner,
            "lease_until": now + timedelta(seconds=self.lease_seconds),
        }

    def open_ids(self, job_id: str) -> set[str]:
        """custom_ids owned by an open (planned/uploaded) intent of the job."""
        owned: set[str] = set()
        for intent in self.store.list_intents(job_id, open_only=True):
            owned.update(intent.custom_ids)
        return owned

    def is_open(self, intent: SubmitIntent) -> bool:
        current = self._reload(intent)
        return current is not None and current.state not in CLOSED_INTENT_STATES

    def _reload(self, intent: SubmitIntent) -> SubmitIntent | None:
        for current in self.store.list_intents(intent.job_id):
            if current.intent_id == intent.intent_id:
                return current
        return None
