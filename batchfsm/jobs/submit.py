"""``submit``: check a request file, split it to fit the limits, send it as one *job*.

Nothing is uploaded before the whole file is known good: :func:`submit_job` validates
every line first (:func:`~batchfsm.jobs.input_file.plan_chunks`), so an error names its line
and leaves no trace. Then, chunk by chunk, it goes through the intent steps of
:class:`~batchfsm.jobs.intents.Intents` (intent, ledger entries ``pending`` with
``batches=()``, upload, create, record), so a crash at any point costs neither a
duplicate batch nor a lost one.

Re-running the same command is safe: the job id defaults to a digest of the endpoint,
the metadata and the file's bytes, so a second ``submit`` of the same input *resumes*
that job (sending only requests no batch or open intent covers yet) instead of paying
twice. Pass ``job_id`` (``--job-id``) to run the same file again as a new job.

``batchfsm submit --json`` prints the shape in :mod:`batchfsm.cli.views`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from batchfsm.errors import DuplicateJobError, InputFileError
from batchfsm.fsm.models import BatchRecord
from batchfsm.jobs.admission import Admission, line_model
from batchfsm.jobs.claims import claim_owned
from batchfsm.jobs.cost import check_max_cost, load_prices
from batchfsm.jobs.gc_pause import gc_paused
from batchfsm.jobs.input_file import (
    Chunk,
    Limits,
    Progress,
    RequestLine,
    read_chunks,
    validate_input,
)
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.metadata import check_metadata
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.ledger.records import (
    CLOSED_INTENT_STATES,
    ItemState,
    JobRecord,
    LedgerEntry,
    NewClaim,
)
from batchfsm.persistence.ledger_writer import Change, update_ledger
from batchfsm.persistence.sinks import unsafe_name

if TYPE_CHECKING:
    from batchfsm.ports import JobStore
    from batchfsm.tracker import Tracker

__all__ = ["SubmitResult", "check_job_id", "job_id_for", "submit_job"]

_DIGEST_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class SubmitResult:
    job: JobRecord
    batches: list[BatchRecord]
    """Every batch of the job, oldest first (including ones from an earlier run)."""
    launched: list[str]
    """Batch ids created by this call."""
    resumed: bool
    """The job already existed: this call only sent what was not yet covered."""
    open_intents: list[str]


def job_id_for(path: Path, endpoint: str, metadata: Mapping[str, str]) -> str:
    """A job id that is the same for the same input: endpoint, metadata and bytes."""
    digest = hashlib.sha256()
    digest.update(endpoint.encode() + b"\0")
    digest.update(orjson.dumps(dict(sorted(metadata.items()))) + b"\0")
    with Path(path).open("rb") as fh:
        while block := fh.read(_DIGEST_BLOCK):
            digest.update(block)
    return f"job-{digest.hexdigest()[:16]}"


def check_job_id(job_id: str | None) -> None:
    """Refuse a job id that cannot be a file name (``../x``, ``a/b``, ``.hidden``...).

    Results are filed under the job id, so such a job would be sent and paid for, and
    then never delivered: harvest would fail on every cycle.

    :raises InputFileError: naming the id and what is wrong with it.
    """
    if job_id is not None and (problem := unsafe_name(job_id)) is not None:
        raise InputFileError(f"{job_id!r} cannot name a job: it {problem}", field="--job-id")


def submit_job(
    tracker: Tracker,
    path: Path,
    endpoint: str,
    *,
    metadata: Mapping[str, str] | None = None,
    max_attempts: int | None = None,
    job_id: str | None = None,
    limits: Limits | None = None,
    queue_limits: Mapping[str, int] | None = None,
    max_cost: float | None = None,
    progress: Progress | None = None,
) -> SubmitResult:
    """Validate ``path``, then send it as batches of one job; see the module docstring.

    ``progress`` is told what a long step is doing (checking the file, each chunk's
    ledger writes; uploads are announced by the gateway), for a display.

    :raises InputFileError: a bad line (naming it), bad metadata, a ``job_id`` that
        cannot be a file name, or one naming a job with another endpoint or size.
        Nothing is written or uploaded then.
    :raises GatewayError: the API failed; what was sent is recorded, re-run to resume.
    """
    path = Path(path)
    check_job_id(job_id)
    user_metadata = check_metadata(metadata or {})
    limits = limits or Limits()
    with gc_paused():
        summary = validate_input(path, endpoint, limits=limits, progress=progress)
        if max_cost is not None:  # refused before anything is written or sent
            check_max_cost(path, endpoint, max_cost, load_prices(tracker.settings.prices_file))
        job_id = job_id or job_id_for(path, endpoint, user_metadata)
        job, resumed = _open_job(
            tracker,
            JobRecord(
                job_id=job_id,
                endpoint=endpoint,
                created_at=tracker.clock.now(),
                source=str(path),
                metadata=user_metadata,
                max_attempts=max_attempts or tracker.settings.max_attempts,
                requests=summary.requests,
            ),
        )
        if resumed:
            reconcile_intents(Intents.of(tracker), job_id=job_id)
        admission = Admission(tracker, _queue_limits(tracker, queue_limits), limits)
        sending = _Sending(tracker, job, admission, resumed=resumed, progress=progress)
        launched = sending.run(read_chunks(summary, count_tokens=True), len(summary.chunks))
    open_intents = [i.intent_id for i in tracker.store.list_intents(job_id, open_only=True)]
    return SubmitResult(
        job=job,
        batches=tracker.store.list_batches(job_id),
        launched=launched,
        resumed=resumed,
        open_intents=open_intents,
    )


class _Sending:
    """Each chunk's requests not yet covered: sent as a batch, or, where the model has
    a budget, written ``queued`` and admitted as far as it allows.

    One chunk at a time, so memory follows the chunk, not the job: a fresh job's
    entries are known to be absent (no read at all); a resumed job's are read a chunk
    at a time."""

    def __init__(
        self,
        tracker: Tracker,
        job: JobRecord,
        admission: Admission,
        *,
        resumed: bool,
        progress: Progress | None,
    ) -> None:
        self.tracker, self.job, self.admission = tracker, job, admission
        self.resumed = resumed
        self.note: Progress = progress or (lambda _text: None)
        self.intents = Intents.of(tracker)

    def run(self, chunks: Iterable[Chunk], count: int) -> list[str]:
        store, job_id = self.tracker.store, self.job.job_id
        open_ids = self.intents.open_ids(job_id) if self.resumed else set()
        launched: list[str] = []
        queued = False
        for chunk in chunks:
            closed = _closed(store, job_id)
            todo, known = _uncovered(store, job_id, chunk, open_ids, closed, resumed=self.resumed)
            if not todo:
                continue
            ids = [r.custom_id for r in todo]
            claim = _claim_new(job_id, {r.custom_id: r for r in todo}, closed)
            many = "request" if len(ids) == 1 else "requests"
            where = f"chunk {chunk.index + 1} of {count}: {len(ids):,} {many}"
            if self.admission.limit_for(line_model(todo[0].text)) is not None:
                self.note(f"{where}: queueing in the ledger")
                update_ledger(store, job_id, ids, _queued(claim), known=known)
                queued = True
                continue
            self.note(f"{where}: claiming in the ledger, then uploading")
            record = self._send(todo, claim, known)
            if record is not None:
                launched.append(record.batch_id)
        if queued:  # send what fits now; the poller sends the rest as batches end
            self.note("sending what the token budget admits")
            launched.extend(r.batch_id for r in self.admission.cycle().launched)
        return launched

    def _send(
        self, todo: list[RequestLine], claim: Change, known: dict[str, LedgerEntry]
    ) -> BatchRecord | None:
        """One chunk as one intent. A fresh job's requests have no entries yet, so they
        are claimed by one all-or-none insert and sent from the lines in hand; if that
        insert finds one taken (a racing submit of the same job) or the store cannot
        insert all or none, the general claim decides entry by entry."""
        ids = [r.custom_id for r in todo]
        if self.resumed:
            return self.intents.send(self.job, ids, claim, known=known)
        intent = self.intents.plan(self.job.job_id, ids)
        claims = [NewClaim(r.custom_id, r.text, r.input_tokens) for r in todo]
        if self.tracker.store.insert_claimed(self.job.job_id, intent.intent_id, claims):
            return self.intents.launch_claimed(self.job, intent, claims)
        intent, owned = claim_owned(self.tracker.store, intent, claim, known=None)
        return self.intents.launch(self.job, intent, owned=owned)


def _uncovered(
    store: JobStore,
    job_id: str,
    chunk: Chunk,
    open_ids: set[str],
    closed: set[str],
    *,
    resumed: bool,
) -> tuple[list[RequestLine], dict[str, LedgerEntry]]:
    """The chunk's requests no batch or open intent covers yet, and their entries as
    read now (none for a job this call created: nothing can cover them)."""
    if not resumed:
        return list(chunk.requests), {}
    entries = store.get_ledger(job_id, chunk.custom_ids)
    todo = [
        r
        for r in chunk.requests
        if r.custom_id not in open_ids and _is_free(entries.get(r.custom_id), closed)
    ]
    return todo, {r.custom_id: e for r in todo if (e := entries.get(r.custom_id)) is not None}


def _open_job(tracker: Tracker, job: JobRecord) -> tuple[JobRecord, bool]:
    try:
        return tracker.store.put_job(job), False
    except DuplicateJobError:
        existing = tracker.store.load_job(job.job_id)
    if (existing.endpoint, existing.requests) != (job.endpoint, job.requests):
        raise InputFileError(
            f"job {job.job_id} exists with {existing.requests} requests for "
            f"{existing.endpoint}; this file has {job.requests} for {job.endpoint} "
            "(choose another --job-id)",
            path=job.source,
        )
    return existing, True


def _closed(store: JobStore, job_id: str) -> set[str]:
    """Ids of the job's intents that ended (read once a chunk, without decoding them)."""
    return {i for i, state in store.intent_states(job_id).items() if state in CLOSED_INTENT_STATES}


