"""Submit intents: write down what we are about to send before sending it.

Creating a batch is the one call that costs money and cannot be repeated safely, so
every batch (a job's first batches and every retry batch) goes through the same steps,
each committed before the next side effect::

    planned   intent saved (its custom_ids), ledger entries claimed  -> nothing sent yet
    uploaded  input file uploaded, file_id saved                      -> no batch yet
    (create)  POST /batches with metadata batchfsm_intent=<intent_id>
    created   ledger entries get the batch id, the batch is tracked, intent closed

A crash (or an ambiguous 5xx/timeout) anywhere leaves an *open* intent. On the next
start :func:`reconcile_intents` lists the account's batches and looks for
``metadata.batchfsm_intent``: a batch found is adopted (no duplicate), an intent with no
batch is carried forward from the ledger's original lines (no orphan), an intent whose
items were never claimed is abandoned. An open intent owns its custom_ids: nothing else
plans them until it is closed.

Two processes must not work on one intent at once (both would find no batch and both
create one). An open intent is therefore *leased* (``SubmitIntent.lease_owner`` /
``lease_until``, ``Settings.lease_seconds`` long, renewed at the upload): only once the
lease has run out does a reconciler take it, with a conditional write that renews the
lease in its own name. The first owner, if it is merely slow, then loses its next
intent write (a version conflict) and stops before it could create a second batch.

Which entries an intent sends is decided by the entries themselves
(:mod:`batchfsm.jobs.claims`): each claim stamps ``LedgerEntry.intent_id`` in the same
conditional write that makes the entry ``pending``, so a claim that half-failed on a
store without atomic group writes strands nothing and sends nothing twice.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from batchfsm.errors import (
    BatchNotFoundError,
    DuplicateJobError,
    GatewayError,
    GatewayUnavailableError,
    InputFileError,
    RateLimitedError,
    StaleJobError,
)
from batchfsm.fsm.models import BatchRecord, BatchSnapshot, EventEntry
from batchfsm.jobs.claims import owned_entries, update_ledger
from batchfsm.jobs.input_file import write_chunk
from batchfsm.ledger.records import ItemError, ItemState, JobRecord, LedgerEntry, SubmitIntent

if TYPE_CHECKING:
    from batchfsm.tracker import Tracker

__all__ = [
    "INTENT_KEY",
    "JOB_KEY",
    "ReconcileReport",
    "check_metadata",
    "launch_intent",
    "lease_ends",
    "open_intent_ids",
    "plan_intent",
    "reconcile_intents",
    "update_ledger",
]

logger = logging.getLogger(__name__)

JOB_KEY = "batchfsm_job"
INTENT_KEY = "batchfsm_intent"
RESERVED_KEYS = frozenset({JOB_KEY, INTENT_KEY})
MAX_METADATA_PAIRS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512
MAX_CONFLICT_RETRIES = 8


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The user's batch metadata, checked against the API's limits *including* the two
    pairs batchfsm adds (so at most 14 of the user's own)."""
    for key, value in metadata.items():
        where = f"metadata.{key}"
        if key in RESERVED_KEYS:
            raise InputFileError(f"{key!r} is reserved for batchfsm", field=where)
        if not key or len(key) > MAX_KEY_CHARS:
            raise InputFileError(f"keys must be 1-{MAX_KEY_CHARS} characters", field=where)
        if len(value) > MAX_VALUE_CHARS:
            raise InputFileError(
                f"value is {len(value)} characters, over the limit of {MAX_VALUE_CHARS}",
                field=where,
            )
    room = MAX_METADATA_PAIRS - len(RESERVED_KEYS)
    if len(metadata) > room:
        raise InputFileError(
            f"{len(metadata)} metadata pairs given; the API allows {MAX_METADATA_PAIRS} and "
            f"batchfsm uses {len(RESERVED_KEYS)}, so at most {room}",
            field="metadata",
        )
    return dict(metadata)


# -- the ledger --------------------------------------------------------------------------


