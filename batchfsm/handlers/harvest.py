"""``harvest``: ingest a terminal batch's files, deliver its results once, settle its items.

Owed on entering ``completed``, ``expired`` and ``cancelled`` (all three may carry an
output file of paid-for results and an error file, see
https://platform.openai.com/docs/guides/batch). Steps:

1. Ids: the ledger entries still ``pending`` in this batch. None left means the batch
   was harvested already: return at once, with no download and no write.
2. Download the output and error files (either may be absent) into a scratch directory
   and stream them line by line through :func:`~batchfsm.ledger.result_lines.iter_outcomes`.
   Lines are classified by content, not by file, and joined on ``custom_id``.
3. Deliver the successes of pending ids to the sink in **one** ``write_batch`` call,
   which publishes a (job, batch) at most once. Malformed lines go to ``quarantine``.
4. Only then settle the ledger (:func:`~batchfsm.handlers.settle.apply_fates`):
   pending ids with no line are *missing* and go back to ``retry`` for free. Each
   succeeded entry keeps the ``usage`` its line reported (and the model that served it),
   whatever the batch's end (completed, or expired/cancelled part-way); the
   ``harvested`` event records their sum as ``line_usage``.

Crash safety follows from that order. A crash before step 3 repeats everything. A crash
between 3 and 4 finds the batch delivered (``sink.has``): the files are parsed again to
settle the ledger, but nothing is written twice. A crash inside 4 leaves some entries
settled; those are skipped on the re-run, and so are those a retry intent claimed in the
meantime (:func:`~batchfsm.handlers.settle.awaits`). Delivery always happens before any entry of
the batch is settled, so whichever run publishes, it publishes the complete set.

A 404 on a file is not retried for ever: the batch history records it, an alert is
raised once, and the file's requests go back to ``retry`` without spending an attempt
(the paid-for results in a vanished output file are lost). After the moment the files
were created to expire (:meth:`~batchfsm.fsm.models.BatchRecord.results_expire_at`,
from the ``output_expires_after`` the batch was created with) that 404 is
``results_expired``: logged at ERROR, alerted, and the fate of every request left
unsettled; before it, or when the moment is unknown, they are *missing*. A harvest that
failed before and runs again in the last quarter of that lifetime (at most the last
24 h) warns once that the files are about to go (``results_expiring``). If the output
file vanished *after* the results were delivered (a crash, then expiry), the delivered
ids are read back from the sink when it can replay them (:class:`DirectorySink` can),
so no result is delivered twice.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from batchfsm.errors import BatchNotFoundError, HandlerError
from batchfsm.handlers.base import EffectContext
from batchfsm.handlers.expiry import expired_at, results_expired, warn_if_expiring
from batchfsm.handlers.settle import (
    Submitted,
    apply_fates,
    max_attempts_for,
    sender_of,
    submitted_ids,
)
from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes
from batchfsm.ledger.rules import (
    MISSING,
    RESULTS_EXPIRED,
    SUCCEEDED,
    Fate,
    Tally,
    fate_for_line,
    merge,
)
from batchfsm.ledger.usage import LineUsage, UsageTotals, parse_usage
from batchfsm.ports import QuarantinedLine, ReplayableSink

__all__ = ["Ingested", "harvest", "ingest_files", "scratch_dir"]

logger = logging.getLogger(__name__)

SAMPLE_IDS = 5
"""How many example ids a log line or history event names (never the whole set)."""


@dataclass
class Ingested:
    """What the result files of one batch said, by ``custom_id`` (bodies not kept)."""

    fates: dict[str, Fate] = field(default_factory=dict)
    lines: Counter[str] = field(default_factory=Counter)
    """Lines read, by :class:`~batchfsm.ledger.result_lines.OutcomeKind`."""
    quarantined: list[QuarantinedLine] = field(default_factory=list)
    foreign: int = 0
    """Lines naming an id this batch never carried (counted, logged, otherwise ignored)."""
    foreign_samples: list[str] = field(default_factory=list)
    written: int = 0
    """Results delivered to the sink by this run."""
    already_delivered: bool = False
    gone: list[str] = field(default_factory=list)
    """Which files answered 404 (``"output"``, ``"error"``)."""
    expired: list[str] = field(default_factory=list)
    """Which of those answered 404 after their expiry (``results_expired``)."""
    usage: dict[str, LineUsage] = field(default_factory=dict)
    """The usage reported by the succeeded line of each pending id (when it has one)."""
    line_usage: UsageTotals = field(default_factory=UsageTotals)
    """The usage of every succeeded line of this batch's ids, summed."""

    def detail(self) -> dict[str, object]:
        return {
            "lines": dict(sorted(self.lines.items())),
            "quarantined": len(self.quarantined),
            "foreign_lines": self.foreign,
            "results_written": self.written,
            "already_delivered": self.already_delivered,
            "files_gone": list(self.gone),
            "files_expired": list(self.expired),
            "line_usage": self.line_usage.as_json(),
        }


