"""Provider dialects: the sandbox speaking Azure's, Groq's, Together's or OpenRouter's
version of the Batch API, so each provider profile is tested end to end with the
official client rather than against fixtures.

A :class:`DialectApp` is a :class:`~batchfsm.sandbox.app.SandboxApp` over the same
:class:`~batchfsm.sandbox.world.World` that translates on the way in (the provider's
URL shape, auth header, upload form, endpoint set) to the OpenAI wire the app serves,
and on the way out back to the provider's (status words, object and list shapes,
:mod:`batchfsm.sandbox.dialect_shapes`). Request stats and scripted faults see the
OpenAI route, as for the plain sandbox. These facts are written here independently of
:mod:`batchfsm.providers` on purpose: the sandbox stands in for the provider, so a
wrong profile fails against it instead of agreeing with itself.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

import orjson
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from batchfsm.sandbox.api_errors import SandboxAPIError, bad_request, not_found, unauthorized
from batchfsm.sandbox.app import SandboxApp
from batchfsm.sandbox.dialect_shapes import azure_batch, collapsed, together_batch
from batchfsm.sandbox.world import World

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["AZURE_API_VERSION", "DIALECTS", "Dialect", "DialectApp", "dialect_base_url"]

AZURE_API_VERSION = "2024-10-21"
"""An ``api-version`` Azure's batch API takes; any value is accepted, none is refused."""
_CHAT = "/v1/chat/completions"
_BATCH = re.compile(r"^/v1/batches(?:/(?P<id>[^/]+)(?P<cancel>/cancel)?)?$")
_UPLOADS = frozenset({("POST", "/v1/files"), ("POST", "/v1/files/upload")})
_FILE = re.compile(r"^/v1/files/(?P<id>[^/]+)(?P<content>/content)?$")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one provider's Batch API differs on the wire from OpenAI's."""

    name: str
    roots: tuple[str, ...] = ("/v1/",)
    """Where it serves the API; the first is the client's base path (``/v1/`` maps to it)."""
    base_path: str = "/v1"
    """What the client's base URL ends with (Azure's client adds ``/openai`` itself)."""
    api_version_root: str | None = None
    """Under this root, the ``api-version`` query parameter is required (Azure)."""
    key_header: str | None = None
    """A header that carries the key instead of ``Authorization: Bearer`` (Azure)."""
    endpoints: frozenset[str] | None = None
    """The batch endpoints it takes; None: the sandbox's."""
    shape: Literal["openai", "azure", "together"] = "openai"
    list_shape: Literal["page", "array", "collapsed"] = "page"
    upload_purpose: str = "batch"

    @property
    def plain(self) -> bool:
        """Whether this is OpenAI's wire exactly (nothing to translate)."""
        return self == Dialect(self.name)


DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {
        "openai": Dialect("openai"),
        "azure": Dialect(
            "azure",
            roots=("/openai/v1/", "/openai/"),
            base_path="",
            api_version_root="/openai/",
            key_header="api-key",
            shape="azure",
        ),
        "groq": Dialect(
            "groq", roots=("/openai/v1/",), base_path="/openai/v1", endpoints=frozenset({_CHAT})
        ),
        "together": Dialect(
            "together",
            endpoints=frozenset({_CHAT}),
            shape="together",
            list_shape="array",
            upload_purpose="batch-api",
        ),
        "openrouter": Dialect(
            "openrouter", roots=("/api/v1/",), base_path="/api/v1", list_shape="collapsed"
        ),
        "compatible": Dialect("compatible"),
    }
)


def dialect_base_url(root_url: str, dialect: Dialect | str) -> str:
    """The base URL a client of ``dialect`` uses, from the server's ``http://host:port``
    (for Azure: the endpoint, ``AZURE_OPENAI_ENDPOINT``)."""
    found = DIALECTS[dialect] if isinstance(dialect, str) else dialect
    return root_url.rstrip("/") + found.base_path


