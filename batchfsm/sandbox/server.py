"""Serving the sandbox over real HTTP on loopback, in a background thread.

Most tests should use the app in-process (``httpx2.WSGITransport``); this is for the few
that must cross a socket, and for ``batchfsm sandbox``. Port 0 lets the OS pick a free
port, read back from the bound socket, so parallel test runs never collide.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from batchfsm.ports import Clock
from batchfsm.sandbox.app import SandboxApp
from batchfsm.sandbox.scenario import Scenario
from batchfsm.sandbox.stats import RequestStats
from batchfsm.sandbox.world import World

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["DEFAULT_HOST", "RunningSandbox", "make_sandbox_server", "running_sandbox"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    """werkzeug logs every request at INFO (and may install a handler); keep it at DEBUG."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s " + message, self.address_string(), *args)


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A sandbox listening on ``base_url`` (ends in ``/v1``, ready for ``OPENAI_BASE_URL``)."""

    base_url: str
    app: SandboxApp
    server: BaseWSGIServer

    @property
    def world(self) -> World:
        return self.app.world

    @property
    def stats(self) -> RequestStats:
        return self.app.stats


def make_sandbox_server(
    app: SandboxApp | WSGIApplication, *, host: str = DEFAULT_HOST, port: int = 0
) -> BaseWSGIServer:
    """A threaded server bound to ``host:port`` (port 0: a free one), not yet serving."""
    return make_server(host, port, app, threaded=True, request_handler=_QuietHandler)


def base_url_of(server: BaseWSGIServer) -> str:
    host = server.server_address[0]
    if isinstance(host, bytes):  # pragma: no cover - AF_UNIX only
        host = host.decode()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_port}/v1"


@contextmanager
def running_sandbox(
    scenario: Scenario | None = None,
    *,
    clock: Clock | None = None,
    time_scale: float = 1.0,
    host: str = DEFAULT_HOST,
    port: int = 0,
    app: SandboxApp | None = None,
) -> Iterator[RunningSandbox]:
    """Serve a sandbox in a daemon thread for the ``with`` block, then shut it down.

    Pass ``app`` to serve an existing app (and its world); otherwise one is built from
    ``scenario``, ``clock`` and ``time_scale``.
    """
    app = app or SandboxApp(World(scenario, clock=clock, time_scale=time_scale))
    server = make_sandbox_server(app, host=host, port=port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=f"batchfsm-sandbox:{server.server_port}",
    )
    thread.start()
    try:
        yield RunningSandbox(base_url=base_url_of(server), app=app, server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
