"""Fault injection: 429/500 answers, stale batch reads and truncated downloads.

Decisions come from one ``random.Random`` seeded by the scenario, drawn once per ``/v1``
request in arrival order, so the same seed and the same calls give the same faults.
Scripted faults (``Faults.script``) hit an exact call of a route regardless of chance.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from batchfsm.sandbox.scenario import FaultKind, Faults

__all__ = ["FILE_CONTENT_ROUTE", "STALE_ROUTES", "Fault", "FaultInjector", "truncate"]

Fault = FaultKind

STALE_ROUTES = frozenset(
    {
        "GET /v1/batches/{batch_id}",
        "GET /v1/batches",
        "GET /v1/messages/batches/{batch_id}",  # the Anthropic dialect's
        "GET /v1/messages/batches",
    }
)
CREATE_ROUTE = "POST /v1/batches"
FILE_CONTENT_ROUTE = "GET /v1/files/{file_id}/content"
DOWNLOAD_ROUTES = frozenset({FILE_CONTENT_ROUTE, "GET /v1/messages/batches/{batch_id}/results"})


class FaultInjector:
    """Decides, per request, which fault (if any) to inject."""

    def __init__(self, faults: Faults, *, seed: int) -> None:
        self._faults = faults
        self._rng = random.Random(f"{seed}:faults")
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.injected: list[tuple[str, Fault]] = []
        """(route, fault) in order, for tests and ``/sandbox/stats``."""

    def decide(self, route: str) -> Fault | None:
        with self._lock:
            self._calls[route] += 1
            fault = self._scripted(route, self._calls[route]) or self._random(route)
            if fault is not None:
                self.injected.append((route, fault))
            return fault

    def _scripted(self, route: str, call: int) -> Fault | None:
        for item in self._faults.script:
            if item.route == route and item.call == call and _applies(item.kind, route):
                return item.kind
        return None

    def _random(self, route: str) -> Fault | None:
        f = self._faults
        # Always draw, even for excluded routes, so adding a route filter does not
        # reshuffle the faults of the routes that stay in.
        draw = self._rng.random()
        if f.routes is not None and route not in f.routes:
            return None
        for kind, rate in (
            ("rate_limit", f.rate_limit_rate),
            ("server_error", f.server_error_rate),
            ("stale_read", f.stale_read_rate),
            ("truncate", f.truncate_rate),
        ):
            if not _applies(kind, route):
                continue
            if draw < rate:
                return kind  # type: ignore[return-value]
            draw -= rate
        return None

    def truncation_point(self, content: bytes) -> int:
        """Where to cut ``content``: strictly inside one of its lines."""
        with self._lock:
            return truncate(content, self._rng)


def _applies(kind: str, route: str) -> bool:
    if kind == "stale_read":
        return route in STALE_ROUTES
    if kind == "truncate":
        return route in DOWNLOAD_ROUTES
    if kind in ("queue_full", "queue_full_429"):
        return route == CREATE_ROUTE
    return True


def truncate(content: bytes, rng: random.Random) -> int:
    """A cut position inside a line (never on a line boundary), or 0 for a tiny body."""
    if len(content) < 2:
        return 0
    starts = [0] + [i + 1 for i, b in enumerate(content[:-1]) if b == 0x0A]
    start = rng.choice(starts)
    end = content.find(b"\n", start)
    end = len(content) if end < 0 else end
    if end - start < 2:
        return start
    return rng.randrange(start + 1, end)
