"""Serving the intake over HTTP (werkzeug's threaded server), and building one.

``batchfsm webhooks serve`` uses this, and so do the end-to-end tests, over loopback.
It binds 127.0.0.1 by default: put a TLS-terminating proxy (or a tunnel) in front for
OpenAI to reach it; OpenAI delivers only to HTTPS URLs. For production behind your own
server, mount :class:`~batchfsm.webhooks.app.WebhookWSGIApp` or
:class:`~batchfsm.webhooks.app.WebhookASGIApp` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from batchfsm.webhooks.app import DEFAULT_PATH, WebhookWSGIApp
from batchfsm.webhooks.bridge import SETTLE_DELAYS, EventBridge
from batchfsm.webhooks.intake import WebhookIntake
from batchfsm.webhooks.verify import WebhookVerifier

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import SecretStr

    from batchfsm.tracker import Tracker

__all__ = ["DEFAULT_HOST", "RunningIntake", "build_intake", "make_intake_server", "running_intake"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    """Request lines at DEBUG, not werkzeug's INFO (they carry no secret, but noise)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s " + message, self.address_string(), *args)


def build_intake(
    tracker: Tracker,
    secret: SecretStr,
    *,
    workers: int = 1,
    settle_delays: Sequence[float] = SETTLE_DELAYS,
) -> WebhookIntake:
    """An intake verifying with ``secret`` and observing batches on ``tracker``."""
    bridge = EventBridge(tracker, settle_delays=settle_delays)
    return WebhookIntake(WebhookVerifier(secret), tracker.store, bridge, workers=workers)


def make_intake_server(
    intake: WebhookIntake, *, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH
) -> BaseWSGIServer:
    """A threaded server for ``intake`` on ``host:port`` (0: a free port), not yet serving."""
    app = WebhookWSGIApp(intake, path=path)
    return make_server(host, port, app, threaded=True, request_handler=_QuietHandler)


def url_of(server: BaseWSGIServer, path: str) -> str:
    host = server.server_address[0]
    if isinstance(host, bytes):  # pragma: no cover - AF_UNIX only
        host = host.decode()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_port}{path}"


@dataclass(frozen=True)
class RunningIntake:
    """An intake listening at ``url``."""

    url: str
    intake: WebhookIntake
    server: BaseWSGIServer


@contextmanager
def running_intake(
    intake: WebhookIntake, *, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH
) -> Iterator[RunningIntake]:
    """Serve ``intake`` in a daemon thread for the ``with`` block; on leaving, stop
    accepting, finish the queued work and stop the workers."""
    server = make_intake_server(intake, host=host, port=port, path=path)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=f"batchfsm-webhooks:{server.server_port}",
    )
    thread.start()
    try:
        yield RunningIntake(url=url_of(server, path), intake=intake, server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        intake.close()