def _is_free(entry: LedgerEntry | None, closed: set[str]) -> bool:
    """A request this submit may claim: no entry yet, or a ``pending`` one that never
    ran and that no live intent holds (unclaimed, or claimed by an intent in ``closed``,
    the ids of intents that ended without sending it)."""
    if entry is None:
        return True
    if entry.state is not ItemState.PENDING or entry.batches:
        return False
    return entry.intent_id is None or entry.intent_id in closed


def _claim_new(job_id: str, requests: Mapping[str, RequestLine], closed: set[str]) -> Change:
    """A new entry per request, or an existing free one taken over (:func:`_is_free`)."""

    def change(entry: LedgerEntry | None, custom_id: str) -> LedgerEntry | None:
        if entry is None:
            request = requests[custom_id]
            return LedgerEntry(
                job_id=job_id,
                custom_id=custom_id,
                line=request.text,
                input_tokens=request.input_tokens,
            )
        return entry if _is_free(entry, closed) else None

    return change


def _queue_limits(tracker: Tracker, given: Mapping[str, int] | None) -> Mapping[str, int]:
    return tracker.settings.queue_limits if given is None else given


def _queued(claim: Change) -> Change:
    """``claim``, writing the entry ``queued`` (unclaimed) instead of for an intent."""

    def change(entry: LedgerEntry | None, custom_id: str) -> LedgerEntry | None:
        new = claim(entry, custom_id)
        if new is None:
            return None
        return new.model_copy(update={"state": ItemState.QUEUED, "intent_id": None})

    return change
