"""Polling as the fallback: a per-batch schedule that stretches while a batch stands still.

With webhooks configured, the end of a batch is expected to arrive as an event within
seconds; polling only has to catch what a webhook never delivered. So a poller keeps
each live batch's next poll here: after a poll that saw nothing move, the wait doubles
(from the poll interval up to ``ceiling``, 10 minutes by default); a poll that saw a
new state starts again from the interval. Progress counts do not count as moving: only
the end matters, and the end is what the webhook announces. Whatever the wait, a batch
is looked at again just after its 24-hour deadline, so an expiry is never noticed late.

The schedule learns about other paths through the store: a record whose version moved
since this poller last looked was committed by someone else (a webhook-triggered
observation, another poller) just now, which makes this poller's next poll of it
unnecessary: it is pushed back as if this poller had looked itself. Nothing is lost when
a webhook never arrives: the stretched poll still comes, at most ``ceiling`` later.

The schedule is the poller's own memory (a restarted poller polls everything once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from batchfsm.fsm.models import BatchRecord
    from batchfsm.ports import Clock
    from batchfsm.tracker import PollReport

__all__ = ["DEADLINE_GRACE_SECONDS", "StretchedSchedule"]

DEADLINE_GRACE_SECONDS = 5.0
"""Look this long after the deadline, so the API has had time to say ``expired``."""


@dataclass
class _Seen:
    version: int
    wait: float
    due: datetime


class StretchedSchedule:
    """Which live batches a webhook-backed poller retrieves this cycle.

    :param interval: the poll interval, the shortest wait.
    :param ceiling: the longest wait for a batch that has not moved (at least ``interval``).
    :param clock: the poller's clock.
    """

    def __init__(self, *, interval: float, ceiling: float, clock: Clock) -> None:
        if interval <= 0 or ceiling <= 0:
            raise ValueError("interval and ceiling must be positive")
        self.interval = interval
        self.ceiling = ceiling
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def due(self, record: BatchRecord) -> bool:
        """Whether to retrieve ``record`` now; a record someone else committed since
        this poller last looked counts as just looked at (and is not retrieved)."""
        seen = self._seen.get(record.batch_id)
        if seen is None:
            return True
        now = self.clock.now()
        if record.version != seen.version:
            self._seen[record.batch_id] = self._next(record, self.interval, now)
            return False
        return now >= seen.due

    def update(self, reports: Iterable[PollReport]) -> None:
        """Learn from this cycle's polls: a new state resets the wait, anything else
        doubles it, a batch that needs no more polling is forgotten."""
        now = self.clock.now()
        for report in reports:
            record = report.record
            if record is None or report.kind == "error":
                continue  # a failed retrieve keeps its schedule: due again next time
            if record.terminal or record.lost:
                self._seen.pop(report.batch_id, None)
                continue
            seen = self._seen.get(report.batch_id)
            if report.kind == "advanced" or seen is None:
                wait = self.interval
            else:
                wait = min(max(self.ceiling, self.interval), seen.wait * 2)
            self._seen[report.batch_id] = self._next(record, wait, now)

    def wait_of(self, batch_id: str) -> float | None:
        """The current wait of a batch (seconds), None if not scheduled (for displays)."""
        seen = self._seen.get(batch_id)
        return seen.wait if seen else None

    def _next(self, record: BatchRecord, wait: float, now: datetime) -> _Seen:
        due = now + timedelta(seconds=wait)
        deadline = record.deadline()
        if deadline is not None and now < deadline:
            due = min(due, deadline + timedelta(seconds=DEADLINE_GRACE_SECONDS))
        return _Seen(version=record.version, wait=wait, due=due)
