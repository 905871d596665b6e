"""Per-request reconciliation: what one terminal batch did to each request it carried.

Pure logic, no I/O: the handlers (:mod:`batchfsm.handlers`) read files and the store
and hand the result here. A batch's verdict on a request is a :class:`Fate`; a ledger
entry is *settled* by the fate of the batch it currently sits in.

The rules (issue "submit, poll and recover"; the output and error files' line shapes are
those of https://platform.openai.com/docs/guides/batch):

* A request is judged by ``custom_id``, never by line order. Submitted ids with no
  line in either file are *missing*: back to ``retry`` without spending an attempt.
* ``attempts`` counts real executions: any line other than ``batch_expired`` /
  ``batch_cancelled``. Missing, queue-full, lost, results-expired and validation
  failures never spend one.
* 2xx → ``succeeded``; 4xx (400/401/403/404/422 ...) → ``failed`` at once;
  408/409/429/5xx/``request_timeout``/unknown → ``retry``; a retry whose attempts reach
  the maximum becomes ``failed`` with its last error kept.
* Only a ``pending`` entry whose current batch (``batches[-1]``) is this batch changes.
  A settled entry is never settled again, so re-running a reconciliation is a no-op
  (this is what makes ingestion idempotent), and a ``succeeded`` entry never changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from batchfsm.ledger.records import ErrorCategory, ItemError, ItemState, LedgerEntry
from batchfsm.ledger.result_lines import LineOutcome, OutcomeKind

__all__ = [
    "LOST",
    "MISSING",
    "RESULTS_EXPIRED",
    "SUCCEEDED",
    "Fate",
    "Reconciled",
    "Tally",
    "fate_for_line",
    "input_fate",
    "merge",
    "queue_full_fate",
    "reconcile",
    "settle",
]

MAX_MESSAGE = 1000
"""Error messages kept in the ledger are cut here (a body can be arbitrarily long)."""


@dataclass(frozen=True, slots=True)
class Fate:
    """What one batch did to one request.

    ``state`` is the outcome before the max-attempts rule: ``succeeded``, ``failed``
    (no retry can help) or ``retry``. ``spends_attempt``: the request really ran.
    """

    state: ItemState
    spends_attempt: bool
    error: ItemError | None = None

    @property
    def reason(self) -> str:
        """``"succeeded"`` or the error category: the key the tallies count by."""
        return "succeeded" if self.error is None else self.error.category


def _error(code: str | None, message: str | None, category: ErrorCategory) -> ItemError:
    if message is not None and len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return ItemError(code=code, message=message, category=category)


SUCCEEDED = Fate(ItemState.SUCCEEDED, spends_attempt=True)
MISSING = Fate(
    ItemState.RETRY,
    spends_attempt=False,
    error=_error(
        "missing", "in neither the output nor the error file of the batch", ErrorCategory.MISSING
    ),
)
LOST = Fate(
    ItemState.RETRY,
    spends_attempt=False,
    error=_error("batch_lost", "the API no longer knows the batch (404)", ErrorCategory.LOST),
)
RESULTS_EXPIRED = Fate(
    ItemState.RETRY,
    spends_attempt=False,
    error=_error(
        "results_expired",
        "the batch's result files expired (404) before they were downloaded",
        ErrorCategory.RESULTS_EXPIRED,
    ),
)
"""A request whose line sat in a result file that expired before the harvest read it.
It may have run (and been paid for), but its result is gone: sent again, and since the
loss is ours, not the request's, without spending an attempt."""


def queue_full_fate(code: str | None, message: str | None) -> Fate:
    """The batch was refused because the enqueued-token queue is full: wait, resend."""
    return Fate(
        ItemState.RETRY, spends_attempt=False, error=_error(code, message, ErrorCategory.QUEUE_FULL)
    )


def input_fate(code: str | None, message: str | None) -> Fate:
    """The input was rejected at validation: resending it unchanged cannot help."""
    return Fate(
        ItemState.FAILED, spends_attempt=False, error=_error(code, message, ErrorCategory.INPUT)
    )


# Fates are interned per (kind, code, message): a 50,000-line error file of the same
# 429 costs one object, not 50,000.
_LINE_FATES: dict[tuple[OutcomeKind, str | None, str | None], Fate] = {}
_LINE_FATES_MAX = 4096


def fate_for_line(outcome: LineOutcome) -> Fate:
    """The fate a result line gives its request (malformed lines included, see below).

    A malformed line that still names a ``custom_id`` (e.g. a 2xx without a body) did
    come back from an execution, so it is retried *spending* an attempt: that keeps a
    request the API always answers unreadably from looping for ever.
    """
    kind = outcome.kind
    if kind is OutcomeKind.SUCCEEDED:
        return SUCCEEDED
    if kind is OutcomeKind.MALFORMED:
        code: str | None = "malformed_line"
        message = outcome.reason
    else:
        code = outcome.error_code
        if code is None and outcome.status_code is not None:
            code = f"http_{outcome.status_code}"
        message = outcome.error_message
    key = (kind, code, message)
    fate = _LINE_FATES.get(key)
    if fate is None:
        fate = _line_fate(kind, code, message)
        if len(_LINE_FATES) < _LINE_FATES_MAX:
            _LINE_FATES[key] = fate
    return fate


