"""The sandbox speaking Anthropic's Message Batches API (``batchfsm sandbox --dialect
anthropic``), for the official ``anthropic`` client.

A WSGI app over an :class:`~batchfsm.sandbox.anthropic_world.AnthropicWorld`, built like
:class:`~batchfsm.sandbox.app.SandboxApp` (werkzeug routing, the same
:class:`~batchfsm.sandbox.faults.FaultInjector` and
:class:`~batchfsm.sandbox.stats.RequestStats`, the ``/sandbox/stats`` and
``/sandbox/advance`` helpers) but with Anthropic's wire: a key on every call
(``x-api-key``, or ``Authorization: Bearer``, which the client sends) and an
``anthropic-version`` header, errors as ``{"type": "error", "error": {"type",
"message"}}``, and a ``results_url`` that points back at this server (the client's
``batches.results`` retrieves the batch and follows it). The client's base URL is the
server's root (its paths start with ``/v1/``): ``ANTHROPIC_BASE_URL``.

Faults: ``rate_limit`` (429 ``rate_limit_error``) and ``server_error`` (500
``api_error``) on any route; ``stale_read`` on retrieve and list; ``truncate`` on the
results (the body stops mid-line, short of its announced length, as a dropped
connection does). There are no webhooks: Anthropic sends none for batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from batchfsm.ports import Clock
from batchfsm.sandbox.anthropic_world import AnthropicWorld
from batchfsm.sandbox.api_errors import SandboxAPIError, bad_request, server_error
from batchfsm.sandbox.app import CHUNK_BYTES
from batchfsm.sandbox.faults import Fault, FaultInjector
from batchfsm.sandbox.scenario import Scenario
from batchfsm.sandbox.server import DEFAULT_HOST, base_url_of, make_sandbox_server
from batchfsm.sandbox.stats import RequestStats

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["MAX_BODY_BYTES", "AnthropicSandboxApp", "RunningAnthropic", "running_anthropic"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024 * 1024
"""A create's body limit (256 MB); over it, 413 ``request_too_large``."""

_ROUTES = (
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches/<batch_id>"),
    ("POST", "/v1/messages/batches/<batch_id>/cancel"),
    ("GET", "/v1/messages/batches/<batch_id>/results"),
    ("GET", "/sandbox/stats"),
    ("POST", "/sandbox/advance"),
)
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
          529: "overloaded_error"}  # fmt: skip

_Handler = Callable[[Request, "Fault | None", dict[str, str]], Response]


def _route_name(method: str, rule: str) -> str:
    return f"{method} {rule.replace('<', '{').replace('>', '}')}"


