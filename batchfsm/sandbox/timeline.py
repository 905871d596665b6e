"""Where a batch stands at a given sandbox time: a pure function of its plan and ``now``.

Nothing is stored as "current status": every request asks :func:`moment_at`, so a frozen
clock advanced by a test, or a scaled real clock, moves batches with no background thread.

Natural path (sandbox seconds from ``created``, phase lengths from the fate)::

    validating ──V──▶ in_progress ──P──▶ finalizing ──F──▶ completed
        │                  │
        ▼                  └── expires_at reached first ──▶ expired
      failed (invalid input, token_limit_exceeded)

A cancel at time ``c`` freezes the work done so far, enters ``cancelling`` and ends in
``cancelled`` ``cancelling_s`` later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchfsm.sandbox.scenario import Fate

__all__ = ["CANCELLABLE", "COMPLETION_WINDOW_S", "TERMINAL", "Moment", "Plan", "moment_at"]

COMPLETION_WINDOW_S = 24 * 3600.0
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch will do, fixed at creation (``cancel_at`` is set by a cancel call)."""

    created: float
    fate: Fate
    total: int
    valid: bool
    cancel_at: float | None = None

    @property
    def expires(self) -> float:
        return self.created + COMPLETION_WINDOW_S


@dataclass(frozen=True, slots=True)
class Moment:
    """The batch as seen at one instant."""

    status: str
    entered: dict[str, float]
    """Status -> sandbox time it was entered, for every status entered so far."""
    done: int
    """How many requests have run (in the batch's execution order)."""

    @property
    def terminal_at(self) -> float | None:
        return self.entered[self.status] if self.status in TERMINAL else None


def _natural(plan: Plan) -> tuple[list[tuple[float, str]], float, float, float]:
    """Events of the uncancelled life, plus (start, end, share) of the running phase."""
    phases = plan.fate.phases
    start = plan.created + phases.validating_s
    events = [(plan.created, "validating")]
    if not plan.valid or plan.fate.kind == "token_limit_exceeded":
        return [*events, (start, "failed")], start, start, 0.0
    if start >= plan.expires:
        return [*events, (plan.expires, "expired")], start, start, 0.0
    events.append((start, "in_progress"))
    if plan.fate.kind == "expire":
        return [*events, (plan.expires, "expired")], start, plan.expires, plan.fate.expire_fraction
    end = start + phases.in_progress_s
    if end > plan.expires:
        # Too slow for the window: the API expires it with the work done so far.
        share = (plan.expires - start) / phases.in_progress_s
        return [*events, (plan.expires, "expired")], start, plan.expires, share
    finalizing = phases.finalizing_s
    if plan.fate.kind == "stuck_finalizing":
        finalizing = max(finalizing, plan.fate.stuck_finalizing_s)
    events += [(end, "finalizing"), (end + finalizing, "completed")]
    return events, start, end, 1.0


def _done(plan: Plan, t: float, start: float, end: float, share: float) -> int:
    if t < start or share <= 0:
        return 0
    progress = 1.0 if end <= start or t >= end else (t - start) / (end - start)
    return min(plan.total, math.floor(plan.total * share * progress + 1e-9))


def moment_at(plan: Plan, t: float) -> Moment:
    """The status, entered-times and work done of ``plan`` at sandbox time ``t``."""
    events, start, end, share = _natural(plan)
    done_at = t
    if plan.cancel_at is not None:
        cut = plan.cancel_at
        events = [e for e in events if e[0] <= cut]
        cancel_len = plan.fate.phases.cancelling_s
        events += [(cut, "cancelling"), (cut + cancel_len, "cancelled")]
        done_at = min(t, cut)
    entered: dict[str, float] = {}
    status = "validating"
    for when, name in events:
        if when <= t:
            entered[name] = when
            status = name
    return Moment(status=status, entered=entered, done=_done(plan, done_at, start, end, share))
