"""The sandbox's Message Batches: Anthropic's batches on the sandbox's fates and timeline.

The same :class:`~batchfsm.sandbox.scenario.Scenario` decides each batch's fate (by
creation order, or ``Scenario.default``: a Message Batch has no metadata to name one),
the same :func:`~batchfsm.sandbox.timeline.moment_at` says where it stands at any
sandbox time, and the same seeded generators make every id, outcome and result order
repeat. What differs is Anthropic's, from its reference
(https://platform.claude.com/docs/en/api/messages/batches) and guide
(https://platform.claude.com/docs/en/build-with-claude/batch-processing), written here
independently of :mod:`batchfsm.providers.anthropic` so that a wrong mapping fails
against it:

* requests come inline (``custom_id`` matching ``^[a-zA-Z0-9_-]{1,64}$``, unique;
  ``params``), 1 to 100,000 of them; ``params`` are checked per request while the
  batch runs (a request without ``model``, ``max_tokens`` or ``messages`` is
  ``errored`` with ``invalid_request_error``), as the API validates them asynchronously;
* ``processing_status`` is ``in_progress`` from creation (the timeline's validating and
  finalizing phases show as running), ``canceling``, then ``ended``;
  ``request_counts`` stay at ``processing`` until the batch ends; timestamps are RFC 3339;
* once ended, ``results_url`` serves one line per request, ``succeeded`` (a Message),
  ``errored`` (an ``ErrorResponse``), ``canceled`` or ``expired``, kept 29 days after
  creation (then 404);
* per-request failures: a ``fail-400`` / ``fail-429`` / ``fail-500`` / ``fail-529``
  marker in the custom_id (``#`` and ``=`` are not allowed there), else the fate's
  ``failure_rate`` over its ``failure_codes``; 400 is ``invalid_request_error``, 429
  ``rate_limit_error``, 500 ``api_error``, 529 and ``request_timeout``
  ``overloaded_error``;
* a ``token_limit_exceeded`` fate refuses the create with 429 ``rate_limit_error`` (the
  processing-queue limit): Anthropic has no ``failed`` batch.
"""

from __future__ import annotations

import math
import random
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from batchfsm.ports import Clock, SystemClock
from batchfsm.sandbox.anthropic_results import result_lines
from batchfsm.sandbox.api_errors import SandboxAPIError, bad_request, not_found
from batchfsm.sandbox.clock import ScaledClock
from batchfsm.sandbox.dialect_shapes import iso
from batchfsm.sandbox.ids import new_id
from batchfsm.sandbox.scenario import Fate, Scenario
from batchfsm.sandbox.timeline import CANCELLABLE, TERMINAL, Plan, moment_at

__all__ = ["MAX_REQUESTS", "RESULTS_KEPT_S", "AnthropicWorld"]

MAX_REQUESTS = 100_000
RESULTS_KEPT_S = 29 * 24 * 3600.0
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MARKER = re.compile(r"fail-(400|429|500|529)")
_WORDS = {"cancelling": "canceling"}
_SNAPSHOTS_KEPT = 16


@dataclass(slots=True)
class _Batch:
    id: str
    plan: Plan
    requests: list[dict[str, Any]]
    outcomes: list[int | str | None]
    order: list[int]
    served: list[dict[str, Any]] = field(default_factory=list)
    lines: bytes | None = None