class DialectApp(SandboxApp):
    """A :class:`SandboxApp` speaking ``dialect`` (a name of :data:`DIALECTS`, or one)."""

    def __init__(self, world: World, dialect: Dialect | str = "openai") -> None:
        super().__init__(world)
        self.dialect = DIALECTS[dialect] if isinstance(dialect, str) else dialect
        self._empty_files: dict[str, str] = {}
        """Azure's zero-byte error files: file id -> batch id."""
        self._files_lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.dialect.plain:
            return super().__call__(environ, start_response)  # OpenAI's own wire
        try:
            inner = self._inbound(environ)
            path = inner.get("PATH_INFO", "")
            empty = self._empty_file(path) if inner.get("REQUEST_METHOD") == "GET" else None
            if empty is not None:
                return empty(environ, start_response)
            if path.startswith("/sandbox/") or path.endswith("/content"):
                return super().__call__(inner, start_response)  # streamed as it is
            response = Response.from_app(
                lambda env, start: SandboxApp.__call__(self, env, start), inner, buffered=True
            )
            return self._outbound(inner, response)(environ, start_response)
        except SandboxAPIError as exc:
            return _json(exc.body(), exc.status)(environ, start_response)

    # -- the way in --------------------------------------------------------------------

    def _inbound(self, environ: WSGIEnvironment) -> dict[str, Any]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/sandbox/"):
            return dict(environ)
        root = next((r for r in sorted(self.dialect.roots, key=len, reverse=True)
                     if path.startswith(r)), None)  # fmt: skip
        if root is None:
            raise not_found(f"Invalid URL ({environ.get('REQUEST_METHOD')} {path})")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if root == self.dialect.api_version_root and not query.get("api-version"):
            raise bad_request(
                "Missing required query parameter 'api-version'.", param="api-version"
            )
        inner = dict(environ)
        inner["PATH_INFO"] = "/v1/" + path[len(root) :]
        if inner["PATH_INFO"].startswith("/v1/organization/"):  # OpenAI's admin API only
            raise not_found(f"Invalid URL ({environ.get('REQUEST_METHOD')} {path})")
        self._auth(inner)
        route = (inner.get("REQUEST_METHOD"), inner["PATH_INFO"])
        if self.dialect.upload_purpose != "batch" and route in _UPLOADS:
            return self._upload(inner)
        if route == ("POST", "/v1/batches"):
            self._create(inner)
        if route == ("GET", "/v1/batches") and self.dialect.list_shape == "array":
            inner["QUERY_STRING"] = "limit=100"  # one bare array: the sandbox's newest 100
        return inner

    def _auth(self, inner: dict[str, Any]) -> None:
        header = self.dialect.key_header
        if header is None:
            return
        key = inner.pop("HTTP_" + header.upper().replace("-", "_"), "")
        if key.strip() and not inner.get("HTTP_AUTHORIZATION"):
            inner["HTTP_AUTHORIZATION"] = f"Bearer {key.strip()}"
        if not inner.get("HTTP_AUTHORIZATION"):
            raise unauthorized(
                "Access denied due to invalid subscription key or wrong API endpoint. Make "
                "sure to provide a valid key for an active subscription and use a correct "
                "regional API endpoint for your resource.",
                code="401",
            )

    def _upload(self, inner: dict[str, Any]) -> dict[str, Any]:
        """An upload in the provider's form, re-posted as OpenAI's ``POST /v1/files``."""
        wanted = self.dialect.upload_purpose
        request = Request(inner)
        purpose = request.form.get("purpose")
        if purpose != wanted:
            raise bad_request(
                f"Invalid purpose {purpose!r}: batch input files take purpose {wanted!r}.",
                param="purpose",
            )
        upload = request.files.get("file")
        name = request.form.get("file_name")
        if inner["PATH_INFO"] == "/v1/files/upload" and not name:
            raise bad_request("Missing required parameter: 'file_name'.", param="file_name")
        if upload is None:
            raise bad_request("Missing required parameter: 'file'.", param="file")
        form: dict[str, Any] = {
            "purpose": "batch",
            "file": (io.BytesIO(upload.read()), name or upload.filename),
        }
        request.close()
        builder = EnvironBuilder(
            path="/v1/files",
            method="POST",
            headers=[("Authorization", inner.get("HTTP_AUTHORIZATION", ""))],
            data=form,
        )
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def _create(self, inner: dict[str, Any]) -> None:
        """A create's body: its endpoint checked against the dialect's set, and Together's
        optional ``completion_window`` (it "defaults to 24h") filled in for the app."""
        length = int(inner.get("CONTENT_LENGTH") or 0)
        body = inner["wsgi.input"].read(length) if length else b""
        inner["wsgi.input"] = io.BytesIO(body)  # read again by the app
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # the app answers a body it cannot parse
        if not isinstance(params, dict):
            return
        if self.dialect.shape == "together" and "completion_window" not in params:
            body = orjson.dumps({**params, "completion_window": "24h"})
            inner["wsgi.input"], inner["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        endpoint, offered = params.get("endpoint"), self.dialect.endpoints
        if offered is not None and endpoint not in offered:
            raise bad_request(
                f"Invalid 'endpoint': {endpoint!r} is not supported for batches; supported: "
                + ", ".join(sorted(offered)),
                param="endpoint",
            )

    # -- the way out -------------------------------------------------------------------

    def _outbound(self, inner: Mapping[str, Any], response: Response) -> Response:
        if response.status_code >= 400 or response.mimetype != "application/json":
            return response
        path = inner.get("PATH_INFO", "")
        body = orjson.loads(response.get_data())
        batch = _BATCH.match(path)
        if batch is not None and batch["id"] is None and inner.get("REQUEST_METHOD") == "GET":
            body = self._listed(body)
        elif batch is not None:
            body = self._batch(body)
            if batch["id"] is None and self.dialect.shape == "together":
                body = {"job": body}  # create wraps the job
        elif path.startswith("/v1/files") and isinstance(body, dict):
            body = self._file(body)
        return _json(body, response.status_code)

    def _batch(self, obj: dict[str, Any]) -> dict[str, Any]:
        shape = self.dialect.shape
        if shape == "together":
            return together_batch(obj, file_size=self._size(obj.get("input_file_id")))
        if shape == "azure":
            empty = self._empty_for(obj["id"]) if obj.get("status") == "completed" else None
            return azure_batch(obj, empty_file_id=empty)
        return obj

    def _listed(self, page: dict[str, Any]) -> Any:
        items = [self._batch(item) for item in page.get("data", [])]
        if self.dialect.list_shape == "array":
            return items
        if self.dialect.list_shape == "collapsed":
            items = [collapsed(item) for item in items]
        return {**page, "data": items}

    def _file(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("purpose") == "batch" and self.dialect.upload_purpose != "batch":
            return {**obj, "purpose": self.dialect.upload_purpose}
        return obj

    def _size(self, file_id: object) -> int:
        try:
            return len(self.world.get_file(str(file_id)).content)
        except SandboxAPIError:
            return 0

    # -- Azure's empty error files ---------------------------------------------------------

    def _empty_for(self, batch_id: str) -> str:
        file_id = "file-" + batch_id.removeprefix("batch_") + "-errors"
        with self._files_lock:
            self._empty_files[file_id] = batch_id
        return file_id

    def _empty_file(self, path: str) -> Response | None:
        """The object or (empty) content of an Azure empty error file, answered here:
        the world holds no such file, so these reads are not in the request stats."""
        match = _FILE.match(path)
        if match is None:
            return None
        with self._files_lock:
            batch_id = self._empty_files.get(match["id"])
        if batch_id is None:
            return None
        if match["content"]:
            return Response(b"", mimetype="application/octet-stream")
        return _json({"id": match["id"], "object": "file", "bytes": 0, "created_at": 0,
                      "filename": f"{batch_id}_error.jsonl", "purpose": "batch_output",
                      "status": "processed"})  # fmt: skip


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")
