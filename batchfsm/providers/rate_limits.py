"""A project's batch queue limits, read from OpenAI's Administration API.

``GET {base}/organization/projects/{project_id}/rate_limits`` with ``Authorization:
Bearer <admin key>`` (an *admin* key, ``sk-admin-...``: an ordinary API key is refused
with 401) lists one ``project.rate_limit`` object per model, a cursor page of them
(``limit``, default 100; ``after``; ``has_more``, ``first_id``, ``last_id``)::

    {"object": "list", "data": [{"object": "project.rate_limit", "id": "rl-gpt-4o-mini",
     "model": "gpt-4o-mini", "max_requests_per_1_minute": 500,
     "max_tokens_per_1_minute": 200000, "batch_1_day_max_input_tokens": 2000000}],
     "first_id": "rl-gpt-4o-mini", "last_id": "rl-gpt-4o-mini", "has_more": false}

Reference: https://platform.openai.com/docs/api-reference/project-rate-limits (the
``ProjectRateLimit`` schema). The batch queue limit is ``batch_1_day_max_input_tokens``
("the maximum batch input tokens per day. Only present for relevant models"), what the
limits page of the dashboard calls the *batch queue limit*. A row without it says
nothing about that model's queue: no budget comes from the API for it (never 0).

The official ``openai`` client does not wrap the Administration API, so the call is made
with ``httpx2`` (the HTTP client ``openai`` itself is built on), imported on call. The
admin key never reaches a message or a log record: the API's text is scrubbed of it
(and of anything shaped like a key), and no transport exception is chained (its request
carries the header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from batchfsm.errors import GatewayError, GatewayUnavailableError, gateway_error_for
from batchfsm.ledger.budget import ANY_MODEL

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "BATCH_QUEUE_FIELD",
    "DEFAULT_BASE_URL",
    "AdminApi",
    "ApiLimits",
    "Page",
    "parse_page",
    "scrub",
]

BATCH_QUEUE_FIELD = "batch_1_day_max_input_tokens"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PAGE_SIZE = 100
"""Rows asked for per page (the API's default and, for its other lists, maximum)."""
MAX_PAGES = 100
"""A server that says ``has_more`` for ever is not followed past this many pages."""
_SHOWN = 60
"""Characters of a bad value a problem repeats."""
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (and anything shaped like a key) masked."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("sk-***", text)


@dataclass(frozen=True, slots=True)
class Page:
    """One page as read: the limits it gives, what it says nothing about, what was bad."""

    limits: dict[str, int] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    """Models listed without ``batch_1_day_max_input_tokens``: no budget for them."""
    skipped: tuple[str, ...] = ()
    """One line per row that could not be used, saying why."""
    has_more: bool = False
    after: str | None = None
    """The cursor for the next page (``last_id``, else the last row's ``id``)."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _row(index: int, row: object) -> tuple[str, int | None] | str:
    """(model, tokens or None) from one row, or why it is skipped."""
    if not isinstance(row, dict):
        return f"row {index}: not an object ({_shown(row)})"
    model = row.get("model")
    if not isinstance(model, str) or not model.strip() or model.strip() == ANY_MODEL:
        return f"row {index}: no usable model ({_shown(model)})"
    tokens = row.get(BATCH_QUEUE_FIELD)
    if tokens is None:
        return model, None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        return (
            f"row {index} ({_shown(model)}): {BATCH_QUEUE_FIELD}={_shown(tokens)} is not "
            "a positive whole number"
        )
    return model, tokens


def parse_page(body: object) -> Page:
    """One page of the list, as decoded JSON. Bad rows are skipped and said; a model
    listed twice keeps its smaller limit.

    :raises GatewayError: ``body`` is not a list page (not an object, no ``data`` array).
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(data, list):
        raise GatewayError(f"the rate limits answer is not a list page ({_shown(body)})")
    limits: dict[str, int] = {}
    unknown: list[str] = []
    skipped: list[str] = []
    for index, row in enumerate(data):
        read = _row(index, row)
        if isinstance(read, str):
            skipped.append(read)
        elif read[1] is None:
            unknown.append(read[0])
        else:
            model, tokens = read[0], read[1]
            limits[model] = min(tokens, limits.get(model, tokens))
    has_more = body.get("has_more") is True
    after = body.get("last_id")
    if not isinstance(after, str) or not after:
        last = data[-1] if data and isinstance(data[-1], dict) else {}
        after = last.get("id") if isinstance(last.get("id"), str) and last.get("id") else None
    return Page(limits, tuple(unknown), tuple(skipped), has_more, after)


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Every page of one project's list, read."""

    limits: dict[str, int]
    unknown: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdminApi:
    """Where and with what key one project's rate limits are read (the key is a
    ``SecretStr``: this object's ``repr`` never shows it)."""

    admin_key: SecretStr
    project_id: str
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0

    @property
    def route(self) -> str:
        """The request as a message names it (no key in it)."""
        return f"GET /organization/projects/{self.project_id}/rate_limits"

    def read(self) -> ApiLimits:
        """Every page of the list (up to :data:`MAX_PAGES`), merged.

        :raises GatewayError: the API refused (:class:`AuthenticationFailedError` on
            401/403), could not be reached (:class:`GatewayUnavailableError`), or
            answered something that is not the list; the message never holds the key.
        """
        import httpx2

        secret = self.admin_key.get_secret_value()
        project = quote(self.project_id, safe="")
        url = f"{self.base_url.rstrip('/')}/organization/projects/{project}/rate_limits"
        limits: dict[str, int] = {}
        unknown: list[str] = []
        skipped: list[str] = []
        after: str | None = None
        headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
        with httpx2.Client(timeout=self.timeout, follow_redirects=False) as client:
            for _page in range(MAX_PAGES):
                params: dict[str, str | int] = {"limit": PAGE_SIZE}
                if after is not None:
                    params["after"] = after
                page = self._page(client, url, params, headers, secret)
                for model, tokens in page.limits.items():
                    limits[model] = min(tokens, limits.get(model, tokens))
                unknown += page.unknown
                skipped += page.skipped
                if not page.has_more:
                    break
                if page.after is None or page.after == after:
                    skipped.append("the list said has_more without a new cursor: not read further")
                    break
                after = page.after
            else:
                skipped.append(f"more than {MAX_PAGES} pages: not read further")
        without = tuple(m for m in dict.fromkeys(unknown) if m not in limits)
        return ApiLimits(limits, without, tuple(skipped))

    def _page(
        self,
        client: Any,
        url: str,
        params: dict[str, str | int],
        headers: dict[str, str],
        secret: str,
    ) -> Page:
        import httpx2
        import orjson

        try:
            response = client.get(url, params=params, headers=headers)
        except httpx2.HTTPError as exc:  # not chained: its request holds the header
            raise GatewayUnavailableError(
                f"{self.route}: cannot reach the API ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status != 200:
            detail = _error_detail(response.content, secret)
            kind = gateway_error_for(status)
            raise kind(f"{self.route}: HTTP {status}{detail}", status_code=status) from None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise GatewayError(f"{self.route}: the answer is not JSON") from None
        try:
            return parse_page(body)
        except GatewayError as exc:
            raise GatewayError(f"{self.route}: {scrub(str(exc), secret)}") from None


def _error_detail(content: bytes, secret: str) -> str:
    """`` (code): message`` from an error body, scrubbed of the key and shortened."""
    import orjson

    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    code, message = error.get("code") or error.get("type"), error.get("message")
    detail = f" ({code})" if isinstance(code, str) and code else ""
    if isinstance(message, str) and message:
        detail += f": {scrub(message, secret)[:300]}"  # scrubbed first: no half a key
    return scrub(detail, secret)
