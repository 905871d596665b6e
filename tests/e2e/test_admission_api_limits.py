"""Queue limits read from the Administration API, end to end: the real CLI, a sandbox
over HTTP, and no explicit limit anywhere (no ``--queue-limit``, no
``BATCHFSM_QUEUE_LIMITS``): only an admin key and a project id.

The sandbox enforces an enqueued-token limit that fits one job and a half, and serves
it as the project's ``batch_1_day_max_input_tokens``. Its time all but stands still
(batches stay ``validating``) until the test moves it, so what is in the queue does not
depend on how fast the machine is. What must hold: ``submit`` queues what does not fit,
``poll`` sends it as batches end, nothing is refused ``token_limit_exceeded``, the queue
never passes the limit, every request is delivered once. And when the endpoint fails,
submit goes on, saying so once, without the key.
"""

from __future__ import annotations

import logging
from collections import Counter

import orjson
import pytest

from batchfsm.ledger.tokens import count_line
from batchfsm.sandbox import Scenario
from batchfsm.sandbox.testing import batch_input
from tests.e2e.conftest import Env
from tests.e2e.support import EMBEDDINGS, result_lines, write_input

MODEL = "text-embedding-3-small"
RATE_LIMITS = "GET /v1/organization/projects/{project_id}/rate_limits"
ADMIN_KEY = "sk-admin-sandbox-0123456789abcdef"
JOBS, PER_JOB = 4, 10


def _ids(job: int) -> list[str]:
    return [f"job{job}-req{i}" for i in range(PER_JOB)]


JOB_TOKENS = sum(count_line(line, EMBEDDINGS) for line in batch_input(_ids(0)).splitlines())
LIMIT = JOB_TOKENS + JOB_TOKENS // 2


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(queue_limits={MODEL: LIMIT})


@pytest.fixture
def time_scale() -> float:
    return 1e-6  # a sandbox second per 11 real days: only ``_advance`` moves batches


def _advance(env: Env) -> None:
    env.sandbox.world.advance(3600)  # every batch sent so far ends


@pytest.fixture
def admin(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("BATCHFSM_QUEUE_LIMITS", raising=False)
    monkeypatch.setenv("BATCHFSM_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("BATCHFSM_PROJECT_ID", "proj_sandbox")
    return env


def _queued(env: Env) -> int:
    result = env.cli("items", "--state", "queued", "--json")
    assert result.code == 0, result.err
    return len(result.json()["items"])


def test_submit_and_poll_keep_to_the_projects_queue_limit(admin: Env) -> None:
    limits = admin.cli("provider", "limits", "--json")
    assert limits.code == 0, limits.err
    assert limits.json()["limits"] == [
        {"model": MODEL, "tokens": LIMIT, "source": "api", "api_tokens": LIMIT}
    ]
    for job in range(JOBS):
        path = write_input(admin.workdir / f"in-{job}.jsonl", _ids(job))
        submitted = admin.cli("submit", str(path), "--endpoint", EMBEDDINGS)
        assert submitted.code == 0, submitted.err
    assert _queued(admin) >= (JOBS - 2) * PER_JOB  # the rest waits for room

    for _round in range(JOBS * 2):
        _advance(admin)
        poll = admin.cli("poll", "--once", "--json")
        assert poll.code == 0, poll.err
        if poll.json()["done"]:
            break

    assert poll.json()["done"] and _queued(admin) == 0
    delivered = Counter(orjson.loads(line)["custom_id"] for line in result_lines(admin.results))
    assert set(delivered.values()) == {1} and len(delivered) == JOBS * PER_JOB
    world = admin.sandbox.world
    assert LIMIT // 2 <= world.queue.snapshot()["peak"][MODEL] <= LIMIT
    refused = [
        b for b in world.batch_ids() if (world.retrieve_batch(b).get("errors") or {}).get("data")
    ]
    assert refused == []
    stats = admin.sandbox.stats
    assert stats.count(RATE_LIMITS, status=200) >= 2  # read by submit and by poll
    assert stats.count(RATE_LIMITS) == stats.count(RATE_LIMITS, status=200)


def test_an_explicit_limit_wins_over_the_api(admin: Env) -> None:
    result = admin.cli("provider", "limits", "--queue-limit", f"{MODEL}=7", "--json")
    assert result.code == 0, result.err
    assert result.json()["limits"] == [
        {"model": MODEL, "tokens": 7, "source": "flag", "api_tokens": LIMIT}
    ]


def test_a_failed_read_warns_once_without_the_key_and_submit_goes_on(
    admin: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-proj-NotAnAdminKey-DoNotLeak-98765"  # an ordinary key: the API says 401
    monkeypatch.setenv("BATCHFSM_ADMIN_KEY", key)
    caplog.set_level(logging.DEBUG)
    path = write_input(admin.workdir / "small.jsonl", ["a", "b"])

    submit = admin.cli("-vv", "submit", str(path), "--endpoint", EMBEDDINGS, "--json")
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    _advance(admin)
    outputs = [submit, admin.cli("-vv", "poll", "--once"), admin.cli("-vv", "provider", "limits")]

    _submit, poll, limits = outputs
    assert submit.code == 0 and poll.code == 0, submit.err + poll.err
    assert len(submit.json()["batches"]) == 1  # sent without a budget, not stopped
    assert len(warned) == 1 and "HTTP 401" in warned[0], warned
    assert "explicit limits only" in warned[0]
    assert limits.code == 1 and "cannot be read" in limits.out
    assert admin.sandbox.stats.count(RATE_LIMITS, status=401) == 3  # once per command
    for text in [*(o.out + o.err for o in outputs), caplog.text]:
        assert key not in text and key[-8:] not in text
    for file in admin.workdir.rglob("*"):
        if file.is_file():
            assert key.encode() not in file.read_bytes(), file