def _line_fate(kind: OutcomeKind, code: str | None, message: str | None) -> Fate:
    if kind is OutcomeKind.PERMANENT:
        return Fate(ItemState.FAILED, True, _error(code, message, ErrorCategory.PERMANENT))
    if kind is OutcomeKind.NOT_RUN:
        return Fate(ItemState.RETRY, False, _error(code, message, ErrorCategory.NOT_RUN))
    if kind is OutcomeKind.MALFORMED:
        return Fate(ItemState.RETRY, True, _error(code, message, ErrorCategory.MALFORMED))
    return Fate(ItemState.RETRY, True, _error(code, message, ErrorCategory.RETRYABLE))


_PRECEDENCE = {"succeeded": 0, "permanent": 1, "retryable": 2, "malformed": 3, "not_run": 4}


def merge(first: Fate, second: Fate) -> Fate:
    """One fate for a request named by several lines (duplicates, or in both files).

    A success wins (the result exists and was paid for), then a permanent failure, then
    a retryable one, then an unreadable line, then "never ran". A request runs at most
    once per batch, so the merged fate spends at most one attempt.
    """
    rank_first = _PRECEDENCE.get(first.reason, len(_PRECEDENCE))
    rank_second = _PRECEDENCE.get(second.reason, len(_PRECEDENCE))
    return first if rank_first <= rank_second else second


def settle(
    entry: LedgerEntry, batch_id: str, fate: Fate, *, max_attempts: int
) -> LedgerEntry | None:
    """The entry after ``batch_id`` gave it ``fate``; None when it must not change.

    It must not change unless it is ``pending`` in this very batch: an entry already
    settled (a re-run), moved on to a later batch, or succeeded stays as it is. A
    success clears ``last_error``: what failed an earlier attempt is no longer true.
    """
    if entry.state is not ItemState.PENDING or not entry.batches or entry.batches[-1] != batch_id:
        return None
    attempts = entry.attempts + (1 if fate.spends_attempt else 0)
    if fate.state is ItemState.SUCCEEDED:  # an earlier attempt's error no longer applies
        return entry.model_copy(
            update={"state": ItemState.SUCCEEDED, "attempts": attempts, "result_batch_id": batch_id,
                    "last_error": None}
        )  # fmt: skip
    state = fate.state
    if state is ItemState.RETRY and attempts >= max_attempts:
        state = ItemState.FAILED  # out of attempts: the last error says why
    return entry.model_copy(update={"state": state, "attempts": attempts, "last_error": fate.error})


@dataclass
class Tally:
    """What a reconciliation did, for the batch history and the logs."""

    states: Counter[str] = field(default_factory=Counter)
    """Entries settled, by resulting state."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Entries settled, by ``Fate.reason`` (``succeeded``, ``missing``, ``not_run`` ...)."""
    exhausted: int = 0
    """Entries that would have been retried but ran out of attempts."""
    untouched: int = 0
    """Entries looked at but left alone (already settled, or in a later batch)."""

    def add(self, other: Tally) -> None:
        self.states.update(other.states)
        self.reasons.update(other.reasons)
        self.exhausted += other.exhausted
        self.untouched += other.untouched

    @property
    def settled(self) -> int:
        return sum(self.states.values())

    def as_detail(self) -> dict[str, object]:
        """A JSON-ready summary (history events, ``--json`` output)."""
        return {
            "settled": self.settled,
            "states": dict(sorted(self.states.items())),
            "reasons": dict(sorted(self.reasons.items())),
            "exhausted": self.exhausted,
            "untouched": self.untouched,
        }


@dataclass
class Reconciled:
    changed: list[LedgerEntry]
    """Entries to save (each still carries the version it was read at)."""
    tally: Tally


def reconcile(
    entries: Iterable[LedgerEntry],
    batch_id: str,
    fates: Mapping[str, Fate],
    *,
    unaccounted: Fate,
    max_attempts: int,
) -> Reconciled:
    """Settle every entry pending in ``batch_id``: by its fate, else by ``unaccounted``.

    ``unaccounted`` is :data:`MISSING` after a harvest; after a failed batch it is the
    batch-level verdict (queue full, or the input was rejected).
    """
    changed: list[LedgerEntry] = []
    tally = Tally()
    for entry in entries:
        fate = fates.get(entry.custom_id, unaccounted)
        after = settle(entry, batch_id, fate, max_attempts=max_attempts)
        if after is None:
            tally.untouched += 1
            continue
        changed.append(after)
        tally.states[after.state.value] += 1
        tally.reasons[fate.reason] += 1
        if fate.state is ItemState.RETRY and after.state is ItemState.FAILED:
            tally.exhausted += 1
    return Reconciled(changed, tally)
