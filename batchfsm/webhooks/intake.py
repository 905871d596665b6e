"""The intake: verify, deduplicate, answer at once, and do the work afterwards.

One delivery, in the order that keeps every promise:

1. **Verify** the signature and timestamp (:mod:`~batchfsm.webhooks.verify`). Anything
   that does not check out is answered 400 and changes nothing: no receipt, no
   retrieve, no state.
2. **Deduplicate** on ``webhook-id`` in the store (``JobStore.record_event``: one
   conditional insert). A redelivery is answered 200 and does nothing more, so the same
   event delivered twice does one thing, even to two intake processes on one store.
3. **Answer 200** straight away; a batch event for a tracked batch is queued for a
   background worker, which runs :class:`~batchfsm.webhooks.bridge.EventBridge` (the
   normal retrieve, apply, commit, outbox path). OpenAI wants a quick 2xx; harvesting a
   50,000-line batch is no work for the request.

An event for a batch the store does not track, or any other event type, is recorded
and acknowledged. When the store cannot be written, or the worker's queue is full, the
answer is 503: OpenAI retries (for up to 72 hours), and nothing was recorded, so the
retry is not mistaken for a duplicate.

A receipt is written before the work is done, so a crash between the two loses that
event's early observation; the poller's fallback poll still notices the end.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from batchfsm.errors import JobNotFoundError, StoreError
from batchfsm.ports import WebhookReceipt
from batchfsm.webhooks.verify import InvalidWebhookError, Verified

if TYPE_CHECKING:
    from batchfsm.ports import Clock, JobStore
    from batchfsm.webhooks.bridge import BridgeResult, EventBridge
    from batchfsm.webhooks.verify import WebhookVerifier

__all__ = ["QUEUE_SIZE", "Answer", "Delivery", "WebhookIntake"]

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Events waiting for the worker before new ones are answered 503 (and retried)."""


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to one delivery."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    """A verified, first-seen batch event waiting for the worker."""

    verified: Verified
    received_at: datetime


@dataclass
class _Worker:
    queue: queue.Queue[Delivery | None]
    threads: list[threading.Thread] = field(default_factory=list)


class WebhookIntake:
    """Receives deliveries for one store; framework-free (the WSGI and ASGI apps in
    :mod:`batchfsm.webhooks.app` are thin shells around :meth:`receive`).

    :param verifier: checks signatures with the endpoint's secret.
    :param store: where receipts go (and whether a batch is tracked is read).
    :param bridge: does the work; None records and acknowledges only.
    :param workers: background threads running ``bridge`` (started on first use).
    :param clock: when deliveries are received (default: the system clock; receipts
        are about real delivery time, OpenAI's 72 hours of retries, not batch time).
    :param on_done: called with each finished piece of work (metrics, tests).
    """

    def __init__(
        self,
        verifier: WebhookVerifier,
        store: JobStore,
        bridge: EventBridge | None = None,
        *,
        clock: Clock | None = None,
        workers: int = 1,
        queue_size: int = QUEUE_SIZE,
        on_done: Callable[[Delivery, BridgeResult | None], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.verifier = verifier
        self.store = store
        self.bridge = bridge
        self.clock = clock
        self.on_done = on_done
        self._workers = workers
        self._work = _Worker(queue.Queue(maxsize=queue_size))
        self._lock = threading.Lock()
        self._closed = False

    # -- the request half ----------------------------------------------------------------
    def receive(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Answer one delivery (see the module docstring); never raises."""
        try:
            verified = self.verifier.verify(body, headers)
        except InvalidWebhookError as exc:
            logger.warning("webhook refused (400): %s", exc)
            return Answer(400, {"error": "invalid webhook", "detail": str(exc)})
        try:
            return self._accept(verified)
        except StoreError as exc:
            logger.error(
                "webhook %s: store unavailable, answered 503: %s", verified.webhook_id, exc
            )
            return Answer(503, {"error": "store unavailable"})

    def _accept(self, verified: Verified) -> Answer:
        batch_id = verified.batch_id
        known = batch_id is not None and self._tracks(batch_id)
        if known and (self._closed or self._work.queue.full()):
            logger.error("webhook %s: intake closed or busy, answered 503", verified.webhook_id)
            return Answer(503, {"error": "busy"})
        now = self.clock.now() if self.clock is not None else datetime.now(UTC)
        receipt = WebhookReceipt(verified.webhook_id, verified.event_type, batch_id, now, known)
        if not self.store.record_event(receipt):
            logger.info(
                "webhook %s (%s): a redelivery, ignored", verified.webhook_id, verified.event_type
            )
            return Answer(200, {"received": True, "duplicate": True})
        if not known:
            what = f"batch {batch_id}, which this store does not track" if batch_id else "no batch"
            logger.info(
                "webhook %s (%s) names %s: recorded", verified.webhook_id, verified.event_type, what
            )
            return Answer(200, {"received": True, "tracked": False})
        self._submit(Delivery(verified, now))
        return Answer(200, {"received": True, "tracked": True})

    def _tracks(self, batch_id: str) -> bool:
        try:
            self.store.load(batch_id)
        except JobNotFoundError:
            return False
        return True

    # -- the work half -------------------------------------------------------------------
    def _submit(self, delivery: Delivery) -> None:
        with self._lock:
            if not self._work.threads:
                self._start()
        try:
            self._work.queue.put_nowait(delivery)
        except queue.Full:  # raced past the check above: the fallback poll covers it
            logger.error(
                "webhook %s: work queue full after recording", delivery.verified.webhook_id
            )

    def _start(self) -> None:
        for n in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"batchfsm-webhooks-{n}", daemon=True)
            thread.start()
            self._work.threads.append(thread)

    def _run(self) -> None:
        while True:
            delivery = self._work.queue.get()
            try:
                if delivery is None:
                    return
                self._process(delivery)
            finally:
                self._work.queue.task_done()

    def _process(self, delivery: Delivery) -> None:
        verified = delivery.verified
        result: BridgeResult | None = None
        try:
            if self.bridge is not None and verified.batch_id is not None:
                result = self.bridge.handle(
                    verified.batch_id, event_type=verified.event_type, event_id=verified.event_id
                )
        except Exception:  # one event's failure must not stop the worker
            logger.exception(
                "webhook %s: observing batch %s failed; the poll will catch up",
                verified.webhook_id,
                verified.batch_id,
            )
        if self.on_done is not None:
            self.on_done(delivery, result)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been worked off; False on timeout."""
        done = threading.Event()

        def join() -> None:
            self._work.queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued work (up to ``timeout`` seconds), then stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._work.threads)
        for _ in threads:
            self._work.queue.put(None)
        for thread in threads:
            thread.join(timeout=timeout)
