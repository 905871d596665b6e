"""The action contract between the poll Lambda and the Step Functions state machine.

The Lambda does the polling and the state machine only routes: each answer carries an
``action`` that the machine's Choice states branch on. This module is that contract,
written once and derived from the lifecycle spec, so :mod:`batchfsm.aws.lambda_app`
(which answers with it) and :mod:`batchfsm.aws.stepfunctions` (which routes on it)
cannot drift apart. It is pure: no clock, store or network.

Actions, from the batch's state (:data:`~batchfsm.fsm.spec.TERMINAL` decides which
states are final):

===================  ========================================================
``wait``             not terminal: poll again after ``next_poll_seconds``
``process_results``  ``completed`` (per-request failures are in ``failed``/``retry``)
``process_partial``  ``expired`` or ``cancelled`` with an output file (salvaged work)
``handle_failure``   ``failed``; ``expired``/``cancelled`` with nothing salvaged;
                     a batch the API no longer knows (404)
===================  ========================================================

Polling schedule (:func:`poll_delay`): ``validating`` 30 s, ``finalizing`` 15 s,
``cancelling`` 30 s, ``in_progress`` half the estimated time left (from the progress
so far), or half the time it has been running while nothing has finished yet (a stalled
batch is polled less and less often), always between 30 s and 30 min. When the 24 h
deadline comes before that, the next poll is moved to just after the deadline
(``deadline_near``), so an expiry is seen at once; past the deadline a batch that has not
ended is polled every minute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from batchfsm.errors import SpecError
from batchfsm.fsm.models import BatchRecord
from batchfsm.fsm.spec import TERMINAL, BatchStatus
from batchfsm.ledger.records import ItemState

__all__ = [
    "ACTIONS",
    "CONTRACT_FIELDS",
    "MAX_REPORTED_BATCHES",
    "Action",
    "action_for",
    "actions_by_status",
    "aggregate",
    "batch_result",
    "poll_delay",
]

Action = Literal["wait", "process_results", "process_partial", "handle_failure"]
ACTIONS: tuple[Action, ...] = ("wait", "process_results", "process_partial", "handle_failure")
"""Every action, in routing order: the state machine has one Choice rule per action."""

_SEVERITY: dict[Action, int] = {
    "process_results": 0,
    "process_partial": 1,
    "handle_failure": 2,
    "wait": 3,
}

_TERMINAL_ACTION: dict[BatchStatus, Action] = {
    BatchStatus.COMPLETED: "process_results",
    BatchStatus.EXPIRED: "process_partial",
    BatchStatus.CANCELLED: "process_partial",
    BatchStatus.FAILED: "handle_failure",
}
_PARTIAL_STATES = frozenset({BatchStatus.EXPIRED, BatchStatus.CANCELLED})

CONTRACT_FIELDS: tuple[str, ...] = (
    "action",
    "job_id",
    "next_poll_seconds",
    "poll_at",
    "deadline_near",
    "retry_job_ids",
    "succeeded",
    "retry",
    "failed",
)
"""Fields every poll response carries, one batch or many: the state machine selects
exactly these (a missing one would fail the execution), so they are always present."""

MAX_REPORTED_BATCHES = 100
"""An aggregate response lists at most this many batches (waiting ones first), because
a Step Functions state carries at most 256 KB; ``batches_total`` says how many there were."""

VALIDATING_SECONDS = 30
FINALIZING_SECONDS = 15
CANCELLING_SECONDS = 30
IN_PROGRESS_MIN_SECONDS = 30
IN_PROGRESS_MAX_SECONDS = 1800
OVERDUE_SECONDS = 60
DEADLINE_GRACE_SECONDS = 5
"""Poll this long after the deadline, so the API has had time to say ``expired``."""


@lru_cache(maxsize=1)
def actions_by_status() -> Mapping[BatchStatus, Action]:
    """The action for each state (``process_partial`` assumed for partial states).

    Built from the spec on first use; a terminal state without an action (a new one
    added to the spec) is a :class:`~batchfsm.errors.SpecError`, not a silent ``wait``.
    """
    table: dict[BatchStatus, Action] = {}
    for status in BatchStatus:
        if status in TERMINAL:
            if status not in _TERMINAL_ACTION:
                raise SpecError(f"terminal state {status.value!r} has no Step Functions action")
            table[status] = _TERMINAL_ACTION[status]
        else:
            table[status] = "wait"
    return table


def action_for(record: BatchRecord) -> Action:
    """What the state machine should do next about this batch."""
    if record.lost:
        return "handle_failure"
    action = actions_by_status()[record.state]
    if record.state in _PARTIAL_STATES:
        salvaged = record.snapshot is not None and record.snapshot.output_file_id
        return "process_partial" if salvaged else "handle_failure"
    return action


def poll_delay(record: BatchRecord, now: datetime) -> tuple[int, bool]:
    """``(seconds until the next poll, whether it was moved to the deadline)``.

    0 for a batch that needs no more polling. See the module docstring for the rules.
    """
    if action_for(record) != "wait":
        return 0, False
    delay = _state_delay(record, now)
    deadline = record.deadline()
    if deadline is None:
        return delay, False
    left = (deadline - now).total_seconds()
    if left <= 0:
        return min(delay, OVERDUE_SECONDS), False
    if left < delay:
        return math.ceil(left) + DEADLINE_GRACE_SECONDS, True
    return delay, False


def _state_delay(record: BatchRecord, now: datetime) -> int:
    if record.state is BatchStatus.VALIDATING:
        return VALIDATING_SECONDS
    if record.state is BatchStatus.FINALIZING:
        return FINALIZING_SECONDS
    if record.state is BatchStatus.CANCELLING:
        return CANCELLING_SECONDS
    snapshot = record.snapshot
    counts = snapshot.request_counts if snapshot else None
    started = snapshot.in_progress_at if snapshot else None
    if started is None:
        return IN_PROGRESS_MIN_SECONDS
    elapsed = max(0.0, now.timestamp() - started)
    done = ((counts.completed or 0) + (counts.failed or 0)) if counts else 0
    total = (counts.total or 0) if counts else 0  # a count the API left out is unknown
    # no rate to go by: back off as the stall lasts
    left = elapsed if done <= 0 or total <= 0 else elapsed * max(0, total - done) / done
    return int(min(IN_PROGRESS_MAX_SECONDS, max(IN_PROGRESS_MIN_SECONDS, left / 2)))


def batch_result(
    record: BatchRecord,
    ledger: Mapping[ItemState, int],
    now: datetime,
    *,
    error: str | None = None,
) -> dict[str, Any]:
    """The response for one batch (a JSON object; see ``deploy/README.md``)."""
    action = action_for(record)
    seconds, near = poll_delay(record, now)
    counts = record.snapshot.request_counts if record.snapshot else None
    retry = ledger.get(ItemState.RETRY, 0)
    wants_retry = retry > 0 and record.job_id is not None and not record.cancel_requested
    return {
        "batch_id": record.batch_id,
        "job_id": record.job_id,
        "status": record.state.value,
        "action": action,
        "request_counts": {
            "total": (counts.total or 0) if counts else 0,
            "completed": (counts.completed or 0) if counts else 0,
            "failed": (counts.failed or 0) if counts else 0,
        },
        "succeeded": ledger.get(ItemState.SUCCEEDED, 0),
        "retry": retry,
        "failed": ledger.get(ItemState.FAILED, 0),
        "pending": ledger.get(ItemState.PENDING, 0),
        "next_poll_seconds": seconds,
        "poll_at": _iso(now + timedelta(seconds=seconds)) if action == "wait" else None,
        "deadline": _iso(record.deadline()),
        "deadline_near": near,
        "retry_job_ids": [record.job_id] if wants_retry else [],
        "lost": record.lost,
        "cancel_requested": record.cancel_requested,
        "error": error,
    }


def aggregate(
    results: Sequence[Mapping[str, Any]], now: datetime, *, job_id: str | None = None
) -> dict[str, Any]:
    """The response for several batches (``{}`` or ``{"job_id"}`` events).

    ``action`` is ``wait`` while any batch waits, else the most severe terminal action
    (``handle_failure`` > ``process_partial`` > ``process_results``); no batch at all
    means nothing is left to do: ``process_results``. ``next_poll_seconds``, ``poll_at``
    and ``deadline_near`` are those of the batch to poll soonest.
    """
    waiting = [r for r in results if r["action"] == "wait"]
    if waiting:
        action: Action = "wait"
    else:
        actions = [r["action"] for r in results]
        action = max(actions, key=_SEVERITY.__getitem__, default="process_results")
    soonest = min(waiting, key=lambda r: r["next_poll_seconds"], default=None)
    ordered = sorted(results, key=lambda r: (r["action"] != "wait", r["batch_id"]))
    return {
        "job_id": job_id,
        "action": action,
        "batches": list(ordered[:MAX_REPORTED_BATCHES]),
        "batches_total": len(results),
        "succeeded": sum(r["succeeded"] for r in results),
        "retry": sum(r["retry"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "next_poll_seconds": soonest["next_poll_seconds"] if soonest else 0,
        "poll_at": soonest["poll_at"] if soonest else None,
        "deadline_near": bool(soonest and soonest["deadline_near"]),
        "retry_job_ids": sorted({j for r in results for j in r["retry_job_ids"]}),
    }


def _iso(when: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, the only form a Wait state's TimestampPath takes."""
    if when is None:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