def _append_batch(
    intent_id: str, batch_id: str
) -> Callable[[LedgerEntry | None, str], LedgerEntry | None]:
    def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.intent_id != intent_id or batch_id in entry.batches:
            return None
        return entry.model_copy(
            update={"batches": (*entry.batches, batch_id), "state": ItemState.PENDING}
        )

    return change


# -- planning and launching --------------------------------------------------------------


def open_intent_ids(tracker: Tracker, job_id: str) -> set[str]:
    """custom_ids owned by an open (planned/uploaded) intent of the job."""
    owned: set[str] = set()
    for intent in tracker.store.list_intents(job_id, open_only=True):
        owned.update(intent.custom_ids)
    return owned


def plan_intent(
    tracker: Tracker,
    job_id: str,
    custom_ids: Iterable[str],
    *,
    parent_batch_ids: Iterable[str] = (),
) -> SubmitIntent:
    """Save a ``planned`` intent, leased to this process: the promise, written before
    anything is claimed (see :func:`batchfsm.jobs.claims.claim_items`)."""
    now = tracker.clock.now()
    intent = SubmitIntent(
        intent_id=f"intent_{uuid.uuid4().hex[:16]}",
        job_id=job_id,
        created_at=now,
        custom_ids=tuple(custom_ids),
        parent_batch_ids=tuple(dict.fromkeys(parent_batch_ids)),
        lease_owner=tracker.owner,
        lease_until=now + timedelta(seconds=tracker.settings.lease_seconds),
    )
    return tracker.store.save_intent(intent)


def _lease(tracker: Tracker, now: datetime) -> dict[str, object]:
    until = now + timedelta(seconds=tracker.settings.lease_seconds)
    return {"lease_owner": tracker.owner, "lease_until": until}


def lease_ends(intent: SubmitIntent, lease_seconds: float) -> datetime:
    """When another process may take ``intent`` over (records from before leases
    existed count from ``created_at``)."""
    if intent.lease_until is not None:
        return intent.lease_until
    return intent.created_at + timedelta(seconds=lease_seconds)


def launch_intent(tracker: Tracker, job: JobRecord, intent: SubmitIntent) -> BatchRecord | None:
    """Upload the lines the intent owns (from the ledger), create the batch, record it.

    Only entries claimed by this intent are sent (read again here, just before the
    upload; the intent is narrowed to them). Returns the tracked batch, or None when
    there was nothing to send or another process took the intent over. A failure that
    proves no batch exists abandons the intent and hands its items back; an ambiguous
    one leaves it ``uploaded`` for :func:`reconcile_intents`.
    """
    owned = owned_entries(tracker, intent)
    if not owned:
        _abandon(tracker, intent, reason="it owns no ledger entry")
        return None
    if len(owned) != len(intent.custom_ids):
        intent = tracker.store.save_intent(intent.model_copy(update={"custom_ids": tuple(owned)}))
    lines = [entry.line for entry in owned.values()]
    if tracker.gateway is None:
        raise ValueError("submitting needs a gateway")
    with tempfile.TemporaryDirectory(dir=tracker.workdir, prefix="batchfsm-upload-") as tmp:
        path = Path(tmp) / f"{job.job_id}.{intent.intent_id}.jsonl"
        write_chunk(lines, path)
        try:
            file_id = tracker.gateway.upload(path)
        except GatewayError as exc:
            _abandon(tracker, intent, reason=f"upload failed: {exc}", failure=_rejection(exc))
            raise
    try:  # conditional: if the lease ran out and someone took the intent, stop here
        intent = tracker.store.save_intent(
            intent.model_copy(
                update={
                    "state": "uploaded",
                    "file_id": file_id,
                    **_lease(tracker, tracker.clock.now()),
                }
            )
        )
    except StaleJobError:
        logger.warning("intent %s was taken over while uploading; leaving it", intent.intent_id)
        return None
    return _create(tracker, job, intent)


