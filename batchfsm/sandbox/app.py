"""The WSGI application: routing, bearer auth, faults, request stats and error shapes.

It is plain WSGI on werkzeug's ``Request``/``Response``/routing, so the same object runs
in-process under ``httpx2.WSGITransport`` (fast tests, no sockets) and on a real threaded
server (:mod:`batchfsm.sandbox.server`). All state lives in the :class:`World`; this module
only translates HTTP to world calls and :class:`SandboxAPIError` back to HTTP.

Besides the Batch API it serves one route of the Administration API, a project's rate
limits (:mod:`batchfsm.sandbox.admin`: the queue limits, for an admin key only), and two
helpers, outside auth, faults and stats:
``GET /sandbox/stats`` (call counts per route) and ``POST /sandbox/advance``
(``{"seconds": N}`` fast-forwards sandbox time, for a sandbox on the real clock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from batchfsm.sandbox.admin import RATE_LIMITS_ROUTE, check_admin_key, rate_limits_page
from batchfsm.sandbox.api_errors import (
    SandboxAPIError,
    bad_request,
    page_size,
    queue_full,
    rate_limited,
    server_error,
    unauthorized,
)
from batchfsm.sandbox.faults import Fault, FaultInjector
from batchfsm.sandbox.stats import RequestStats
from batchfsm.sandbox.world import World

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["CHUNK_BYTES", "SandboxApp"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""File contents are streamed in pieces of this size."""