class _Scanner:
    """Streams result files, recording each id's fate and yielding deliverable bodies."""

    def __init__(self, submitted: Submitted) -> None:
        self.known = submitted.known
        self.pending = set(submitted.pending)
        self.out = Ingested()

    def successes(self, path: Path, source: str) -> Iterator[tuple[str, bytes]]:
        out = self.out
        for outcome in iter_outcomes(path):
            out.lines[outcome.kind.value] += 1
            if outcome.kind is OutcomeKind.MALFORMED:
                reason = outcome.reason or "malformed"
                out.quarantined.append(
                    QuarantinedLine(source, outcome.line, outcome.raw or b"", reason)
                )
            custom_id = outcome.custom_id
            if custom_id is None:
                continue
            if custom_id not in self.known:
                out.foreign += 1
                if len(out.foreign_samples) < SAMPLE_IDS:
                    out.foreign_samples.append(custom_id)
                continue
            fate = fate_for_line(outcome)
            previous = out.fates.get(custom_id)
            out.fates[custom_id] = fate if previous is None else merge(previous, fate)
            if fate is SUCCEEDED and previous is not SUCCEEDED:  # a duplicate line counts once
                self.note_usage(custom_id, outcome.usage)
            if fate is SUCCEEDED and custom_id in self.pending and outcome.body is not None:
                yield custom_id, outcome.body

    def note_usage(self, custom_id: str, usage: LineUsage | None) -> None:
        self.out.line_usage.add(usage)
        if usage is not None and custom_id in self.pending:
            self.out.usage[custom_id] = usage