def _create(tracker: Tracker, job: JobRecord, intent: SubmitIntent) -> BatchRecord | None:
    """``POST /batches`` for an uploaded intent, then :func:`adopt` the answer.

    Only a refusal proves no batch exists: a 4xx abandons the intent (a 404 means the
    uploaded file is gone, so the intent goes back to ``planned`` to upload again). A 429
    or a 5xx/timeout leaves it ``uploaded``; the next reconcile looks for the batch first.
    """
    assert tracker.gateway is not None and intent.file_id is not None
    metadata = {**job.metadata, JOB_KEY: job.job_id, INTENT_KEY: intent.intent_id}
    try:
        snapshot = tracker.gateway.create(intent.file_id, job.endpoint, metadata)
    except BatchNotFoundError:
        _close(tracker, intent, state="planned", file_id=None)
        raise
    except (RateLimitedError, GatewayUnavailableError):
        raise
    except GatewayError as exc:
        if exc.status_code is not None and 400 <= exc.status_code < 500:
            _abandon(tracker, intent, reason=f"create refused: {exc}", failure=_rejection(exc))
        raise
    return adopt(tracker, job, intent, snapshot)


INPUT_REJECTIONS = frozenset({400, 413, 422})
"""Answers that reject the request itself: sending it again would be refused again.
(401/403 are about the key, 404 about the uploaded file: those items are not at fault.)"""


def _rejection(exc: GatewayError) -> ItemError | None:
    """The error that fails an intent's items, when the API refused their input."""
    if exc.status_code not in INPUT_REJECTIONS:
        return None
    return ItemError(
        code=exc.code or f"http_{exc.status_code}", message=str(exc)[:500], category="input"
    )


def adopt(
    tracker: Tracker, job: JobRecord, intent: SubmitIntent, snapshot: BatchSnapshot
) -> BatchRecord:
    """Record a created batch: ledger first (so a harvest racing us finds its items),
    then the tracked record, then the intent closed. Every step is idempotent."""
    batch_id = snapshot.id
    if not batch_id:
        raise GatewayError("create answered a batch without an id")
    update_ledger(
        tracker, job.job_id, list(intent.custom_ids), _append_batch(intent.intent_id, batch_id)
    )
    parents = intent.parent_batch_ids
    try:
        record = tracker.track(
            snapshot,
            job_id=job.job_id,
            parent_batch_id=parents[0] if parents else None,
            items=len(intent.custom_ids),
        )
    except DuplicateJobError:
        record = tracker.store.load(batch_id)
    else:
        if len(parents) > 1:  # the record links one parent; the history names them all
            event = EventEntry(
                name="retry_of", at=tracker.clock.now(), detail={"parent_batch_ids": parents}
            )
            try:
                record = tracker.store.commit(
                    record, expected_version=record.version, history=[event]
                )
            except StaleJobError:
                logger.info("batch %s: parents not noted (a poller was first)", batch_id)
    _close(tracker, intent, state="created", batch_id=batch_id)
    logger.info("job %s: batch %s created from %s", job.job_id, batch_id, intent.intent_id)
    return record


def _close(tracker: Tracker, intent: SubmitIntent, **update: object) -> None:
    for _ in range(MAX_CONFLICT_RETRIES):
        try:
            tracker.store.save_intent(intent.model_copy(update=update))
            return
        except StaleJobError:
            fresh = {i.intent_id: i for i in tracker.store.list_intents(intent.job_id)}
            intent = fresh[intent.intent_id]
            if intent.state in ("created", "abandoned"):
                return


