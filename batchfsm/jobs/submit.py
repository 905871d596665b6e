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
from batchfsm.jobs.claims import closed_intents
from batchfsm.jobs.cost import check_max_cost, load_prices
from batchfsm.jobs.input_file import Chunk, Limits, plan_chunks
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.metadata import check_metadata
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.ledger.records import ItemState, JobRecord, LedgerEntry
from batchfsm.ledger.tokens import count_line
from batchfsm.persistence.ledger_writer import Change, update_ledger
from batchfsm.persistence.sinks import unsafe_name

if TYPE_CHECKING:
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
) -> SubmitResult:
    """Validate ``path``, then send it as batches of one job; see the module docstring.

    :raises InputFileError: a bad line (naming it), bad metadata, a ``job_id`` that
        cannot be a file name, or one naming a job with another endpoint or size.
        Nothing is written or uploaded then.
    :raises GatewayError: the API failed; what was sent is recorded, re-run to resume.
    """
    path = Path(path)
    check_job_id(job_id)
    user_metadata = check_metadata(metadata or {})
    limits = limits or Limits()
    chunks = plan_chunks(
        path,
        endpoint,
        max_requests=limits.max_requests,
        max_bytes=limits.max_bytes,
        max_embedding_inputs=limits.max_embedding_inputs,
    )  # validates the whole file before returning
    if max_cost is not None:  # refused before anything is written or sent
        check_max_cost(path, endpoint, max_cost, load_prices(tracker.settings.prices_file))
    requests = _count_lines(path)  # blank lines were refused: one line, one request
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
            requests=requests,
        ),
    )
    intents = Intents.of(tracker)
    if resumed:
        reconcile_intents(intents, job_id=job_id)
    covered = _covered(intents, job_id) if resumed else set()
    admission = Admission(tracker, _queue_limits(tracker, queue_limits), limits)
    launched = _send_chunks(tracker, job, chunks, covered, admission, resumed=resumed)
    open_intents = [i.intent_id for i in tracker.store.list_intents(job_id, open_only=True)]
    return SubmitResult(
        job=job,
        batches=tracker.store.list_batches(job_id),
        launched=launched,
        resumed=resumed,
        open_intents=open_intents,
    )


def _send_chunks(
    tracker: Tracker,
    job: JobRecord,
    chunks: Iterable[Chunk],
    covered: set[str],
    admission: Admission,
    *,
    resumed: bool,
) -> list[str]:
    """Each chunk's requests not yet ``covered``: sent as a batch, or, where the
    model has a budget, written ``queued`` and admitted as far as it allows."""
    job_id, endpoint = job.job_id, job.endpoint
    intents = Intents.of(tracker)
    launched: list[str] = []
    queued = False
    for chunk in chunks:
        todo = [r for r in chunk.requests if r.custom_id not in covered]
        if not todo:
            continue
        lines = {r.custom_id: r.text for r in todo}
        tokens = {r.custom_id: count_line(r.text, endpoint) for r in todo}
        closed = set(closed_intents(tracker.store, job_id)) if resumed else set()
        claim = _claim_new(job_id, lines, tokens, closed)
        if admission.limit_for(line_model(todo[0].text)) is not None:
            update_ledger(tracker.store, job_id, list(lines), _queued(claim))
            queued = True
            continue
        record = intents.send(job, lines, claim)
        if record is not None:
            launched.append(record.batch_id)
    if queued:  # send what fits now; the poller sends the rest as batches end
        launched.extend(r.batch_id for r in admission.cycle().launched)
    return launched


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


def _covered(intents: Intents, job_id: str) -> set[str]:
    """custom_ids already in a batch of the job or owned by an open intent."""
    covered = intents.open_ids(job_id)
    closed = closed_intents(intents.store, job_id)
    for entry in intents.store.iter_ledger(job_id):
        if entry.batches or entry.state is not ItemState.PENDING:
            covered.add(entry.custom_id)
        elif entry.intent_id is not None and entry.intent_id not in closed:
            covered.add(entry.custom_id)  # claimed by an intent not listed as open yet
    return covered


def _claim_new(
    job_id: str, lines: Mapping[str, str], tokens: Mapping[str, int], closed: set[str]
) -> Change:
    """A new entry per request. An existing ``pending`` one that never ran is taken
    over only if no live intent holds it: unclaimed, or claimed by an intent in
    ``closed`` (ids of intents that ended without sending it)."""

    def change(entry: LedgerEntry | None, custom_id: str) -> LedgerEntry | None:
        if entry is None:
            return LedgerEntry(
                job_id=job_id,
                custom_id=custom_id,
                line=lines[custom_id],
                input_tokens=tokens[custom_id],
            )
        if entry.state is not ItemState.PENDING or entry.batches:
            return None
        if entry.intent_id is not None and entry.intent_id not in closed:
            return None  # an open intent (perhaps a racing submit) is sending it
        return entry

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


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)
