"""``dynamodb://`` store URLs: what they may say, how they are shown, the client they build.

``dynamodb://TABLE?region=R&endpoint_url=URL&ttl_days=N`` (all optional but the table).
Credentials come from botocore's usual chain, never from the URL; a URL is printed and
stored only in its :func:`redacted` form, so a secret pasted into one (userinfo in the
endpoint, an unknown key) never reaches a log or an error.

Kept apart from :mod:`batchfsm.persistence.dynamodb.store` because it is configuration, not
data access: the store itself takes a ready client, as tests and Lambda handlers do.
botocore is imported in :func:`build_client` only, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from batchfsm.errors import StoreURLError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from batchfsm.persistence.botocore_clients import AnySession

URL_PARAMS = frozenset({"region", "endpoint_url", "ttl_days"})
"""The query parameters a ``dynamodb://`` URL may carry; any other is refused."""


@dataclass(frozen=True)
class DynamoDBURL:
    """A checked ``dynamodb://`` URL; ``None`` leaves a setting to botocore's defaults."""

    table: str
    region: str | None
    endpoint_url: str | None
    ttl_days: float | None
    redacted: str
    """The URL as it may be shown (see :func:`redacted`)."""


def parse_dynamodb_url(url: str) -> DynamoDBURL:
    """Check ``url`` and split it into its settings; StoreURLError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "dynamodb" or not parts.netloc or "@" in parts.netloc:
        raise StoreURLError(f"not a dynamodb://TABLE URL: {redacted(url)}")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(params) - URL_PARAMS
    if unknown:
        raise StoreURLError(
            f"dynamodb:// URL: unknown parameter(s) {sorted(unknown)}; known: {sorted(URL_PARAMS)}"
        )
    try:
        ttl_days = float(params["ttl_days"]) if params.get("ttl_days") else None
    except ValueError as exc:
        raise StoreURLError(
            f"dynamodb:// URL: ttl_days={params['ttl_days']!r} is not a number"
        ) from exc
    return DynamoDBURL(
        table=parts.netloc,
        region=params.get("region") or None,
        endpoint_url=params.get("endpoint_url") or None,
        ttl_days=ttl_days,
        redacted=redacted(url),
    )


def build_client(url: DynamoDBURL, session: AnySession | None = None) -> DynamoDBClient:
    """A low-level DynamoDB client for ``url``, on ``session`` (a botocore or boto3
    session; default: a new botocore one, see :mod:`batchfsm.persistence.botocore_clients`).

    A Lambda container passes the session its other clients share: botocore then reads
    its endpoint and partition data once, not once per client (cold start).
    """
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    from batchfsm.persistence.botocore_clients import make_client

    # All retries are the store's (backoff with jitter in DynamoCalls), so botocore's
    # are off.
    try:
        client: DynamoDBClient = make_client(
            "dynamodb",
            session,
            region_name=url.region,
            endpoint_url=url.endpoint_url,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=20,
            ),
        )
    except NoRegionError:  # bad input, said in one line rather than botocore's traceback
        raise StoreURLError(
            f"{url.redacted}: no AWS region: add ?region=... or set AWS_REGION"
        ) from None
    return client


def redacted(url: str) -> str:
    """The URL without anything secret-looking (userinfo in the endpoint, unknown keys)."""
    parts = urlsplit(url)
    params = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "endpoint_url":
            inner = urlsplit(value)
            host = inner.hostname or ""
            netloc = f"{host}:{inner.port}" if inner.port else host
            params.append((key, urlunsplit((inner.scheme, netloc, inner.path, "", ""))))
        else:
            params.append((key, value if key in URL_PARAMS else "***"))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(params, safe=":/"), ""))