def _abandon(
    tracker: Tracker, intent: SubmitIntent, *, reason: str, failure: ItemError | None = None
) -> None:
    """Close an intent that sent nothing.

    When the API refused the input itself (``failure``), the intent's items fail with
    that reason, loudly: sending them again would only be refused again, and putting them
    back in ``retry`` would resubmit them for ever without spending an attempt.
    Otherwise retry items it claimed go back to ``retry`` and never-sent items stay
    ``pending``, free for a resumed submit to claim.
    """

    def release(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.intent_id != intent.intent_id:
            return None
        if entry.state is not ItemState.PENDING:
            return None
        if failure is not None:
            return entry.model_copy(update={"state": ItemState.FAILED, "last_error": failure})
        if not entry.batches:
            return None
        return entry.model_copy(update={"state": ItemState.RETRY})

    update_ledger(tracker, intent.job_id, list(intent.custom_ids), release)
    if failure is not None:
        logger.error(
            "intent %s abandoned, its %d requests failed: %s",
            intent.intent_id,
            len(intent.custom_ids),
            reason,
        )
    else:
        logger.warning("intent %s abandoned: %s", intent.intent_id, reason)
    _close(tracker, intent, state="abandoned")


# -- reconciliation ----------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """What :func:`reconcile_intents` did, by intent id."""

    adopted: list[str] = field(default_factory=list)
    """A batch existed (found by its metadata) and is now tracked."""
    relaunched: list[str] = field(default_factory=list)
    """No batch existed; it was created now from the ledger's lines."""
    abandoned: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    """Younger than the lease (another process may be submitting it) or taken by one."""
    failed: list[str] = field(default_factory=list)
    """The API failed; left open for the next start."""

    @property
    def open(self) -> int:
        return len(self.in_flight) + len(self.failed)


def reconcile_intents(
    tracker: Tracker, *, job_id: str | None = None, min_age: float | None = None
) -> ReconcileReport:
    """Close every open intent whose lease has run out (with ``min_age``: that was
    last leased at least ``min_age`` seconds ago).

    Lists the account's batches at most once, and only if an ``uploaded`` intent needs
    it. Never raises for one intent's API failure: that intent stays open (``failed``).
    """
    report = ReconcileReport()
    lease = tracker.settings.lease_seconds
    early = timedelta(seconds=0 if min_age is None else lease - min_age)
    now = tracker.clock.now()
    remote: dict[str, BatchSnapshot] | None = None
    for seen in tracker.store.list_intents(job_id, open_only=True):
        if now < lease_ends(seen, lease) - early:
            report.in_flight.append(seen.intent_id)
            continue
        try:  # take it: a conditional write, so two reconcilers never both act
            intent = tracker.store.save_intent(seen.model_copy(update=_lease(tracker, now)))
        except StaleJobError:
            report.in_flight.append(seen.intent_id)
            continue
        job = tracker.store.load_job(intent.job_id)
        try:
            if intent.state == "uploaded":
                if remote is None:
                    remote = _remote_intents(tracker)
                found = remote.get(intent.intent_id)
                if found is not None:
                    adopt(tracker, job, intent, found)
                    report.adopted.append(intent.intent_id)
                elif _create(tracker, job, intent) is not None:
                    report.relaunched.append(intent.intent_id)
                else:
                    report.abandoned.append(intent.intent_id)
            elif owned_entries(tracker, intent) and launch_intent(tracker, job, intent):
                report.relaunched.append(intent.intent_id)
            else:
                _abandon(tracker, intent, reason="its items were never claimed")
                report.abandoned.append(intent.intent_id)
        except GatewayError as exc:
            logger.warning("intent %s left open: %s", intent.intent_id, exc)
            if _is_open(tracker, intent):
                report.failed.append(intent.intent_id)
            else:
                report.abandoned.append(intent.intent_id)
    return report


def _is_open(tracker: Tracker, intent: SubmitIntent) -> bool:
    for current in tracker.store.list_intents(intent.job_id, open_only=True):
        if current.intent_id == intent.intent_id:
            return True
    return False


def _remote_intents(tracker: Tracker) -> dict[str, BatchSnapshot]:
    """Batches of the account that carry an intent id, by that id (first page wins)."""
    assert tracker.gateway is not None
    found: dict[str, BatchSnapshot] = {}
    for snapshot in tracker.gateway.iter_batches():
        intent_id = (snapshot.metadata or {}).get(INTENT_KEY)
        if intent_id and intent_id not in found:
            found[intent_id] = snapshot
    return found
