"""The enqueued-token limit per model, as the Batch API enforces it.

OpenAI queues batch work per model and organisation by *enqueued input tokens*: the
tokens of every batch in ``validating``, ``in_progress``, ``finalizing`` or
``cancelling``. A batch created while it would take its model past the limit fails
validation with ``token_limit_exceeded`` ("Enqueued token limit reached for MODEL ...
Limit: N enqueued tokens"), and the tokens come back when batches end.

The sandbox counts a batch's tokens with the project's documented counter
(:func:`batchfsm.ledger.tokens.count_request`: exact for OpenAI models, the
conservative estimate otherwise), so a client that counts the same way fills the queue
exactly. ``peak`` records the most tokens ever enqueued per model (``GET
/sandbox/stats``: ``queue``), which is how tests prove the queue was used.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from batchfsm.ledger.budget import ANY_MODEL, limit_for, parse_queue_limits
from batchfsm.ledger.tokens import count_request

if TYPE_CHECKING:
    from batchfsm.sandbox.timeline import Plan

__all__ = ["ACTIVE", "ANY_MODEL", "EnqueuedTokens", "enqueue", "parse_queue_limits"]

ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


@dataclasses.dataclass(slots=True)
class _Held:
    model: str
    tokens: int
    plan: Callable[[], Plan]


class EnqueuedTokens:
    """Per-model enqueued tokens of one sandbox world (thread-safe)."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.limits = dict(limits or {})
        self._held: dict[str, _Held] = {}
        self._peak: dict[str, int] = {}
        self._lock = threading.Lock()

    def limit_for(self, model: str) -> int | None:
        return limit_for(self.limits, model)

    def enqueued(self, model: str, now: float, status_at: Callable[[Plan, float], str]) -> int:
        """Tokens of ``model``'s batches still in an active status at ``now``."""
        with self._lock:
            held = list(self._held.values())
        return sum(
            h.tokens for h in held if h.model == model and status_at(h.plan(), now) in ACTIVE
        )

    def admit(
        self,
        batch_id: str,
        *,
        model: str | None,
        endpoint: str,
        bodies: list[dict[str, Any]],
        plan: Callable[[], Plan],
        now: float,
        status_at: Callable[[Plan, float], str],
    ) -> str | None:
        """Enqueue a new batch; returns the ``token_limit_exceeded`` message when it
        does not fit (then nothing is enqueued), else None."""
        key = model or "default"
        tokens = sum(count_request(body, endpoint) for body in bodies)
        limit = self.limit_for(key)
        in_use = self.enqueued(key, now, status_at)
        if limit is not None and in_use + tokens > limit:
            return (
                f"Enqueued token limit reached for {key} in organization org-sandbox. "
                f"Limit: {limit:,} enqueued tokens. Please try submitting fewer tasks at a "
                "time or wait for in-progress batches to finish."
            )
        with self._lock:
            self._held[batch_id] = _Held(key, tokens, plan)
            self._peak[key] = max(self._peak.get(key, 0), in_use + tokens)
        return None

    def snapshot(self) -> dict[str, Any]:
        """``{"limits": {...}, "peak": {model: tokens}}`` for ``GET /sandbox/stats``."""
        with self._lock:
            return {"limits": dict(self.limits), "peak": dict(self._peak)}


def enqueue(queue: EnqueuedTokens, batch: Any, now: float) -> None:
    """Admit the world's new ``batch`` (a ``world._Batch``) to its model's queue, or fail
    its validation with ``token_limit_exceeded`` when it does not fit."""
    from batchfsm.sandbox.timeline import moment_at

    if not batch.plan.valid or not queue.limits:
        return  # fails validation anyway, or no limit to enforce: nothing to count
    message = queue.admit(
        batch.id,
        model=batch.parsed.model,
        endpoint=batch.endpoint,
        bodies=[r.body for r in batch.parsed.requests],
        plan=lambda: batch.plan,
        now=now,
        status_at=lambda plan, t: moment_at(plan, t).status,
    )
    if message is not None:
        code = "token_limit_exceeded"
        batch.parsed.errors.append({"code": code, "message": message, "param": None, "line": None})
        batch.plan = dataclasses.replace(batch.plan, valid=False)
