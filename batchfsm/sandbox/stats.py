"""A log of the API calls the sandbox answered, so tests can assert call budgets.

An engine that polls too eagerly, or retrieves a batch three times per poll, shows up
here as numbers: ``stats.count("GET /v1/batches/{batch_id}")``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["LoggedRequest", "RequestStats"]

_LOG_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    route: str
    """Method plus route template, e.g. ``"GET /v1/batches/{batch_id}"``."""
    path: str
    status: int
    fault: str | None


class RequestStats:
    """Thread-safe counters per route and per status, plus a bounded request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()
        self._faults = 0
        self._log: list[LoggedRequest] = []

    def record(self, *, route: str, path: str, status: int, fault: str | None = None) -> None:
        with self._lock:
            self._counts[route, status] += 1
            self._faults += fault is not None
            self._log.append(LoggedRequest(route, path, status, fault))
            del self._log[:-_LOG_KEPT]

    def count(self, route: str | None = None, *, status: int | None = None) -> int:
        """Calls to ``route`` (all routes if None), optionally only those answered ``status``."""
        with self._lock:
            return sum(
                n
                for (r, s), n in self._counts.items()
                if (route is None or r == route) and (status is None or s == status)
            )

    @property
    def log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /sandbox/stats`` body."""
        by_route: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        with self._lock:
            for (route, status), n in self._counts.items():
                by_route[route] += n
                by_status[str(status)] += n
            faults = self._faults
        return {
            "total": sum(by_route.values()),
            "by_endpoint": dict(sorted(by_route.items())),
            "by_status": dict(sorted(by_status.items())),
            "faults": faults,
        }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults = 0
            self._log.clear()
