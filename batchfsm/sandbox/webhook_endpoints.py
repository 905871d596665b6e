"""The webhook endpoint management API, served beside the sandbox's Batch API.

The official client manages endpoints with ``client.webhooks.create / list / retrieve /
delete / test`` against ``/v1/webhook_endpoints``; the sandbox answers those calls in
the same shapes, so ``batchfsm webhooks register`` and ``test`` are rehearsed against it
exactly as against OpenAI. An endpoint registered here is where the sandbox's
:class:`~batchfsm.sandbox.webhooks.WebhookSender` delivers.

:class:`SandboxWithWebhooks` wraps a :class:`~batchfsm.sandbox.app.SandboxApp` (WSGI
middleware): ``/v1/webhook_endpoints...`` is answered here, everything else by the
sandbox, untouched. :func:`running_sandbox_with_webhooks` serves both on loopback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from batchfsm.sandbox.api_errors import SandboxAPIError, bad_request, not_found, unauthorized
from batchfsm.sandbox.app import SandboxApp
from batchfsm.sandbox.scenario import Scenario
from batchfsm.sandbox.webhooks import WebhookFaults, WebhookSender
from batchfsm.sandbox.world import World

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from batchfsm.ports import Clock

__all__ = [
    "RunningWebhookSandbox",
    "SandboxWithWebhooks",
    "running_sandbox_with_webhooks",
    "with_webhooks",
]

logger = logging.getLogger(__name__)

PREFIX = "/v1/webhook_endpoints"
_RULES = Map(
    [
        Rule(PREFIX, methods=["POST"], endpoint="create"),
        Rule(PREFIX, methods=["GET"], endpoint="list"),
        Rule(f"{PREFIX}/<endpoint_id>", methods=["GET"], endpoint="retrieve"),
        Rule(f"{PREFIX}/<endpoint_id>", methods=["DELETE"], endpoint="delete"),
        Rule(f"{PREFIX}/<endpoint_id>/test", methods=["POST"], endpoint="test"),
    ],
    strict_slashes=False,
)


class SandboxWithWebhooks:
    """The sandbox plus endpoint management; ``world`` and ``stats`` are the sandbox's."""

    def __init__(self, app: SandboxApp, sender: WebhookSender) -> None:
        self.app = app
        self.sender = sender

    @property
    def world(self) -> World:
        return self.app.world

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        request = Request(environ)
        try:
            _check_auth(request)
            name, args = _RULES.bind_to_environ(environ).match()
            body = getattr(self, f"_{name}")(request, **args)
            response = _json(body)
        except (NotFound, MethodNotAllowed):
            response = _json(
                SandboxAPIError(404, f"Invalid URL ({request.method} {path})").body(), 404
            )
        except SandboxAPIError as exc:
            response = _json(exc.body(), exc.status)
        return response(environ, start_response)

    def _create(self, request: Request) -> dict[str, Any]:
        params = _params(request)
        url, name, types = params.get("url"), params.get("name"), params.get("event_types")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise bad_request("Invalid 'url': expected an http(s) URL.", param="url")
        if not isinstance(name, str) or not name:
            raise bad_request("Missing required parameter: 'name'.", param="name")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise bad_request("Invalid 'event_types': expected event names.", param="event_types")
        endpoint = self.sender.add_endpoint(url, event_types=tuple(types), name=name)
        return endpoint.as_object(with_secret=True)

    def _list(self, request: Request) -> dict[str, Any]:
        endpoints = self.sender.endpoints()
        after = request.args.get("after")
        if after is not None:
            ids = [e.id for e in endpoints]
            endpoints = endpoints[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.args.get("limit", "20") or 20)
        page = [e.as_object() for e in endpoints[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(endpoints) > limit,
        }

    def _retrieve(self, request: Request, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.sender.endpoint(endpoint_id)
        if endpoint is None:
            raise not_found(f"No webhook endpoint {endpoint_id!r}.", param="webhook_endpoint_id")
        return endpoint.as_object()

    def _delete(self, request: Request, endpoint_id: str) -> dict[str, Any]:
        if not self.sender.remove_endpoint(endpoint_id):
            raise not_found(f"No webhook endpoint {endpoint_id!r}.", param="webhook_endpoint_id")
        return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}

    def _test(self, request: Request, endpoint_id: str) -> dict[str, Any]:
        event_type = _params(request).get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise bad_request("Missing required parameter: 'event_type'.", param="event_type")
        try:
            status = self.sender.send_test(endpoint_id, event_type)
        except KeyError:
            raise not_found(
                f"No webhook endpoint {endpoint_id!r}.", param="webhook_endpoint_id"
            ) from None
        return {
            "object": "webhook_endpoint.test",
            "event_type": event_type,
            "status_code": status or 0,
            "success": True,
            "webhook_endpoint_id": endpoint_id,
        }


def _params(request: Request) -> dict[str, Any]:
    try:
        params = orjson.loads(request.get_data() or b"{}")
    except orjson.JSONDecodeError:
        params = None
    if not isinstance(params, dict):
        raise bad_request("We could not parse the JSON body of your request.")
    return params


def _check_auth(request: Request) -> None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("You didn't provide an API key.")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def with_webhooks(
    app: SandboxApp,
    *,
    urls: Sequence[str] = (),
    secret: str | None = None,
    faults: WebhookFaults | None = None,
) -> tuple[SandboxWithWebhooks, WebhookSender]:
    """``app`` with endpoint management, and its sender (not started) with ``urls``
    registered under ``secret`` (``batchfsm sandbox --webhook-url``)."""
    sender = WebhookSender(app.world, faults=faults, seed=app.world.scenario.seed)
    for url in urls:
        sender.add_endpoint(url, secret=secret)
    return SandboxWithWebhooks(app, sender), sender


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s " + message, self.address_string(), *args)


@dataclass(frozen=True)
class RunningWebhookSandbox:
    """A sandbox on ``base_url`` (``.../v1``) whose ``sender`` delivers webhooks."""

    base_url: str
    app: SandboxApp
    sender: WebhookSender
    server: BaseWSGIServer

    @property
    def world(self) -> World:
        return self.app.world


@contextmanager
def running_sandbox_with_webhooks(
    scenario: Scenario | None = None,
    *,
    clock: Clock | None = None,
    time_scale: float = 1.0,
    faults: WebhookFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tick: float = 0.05,
) -> Iterator[RunningWebhookSandbox]:
    """Serve a sandbox with endpoint management, its sender running, for the block."""
    app = SandboxApp(World(scenario, clock=clock, time_scale=time_scale))
    sender = WebhookSender(app.world, faults=faults, tick=tick, seed=app.world.scenario.seed)
    server = make_server(
        host, port, SandboxWithWebhooks(app, sender), threaded=True, request_handler=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    sender.start()
    try:
        shown = f"[{host}]" if ":" in host else host
        yield RunningWebhookSandbox(f"http://{shown}:{server.server_port}/v1", app, sender, server)
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
