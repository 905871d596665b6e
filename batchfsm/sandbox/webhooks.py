"""The sandbox sends webhooks, as OpenAI does: signed events when batches end.

When a sandbox batch reaches ``completed``, ``failed``, ``expired`` or ``cancelled``,
every registered endpoint subscribed to that event type gets a
``batch.<status>`` event (``{"id": "evt_...", "object": "event", "type", "created_at",
"data": {"id": <batch id>}}``) signed the Standard Webhooks way: headers
``webhook-id``, ``webhook-timestamp`` (real Unix seconds: the receiver checks it
against its own clock, whatever the sandbox's time scale) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` with the base64-decoded
part of the ``whsec_`` secret). A delivery that is not answered 2xx is retried with
backoff, as OpenAI retries for up to 72 hours (here: a few seconds).

The world computes batches lazily and runs no thread, so the sender has its own: every
``tick`` it reads the batches through the world's public calls and notices the ones
that ended. Faults (:class:`WebhookFaults`) rehearse what a receiver must survive:
duplicate deliveries, reordering, delays, lost events, a forged signature and a stale
(replayed) timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
import orjson

from batchfsm.sandbox.api_errors import SandboxAPIError
from batchfsm.sandbox.ids import new_id
from batchfsm.sandbox.world import World

__all__ = [
    "BATCH_EVENT_TYPES",
    "Endpoint",
    "Sent",
    "WebhookFaults",
    "WebhookSender",
    "new_secret",
    "sign",
]

logger = logging.getLogger(__name__)

BATCH_EVENT_TYPES = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")
_ENDED = {t.removeprefix("batch."): t for t in BATCH_EVENT_TYPES}
STALE_SECONDS = 600
"""How old a replayed delivery's timestamp is: twice the receivers' 5-minute tolerance."""


def new_secret() -> str:
    """A fresh ``whsec_`` signing secret (32 random bytes, base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery (Standard Webhooks)."""
    key = (
        base64.b64decode(secret.removeprefix("whsec_"))
        if secret.startswith("whsec_")
        else (secret.encode())
    )
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


@dataclass(frozen=True)
class WebhookFaults:
    """What goes wrong with deliveries (all off by default).

    :param duplicates: extra deliveries of every event (same ``webhook-id``).
    :param reorder: hold the events of ``reorder_window_s`` and send them newest first.
    :param delay_s: real seconds between a batch's end and its first delivery.
    :param lose_rate: share of events never delivered at all (seeded per batch).
    :param forge: before each event, send a copy signed with another secret.
    :param stale: before each event, send a correctly signed copy whose timestamp is
        :data:`STALE_SECONDS` old (a replay).
    """

    duplicates: int = 0
    reorder: bool = False
    reorder_window_s: float = 0.5
    delay_s: float = 0.0
    lose_rate: float = 0.0
    forge: bool = False
    stale: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A registered webhook endpoint (the API's ``webhook_endpoint``)."""

    id: str
    url: str
    secret: str = field(repr=False)
    event_types: tuple[str, ...] = BATCH_EVENT_TYPES
    name: str = "sandbox"
    created_at: int = 0

    def as_object(self, *, with_secret: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "event_types": list(self.event_types),
            "name": self.name,
            "url": self.url,
            "signing_secret_hint": f"whsec_...{self.secret[-4:]}",
        }
        if with_secret:
            obj["signing_secret"] = self.secret
        return obj


@dataclass(frozen=True)
class Sent:
    """One delivery attempt, as the sender saw it."""

    webhook_id: str
    event_type: str
    batch_id: str
    url: str
    status: int | None
    """The HTTP status, None when the connection failed."""
    kind: str
    """``event``, ``duplicate``, ``forged``, ``stale`` or ``test``."""
    attempt: int
    at: float
    """``time.monotonic()`` when the answer came."""


@dataclass
class _Pending:
    endpoint: Endpoint
    webhook_id: str
    event_type: str
    batch_id: str
    body: bytes
    kind: str
    due: float
    attempt: int = 1


class WebhookSender:
    """Watches ``world`` and delivers signed batch events to registered endpoints.

    :param tick: real seconds between looks at the world.
    :param max_attempts: deliveries of one event before giving up on a receiver.
    :param wall: the wall clock used for ``webhook-timestamp`` (tests may skew it).
    """

    def __init__(
        self,
        world: World,
        *,
        faults: WebhookFaults | None = None,
        tick: float = 0.05,
        max_attempts: int = 5,
        seed: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.world = world
        self.faults = faults or WebhookFaults()
        self.tick = tick
        self.max_attempts = max_attempts
        self.wall = wall
        self.sent: list[Sent] = []
        self._seed = seed
        self._ids = random.Random(f"{seed}:webhooks")
        self._endpoints: dict[str, Endpoint] = {}
        self._noticed: set[str] = set()
        self._lost: set[str] = set()
        self._pending: list[_Pending] = []
        self._held: list[_Pending] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx2.Client(timeout=5.0)

    # -- endpoints (the management API's state) -------------------------------------------
    def add_endpoint(
        self,
        url: str,
        *,
        secret: str | None = None,
        event_types: tuple[str, ...] = BATCH_EVENT_TYPES,
        name: str = "sandbox",
    ) -> Endpoint:
        """Register ``url``; the secret is generated unless given."""
        with self._lock:
            endpoint = Endpoint(
                id=new_id(self._ids, "we_"),
                url=url,
                secret=secret or new_secret(),
                event_types=tuple(event_types),
                name=name,
                created_at=int(self.world.clock.timestamp()),
            )
            self._endpoints[endpoint.id] = endpoint
            return endpoint

    def endpoints(self) -> list[Endpoint]:
        """Newest first, as the API lists them."""
        with self._lock:
            return list(reversed(self._endpoints.values()))

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        with self._lock:
            return self._endpoints.get(endpoint_id)

    def remove_endpoint(self, endpoint_id: str) -> bool:
        with self._lock:
            return self._endpoints.pop(endpoint_id, None) is not None

    def lose(self, batch_id: str) -> None:
        """Never deliver this batch's event (a webhook that never arrives)."""
        with self._lock:
            self._lost.add(batch_id)

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> WebhookSender:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="batchfsm-sandbox-webhooks", daemon=True
                )
                self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._http.close()

    def __enter__(self) -> WebhookSender:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.step()
            except Exception:  # the sandbox must keep sending whatever one step hit
                logger.exception("sandbox webhook sender: step failed")

    def step(self) -> None:
        """One look at the world and one round of due deliveries (the thread's body;
        tests may call it directly)."""
        self._notice()
        now = time.monotonic()
        with self._lock:
            due = [p for p in self._pending if p.due <= now]
            self._pending = [p for p in self._pending if p.due > now]
        for pending in due:
            self._deliver(pending)

    # -- noticing ends -------------------------------------------------------------------
    def _notice(self) -> None:
        with self._lock:
            if not self._endpoints:
                return  # nobody to tell: no reads, so the world's snapshots stay as they were
        for batch_id in self.world.batch_ids():
            if batch_id in self._noticed:
                continue
            try:
                status = self.world.retrieve_batch(batch_id)["status"]
            except SandboxAPIError:  # vanished: nothing to announce
                self._noticed.add(batch_id)
                continue
            if status in _ENDED:
                self._noticed.add(batch_id)
                self._announce(batch_id, _ENDED[status])
        self._release_held()

    def _announce(self, batch_id: str, event_type: str) -> None:
        rng = random.Random(f"{self._seed}:{batch_id}:webhook")
        with self._lock:
            if batch_id in self._lost or rng.random() < self.faults.lose_rate:
                logger.info("sandbox webhook for %s lost (a fault)", batch_id)
                return
            event = {
                "id": new_id(self._ids, "evt_"),
                "object": "event",
                "type": event_type,
                "created_at": int(self.world.clock.timestamp()),
                "data": {"id": batch_id},
            }
            body = orjson.dumps(event)
            due = time.monotonic() + self.faults.delay_s
            for endpoint in self._endpoints.values():
                if event_type not in endpoint.event_types:
                    continue
                webhook_id = new_id(self._ids, "wh_")
                base = _Pending(endpoint, webhook_id, event_type, batch_id, body, "event", due)
                copies = [
                    replace(base, kind=kind)
                    for kind, on in (("forged", self.faults.forge), ("stale", self.faults.stale))
                    if on
                ]
                copies.append(base)
                copies += [replace(base, kind="duplicate") for _ in range(self.faults.duplicates)]
                (self._held if self.faults.reorder else self._pending).extend(copies)

    def _release_held(self) -> None:
        """Reordering: after the window, send what was held, newest event first."""
        with self._lock:
            if not self._held:
                return
            if time.monotonic() - min(p.due for p in self._held) < self.faults.reorder_window_s:
                return
            held, self._held = self._held, []
            now = time.monotonic()
            by_event: dict[bytes, list[_Pending]] = {}
            for pending in held:
                by_event.setdefault(pending.body, []).append(pending)
            for group in reversed(list(by_event.values())):
                self._pending.extend(replace(p, due=now) for p in group)

    # -- delivering ----------------------------------------------------------------------
    def _deliver(self, pending: _Pending) -> None:
        timestamp = int(self.wall())
        secret = pending.endpoint.secret
        if pending.kind == "forged":
            secret = new_secret()
        elif pending.kind == "stale":
            timestamp -= STALE_SECONDS
        headers = {
            "content-type": "application/json",
            "webhook-id": pending.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, pending.webhook_id, timestamp, pending.body),
            "user-agent": "batchfsm-sandbox-webhooks",
        }
        try:
            status: int | None = self._http.post(
                pending.endpoint.url, content=pending.body, headers=headers
            ).status_code
        except httpx2.HTTPError as exc:
            logger.info("sandbox webhook to %s failed: %s", pending.endpoint.url, exc)
            status = None
        with self._lock:
            self.sent.append(
                Sent(
                    pending.webhook_id,
                    pending.event_type,
                    pending.batch_id,
                    pending.endpoint.url,
                    status,
                    pending.kind,
                    pending.attempt,
                    time.monotonic(),
                )
            )
            genuine = pending.kind in ("event", "duplicate")
            failed = status is None or not 200 <= status < 300
            if genuine and failed and pending.attempt < self.max_attempts:
                backoff = 0.1 * 2 ** (pending.attempt - 1)
                self._pending.append(
                    replace(pending, attempt=pending.attempt + 1, due=time.monotonic() + backoff)
                )

    def send_test(self, endpoint_id: str, event_type: str) -> int | None:
        """``POST /webhook_endpoints/{id}/test``: one sample event, now; its HTTP status."""
        endpoint = self.endpoint(endpoint_id)
        if endpoint is None:
            raise KeyError(endpoint_id)
        with self._lock:
            batch_id = new_id(self._ids, "batch_test_")
            event = {
                "id": new_id(self._ids, "evt_"),
                "object": "event",
                "type": event_type,
                "created_at": int(self.world.clock.timestamp()),
                "data": {"id": batch_id},
            }
            webhook_id = new_id(self._ids, "wh_")
        pending = _Pending(
            endpoint, webhook_id, event_type, batch_id, orjson.dumps(event), "test", 0.0
        )
        self._deliver(pending)
        with self._lock:
            return next(s.status for s in reversed(self.sent) if s.webhook_id == webhook_id)
