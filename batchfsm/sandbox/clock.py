"""Sandbox time: the injected clock, sped up, plus a manual fast-forward.

The sandbox never sleeps and runs no background thread: every request computes the
batches' progress from ``now()``. Scaling the clock (``time_scale=3600`` makes a sandbox
hour pass in a real second) is what lets a 24-hour window expire during a test.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from batchfsm.ports import Clock

__all__ = ["ScaledClock"]


class ScaledClock:
    """``start + (clock elapsed) * time_scale + advanced``; a :class:`~batchfsm.ports.Clock`."""

    def __init__(self, clock: Clock, *, time_scale: float = 1.0, start: datetime | None = None):
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._clock = clock
        self._scale = time_scale
        self._origin = clock.now()
        self._start = start or self._origin
        self._advanced = timedelta()
        self._lock = threading.Lock()

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        elapsed = self._clock.now() - self._origin
        with self._lock:
            return self._start + elapsed * self._scale + self._advanced

    def timestamp(self) -> float:
        """Sandbox now as Unix seconds."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Jump sandbox time forward (never back: the API's clock does not go back)."""
        if seconds < 0:
            raise ValueError("cannot move sandbox time backwards")
        with self._lock:
            self._advanced += timedelta(seconds=seconds)
        return self.now()
