"""One poll cycle over many batches, with their retrieves running concurrently.

A cycle over 1,000 live batches is 1,000 ``GET /batches/{id}``; one after another it
takes 1,000 times the API's latency. :func:`poll_concurrently` runs only the retrieves
on a bounded pool of worker threads (``--concurrency``, ``Settings.poll_concurrency``),
fetching a window ahead, and applies the answers in the calling thread in the store's
order, through the same
:meth:`~batchfsm.tracker.Tracker.observe` a sequential poll uses (handed the snapshot):
so every guarantee stays as it was (one conditional commit per transition, owed effects
run exactly once under their leases), and the store sees one writer per process.

A retrieve that failed is done again by ``observe`` itself, in the calling thread, so a
404 (lost), an unreadable answer or a key refused are handled exactly as they are in a
sequential poll. Each retrieve honours a 429's ``Retry-After`` (the gateway's retry
policy); the pool bounds how many are in flight at once. An unchanged batch costs no
store read beyond the one ``list_attention`` of the cycle, and no write.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from batchfsm.errors import AuthenticationFailedError, ConflictRetriesExhaustedError

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord, BatchSnapshot
    from batchfsm.tracker import PollReport, Tracker

__all__ = ["poll_concurrently"]

logger = logging.getLogger(__name__)


def poll_concurrently(
    tracker: Tracker,
    workers: int,
    *,
    due: Callable[[BatchRecord], bool] | None = None,
    via: str | None = None,
) -> list[PollReport]:
    """:meth:`Tracker.poll_once` with up to ``workers`` retrieves in flight."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    gateway = tracker.gateway
    records = tracker.store.list_attention()
    live = [r for r in records if not (r.terminal or r.lost) and (due is None or due(r))]
    if gateway is None or workers == 1 or len(live) < 2:
        return tracker.poll_once(due=due, via=via)
    reports: list[PollReport] = []
    # The first live batch alone, first: a key the API refuses ends the cycle after one
    # call (as in a sequential poll), not after a pool's worth of them.
    probe = live.pop(0)
    wanted = {r.batch_id for r in live}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batchfsm-poll") as pool:
        ahead: deque[tuple[BatchRecord, Future[BatchSnapshot]]] = deque()
        todo = iter(live)

        def fill() -> None:  # at most 2 x workers fetched ahead: memory stays bounded
            while len(ahead) < 2 * workers and (nxt := next(todo, None)) is not None:
                ahead.append((nxt, pool.submit(gateway.retrieve, nxt.batch_id)))

        for record in records:  # in the store's order, as a sequential poll goes
            if record.batch_id == probe.batch_id:
                _guarded(reports, record, _observer(tracker, record, None, via))
                fill()
            elif record.terminal or record.lost:
                _guarded(reports, record, _drainer(tracker, record))
            elif record.batch_id in wanted:
                fill()
                fetched, future = ahead.popleft()
                fill()
                failure = future.exception()
                if isinstance(failure, AuthenticationFailedError):
                    raise failure  # the key, not this batch: as a sequential poll does
                snapshot = None if failure is not None else future.result()
                _guarded(reports, fetched, _observer(tracker, fetched, snapshot, via))
    return reports


def _observer(
    tracker: Tracker, record: BatchRecord, snapshot: BatchSnapshot | None, via: str | None
) -> Callable[[], PollReport]:
    """Apply a fetched snapshot; None (the retrieve failed): observe retrieves again."""
    return lambda: tracker.observe(record.batch_id, snapshot, known=record, via=via)


def _drainer(tracker: Tracker, record: BatchRecord) -> Callable[[], PollReport]:
    return lambda: tracker.drain(record.batch_id)


def _guarded(
    reports: list[PollReport], record: BatchRecord, work: Callable[[], PollReport]
) -> None:
    """Run one batch's step; a batch whose writes keep losing races is reported and left
    for the next cycle, as in a sequential poll."""
    from batchfsm.tracker import PollReport

    try:
        reports.append(work())
    except ConflictRetriesExhaustedError as exc:
        logger.error("batch %s: %s", record.batch_id, exc)
        reports.append(
            PollReport(record.batch_id, record.state.value, "error", error=str(exc), record=record)
        )
