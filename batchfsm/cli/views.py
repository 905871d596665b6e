"""Every ``--json`` shape the command line prints, in one place.

The library returns typed results (records, ledger entries, :class:`SubmitResult`,
:class:`RetryResult`, :class:`PollSummary`, :class:`ReplayResult`, the demo's
:class:`DemoReport`); this module is the only one that turns them into the documented
JSON, so a shape is changed (and reviewed) here alone::

    batchfsm status --json   {"batches": [<record>, ...]}
      <record>               {"batch_id", "job_id", "state", "version", "lost",
                              "cancel_requested", "request_counts": {"total",
                              "completed", "failed"} | null, "deadline", "observed_at",
                              "output_file_id", "error_file_id", "pending_effects": [...],
                              "parent_batch_id", "model", "usage": <usage> | null,
                              "results_expire_at", "undecodable"}
      <usage>                {"input_tokens", "cached_tokens", "output_tokens",
                              "reasoning_tokens", "total_tokens"}
    batchfsm history --json  {"batch_id", "model", "usage": <usage> | null,
                              "history": [<transition, rejection or event>]}
    batchfsm submit --json   {"job": {"job_id", "endpoint", "source", "requests",
                                      "max_attempts", "metadata", "created_at",
                                      "resumed"},
                              "batches": [<batch row>], "open_intents": [...]}
      <batch row>            {"batch_id", "job_id", "state", "requests", "parent_batch_id"}
    batchfsm retry --json    {"batches": [<batch row>], "waiting": [{"job_id", "items",
                                                                    "ready_at"}]}
    batchfsm poll --json     {"done", "timed_out", "cycles", "started_at", "finished_at",
                              "batches": [<record>], "retry_batches": [...],
                              "retry_items", "errors"}
    batchfsm items --json    {"items": [{"job_id", "custom_id", "state", "attempts",
                                         "batches": [...], "last_error":
                                         {"code", "message", "category", "at",
                                          "repeats"} | null, "usage": {"model",
                                         "input_tokens", "cached_tokens",
                                         "cache_write_tokens", "output_tokens",
                                         "reasoning_tokens"} | null}]}
                             with --limit, also "next_after": what --after takes for
                             the next page, or null when nothing follows
    batchfsm cancel --json   <record>
    batchfsm replay --json   {"final_state", "transitions": [{"from", "to", "implied",
                                                              "undocumented", "line"}],
                              "rejected": [{"line", "status", "reason"}],
                              "effects": [{"state", "handler"}]}
    batchfsm demo --json     {"out", "store_url", "done", "cycles", "cancelled": [...],
                              "batches": [<outcome>], "retry_batches": [...],
                              "waiting_for_retry", "diagram": {"mermaid", "svg" | null}}
      <outcome>              {"batch_id", "job_id", "fate", "expected_state", "state",
                              "path": [...], "succeeded", "retry", "failed",
                              "results": <path> | null, "parent_batch_id"}

A count the API did not send (or sent as null) is ``null``: unknown, not 0.
``results_expire_at`` is when the output and error files stop being downloadable (null
while the batch runs or when their lifetime is unknown); ``undecodable`` counts the
answers for the batch that were no Batch object batchfsm could read (each is in its
history as a rejection with reason ``undecodable``).

In a demo ``<outcome>``, ``retry`` counts the requests that batch handed to the retry
round (for the retry round's own batches: those still waiting), ``failed`` those failed
for good; ``results`` is the batch's result file, if it has one.

Timestamps are ISO 8601 in UTC. A request line itself is never printed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from batchfsm.fsm.models import TransitionEntry

if TYPE_CHECKING:
    from batchfsm.demo.report import BatchOutcome, DemoReport
    from batchfsm.fsm.models import BatchRecord, HistoryEntry
    from batchfsm.fsm.replay import ReplayResult
    from batchfsm.jobs.retry import RetryResult
    from batchfsm.jobs.submit import SubmitResult
    from batchfsm.ledger.records import LedgerEntry
    from batchfsm.poller import PollSummary
    from batchfsm.ports import JobStore

__all__ = [
    "batch_rows",
    "demo_json",
    "history_json",
    "history_snapshots",
    "item_json",
    "poll_summary_json",
    "record_json",
    "replay_json",
    "retry_json",
    "submit_json",
    "usage_json",
]


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def record_json(record: BatchRecord) -> dict[str, Any]:
    """One tracked batch (``status --json``, ``cancel --json``, ``poll --json``)."""
    snap = record.snapshot
    counts = snap.request_counts if snap else None
    return {
        "batch_id": record.batch_id,
        "job_id": record.job_id,
        "state": record.state.value,
        "version": record.version,
        "lost": record.lost,
        "cancel_requested": record.cancel_requested,
        "request_counts": counts.model_dump() if counts else None,
        "deadline": _ts(record.deadline()),
        "observed_at": _ts(record.observed_at),
        "output_file_id": snap.output_file_id if snap else None,
        "error_file_id": snap.error_file_id if snap else None,
        "pending_effects": [e.key for e in record.pending_effects],
        "parent_batch_id": record.parent_batch_id,
        "model": snap.model if snap else None,
        "usage": usage_json(record),
        "results_expire_at": _ts(record.results_expire_at()),
        "undecodable": record.undecodable,
        "input_tokens": record.input_tokens,
    }


def usage_json(record: BatchRecord) -> dict[str, int | None] | None:
    """The batch's token usage as the API last reported it (null: none reported)."""
    usage = record.snapshot.usage if record.snapshot else None
    return usage.model_dump() if usage is not None else None


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry (``history --json``); a transition is flattened to its hop."""
    data = entry.model_dump(mode="json", by_alias=True)
    if isinstance(entry, TransitionEntry):
        data = {"kind": "transition", **data["hop"]}
    return data


_STAMPS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}
"""The Batch object's timestamp for entering each state (``validating``'s is
``created_at``, which no hop records)."""


def history_snapshots(batch_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The observations a batch's history (``history_json`` rows) keeps, as Batch
    objects ``batchfsm replay`` reads: one per observed transition (the state it
    showed, the ``*_at`` stamps known by then, ``observed_at``) and each rejected
    snapshot as it was received. Answers that were no Batch object (``undecodable``)
    are left out: there is nothing to replay in them. Heartbeats were never recorded."""
    lines: list[dict[str, Any]] = []
    stamps: dict[str, int] = {}
    last_line: int | None = None
    for row in rows:
        if row["kind"] == "transition":
            if row.get("entered_at") is not None and row["to"] in _STAMPS:
                stamps[_STAMPS[row["to"]]] = row["entered_at"]
            if last_line is not None and row["line"] == last_line and lines:
                lines[-1].update(status=row["to"], **stamps)  # a later hop, same look
                continue
            lines.append({"id": batch_id, "object": "batch", "status": row["to"], **stamps,
                          "observed_at": row.get("at")})  # fmt: skip
            last_line = row["line"]
        elif row["kind"] == "rejection" and row.get("reason") != "undecodable":
            snapshot = dict(row.get("snapshot") or {"id": batch_id, "status": row["status"]})
            lines.append({**snapshot, "observed_at": row.get("at")})
            last_line = None
    return lines


