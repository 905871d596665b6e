"""Admission control: never enqueue more of a model's input tokens than its budget.

The Batch API refuses work past a model's *enqueued-token limit* (the input tokens of
its batches in ``validating``, ``in_progress``, ``finalizing`` or ``cancelling``) with
``token_limit_exceeded``. With a budget configured for a model (``--queue-limit
MODEL=TOKENS``, ``BATCHFSM_QUEUE_LIMITS``), nothing is sent blind:

* ``submit`` writes the job's requests as ``queued`` ledger entries, each with its
  input tokens (:mod:`batchfsm.ledger.tokens`), then runs one :meth:`Admission.cycle`;
* a cycle (``submit``, and every poll cycle of the CLI, the library and the Lambda)
  first releases the tokens of batches that ended, then puts refused requests back in
  the queue (``retry`` items whose queue was full; with ``auto_retry``, every ``retry``
  item), then sends queued requests, oldest job first, cut into batches that fit the
  room left (and the per-batch limits), until the next one does not fit;
* each batch's tokens are *reserved* in the model's :class:`TokenBudget` before
  anything is claimed or uploaded, by a conditional write on the budget record
  (:func:`~batchfsm.persistence.optimistic.retry_on_conflict`): several pollers and
  hosts share one budget through the store, and the sum they hold never passes it. A
  reservation is held by its submit intent and released once the intent sent nothing
  or its batch ended;
* a ``token_limit_exceeded`` that still happens halves the model's effective budget
  (it grows back a step with every batch that ends without one), and its requests
  wait in the queue again: no blind resubmission loop.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from batchfsm.errors import JobNotFoundError
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.claims import claim_items
from batchfsm.jobs.input_file import Limits
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.retry import STREAM_CHUNK, cap_rounds
from batchfsm.ledger.budget import TokenBudget, limit_for
from batchfsm.ledger.records import (
    OPEN_INTENT_STATES,
    QUEUE_FULL_CODE,
    ErrorCategory,
    IntentState,
    ItemState,
    JobRecord,
    LedgerEntry,
    SubmitIntent,
)
from batchfsm.ledger.tokens import count_line
from batchfsm.persistence.ledger_writer import update_ledger
from batchfsm.persistence.optimistic import retry_on_conflict

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord
    from batchfsm.ports import JobStore
    from batchfsm.tracker import Tracker

__all__ = ["Admission", "AdmissionReport", "job_model", "line_model"]

logger = logging.getLogger(__name__)


@dataclass
class AdmissionReport:
    launched: list[BatchRecord] = field(default_factory=list)
    released: int = 0
    """Reservations released (their batch ended, or their intent sent nothing)."""
    requeued: int = 0
    queue_full: int = 0
    """``token_limit_exceeded`` answers seen (each halved a budget)."""


def job_model(store: JobStore, job: JobRecord) -> str | None:
    """The model a job's requests name (from one of its lines), or None."""
    for state in (ItemState.QUEUED, ItemState.PENDING, ItemState.RETRY, ItemState.SUCCEEDED):
        for entry in store.iter_ledger(job.job_id, state=state):
            return line_model(entry.line)
    return None


def line_model(line: str) -> str | None:
    try:
        body = orjson.loads(line).get("body") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


@dataclass
class _Group:
    """One batch's worth of queued requests: their ids in order, the batches they last
    ran in (parents of the new one) and their input tokens."""

    ids: list[str] = field(default_factory=list)
    parents: dict[str, None] = field(default_factory=dict)
    tokens: int = 0

    def add(self, entry: LedgerEntry, tokens: int) -> None:
        self.ids.append(entry.custom_id)
        if entry.batches:
            self.parents[entry.batches[-1]] = None
        self.tokens += tokens


