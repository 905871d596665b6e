"""The intake as a web application: WSGI (werkzeug) and ASGI, to mount anywhere.

Both are thin shells around :meth:`WebhookIntake.receive
<batchfsm.webhooks.intake.WebhookIntake.receive>`: they read the raw body (the
signature covers the exact bytes, so nothing may parse or re-encode it first) and the
headers, and send back its answer. Only ``POST`` to the one path is served; bodies
over :data:`MAX_BODY_BYTES` are refused (413) before they are read in full, since a
batch event is a few hundred bytes.

WSGI (gunicorn, uWSGI, werkzeug's server, mounted in Flask with
``DispatcherMiddleware``)::

    app = WebhookWSGIApp(intake, path="/webhooks/openai")

ASGI (uvicorn, hypercorn, mounted in Starlette/FastAPI)::

    app = WebhookASGIApp(intake, path="/webhooks/openai")

The ASGI app runs the intake's blocking store calls in a worker thread, so the event
loop is never held by a database write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.wrappers import Request, Response

from batchfsm.webhooks.intake import Answer, WebhookIntake
from batchfsm.webhooks.verify import MAX_BODY_BYTES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DEFAULT_PATH", "MAX_BODY_BYTES", "WebhookASGIApp", "WebhookWSGIApp"]

DEFAULT_PATH = "/webhooks/openai"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _fixed(status: int, error: str) -> Answer:
    return Answer(status, {"error": error})


def _route(method: str, path: str, expected: str) -> Answer | None:
    """The answer for a request that is not a delivery; None for one that is."""
    if path.rstrip("/") != expected.rstrip("/"):
        return _fixed(404, "not found")
    if method != "POST":
        return _fixed(405, "method not allowed")
    return None


class WebhookWSGIApp:
    """The intake as a WSGI callable."""

    def __init__(self, intake: WebhookIntake, *, path: str = DEFAULT_PATH) -> None:
        self.intake = intake
        self.path = path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        answer = _route(request.method, request.path, self.path)
        if answer is None:
            length = request.content_length
            if length is not None and length > MAX_BODY_BYTES:
                answer = _fixed(413, "body too large")
            else:
                body = request.get_data(cache=False)
                if len(body) > MAX_BODY_BYTES:
                    answer = _fixed(413, "body too large")
                else:
                    answer = self.intake.receive(body, dict(request.headers.items()))
        response = Response(
            orjson.dumps(answer.body), status=answer.status, mimetype="application/json"
        )
        if answer.status == 405:
            response.headers["Allow"] = "POST"
        return response(environ, start_response)


class WebhookASGIApp:
    """The intake as an ASGI 3 application (``http`` and ``lifespan`` scopes)."""

    def __init__(self, intake: WebhookIntake, *, path: str = DEFAULT_PATH) -> None:
        self.intake = intake
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(self.intake, receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope {scope['type']!r}")
        answer = _route(scope["method"], scope["path"], self.path)
        if answer is None:
            body = await _read_body(receive)
            if body is None:
                answer = _fixed(413, "body too large")
            else:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                answer = await asyncio.to_thread(self.intake.receive, body, headers)
        payload = orjson.dumps(answer.body)
        head = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if answer.status == 405:
            head.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": answer.status, "headers": head})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None once it exceeds :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(intake: WebhookIntake, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(intake.close)
            await send({"type": "lifespan.shutdown.complete"})
            return
