"""``classify_failure``: a ``failed`` batch, judged from ``errors.data`` (see ``errors`` in
https://platform.openai.com/docs/api-reference/batch/object).

Validation failures live in ``batch.errors.data`` (``code``, ``message``, ``param``,
``line``), not in an error file; the original implementation looked in the wrong place
and lost the reason. Two verdicts:

* **Queue full** - every error is ``token_limit_exceeded``: nothing is wrong with the
  requests, the organisation's enqueued-token queue is. Every pending item goes back to
  ``retry`` without spending an attempt (category ``queue_full``), and a ``queue_full``
  event with the time and model is recorded so the retry loop can back off.
* **Input rejected** - any other code (``duplicate_custom_id``, ``invalid_json_line``,
  ``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``, file-access
  failures, codes nobody documented, or no error at all): resending the same lines
  cannot help, so the items become ``failed`` (category ``input``), logged at ERROR and
  alerted. Where an error names a ``line``, the input file is read to find the request
  on that line, which fails with that error. Requests *not* named also fail, with the
  batch-level reason: the API may report only some of the bad lines, and a blind
  resubmission is exactly what must not happen. A person fixes the input and requeues
  them. No attempt is spent: nothing ran.

A batch that failed after it started (``in_progress → failed``, tolerated but never
reported) may have result files; if so they are ingested as a harvest would, and only
the requests they do not settle get the batch-level verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from batchfsm.fsm.models import BatchErrorItem
from batchfsm.handlers.base import EffectContext
from batchfsm.handlers.harvest import fetch, ingest_files, log_settlement, scratch_dir
from batchfsm.handlers.settle import apply_fates, max_attempts_for, sender_of, submitted_ids
from batchfsm.ledger.records import QUEUE_FULL_CODE
from batchfsm.ledger.rules import Fate, input_fate, queue_full_fate

__all__ = ["QUEUE_FULL_CODES", "FailureVerdict", "classify_failure", "judge_failure"]

logger = logging.getLogger(__name__)

QUEUE_FULL_CODES = frozenset({QUEUE_FULL_CODE})
MAX_ERRORS_RECORDED = 20
"""errors.data entries copied into the history event (the sandbox, like the API, may
report up to 100)."""


@dataclass(frozen=True)
class FailureVerdict:
    """What ``errors.data`` says about a failed batch."""

    queue_full: bool
    code: str
    message: str
    culprits: dict[int, BatchErrorItem] = field(default_factory=dict)
    """Input errors that name a line (1-based line of the batch's input file)."""


def judge_failure(errors: Sequence[BatchErrorItem]) -> FailureVerdict:
    """Queue full only if *every* error says so; anything else is an input problem."""
    if not errors:
        return FailureVerdict(False, "batch_failed", "the batch failed without errors.data")
    if all(e.code in QUEUE_FULL_CODES for e in errors):
        first = errors[0]
        return FailureVerdict(True, first.code or QUEUE_FULL_CODE, first.message or "")
    rejected = [e for e in errors if e.code not in QUEUE_FULL_CODES]
    first = rejected[0]
    culprits: dict[int, BatchErrorItem] = {}
    for error in rejected:
        if error.line is not None:
            culprits.setdefault(error.line, error)
    summary = _describe(first)
    if len(rejected) > 1:
        summary += f" (and {len(rejected) - 1} more errors)"
    return FailureVerdict(False, first.code or "unknown", summary, culprits)


def _describe(error: BatchErrorItem) -> str:
    where = f" at line {error.line}" if error.line is not None else ""
    return f"{error.code or 'unknown'}{where}: {error.message or 'no message'}"


def _ids_at_lines(path: Path, lines: Iterable[int]) -> dict[int, str]:
    """custom_id of the input file at each wanted line (streamed; stops when done)."""
    wanted = set(lines)
    found: dict[int, str] = {}
    if not wanted:
        return found
    last = max(wanted)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number in wanted:
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    obj = None
                custom_id = obj.get("custom_id") if isinstance(obj, dict) else None
                if isinstance(custom_id, str):
                    found[number] = custom_id
            if number >= last:
                break
    return found


def _culprit_fates(ctx: EffectContext, verdict: FailureVerdict) -> dict[str, Fate]:
    """Fates of the requests that ``errors.data`` names by line, via the input file."""
    snapshot = ctx.record.snapshot
    if not verdict.culprits or snapshot is None or not snapshot.input_file_id:
        return {}
    if ctx.gateway is None:
        logger.warning("batch %s: no gateway to read the input file", ctx.record.batch_id)
        return {}
    with scratch_dir(ctx.workdir) as tmp:
        path = fetch(ctx, snapshot.input_file_id, tmp / "input.jsonl", "input")
        if path is None:
            return {}
        ids = _ids_at_lines(path, verdict.culprits)
    fates: dict[str, Fate] = {}
    for line, custom_id in ids.items():
        error = verdict.culprits[line]
        fates.setdefault(custom_id, input_fate(error.code or "unknown", _describe(error)))
    return fates


def _announce(ctx: EffectContext, verdict: FailureVerdict, *, items: int) -> None:
    """Say why the batch failed: a warning and a dated ``queue_full`` event for a full
    queue (the retry loop backs off on it), ERROR plus an alert for rejected input."""
    record = ctx.record
    if verdict.queue_full:
        logger.warning(
            "batch %s: refused, queue full (%s); %d items will be retried without "
            "spending an attempt",
            record.batch_id,
            verdict.message,
            items,
            extra={"batch_id": record.batch_id, "code": verdict.code},
        )
        ctx.note(
            "queue_full",
            code=verdict.code,
            message=verdict.message,
            model=record.snapshot.model if record.snapshot is not None else None,
            items=items,
        )
        return
    logger.error(
        "batch %s: input rejected at validation: %s; %d items failed, none resent",
        record.batch_id,
        verdict.message,
        items,
        extra={"batch_id": record.batch_id, "code": verdict.code},
    )
    ctx.alert(
        "input_rejected",
        f"input rejected at validation: {verdict.message}",
        code=verdict.code,
        items=items,
    )


def classify_failure(ctx: EffectContext) -> None:
    """The ``classify_failure`` effect (see the module docstring)."""
    record = ctx.record
    job_id = record.job_id
    snapshot = record.snapshot
    errors = snapshot.errors if snapshot is not None else ()
    verdict = judge_failure(errors)
    recorded = [e.model_dump() for e in errors[:MAX_ERRORS_RECORDED]]
    if job_id is None:  # no ledger, but the reason must still be surfaced
        _announce(ctx, verdict, items=0)
        ctx.note("failure_classified", verdict=_name(verdict), errors=recorded, settled=0)
        return
    sender = sender_of(record)
    submitted = submitted_ids(ctx.store, job_id, record.batch_id, sender=sender)
    if not submitted.pending:
        return  # classified before
    fates: dict[str, Fate] = {}
    if snapshot is not None and (snapshot.output_file_id or snapshot.error_file_id):
        fates.update(ingest_files(ctx, job_id=job_id, submitted=submitted).fates)
    _announce(ctx, verdict, items=len(submitted.pending))
    if verdict.queue_full:
        unaccounted = queue_full_fate(verdict.code, verdict.message)
    else:
        for custom_id, fate in _culprit_fates(ctx, verdict).items():
            if custom_id in submitted.known:
                fates.setdefault(custom_id, fate)
        unaccounted = input_fate(
            verdict.code,
            f"batch rejected at validation: {verdict.message}; this request is held back "
            "with the batch (fix the input, then requeue)",
        )
    tally = apply_fates(
        ctx.store,
        job_id=job_id,
        batch_id=record.batch_id,
        ids=submitted.pending,
        fates=fates,
        unaccounted=unaccounted,
        max_attempts=max_attempts_for(ctx.store, job_id, ctx.settings),
        sender=sender,
    )
    log_settlement(ctx, pending=submitted.pending, fates=fates, tally=tally)
    ctx.note("failure_classified", verdict=_name(verdict), errors=recorded, **tally.as_detail())


def _name(verdict: FailureVerdict) -> str:
    return "queue_full" if verdict.queue_full else "input"
