"""The DynamoDB test server as the tests see it: a moto server over real HTTP.

``scripts/ddb-server.sh`` starts it and exports ``BATCHFSM_TEST_DYNAMODB_URL``. Without
it these helpers make the test FAIL (never skip), saying how to start it, because a
silently skipped backend is a backend nobody tests.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.config import Config

from batchfsm.persistence import JobStore
from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SERVER_ENV = "BATCHFSM_TEST_DYNAMODB_URL"
HOW_TO_START = (
    "the DynamoDB test server is not running: run the tests with ./scripts/test.sh, or "
    "start it by hand with `. scripts/ddb-server.sh && ddb_start` (stop: `ddb_stop`)"
)


def server() -> tuple[str, str]:
    """(endpoint_url, region) of the running server; fails the test when there is none."""
    url = os.environ.get(SERVER_ENV, "")
    params = dict(parse_qsl(urlsplit(url).query))
    endpoint = params.get("endpoint_url")
    if not endpoint:
        pytest.fail(f"{SERVER_ENV} is not set: {HOW_TO_START}", pytrace=False)
    if not endpoint.startswith(("http://127.0.0.1:", "http://localhost:")):
        pytest.fail(f"{SERVER_ENV} must point at a local server, not {endpoint}", pytrace=False)
    return endpoint, params.get("region") or "us-east-1"


def client() -> DynamoDBClient:
    """A plain boto3 client on the test server with fake keys and no botocore retries,
    so a broken server fails fast instead of retrying."""
    endpoint, region = server()
    made: DynamoDBClient = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=region
    ).client(
        "dynamodb",
        endpoint_url=endpoint,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30),
    )
    try:
        made.list_tables(Limit=1)
    except Exception as exc:  # any failure here means "no usable server"
        pytest.fail(
            f"no DynamoDB server answers at {endpoint} ({exc}): {HOW_TO_START}", pytrace=False
        )
    return made


def unique_table(prefix: str = "batchfsm-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def fresh_store(table: str | None = None, **kwargs: object) -> Iterator[DynamoDBJobStore]:
    """A store on a new table (created by ``init``), dropped afterwards."""
    ddb = client()
    name = table or unique_table()
    store = DynamoDBJobStore(ddb, name, **kwargs)  # type: ignore[arg-type]
    store.init()
    try:
        yield store
    finally:
        store.close()
        with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
            ddb.delete_table(TableName=name)
        ddb.close()


@contextlib.contextmanager
def dynamodb_store(tmp_path: pathlib.Path) -> Iterator[JobStore]:
    """The contract suite's factory: an empty, initialised store on its own table."""
    with fresh_store() as store:
        yield store