@dataclass
class Admission:
    """Admission for one tracker's store; see the module docstring."""

    tracker: Tracker
    limits: Mapping[str, int]
    batch_limits: Limits = field(default_factory=Limits)
    _models: dict[str, str | None] = field(default_factory=dict)

    def limit_for(self, model: str | None) -> int | None:
        return limit_for(self.limits, model)

    def model_of(self, job: JobRecord) -> str | None:
        if job.job_id not in self._models:
            self._models[job.job_id] = job_model(self.tracker.store, job)
        return self._models[job.job_id]

    # -- one cycle -------------------------------------------------------------------
    def cycle(self, *, requeue_retry: bool = False) -> AdmissionReport:
        """Release, requeue, admit (see the module docstring)."""
        report = AdmissionReport()
        store = self.tracker.store
        jobs = store.list_jobs()
        for model in {self.model_of(job) for job in jobs} - {None}:
            assert model is not None
            if self.limit_for(model) is not None:
                self._release_ended(model, report)
        for job in jobs:
            if self.limit_for(self.model_of(job)) is not None:
                report.requeued += self._requeue(job, every=requeue_retry)
        blocked: set[str | None] = set()
        for job in jobs:  # oldest first
            model = self.model_of(job)
            if model in blocked or not store.count_ledger(job.job_id)[ItemState.QUEUED]:
                continue
            if not self._admit_job(job, model, report):
                blocked.add(model)
        return report

    # -- releasing -------------------------------------------------------------------
    def _release_ended(self, model: str, report: AdmissionReport) -> None:
        store = self.tracker.store
        budget = store.load_budget(model)
        intents: dict[str, dict[str, SubmitIntent]] = {}
        ended: dict[str, bool] = {}
        for key in budget.held:
            job_id, _, intent_id = key.rpartition("/")
            if job_id not in intents:  # only those held: a job's intents name every request
                intents[job_id] = {
                    i.intent_id: i
                    for i in store.list_intents(job_id)
                    if f"{job_id}/{i.intent_id}" in budget.held
                }
            verdict = self._ended(intents[job_id].get(intent_id))
            if verdict is not None:
                ended[key] = verdict
        if not ended:
            return

        def attempt(retry: bool) -> TokenBudget:
            current = store.load_budget(model) if retry else budget
            changed = current
            for key, queue_full in ended.items():
                if key in changed.held:
                    changed = changed.release(key, queue_full=queue_full)
            return store.save_budget(changed) if changed is not current else current

        after = retry_on_conflict(attempt, subject=f"token budget of {model}")
        report.released += len(ended)
        if after.shrinks > budget.shrinks:
            report.queue_full += after.shrinks - budget.shrinks
            logger.warning(
                "%s: token_limit_exceeded; effective budget now %.0f%% of the limit",
                model,
                after.factor * 100,
            )

    def _ended(self, intent: SubmitIntent | None) -> bool | None:
        """None: still holding its tokens; else whether it ended with a full queue."""
        if intent is None:
            return False
        if intent.state in OPEN_INTENT_STATES:
            return None
        if intent.state is not IntentState.CREATED or intent.batch_id is None:
            self._requeue_unsent(intent)
            return self._refused_full(intent)
        try:
            record = self.tracker.store.load(intent.batch_id)
        except JobNotFoundError:
            return False
        if not record.terminal and not record.lost:
            return None
        return record.state is BatchStatus.FAILED and _queue_full(record)

    def _refused_full(self, intent: SubmitIntent) -> bool:
        first = intent.custom_ids[:1]
        entry = self.tracker.store.get_ledger(intent.job_id, first).get(first[0]) if first else None
        error = entry.last_error if entry is not None else None
        return (
            error is not None
            and error.category == ErrorCategory.QUEUE_FULL
            and error.at is not None
            and error.at >= intent.created_at
        )

    def _requeue_unsent(self, intent: SubmitIntent) -> None:
        """Entries an intent claimed and closed without sending go back to the queue."""

        def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
            if entry is None or entry.intent_id != intent.intent_id:
                return None
            if entry.state is not ItemState.PENDING or entry.batches:
                return None
            return entry.model_copy(update={"state": ItemState.QUEUED})

        update_ledger(self.tracker.store, intent.job_id, list(intent.custom_ids), change)

    def _requeue(self, job: JobRecord, *, every: bool) -> int:
        """``retry`` items refused for a full queue (``every``: all) -> ``queued``; read
        and written :data:`~batchfsm.jobs.retry.STREAM_CHUNK` entries at a time."""

        def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
            if entry is None or entry.state is not ItemState.RETRY:
                return None
            if not (every or _was_queue_full(entry)):
                return None
            return entry.model_copy(update={"state": ItemState.QUEUED})

        store, requeued = self.tracker.store, 0
        candidates = (
            e for e in store.iter_ledger(job.job_id, state=ItemState.RETRY)
            if every or _was_queue_full(e)
        )  # fmt: skip
        while chunk := list(itertools.islice(candidates, STREAM_CHUNK)):
            ids = [e.custom_id for e in cap_rounds(self.tracker, job.job_id, chunk)[0]]
            requeued += len(update_ledger(store, job.job_id, ids, change)) if ids else 0
        return requeued

    # -- admitting -------------------------------------------------------------------
    def _admit_job(self, job: JobRecord, model: str | None, report: AdmissionReport) -> bool:
        """Send the job's queued requests while they fit; False once one does not."""
        store = self.tracker.store
        limit = self.limit_for(model)
        budget = store.load_budget(model) if model is not None and limit is not None else None
        for group in self._groups(job, budget, limit):
            if not group.ids:
                return False
            reserved, record = self._send(job, model, limit, group)
            if not reserved:
                return False
            if record is not None:
                report.launched.append(record)
            if budget is not None and model is not None:
                budget = store.load_budget(model)
        return True

    def _groups(
        self, job: JobRecord, budget: TokenBudget | None, limit: int | None
    ) -> Iterator[_Group]:
        """Batches of queued entries in order: each within the per-batch limits and
        the room left; an empty group means the next entry does not fit. A group keeps
        ids, not entries: the claim reads them again, and a batch of 50,000 decoded
        entries is the largest thing a cycle would otherwise hold."""
        caps = self.batch_limits
        group = _Group()
        size = inputs = 0
        held = budget.used if budget is not None else 0
        for entry in self.tracker.store.iter_ledger(job.job_id, state=ItemState.QUEUED):
            need = _tokens(entry, job.endpoint)
            lines = _inputs(entry, job.endpoint)
            room = None
            if budget is not None and limit is not None:
                room = budget.effective(limit) - held - group.tokens
            full = (
                len(group.ids) >= caps.max_requests
                or size + len(entry.line) + 1 > caps.max_bytes
                or inputs + lines > caps.max_embedding_inputs
            )
            fits = room is None or need <= room or (held == 0 and not group.ids)
            if group.ids and (full or not fits):
                yield group
                held += group.tokens
                group, size, inputs = _Group(), 0, 0
                room = None if budget is None or limit is None else budget.effective(limit) - held
                fits = room is None or need <= room or held == 0
            if not fits:
                yield _Group()
                return
            group.add(entry, need)
            size, inputs = size + len(entry.line) + 1, inputs + lines
        if group.ids:
            yield group

    def _send(
        self, job: JobRecord, model: str | None, limit: int | None, group: _Group
    ) -> tuple[bool, BatchRecord | None]:
        """Plan, reserve, claim, launch: (whether the tokens were reserved, the batch
        created). Not reserved: a rival took the room first."""
        intents = Intents.of(self.tracker)
        intent = intents.plan(job.job_id, group.ids, parent_batch_ids=group.parents)
        if model is not None and limit is not None:
            key = f"{job.job_id}/{intent.intent_id}"
            if not self._reserve(model, limit, key, group.tokens):
                intents.close(intent, state=IntentState.ABANDONED)
                return False, None
        intent = claim_items(self.tracker.store, intent, _claim_queued)
        return True, intents.launch(job, intent)

    def _reserve(self, model: str, limit: int, key: str, tokens: int) -> bool:
        store = self.tracker.store

        def attempt(_retry: bool) -> bool:
            budget = store.load_budget(model)
            if key in budget.held:
                return True
            if not budget.fits(tokens, limit):
                return False
            store.save_budget(budget.reserve(key, tokens))
            return True

        return retry_on_conflict(attempt, subject=f"token budget of {model}")


def _claim_queued(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
    return entry if entry is not None and entry.state is ItemState.QUEUED else None


def _was_queue_full(entry: LedgerEntry) -> bool:
    return entry.last_error is not None and entry.last_error.category == ErrorCategory.QUEUE_FULL


def _queue_full(record: BatchRecord) -> bool:
    snapshot = record.snapshot
    return snapshot is not None and any(e.code == QUEUE_FULL_CODE for e in snapshot.errors)


def _tokens(entry: LedgerEntry, endpoint: str) -> int:
    return (
        entry.input_tokens if entry.input_tokens is not None else count_line(entry.line, endpoint)
    )


def _inputs(entry: LedgerEntry, endpoint: str) -> int:
    """Embedding inputs of a request (1 for other endpoints: capped by requests)."""
    if endpoint != "/v1/embeddings":
        return 1
    body = orjson.loads(entry.line).get("body") or {}
    value = body.get("input")
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1