@contextmanager
def scratch_dir(workdir: Path | None) -> Iterator[Path]:
    """A private temporary directory (under ``workdir`` if given), removed afterwards."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="batchfsm-") as name:
        yield Path(name)


def fetch(ctx: EffectContext, file_id: str | None, dest: Path, what: str) -> Path | None:
    """Download a file of this batch; None if absent or gone (a 404 is noted and alerted)."""
    if not file_id:
        return None
    if ctx.gateway is None:
        raise HandlerError(f"cannot download the {what} file: no gateway", effect_key=_key(ctx))
    try:
        return ctx.gateway.download(file_id, dest)
    except BatchNotFoundError as exc:
        expired = expired_at(ctx) if what in ("output", "error") else None
        if expired is not None:
            results_expired(ctx, what, file_id, expired)
            return None
        ctx.note("file_gone", file=what, file_id=file_id, error=str(exc))
        ctx.alert(
            f"{what}_file_gone",
            f"{what} file {file_id} is gone (404); requests it would have settled are "
            "treated as missing and retried",
            file_id=file_id,
        )
        return None


def _local_failure(exc: OSError) -> str:
    """One line for a local file that cannot be written: nothing is settled, so the
    effect stays owed and delivers everything once the folder is usable again."""
    where = f" to {exc.filename}" if exc.filename else ""
    return (
        f"cannot write results{where}: {exc.strerror or exc}; nothing is lost, the "
        "batch is harvested once this is fixed"
    )


def _key(ctx: EffectContext) -> str:
    return ctx.effect.key if ctx.effect is not None else f"{ctx.record.batch_id}:heartbeat"


def ingest_files(ctx: EffectContext, *, job_id: str, submitted: Submitted) -> Ingested:
    """Steps 2 and 3 of the module docstring: download, stream, deliver, quarantine."""
    record = ctx.record
    snapshot = record.snapshot
    scanner = _Scanner(submitted)
    out = scanner.out
    if snapshot is None:
        return out
    sink = ctx.sink
    delivered_before = sink is not None and sink.has(job_id, record.batch_id)
    with scratch_dir(ctx.workdir) as tmp:
        files: list[tuple[Path, str]] = []
        for file_id, what in (
            (snapshot.output_file_id, "output"),
            (snapshot.error_file_id, "error"),
        ):
            path = fetch(ctx, file_id, tmp / f"{what}.jsonl", what)
            if path is not None:
                files.append((path, what))
            elif file_id:
                out.gone.append(what)
                if expired_at(ctx) is not None:
                    out.expired.append(what)
        if files:
            successes = itertools.chain.from_iterable(
                scanner.successes(path, what) for path, what in files
            )
            out.written = _deliver(ctx, job_id, successes, out)
            for _ in successes:  # parse whatever the sink did not consume
                pass
    if "output" in out.gone and delivered_before:
        _recover_delivered(ctx, job_id, scanner)
    if out.quarantined:
        _quarantine(ctx, job_id, out.quarantined)
    return out


def _deliver(
    ctx: EffectContext, job_id: str, successes: Iterable[tuple[str, bytes]], out: Ingested
) -> int:
    sink = ctx.sink
    batch_id = ctx.record.batch_id
    if sink is None:
        undeliverable = sum(1 for _ in successes)
        if undeliverable:
            raise HandlerError(
                f"{undeliverable} results to deliver but no result sink is configured",
                effect_key=_key(ctx),
            )
        return 0
    if sink.has(job_id, batch_id):
        out.already_delivered = True
        return 0
    return sink.write_batch(job_id, batch_id, successes)


def _recover_delivered(ctx: EffectContext, job_id: str, scanner: _Scanner) -> None:
    """The output file is gone but the batch was delivered before: trust the sink."""
    sink = ctx.sink
    batch_id = ctx.record.batch_id
    if sink is None:
        return
    if not isinstance(sink, ReplayableSink):
        ctx.alert(
            "delivered_unknown",
            "the output file is gone after its results were delivered, and the sink "
            "cannot replay them: the requests will be retried and may be delivered twice",
        )
        return
    recovered = 0
    for custom_id, body in sink.read_batch(job_id, batch_id):
        if custom_id in scanner.known:
            if scanner.out.fates.get(custom_id) is not SUCCEEDED:
                scanner.note_usage(custom_id, _usage_of(body))
            scanner.out.fates[custom_id] = SUCCEEDED
            recovered += 1
    ctx.note("results_recovered_from_sink", items=recovered)


def _usage_of(body: bytes) -> LineUsage | None:
    try:
        return parse_usage(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def _quarantine(ctx: EffectContext, job_id: str, lines: list[QuarantinedLine]) -> None:
    batch_id = ctx.record.batch_id
    sample = [f"{q.source}:{q.line} ({q.reason})" for q in lines[:SAMPLE_IDS]]
    logger.warning(
        "batch %s: %d unreadable result lines kept aside, e.g. %s",
        batch_id,
        len(lines),
        ", ".join(sample),
        extra={"batch_id": batch_id},
    )
    if ctx.sink is not None:
        ctx.sink.quarantine(job_id, batch_id, lines)
    ctx.alert(
        "quarantined_lines", f"{len(lines)} unreadable result lines quarantined", lines=len(lines)
    )


def log_settlement(
    ctx: EffectContext, *, pending: list[str], fates: dict[str, Fate], tally: Tally
) -> None:
    """Log the settlement; missing ids loudly, with a few examples."""
    batch_id = ctx.record.batch_id
    missing = tally.reasons.get(MISSING.reason, 0)
    if missing:
        sample = list(itertools.islice((c for c in pending if c not in fates), SAMPLE_IDS))
        logger.warning(
            "batch %s: %d submitted requests are in neither result file (missing), "
            "retried without spending an attempt, e.g. %s",
            batch_id,
            missing,
            ", ".join(sample),
            extra={"batch_id": batch_id, "missing": missing},
        )
    expired = tally.reasons.get(RESULTS_EXPIRED.reason, 0)
    if expired:
        logger.error(
            "batch %s: %d requests lost their results to expired files (results_expired), "
            "back to retry without spending an attempt",
            batch_id,
            expired,
            extra={"batch_id": batch_id, "results_expired": expired},
        )
    logger.info(
        "batch %s: settled %d items %s",
        batch_id,
        tally.settled,
        dict(tally.states),
        extra={"batch_id": batch_id},
    )


def harvest(ctx: EffectContext) -> None:
    """The ``harvest`` effect (see the module docstring)."""
    record = ctx.record
    job_id = record.job_id
    if job_id is None:
        logger.warning("batch %s: belongs to no job, nothing to settle", record.batch_id)
        ctx.note("harvest_skipped", reason="the batch belongs to no job (no ledger)")
        return
    sender = sender_of(record)
    submitted = submitted_ids(ctx.store, job_id, record.batch_id, sender=sender)
    if not submitted.pending:
        logger.debug("batch %s: nothing pending, already harvested", record.batch_id)
        return
    warn_if_expiring(ctx)
    try:
        ingested = ingest_files(ctx, job_id=job_id, submitted=submitted)
    except OSError as exc:  # the results folder (or scratch space) is unusable
        raise HandlerError(_local_failure(exc), effect_key=_key(ctx)) from exc
    if ingested.foreign:
        logger.warning(
            "batch %s: %d result lines name requests this batch never carried, e.g. %s",
            record.batch_id,
            ingested.foreign,
            ", ".join(ingested.foreign_samples),
        )
    tally = apply_fates(
        ctx.store,
        job_id=job_id,
        batch_id=record.batch_id,
        ids=submitted.pending,
        fates=ingested.fates,
        # a file that expired unread leaves its requests' fate unknown: no attempt spent
        unaccounted=RESULTS_EXPIRED if ingested.expired else MISSING,
        max_attempts=max_attempts_for(ctx.store, job_id, ctx.settings),
        sender=sender,
        usage=ingested.usage,
    )
    log_settlement(ctx, pending=submitted.pending, fates=ingested.fates, tally=tally)
    snapshot = record.snapshot
    usage = snapshot.usage if snapshot is not None else None
    ctx.note(
        "harvested",
        status=record.state.value,
        missing=tally.reasons.get(MISSING.reason, 0),
        results_expired=tally.reasons.get(RESULTS_EXPIRED.reason, 0),
        model=snapshot.model if snapshot is not None else None,
        usage=usage.model_dump() if usage is not None else None,
        **ingested.detail(),
        **tally.as_detail(),
    )
