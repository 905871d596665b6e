"""The batch lifecycle, defined once as data.

Everything else is derived from these tables: the rulebook machine, the path table,
the diagrams, the tests. The edges come from the status table of
https://platform.openai.com/docs/guides/batch: *documented* edges are ones OpenAI
describes; *tolerated* ones are plausible races nobody has documented, which are applied
but flagged so a human looks at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchStatus(StrEnum):
    """The eight statuses, spelled exactly as the API spells them (double "l")."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class EdgeKind(StrEnum):
    DOCUMENTED = "documented"
    TOLERATED = "tolerated"


@dataclass(frozen=True, slots=True)
class Edge:
    source: BatchStatus
    dest: BatchStatus
    kind: EdgeKind

    @property
    def undocumented(self) -> bool:
        return self.kind is EdgeKind.TOLERATED


S = BatchStatus
INITIAL: BatchStatus = S.VALIDATING
TERMINAL: frozenset[BatchStatus] = frozenset({S.COMPLETED, S.FAILED, S.EXPIRED, S.CANCELLED})

_D, _T = EdgeKind.DOCUMENTED, EdgeKind.TOLERATED
EDGES: tuple[Edge, ...] = (
    Edge(S.VALIDATING, S.IN_PROGRESS, _D),
    Edge(S.VALIDATING, S.FAILED, _D),
    Edge(S.IN_PROGRESS, S.FINALIZING, _D),
    Edge(S.FINALIZING, S.COMPLETED, _D),
    Edge(S.IN_PROGRESS, S.EXPIRED, _D),
    Edge(S.IN_PROGRESS, S.CANCELLING, _D),
    Edge(S.CANCELLING, S.CANCELLED, _D),
    Edge(S.VALIDATING, S.CANCELLING, _T),
    Edge(S.VALIDATING, S.EXPIRED, _T),
    Edge(S.IN_PROGRESS, S.FAILED, _T),
    Edge(S.FINALIZING, S.CANCELLING, _T),
    Edge(S.FINALIZING, S.EXPIRED, _T),
    Edge(S.CANCELLING, S.COMPLETED, _T),
    Edge(S.CANCELLING, S.EXPIRED, _T),
    Edge(S.CANCELLING, S.FAILED, _T),
)

# One trigger per destination: the machine's events are "enter state X".
TRIGGERS: dict[BatchStatus, str] = {
    S.IN_PROGRESS: "start",
    S.FAILED: "fail",
    S.FINALIZING: "finalize",
    S.COMPLETED: "complete",
    S.EXPIRED: "expire",
    S.CANCELLING: "request_cancel",
    S.CANCELLED: "confirm_cancel",
}

# The Batch object's timestamp for entering each state (its ``*_at`` fields, see
# https://platform.openai.com/docs/api-reference/batch/object).
ENTERED_AT_FIELD: dict[BatchStatus, str] = {
    S.VALIDATING: "created_at",
    S.IN_PROGRESS: "in_progress_at",
    S.FINALIZING: "finalizing_at",
    S.COMPLETED: "completed_at",
    S.FAILED: "failed_at",
    S.EXPIRED: "expired_at",
    S.CANCELLING: "cancelling_at",
    S.CANCELLED: "cancelled_at",
}


@dataclass(frozen=True, slots=True)
class EffectSpec:
    """A recovery handler owed on entering a state.

    ``when_implied``: whether it is owed when the state was only passed through between
    two polls. Watching a state we already left is pointless; harvesting a terminal
    state is owed however we learned of it.
    """

    handler: str
    when_implied: bool


LOST_EFFECT = "release_lost"
"""The handler owed when the API answers 404 for a batch: not a state of the eight, so
the tracker adds it to the outbox itself (``BatchRecord.lost``)."""

WATCH = EffectSpec("watch", when_implied=False)
HARVEST = EffectSpec("harvest", when_implied=True)
CLASSIFY_FAILURE = EffectSpec("classify_failure", when_implied=True)

EFFECTS: dict[BatchStatus, tuple[EffectSpec, ...]] = {
    S.VALIDATING: (WATCH,),
    S.IN_PROGRESS: (WATCH,),
    S.FINALIZING: (WATCH,),
    S.CANCELLING: (WATCH,),
    S.COMPLETED: (HARVEST,),
    S.EXPIRED: (HARVEST,),
    S.CANCELLED: (HARVEST,),
    S.FAILED: (CLASSIFY_FAILURE,),
}


_BY_SPELLING: dict[str, BatchStatus] = {s.value: s for s in BatchStatus}


def parse_status(raw: object) -> BatchStatus | None:
    """The status for an exact API spelling, or None: never guess ("canceled" is not ours)."""
    return _BY_SPELLING.get(raw) if isinstance(raw, str) else None


def by_spelling(value: str) -> BatchStatus:
    """The status for a spelling known to be valid (the machine's own state names)."""
    return _BY_SPELLING[value]
