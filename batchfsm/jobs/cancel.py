"""``cancel``: ask the API to stop a batch, recording the wish first.

Cancelling is a request, not a transition: the API answers ``cancelling`` and may take
up to 10 minutes to reach ``cancelled``
(https://platform.openai.com/docs/api-reference/batch/cancel). The intent is committed
(``cancel_requested=True`` plus a ``cancel_requested`` history event, under the version
check), then the API is called, and the state moves only when a snapshot shows it. The
snapshot the cancel call returns is such a snapshot, so it is applied at once through
the rulebook like any poll; later polls carry the batch on to ``cancelled``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchfsm.errors import GatewayError, TerminalStateError
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.persistence.optimistic import retry_on_conflict

if TYPE_CHECKING:
    from batchfsm.tracker import Tracker

__all__ = ["cancel_batch"]


def cancel_batch(tracker: Tracker, batch_id: str) -> BatchRecord:
    """Record the cancel request, call the API, apply the answer; returns the record.

    :raises JobNotFoundError: the store does not track ``batch_id``.
    :raises TerminalStateError: the batch already ended; nothing is recorded or sent.
    :raises GatewayError: the API refused or failed; the request stays recorded (with a
        ``cancel_failed`` event), so running the command again is safe.
    """
    if tracker.gateway is None:
        raise ValueError("cancelling needs a gateway")
    _record_request(tracker, batch_id)
    try:
        snapshot = tracker.gateway.cancel(batch_id)
    except GatewayError as exc:
        _note(tracker, batch_id, EventEntry(
            name="cancel_failed", at=tracker.clock.now(),
            detail={"status_code": exc.status_code, "error": str(exc)},
        ))  # fmt: skip
        raise
    _applied, record = tracker.apply(batch_id, snapshot)
    return record


def _record_request(tracker: Tracker, batch_id: str) -> None:
    def attempt(_retry: bool) -> None:
        record = tracker.store.load(batch_id)
        if record.terminal:
            raise TerminalStateError(
                batch_id=batch_id,
                current=record.state.value,
                requested=BatchStatus.CANCELLING.value,
                reason="the batch already ended",
            )
        event = EventEntry(
            name="cancel_requested",
            at=tracker.clock.now(),
            detail={"state": record.state.value, "owner": tracker.owner},
        )
        updated = record.model_copy(update={"cancel_requested": True})
        tracker.store.commit(updated, expected_version=record.version, history=[event])

    retry_on_conflict(attempt, subject=f"batch {batch_id}")


def _note(tracker: Tracker, batch_id: str, event: EventEntry) -> None:
    def attempt(_retry: bool) -> None:
        record = tracker.store.load(batch_id)
        tracker.store.commit(record, expected_version=record.version, history=[event])

    retry_on_conflict(attempt, subject=f"batch {batch_id}")
