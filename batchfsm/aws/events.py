"""The Lambda's events read, and its answers shaped (the shapes are in
:mod:`batchfsm.aws.lambda_app`; the actions in :mod:`batchfsm.aws.contract`).

Kept apart from :class:`~batchfsm.aws.app.LambdaApp` so that what a caller may send and
what it gets back can be read, and changed, without the container's wiring. An event is
read strictly: one from a console or a hand-edited state machine that misspells a field
fails with ValueError naming it, instead of quietly polling every batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from batchfsm.aws.contract import aggregate, batch_result
from batchfsm.ledger.records import ItemState

if TYPE_CHECKING:
    from datetime import datetime

    from batchfsm.fsm.models import BatchRecord
    from batchfsm.jobs.retry import Waiting
    from batchfsm.ports import JobStore
    from batchfsm.tracker import PollReport, Tracker

__all__ = [
    "Event",
    "batch_answer",
    "job_answer",
    "ledger_counts",
    "parse_event",
    "retry_answer",
    "settled_job",
]


@dataclass(frozen=True)
class Event:
    """What one invocation asks: a poll (of a batch, a job, or everything) or a retry."""

    action: Literal["poll", "retry"]
    batch_id: str | None = None
    job_id: str | None = None
    job_ids: list[str] | None = None
    """A retry's jobs (None: every job)."""
    via: str | None = None
    """Which path asked for a poll (``webhook``, ``poll``: the webhooks state machine
    says), recorded with a transition the poll makes."""


def parse_event(event: Mapping[str, Any] | None) -> Event:
    """The event Lambda passed (None counts as ``{}``: one cycle over the store)."""
    if event is None:
        event = {}
    if not isinstance(event, Mapping):
        raise ValueError(f"the event must be a JSON object, not {type(event).__name__}")
    action = event.get("action") or "poll"
    if action == "retry":
        return Event("retry", job_ids=_job_ids(event))
    if action != "poll":
        raise ValueError(f"unknown event action {action!r} (use 'poll' or 'retry')")
    via = _text(event, "via")
    if via not in (None, "webhook", "poll"):
        raise ValueError(f"event field 'via' must be 'webhook' or 'poll', not {via!r}")
    return Event("poll", batch_id=_text(event, "batch_id"), job_id=_text(event, "job_id"), via=via)


def _text(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"event field {name!r} must be a non-empty string, not {value!r}")
    return value


def _job_ids(event: Mapping[str, Any]) -> list[str] | None:
    if "job_ids" in event and event["job_ids"] is not None:
        ids = event["job_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError(f"event field 'job_ids' must be a list of job ids, not {ids!r}")
        return list(ids)
    job_id = _text(event, "job_id")
    return [job_id] if job_id is not None else None


def batch_answer(tracker: Tracker, report: PollReport) -> dict[str, Any]:
    """One batch's answer after a poll (a report without its record reads the store)."""
    record = report.record or tracker.store.load(report.batch_id)
    counts = ledger_counts(tracker.store, record)
    error = report.error
    if report.effects_failed and error is None:
        error = "effects failed: " + ", ".join(report.effects_failed)
    return batch_result(record, counts, tracker.clock.now(), error=error)


def job_answer(tracker: Tracker, job_id: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A job's aggregate answer, its item counts taken from the ledger: each item once,
    however many batches it went through (the batches' own counts would add retries)."""
    if not results:
        results = settled_job(tracker, job_id)
    answer = aggregate(results, tracker.clock.now(), job_id=job_id)
    counts = tracker.store.count_ledger(job_id)
    answer.update(
        succeeded=counts[ItemState.SUCCEEDED],
        retry=counts[ItemState.RETRY],
        failed=counts[ItemState.FAILED],
    )
    return answer


def settled_job(tracker: Tracker, job_id: str) -> list[dict[str, Any]]:
    """A job with nothing left to poll: its newest batches, as they ended."""
    batches = tracker.store.list_batches(job_id)
    parents = {b.parent_batch_id for b in batches}
    newest = [b for b in batches if b.batch_id not in parents]
    now = tracker.clock.now()
    return [batch_result(b, ledger_counts(tracker.store, b), now) for b in newest]


def ledger_counts(store: JobStore, record: BatchRecord) -> dict[ItemState, int]:
    """Current state of every item this batch carried (an item retried elsewhere since
    counts in its latest state).

    Until a batch is terminal (or lost) nothing has settled any of its items, so they
    are all ``pending`` and the record's item count says how many: a ``wait`` poll then
    reads no ledger at all, where a 50k-item batch would cost a 50k-item query on every
    poll of its 24 h. Only records that do not know their count (tracked before it was
    kept) are counted from the ledger.
    """
    counts = dict.fromkeys(ItemState, 0)
    if record.job_id is None:
        return counts
    if record.items is not None and not (record.terminal or record.lost):
        counts[ItemState.PENDING] = record.items
        return counts
    for entry in store.iter_ledger(record.job_id, batch_id=record.batch_id):
        counts[entry.state] += 1
    return counts


def retry_answer(
    job_ids: list[str] | None,
    batch_ids: Sequence[str],
    waiting: Sequence[Waiting],
    now: datetime,
) -> dict[str, Any]:
    """A retry's answer. ``next_retry_seconds`` is when the first waiting item may go
    (whole seconds, at least 1, so the state machine's Wait never spins); ``next_scope``
    narrows the next retry to the one job asked about, if one was."""
    ready = min((w.ready_at for w in waiting), default=None)
    seconds = max(1, math.ceil((ready - now).total_seconds())) if ready else 0
    scope = {"job_id": job_ids[0]} if job_ids is not None and len(job_ids) == 1 else {}
    return {
        "action": "retry",
        "job_ids": job_ids,
        "submitted": len(batch_ids),
        "batch_ids": list(batch_ids),
        "waiting": sum(w.items for w in waiting),
        "next_retry_seconds": seconds,
        "next_scope": scope,
    }
