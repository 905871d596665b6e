"""Real parts for the AWS tests: moto's server (DynamoDB, S3 and Secrets Manager over
HTTP, started by ``scripts/test.sh``), the sandbox over HTTP, and a :class:`LambdaApp`
configured only through environment variables, as a deployed function is.

A missing server fails the test (see ``tests/persistence/dynamodb_server.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from batchfsm.aws.app import LambdaApp
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Scenario
from batchfsm.sandbox.server import RunningSandbox, running_sandbox
from batchfsm.sandbox.testing import batch_input
from tests.persistence.dynamodb_server import fresh_store, server

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

EMBEDDINGS = "/v1/embeddings"


def aws_client(service: str) -> Any:
    endpoint, region = server()
    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=region
    ).client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30),
    )


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every boto3 client of this process at the moto server; returns its URL."""
    endpoint, region = server()
    for service in ("DYNAMODB", "S3", "SECRETS_MANAGER"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return endpoint


@pytest.fixture
def s3() -> S3Client:
    client: S3Client = aws_client("s3")
    return client


@pytest.fixture
def secrets() -> SecretsManagerClient:
    client: SecretsManagerClient = aws_client("secretsmanager")
    return client


@pytest.fixture
def bucket(s3: S3Client) -> Iterator[str]:
    name = f"batchfsm-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def table(aws_env: str) -> Iterator[str]:
    """A fresh, initialised batchfsm table (CloudFormation creates it in production)."""
    with fresh_store() as store:
        yield store.table


@dataclass
class Deployment:
    """One "deployed" function: its environment, its container, the sandbox it talks to."""

    app: LambdaApp
    clock: FrozenClock
    sandbox: RunningSandbox
    environ: dict[str, str]
    bucket: str
    tmp: Path

    def submit(self, custom_ids: list[str], **metadata: str) -> tuple[str, list[str]]:
        """Submit a job the way the CLI would, on the function's own store."""
        from batchfsm.jobs.submit import submit_job

        path = self.tmp / f"in-{uuid.uuid4().hex[:8]}.jsonl"
        path.write_bytes(batch_input(custom_ids))
        result = submit_job(self.app.runtime.tracker, path, EMBEDDINGS, metadata=metadata)
        return result.job.job_id, result.launched


@pytest.fixture
def deploy(aws_env: str, table: str, bucket: str, tmp_path: Path) -> Iterator[Any]:
    """``deploy(scenario, **env)`` -> a :class:`Deployment`; everything torn down after."""
    stack: list[Any] = []

    def make(scenario: Scenario | None = None, **env: str) -> Deployment:
        clock = FrozenClock()
        context = running_sandbox(scenario or Scenario(), clock=clock)
        running = context.__enter__()
        stack.append(context)
        environ = {
            "BATCHFSM_TABLE": table,
            "BATCHFSM_RESULTS": f"s3://{bucket}/runs/test",
            "BATCHFSM_WORKDIR": str(tmp_path / "work"),
            "OPENAI_API_KEY": "sk-test-not-a-real-key-0000",
            "OPENAI_BASE_URL": running.base_url,
            **env,
        }
        app = LambdaApp(environ, clock=clock)
        stack.append(app)
        return Deployment(app, clock, running, environ, bucket, tmp_path)

    yield make
    for item in reversed(stack):
        if isinstance(item, LambdaApp):
            item.close()
        else:
            item.__exit__(None, None, None)