class AnthropicWorld:
    """Message Batches of one sandbox; see the module docstring."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.clock = ScaledClock(clock or SystemClock(), time_scale=time_scale)
        self.max_requests = max_requests
        self._lock = threading.RLock()
        self._ids = random.Random(f"{self.scenario.seed}:anthropic:ids")
        self._batches: dict[str, _Batch] = {}
        self._creates = 0

    def create_batch(self, body: object, *, root: str) -> dict[str, Any]:
        """``POST /v1/messages/batches``: the request list checked now, params later."""
        requests = _checked_requests(body, self.max_requests)
        with self._lock:
            fate = self.scenario.fate_for(index=self._creates, metadata=None)
            self._creates += 1
            assert fate is not None  # no metadata: by order, else the default
            if fate.kind == "token_limit_exceeded":
                raise SandboxAPIError(
                    429,
                    "Number of batch requests in the processing queue exceeds the limit "
                    "(sandbox scripted fate).",
                    type="rate_limit_error",
                )
            batch_id = new_id(self._ids, "msgbatch_")
            rng = random.Random(f"{self.scenario.seed}:{batch_id}:plan")
            outcomes = [_outcome(r, fate, rng) for r in requests]
            order = list(range(len(requests)))
            rng.shuffle(order)
            plan = Plan(created=self.clock.timestamp(), fate=fate, total=len(requests), valid=True)
            batch = _Batch(batch_id, plan, requests, outcomes, order)
            self._batches[batch_id] = batch
            return self._serve(batch, self.clock.timestamp(), root=root, stale=False)

    def retrieve_batch(self, batch_id: str, *, root: str, stale: bool = False) -> dict[str, Any]:
        with self._lock:
            now = self.clock.timestamp()
            return self._serve(self._visible(batch_id, now), now, root=root, stale=stale)

    def cancel_batch(self, batch_id: str, *, root: str) -> dict[str, Any]:
        with self._lock:
            now = self.clock.timestamp()
            batch = self._visible(batch_id, now)
            status = moment_at(batch.plan, now).status
            if status in CANCELLABLE:
                batch.plan = replace(batch.plan, cancel_at=now)
            elif status in TERMINAL:
                raise bad_request(f"Batch {batch_id} has ended and cannot be canceled.")
            return self._serve(batch, now, root=root, stale=False)

    def list_batches(
        self,
        *,
        root: str,
        after_id: str | None = None,
        before_id: str | None = None,
        limit: int = 20,
        stale: bool = False,
    ) -> dict[str, Any]:
        """Newest first; ``after_id`` pages to older batches, ``before_id`` to newer."""
        with self._lock:
            now = self.clock.timestamp()
            ids = [i for i in reversed(self._batches) if not self._gone(self._batches[i], now)]
            for cursor in (after_id, before_id):
                if cursor is not None and cursor not in ids:
                    raise bad_request(f"No batch found with id {cursor!r}.")
            if after_id is not None:
                ids = ids[ids.index(after_id) + 1 :]
            elif before_id is not None:
                ids = ids[: ids.index(before_id)][-limit:]
            page = [self._serve(self._batches[i], now, root=root, stale=stale) for i in ids[:limit]]
            return {
                "data": page,
                "has_more": len(ids) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }

    def results(self, batch_id: str) -> bytes:
        """The results JSONL of an ended batch; 404 before it ends or after 29 days."""
        with self._lock:
            now = self.clock.timestamp()
            batch = self._visible(batch_id, now)
            moment = moment_at(batch.plan, now)
            if moment.status not in TERMINAL:
                raise not_found(f"Batch {batch_id} has not ended: it has no results yet.")
            if now >= batch.plan.created + RESULTS_KEPT_S:
                raise not_found(f"The results of batch {batch_id} are no longer available.")
            if batch.lines is None:
                done = set(batch.order[: moment.done])
                cancelled = moment.status == "cancelled"
                batch.lines = result_lines(
                    batch.id, batch.requests, batch.outcomes, done, cancelled, self.scenario.seed
                )
            return batch.lines

    def batch_ids(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def advance(self, seconds: float) -> float:
        return self.clock.advance(seconds).timestamp()

    # -- internals ---------------------------------------------------------------------

    def _gone(self, batch: _Batch, now: float) -> bool:
        fate = batch.plan.fate
        if fate.disappear_after_s is None:
            return False
        anchor = (
            batch.plan.created
            if fate.disappear_from == "created"
            else moment_at(batch.plan, now).terminal_at
        )
        return anchor is not None and now >= anchor + fate.disappear_after_s

    def _visible(self, batch_id: str, now: float) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None or self._gone(batch, now):
            raise not_found(f"No Message Batch found with id {batch_id!r}.")
        return batch

    def _serve(self, batch: _Batch, now: float, *, root: str, stale: bool) -> dict[str, Any]:
        current = _render(batch, now, root)
        if stale:
            earlier = [old for old in batch.served if old != current]
            return earlier[-1] if earlier else current
        if not batch.served or batch.served[-1] != current:
            batch.served.append(current)
            del batch.served[:-_SNAPSHOTS_KEPT]
        return current


def _render(batch: _Batch, now: float, root: str) -> dict[str, Any]:
    """The ``MessageBatch`` object at sandbox time ``now``."""
    plan = batch.plan
    moment = moment_at(plan, now)
    ended = moment.status in TERMINAL
    counts = {"processing": plan.total, "succeeded": 0, "errored": 0, "canceled": 0,
              "expired": 0}  # fmt: skip
    if ended:
        done = batch.order[: moment.done]
        ok = sum(1 for i in done if batch.outcomes[i] is None)
        never = "canceled" if moment.status == "cancelled" else "expired"
        counts = {**counts, "processing": 0, "succeeded": ok, "errored": len(done) - ok,
                  never: plan.total - len(done)}  # fmt: skip
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else _WORDS.get(moment.status, "in_progress"),
        "request_counts": counts,
        "ended_at": _iso(moment.terminal_at),
        "created_at": _iso(plan.created),
        "expires_at": _iso(plan.expires),
        "archived_at": None,
        "cancel_initiated_at": _iso(plan.cancel_at),
        "results_url": f"{root}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso(math.floor(timestamp))


def _checked_requests(body: object, most: int) -> list[dict[str, Any]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list):
        raise bad_request("requests: Field required (a list of {custom_id, params}).")
    if not 1 <= len(requests) <= most:
        raise bad_request(f"requests: expected 1 to {most} items, got {len(requests)}.")
    seen: set[str] = set()
    for index, request in enumerate(requests):
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        if not isinstance(custom_id, str) or _CUSTOM_ID.fullmatch(custom_id) is None:
            raise bad_request(
                f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in seen:
            raise bad_request(f"requests.{index}.custom_id: duplicate custom_id {custom_id!r}.")
        seen.add(custom_id)
        if not isinstance(request.get("params"), dict):
            raise bad_request(f"requests.{index}.params: Field required (an object).")
    return requests


def _outcome(request: dict[str, Any], fate: Fate, rng: random.Random) -> int | str | None:
    """How one request ends if it runs: None succeeds, else what it fails with."""
    draw, code = rng.random(), rng.choice(fate.failure_codes)  # drawn for every request
    params = request["params"]
    if any(name not in params for name in ("model", "max_tokens", "messages")):
        return "invalid_params"
    marker = _MARKER.search(request["custom_id"])
    if marker is not None:
        return int(marker.group(1))
    if fate.kind == "all_fail" or draw < fate.failure_rate:
        return code
    return None
