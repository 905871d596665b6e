"""From a batch event to an observation of that batch, through the normal path.

The event is a hint, never a fact: it only makes the tracker retrieve the batch now
(instead of at the next poll) and apply what the API answers, with the same rulebook,
conditional commit and outbox as a poll. A forged event cannot get here (the signature
is checked first), and a reordered, duplicated or stale one can at most cause one more
retrieve, whose answer decides. The observation is recorded ``via="webhook"``, so a
transition it makes says in the history which path noticed it.

The API may lag its own event by a moment, so when the batch is not yet terminal the
observation is repeated a few times after short pauses (1, 2, 4 and 8 s by default);
after that the poller's fallback poll takes over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from batchfsm.errors import JobNotFoundError

if TYPE_CHECKING:
    from batchfsm.tracker import PollReport, Tracker

__all__ = ["SETTLE_DELAYS", "BridgeResult", "EventBridge"]

logger = logging.getLogger(__name__)

SETTLE_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
"""Pauses before re-observing a batch whose event said it ended but whose retrieve
does not say so yet."""

Outcome = Literal["observed", "already_terminal", "unknown", "not_ended"]


@dataclass(frozen=True)
class BridgeResult:
    """What one event led to."""

    batch_id: str
    outcome: Outcome
    """``observed``: the batch was retrieved and is now terminal; ``already_terminal``:
    the store knew it ended (a duplicate or late event; owed effects were run);
    ``unknown``: the store does not track it; ``not_ended``: retrieved, still running
    after every settle pause (the poller will see the rest)."""
    state: str | None
    retrieves: int


class EventBridge:
    """Observes the batch an event names, on ``tracker`` (its store, gateway, sink).

    :param settle_delays: pauses before re-observing a batch the API does not yet show
        as ended.
    :param sleep: injected waiting (tests).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        settle_delays: Sequence[float] = SETTLE_DELAYS,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.tracker = tracker
        self.settle_delays = tuple(settle_delays)
        self.sleep = sleep

    def handle(
        self, batch_id: str, *, event_type: str = "", event_id: str | None = None
    ) -> BridgeResult:
        """Observe ``batch_id`` because an event named it (``event_type``/``event_id``
        only label the log)."""
        store = self.tracker.store
        try:
            record = store.load(batch_id)
        except JobNotFoundError:
            logger.info(
                "webhook %s (%s) names batch %s, which this store does not track",
                event_id,
                event_type,
                batch_id,
                extra={"batch_id": batch_id},
            )
            return BridgeResult(batch_id, "unknown", None, 0)
        if record.terminal or record.lost:
            report = self.tracker.drain(batch_id)
            return BridgeResult(batch_id, "already_terminal", report.state, 0)
        report = self.tracker.observe(batch_id, known=record, via="webhook")
        retrieves = 1
        for delay in self.settle_delays:
            if _ended(report):
                break
            self.sleep(delay)
            report = self.tracker.observe(batch_id, via="webhook")
            retrieves += 1
        outcome: Outcome = "observed" if _ended(report) else "not_ended"
        logger.info(
            "webhook %s (%s): batch %s is %s after %d retrieve(s)",
            event_id,
            event_type,
            batch_id,
            report.state,
            retrieves,
            extra={"batch_id": batch_id},
        )
        return BridgeResult(batch_id, outcome, report.state, retrieves)


def _ended(report: PollReport) -> bool:
    record = report.record
    return record is not None and (record.terminal or record.lost)