def item_json(entry: LedgerEntry) -> dict[str, Any]:
    """One ledger entry for ``items --json`` (never the request line itself)."""
    error = entry.last_error
    return {
        "job_id": entry.job_id,
        "custom_id": entry.custom_id,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "batches": list(entry.batches),
        "last_error": error.model_dump(mode="json") if error is not None else None,
        "usage": entry.usage.as_json() if entry.usage is not None else None,
    }


def batch_rows(store: JobStore, batches: list[BatchRecord]) -> list[dict[str, Any]]:
    """One row per batch: id, state, request count (from its intent), parent."""
    sizes: dict[str, int] = {}
    for job_id in {b.job_id for b in batches if b.job_id}:
        for intent in store.list_intents(job_id):
            if intent.batch_id:
                sizes[intent.batch_id] = len(intent.custom_ids)
    return [
        {
            "batch_id": b.batch_id,
            "job_id": b.job_id,
            "state": b.state.value,
            "requests": sizes.get(b.batch_id),
            "parent_batch_id": b.parent_batch_id,
        }
        for b in batches
    ]


def submit_json(store: JobStore, result: SubmitResult) -> dict[str, Any]:
    """``submit --json``: the job, every batch of it, and intents still open."""
    job = result.job
    return {
        "job": {
            "job_id": job.job_id,
            "endpoint": job.endpoint,
            "source": job.source,
            "requests": job.requests,
            "max_attempts": job.max_attempts,
            "metadata": job.metadata,
            "created_at": job.created_at.isoformat(),
            "resumed": result.resumed,
        },
        "batches": batch_rows(store, result.batches),
        "open_intents": result.open_intents,
    }


def retry_json(store: JobStore, result: RetryResult) -> dict[str, Any]:
    """``retry --json``: the batches sent and the queue-full items still waiting."""
    return {
        "batches": batch_rows(store, result.batches),
        "waiting": [
            {"job_id": w.job_id, "items": w.items, "ready_at": w.ready_at.isoformat()}
            for w in result.waiting
        ],
    }


def poll_summary_json(summary: PollSummary) -> dict[str, Any]:
    """``poll --json``: what a run of the poll loop did."""
    return {
        "done": summary.done,
        "timed_out": summary.timed_out,
        "cycles": summary.cycles,
        "started_at": summary.started_at.isoformat(),
        "finished_at": summary.finished_at.isoformat(),
        "batches": [record_json(r) for r in summary.batches.values()],
        "retry_batches": summary.retried,
        "retry_items": summary.retry_items,
        "errors": summary.errors,
    }


def replay_json(result: ReplayResult) -> dict[str, Any]:
    """``replay --json``: the final state, every hop, rejection and owed effect."""
    return {
        "final_state": result.final_state.value,
        "transitions": [
            {
                "from": h.source.value,
                "to": h.dest.value,
                "implied": h.implied,
                "undocumented": h.undocumented,
                "line": h.line,
            }
            for h in result.transitions
        ],
        "rejected": [
            {"line": r.line, "status": r.status, "reason": r.reason} for r in result.rejected
        ],
        "effects": [{"state": e.state.value, "handler": e.handler} for e in result.effects],
    }


def _outcome_json(outcome: BatchOutcome) -> dict[str, Any]:
    return {
        "batch_id": outcome.batch_id,
        "job_id": outcome.job_id,
        "fate": outcome.fate,
        "expected_state": outcome.expected_state,
        "state": outcome.state,
        "path": list(outcome.path),
        "succeeded": outcome.succeeded,
        "retry": outcome.retry,
        "failed": outcome.failed,
        "results": str(outcome.results) if outcome.results else None,
        "parent_batch_id": outcome.parent_batch_id,
    }


def demo_json(report: DemoReport) -> dict[str, Any]:
    """``demo --json``: what became of every batch, and where the demo left its files."""
    return {
        "out": str(report.out),
        "store_url": report.store_url,
        "done": report.done,
        "cycles": report.cycles,
        "cancelled": report.cancelled,
        "batches": [_outcome_json(b) for b in report.batches],
        "retry_batches": [b.batch_id for b in report.batches if b.parent_batch_id],
        "waiting_for_retry": report.waiting_for_retry,
        "diagram": {k: str(v) if v else None for k, v in report.diagrams.items()},
    }
