"""A sandbox whose retrieve answers can be rewritten: a misbehaving provider, in tests.

:class:`RewritingApp` is the sandbox app with some batches' ``GET /v1/batches/{id}``
answers rewritten on the way out (after the world answered, so the batch still
progresses underneath): fields of the wrong type, an HTML page with status 200, or the
shapes other providers send. Used in process and over HTTP
(``running_sandbox(app=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from batchfsm.sandbox import SandboxApp, World

__all__ = ["HTML", "Rewrite", "RewritingApp", "first"]

Rewrite = Callable[[dict[str, Any]], dict[str, Any] | str]
_RETRIEVE = re.compile(r"/v1/batches/(?P<id>[^/]+)")
HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class RewritingApp(SandboxApp):
    """The sandbox, with the retrieve answers of the batches in ``rewrites`` rewritten:
    a dict goes out as JSON, a string as an HTML page, both with status 200."""

    rewrites: dict[str, Rewrite]

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.rewrites = {}
        self.rewritten = 0

    def _dispatch(self, request: Request) -> Response:
        response = super()._dispatch(request)
        match = _RETRIEVE.fullmatch(request.path)
        rewrite = self.rewrites.get(match["id"]) if match else None
        if request.method != "GET" or rewrite is None or response.status_code != 200:
            return response
        self.rewritten += 1
        answer = rewrite(orjson.loads(response.get_data()))
        if isinstance(answer, str):
            return Response(answer, status=200, mimetype="text/html")
        return Response(orjson.dumps(answer), status=200, mimetype="application/json")


def first(n: int, rewrite: Rewrite) -> Rewrite:
    """``rewrite`` for the first ``n`` answers, then the answer as it was."""
    seen = [0]

    def once(batch: dict[str, Any]) -> dict[str, Any] | str:
        seen[0] += 1
        return rewrite(batch) if seen[0] <= n else batch

    return once