_API_ROUTES = (
    ("POST", "/v1/files"),
    ("GET", "/v1/files/<file_id>"),
    ("GET", "/v1/files/<file_id>/content"),
    ("DELETE", "/v1/files/<file_id>"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches"),
    ("GET", "/v1/batches/<batch_id>"),
    ("POST", "/v1/batches/<batch_id>/cancel"),
    ("GET", RATE_LIMITS_ROUTE),
    ("GET", "/sandbox/stats"),
    ("POST", "/sandbox/advance"),
)


def _route_name(method: str, rule: str) -> str:
    # "GET /v1/batches/{batch_id}": the spelling used by stats and scripted faults.
    return f"{method} {rule.replace('<', '{').replace('>', '}')}"


_Handler = Callable[[Request, "Fault | None", dict[str, str]], Response]


class SandboxApp:
    """A WSGI callable serving one :class:`World`.

    :param world: the state; ``World(scenario, clock=..., time_scale=...)``.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.stats = RequestStats()
        self.faults = FaultInjector(world.scenario.faults, seed=world.scenario.seed)
        self._map = Map(
            [Rule(rule, methods=[m], endpoint=_route_name(m, rule)) for m, rule in _API_ROUTES],
            strict_slashes=False,
        )
        self._handlers: dict[str, _Handler] = {
            "POST /v1/files": self._upload_file,
            "GET /v1/files/{file_id}": self._get_file,
            "GET /v1/files/{file_id}/content": self._file_content,
            "DELETE /v1/files/{file_id}": self._delete_file,
            "POST /v1/batches": self._create_batch,
            "GET /v1/batches": self._list_batches,
            "GET /v1/batches/{batch_id}": self._retrieve_batch,
            "POST /v1/batches/{batch_id}/cancel": self._cancel_batch,
            _route_name("GET", RATE_LIMITS_ROUTE): self._rate_limits,
            "GET /sandbox/stats": self._stats,
            "POST /sandbox/advance": self._advance,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        finally:
            request.close()  # uploaded multipart parts are spooled temporary files
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        route = f"{request.method} (unmatched)"
        fault: Fault | None = None
        internal = False
        try:
            route, args = self._map.bind_to_environ(request.environ).match()
            internal = route.split(" ", 1)[1].startswith("/sandbox/")
            if not internal:
                _check_auth(request)
                fault = self.faults.decide(route)
                if fault == "rate_limit":
                    raise rate_limited()
                if fault == "server_error":
                    raise server_error()
                if fault in ("queue_full", "queue_full_429"):
                    raise queue_full(429 if fault == "queue_full_429" else 400)
            response = self._handlers[route](request, fault, dict(args))
        except (NotFound, MethodNotAllowed):
            response = _error_response(
                SandboxAPIError(404, f"Invalid URL ({request.method} {request.path})")
            )
        except SandboxAPIError as exc:
            response = _error_response(exc)
        except Exception:  # a sandbox bug must still answer in the API's shape
            logger.exception("sandbox handler failed on %s %s", request.method, request.path)
            response = _error_response(server_error())
        if not internal:
            self.stats.record(
                route=route, path=request.path, status=response.status_code, fault=fault
            )
        return response

    # -- /v1/files ---------------------------------------------------------------------

    def _upload_file(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        upload = request.files.get("file")
        if upload is None:
            raise bad_request("Missing required parameter: 'file'.", param="file")
        obj = self.world.upload_file(
            filename=upload.filename or "",
            content=upload.read(),
            purpose=request.form.get("purpose", ""),
        )
        return _json(obj)

    def _get_file(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        return _json(self.world.get_file(args["file_id"]).as_object())

    def _delete_file(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        # How a result file "expires" in a rehearsal: OpenAI deletes them after a while.
        self.world.delete_file(args["file_id"])
        return _json({"id": args["file_id"], "object": "file", "deleted": True})

    def _file_content(
        self, request: Request, fault: Fault | None, args: dict[str, str]
    ) -> Response:
        content = self.world.get_file(args["file_id"]).content
        if fault == "truncate":
            content = content[: self.faults.truncation_point(content)]
        response = Response(_chunks(content), mimetype="application/octet-stream")
        response.content_length = len(content)
        return response

    # -- /v1/batches -------------------------------------------------------------------

    def _create_batch(
        self, request: Request, fault: Fault | None, args: dict[str, str]
    ) -> Response:
        try:
            params = orjson.loads(request.get_data())
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            raise bad_request("We could not parse the JSON body of your request.")
        return _json(self.world.create_batch(params))

    def _retrieve_batch(
        self, request: Request, fault: Fault | None, args: dict[str, str]
    ) -> Response:
        return _json(self.world.retrieve_batch(args["batch_id"], stale=fault == "stale_read"))

    def _cancel_batch(
        self, request: Request, fault: Fault | None, args: dict[str, str]
    ) -> Response:
        return _json(self.world.cancel_batch(args["batch_id"]))

    def _list_batches(
        self, request: Request, fault: Fault | None, args: dict[str, str]
    ) -> Response:
        limit = page_size(request.args.get("limit", "20"))
        page = self.world.list_batches(
            after=request.args.get("after"), limit=limit, stale=fault == "stale_read"
        )
        return _json(page)

    # -- /v1/organization (the Administration API) -------------------------------------

    def _rate_limits(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        check_admin_key(request.headers.get("Authorization", ""))
        page = rate_limits_page(
            self.world.queue.limits,
            limit=request.args.get("limit"),
            after=request.args.get("after"),
        )
        return _json(page)

    # -- /sandbox ----------------------------------------------------------------------

    def _stats(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        return _json({**self.stats.snapshot(), "queue": self.world.queue.snapshot()})

    def _advance(self, request: Request, fault: Fault | None, args: dict[str, str]) -> Response:
        try:
            body = orjson.loads(request.get_data() or b"{}")
            seconds = float(body["seconds"])
            now = self.world.advance(seconds)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise bad_request('Expected {"seconds": N} with N >= 0.', param="seconds") from exc
        return _json({"now": now})


def _check_auth(request: Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def _error_response(exc: SandboxAPIError) -> Response:
    return _json(exc.body(), status=exc.status)


def _chunks(content: bytes) -> Iterator[bytes]:
    view = memoryview(content)
    for start in range(0, len(view), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])
