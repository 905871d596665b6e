"""A model's enqueued-token budget, shared by every poller through the store.

The Batch API admits work per model up to an *enqueued-token limit*: the input tokens of
every batch still ``validating``, ``in_progress``, ``finalizing`` or ``cancelling``.
:class:`TokenBudget` is what the store keeps per model: the tokens each live submit
intent holds (``held``, by ``job_id/intent_id``), and ``factor``, the share of the
configured limit in force. A reservation is written conditionally on the record's
version (:mod:`batchfsm.persistence.optimistic`), so of two pollers racing for the last
room exactly one gets it, and the sum held never passes the budget.

``factor`` is how a ``token_limit_exceeded`` that still happens (a count too low,
other users of the organisation) is survived: it halves the effective budget (down to
:data:`MIN_FACTOR`), and every batch that ends without it gives back
:data:`GROW_STEP` of the limit, so the budget grows back slowly and never loops.
Pure: no clock, no store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import Field

from batchfsm.ledger.records import _Record

__all__ = [
    "ANY_MODEL",
    "GROW_STEP",
    "MIN_FACTOR",
    "TokenBudget",
    "limit_for",
    "parse_queue_limits",
]

ANY_MODEL = "*"
MIN_FACTOR = 1 / 16
GROW_STEP = 0.05


class TokenBudget(_Record):
    model: str
    held: dict[str, int] = Field(default_factory=dict)
    """Reservation key (``job_id/intent_id``) -> input tokens it holds."""
    factor: float = 1.0
    shrinks: int = 0
    """``token_limit_exceeded`` answers seen for this model (each halved ``factor``)."""
    version: int = 0

    @property
    def used(self) -> int:
        return sum(self.held.values())

    def effective(self, limit: int) -> int:
        """The budget in force: ``limit`` times ``factor``, at least 1 token."""
        return max(1, math.floor(limit * self.factor))

    def room(self, limit: int) -> int:
        return max(0, self.effective(limit) - self.used)

    def fits(self, tokens: int, limit: int) -> bool:
        """Whether ``tokens`` more may be enqueued. An empty queue takes anything, so a
        request larger than the whole budget still goes (alone) rather than never."""
        return tokens <= self.room(limit) or not self.held

    def reserve(self, key: str, tokens: int) -> TokenBudget:
        return self.model_copy(update={"held": {**self.held, key: tokens}})

    def release(self, key: str, *, queue_full: bool) -> TokenBudget:
        """Drop ``key``; shrink after a ``token_limit_exceeded``, else grow back a step."""
        held = {k: v for k, v in self.held.items() if k != key}
        if queue_full:
            factor, shrinks = max(MIN_FACTOR, self.factor / 2), self.shrinks + 1
        else:
            factor, shrinks = min(1.0, self.factor + GROW_STEP), self.shrinks
        return self.model_copy(update={"held": held, "factor": factor, "shrinks": shrinks})


def parse_queue_limits(specs: str | list[str] | tuple[str, ...]) -> dict[str, int]:
    """``"gpt-4o-mini=2000000,*=90000"`` (or several such) -> ``{model: tokens}``.

    ``*`` names every model without its own limit. :raises ValueError: naming the part
    that is not ``MODEL=TOKENS`` with a positive whole number of tokens."""
    limits: dict[str, int] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            model, sep, tokens = part.rpartition("=")
            tokens = tokens.strip().replace("_", "")
            if not sep or not model.strip() or not tokens.isdigit() or int(tokens) < 1:
                raise ValueError(f"queue limit {part!r}: expected MODEL=TOKENS")
            limits[model.strip()] = int(tokens)
    return limits


def limit_for(limits: Mapping[str, int], model: str | None) -> int | None:
    """``model``'s limit in ``limits`` (its own, else ``*``), or None: no limit."""
    if model is not None and model in limits:
        return limits[model]
    return limits.get(ANY_MODEL)