class AnthropicSandboxApp:
    """A WSGI callable serving one :class:`AnthropicWorld`."""

    def __init__(self, world: AnthropicWorld) -> None:
        self.world = world
        self.stats = RequestStats()
        self.faults = FaultInjector(world.scenario.faults, seed=world.scenario.seed)
        self._map = Map(
            [Rule(rule, methods=[m], endpoint=_route_name(m, rule)) for m, rule in _ROUTES],
            strict_slashes=False,
        )
        self._handlers: dict[str, _Handler] = {
            "POST /v1/messages/batches": self._create,
            "GET /v1/messages/batches": self._list,
            "GET /v1/messages/batches/{batch_id}": self._retrieve,
            "POST /v1/messages/batches/{batch_id}/cancel": self._cancel,
            "GET /v1/messages/batches/{batch_id}/results": self._results,
            "GET /sandbox/stats": lambda _r, _f, _a: _json(self.stats.snapshot()),
            "POST /sandbox/advance": self._advance,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        route, fault, internal = f"{request.method} (unmatched)", None, False
        try:
            route, args = self._map.bind_to_environ(request.environ).match()
            internal = route.split(" ", 1)[1].startswith("/sandbox/")
            if not internal:
                _check_headers(request)
                fault = self.faults.decide(route)
                if fault == "rate_limit":
                    raise SandboxAPIError(
                        429, "Rate limited (sandbox fault).", type="rate_limit_error"
                    )
                if fault == "server_error":
                    raise server_error()
            response = self._handlers[route](request, fault, dict(args))
        except (NotFound, MethodNotAllowed):
            response = _error(SandboxAPIError(404, f"Not found: {request.method} {request.path}"))
        except SandboxAPIError as exc:
            response = _error(exc)
        except Exception:  # a sandbox bug must still answer in the API's shape
            logger.exception("sandbox handler failed on %s %s", request.method, request.path)
            response = _error(server_error())
        if not internal:
            self.stats.record(
                route=route, path=request.path, status=response.status_code, fault=fault
            )
        return response

    def _create(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise SandboxAPIError(
                413, "Request exceeds the 256 MB limit.", type="request_too_large"
            )
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError:
            raise bad_request("The request body is not valid JSON.") from None
        return _json(self.world.create_batch(body, root=_root(request)))

    def _retrieve(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        stale = fault == "stale_read"
        return _json(self.world.retrieve_batch(args["batch_id"], root=_root(request), stale=stale))

    def _cancel(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        return _json(self.world.cancel_batch(args["batch_id"], root=_root(request)))

    def _list(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        raw = request.args.get("limit", "20")
        limit = int(raw) if raw.isdigit() else 0
        if not 1 <= limit <= 1000:
            raise bad_request(f"limit: expected an integer from 1 to 1000, not {raw!r}.")
        page = self.world.list_batches(
            root=_root(request),
            after_id=request.args.get("after_id"),
            before_id=request.args.get("before_id"),
            limit=limit,
            stale=fault == "stale_read",
        )
        return _json(page)

    def _results(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        content = self.world.results(args["batch_id"])
        full = len(content)
        if fault == "truncate":
            content = content[: self.faults.truncation_point(content)]
        view = memoryview(content)
        chunks = (bytes(view[i : i + CHUNK_BYTES]) for i in range(0, len(view), CHUNK_BYTES))
        response = Response(chunks, mimetype="application/binary")
        response.content_length = full  # a cut body falls short of it: the client sees a break
        return response

    def _advance(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        try:
            seconds = float(orjson.loads(request.get_data() or b"{}")["seconds"])
            now = self.world.advance(seconds)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise bad_request('Expected {"seconds": N} with N >= 0.') from exc
        return _json({"now": now})


def _check_headers(request: Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and token.strip()
    if not request.headers.get("x-api-key", "").strip() and not bearer:
        raise SandboxAPIError(
            401, "x-api-key header (or a Bearer key) is required", type="authentication_error"
        )
    if not request.headers.get("anthropic-version", "").strip():
        raise bad_request("anthropic-version: header is required")


def _root(request: Request) -> str:
    """This server as the client reached it, for ``results_url``."""
    return request.host_url.rstrip("/")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def _error(exc: SandboxAPIError) -> Response:
    """Anthropic's error shape; its type follows from the status, as the API's does."""
    kind = _TYPES.get(exc.status, "api_error")
    return _json({"type": "error", "error": {"type": kind, "message": exc.message}}, exc.status)


@dataclass(frozen=True, slots=True)
class RunningAnthropic:
    """An Anthropic-dialect sandbox listening on ``base_url`` (``ANTHROPIC_BASE_URL``)."""

    base_url: str
    app: AnthropicSandboxApp

    @property
    def world(self) -> AnthropicWorld:
        return self.app.world

    @property
    def stats(self) -> RequestStats:
        return self.app.stats


@contextmanager
def running_anthropic(
    scenario: Scenario | None = None,
    *,
    clock: Clock | None = None,
    time_scale: float = 1.0,
    host: str = DEFAULT_HOST,
    app: AnthropicSandboxApp | None = None,
) -> Iterator[RunningAnthropic]:
    """Serve an Anthropic-dialect sandbox on a free loopback port for the ``with`` block."""
    app = app or AnthropicSandboxApp(AnthropicWorld(scenario, clock=clock, time_scale=time_scale))
    server = make_sandbox_server(app, host=host)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield RunningAnthropic(base_url=base_url_of(server).removesuffix("/v1"), app=app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
