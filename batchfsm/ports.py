"""Small interfaces between the pure core and the outside world.

The core (``batchfsm.fsm``) never reads a clock, a file or the network itself: it is
handed these, so tests run on a frozen clock and an in-memory store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchSnapshot


@runtime_checkable
class Clock(Protocol):
    """Where "now" comes from: always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, replays, the sandbox)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = when


class BatchGateway(Protocol):
    """The OpenAI Batch API as the engine needs it. One ``retrieve`` per batch per poll."""

    def retrieve(self, batch_id: str) -> BatchSnapshot: ...

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        """Stream a file to ``dest``; None (and no request) for an absent file id."""

    def upload(self, path: Path) -> str: ...

    def create(
        self, input_file_id: str, endpoint: str, metadata: Mapping[str, str]
    ) -> BatchSnapshot: ...

    def cancel(self, batch_id: str) -> BatchSnapshot: ...

    def iter_batches(self, limit: int = 100) -> Iterator[BatchSnapshot]: ...
