"""What a Lambda cold start builds, pinned in a fresh interpreter: one botocore session for
every client, only the clients the first poll needs, no table administration, and none
of the modules a poll never uses (``bench/bench_coldstart.py`` measures the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from batchfsm.config import ENV_VARS
from batchfsm.sandbox import Fate, Phases, Scenario
from tests.aws.conftest import Deployment

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

KEY_ENV, SECRET_ARN_ENV = ENV_VARS["openai_api_key"], ENV_VARS["openai_key_secret_arn"]

NEVER_ON_THE_POLL_PATH = (
    "boto3",
    "s3transfer",
    "batchfsm.handlers.harvest",
    "batchfsm.ledger.result_lines",
    "batchfsm.sandbox",
    "batchfsm.cli.main",
    "rich",
    "werkzeug",
    "flask",
    "moto",
    "graphviz",
    "sqlite3",
)
"""Modules a deployed poll must not import: boto3 (clients are botocore's), the terminal
handlers (a batch in progress needs none), the stand-ins, the CLI's, the diagram's and
the embedded store's."""

# The child observes botocore without changing it: it counts sessions, the clients made
# and every API operation sent, then answers one poll as the Lambda runtime would call it.
COLD_START = """
import json, sys
import botocore.client, botocore.session

sessions, clients, operations = [], [], []
init, create, call = (
    botocore.session.Session.__init__,
    botocore.session.Session.create_client,
    botocore.client.BaseClient._make_api_call,
)

def counted_init(self, *args, **kwargs):
    sessions.append(1)
    init(self, *args, **kwargs)

def counted_create(self, service_name, *args, **kwargs):
    clients.append(service_name)
    return create(self, service_name, *args, **kwargs)

def counted_call(self, operation, params):
    operations.append(operation)
    return call(self, operation, params)

botocore.session.Session.__init__ = counted_init
botocore.session.Session.create_client = counted_create
botocore.client.BaseClient._make_api_call = counted_call

from batchfsm.aws import lambda_handler

import gc
answer = lambda_handler({"batch_id": sys.argv[1]}, None)
loaded = [m for m in sys.argv[2:] if any(n == m or n.startswith(m + ".") for n in sys.modules)]
print(json.dumps({"answer": answer, "sessions": len(sessions), "clients": clients,
                  "operations": operations, "loaded": loaded, "gc_enabled": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}))
"""


def test_a_cold_start_builds_only_what_its_first_poll_needs(
    deploy: Any, secrets: SecretsManagerClient
) -> None:
    dep: Deployment = deploy(
        Scenario(default=Fate(phases=Phases(validating_s=60, in_progress_s=3600)))
    )
    dep.clock.set(datetime.now(UTC))  # the child polls on the real clock
    _job_id, (batch_id,) = dep.submit(["a", "b", "c"])
    dep.clock.advance(120)  # the API says in_progress; the store still says validating
    arn = secrets.create_secret(Name=f"cold-{batch_id}", SecretString="sk-cold-start-0000")["ARN"]
    env = {**os.environ, **dep.environ, SECRET_ARN_ENV: arn}
    env.pop(KEY_ENV)  # as deployed: the key comes from Secrets Manager

    out = subprocess.run(
        [sys.executable, "-c", COLD_START, batch_id, *NEVER_ON_THE_POLL_PATH],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])

    answer = seen["answer"]
    assert (answer["batch_id"], answer["status"], answer["error"]) == (
        batch_id,
        "in_progress",
        None,
    )
    assert answer["pending"] == 3
    # One session, so botocore reads its endpoint and partition data once. No S3 client:
    # nothing was written; results are the first thing that needs one.
    assert seen["sessions"] == 1
    assert sorted(seen["clients"]) == ["dynamodb", "secretsmanager"]
    # The key once, the record once, then the transition, its history and the watch it
    # owes in one write. No table administration, and no ledger read: a batch still in
    # progress has all its items pending, and its record says how many.
    assert seen["operations"] == ["GetSecretValue", "GetItem", "TransactWriteItems"]
    assert seen["loaded"] == []
    # The build ran with the collector paused; what it built is frozen (skipped by every
    # later collection), and the collector runs again for the invocations.
    assert seen["gc_enabled"] is True
    assert seen["frozen"] > 100_000


def test_with_the_key_in_the_environment_no_secrets_client_is_built(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=Phases(in_progress_s=3600))))
    _job_id, (batch_id,) = dep.submit(["a"])
    env = {**os.environ, **dep.environ}
    env.pop(SECRET_ARN_ENV, None)

    out = subprocess.run(
        [sys.executable, "-c", COLD_START, batch_id],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])

    assert seen["answer"]["batch_id"] == batch_id
    assert seen["clients"] == ["dynamodb"]
    assert "GetSecretValue" not in seen["operations"]
