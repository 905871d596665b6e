"""Hostile answers and broken setups, met through the real CLI over HTTP (issue 11):
a revoked key, an unusable results folder, a crash inside ``submit``, a job id that
cannot be a file name. Each ends in one clear line and loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from batchfsm.config import Settings
from batchfsm.errors import AuthenticationFailedError
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.sandbox import SandboxApp, World, running_sandbox
from tests.cli.subprocess_cli import run_cli
from tests.e2e.conftest import TIME_SCALE, CliResult, Env
from tests.e2e.support import BATCHES_ROUTE, EMBEDDINGS, result_lines, write_input

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

REVOKED = "sk-revoked-0123456789abcdef"
POLL = ("poll", "--until-done", "--interval", "0.02", "--timeout", "20")


class RevokingSandbox(SandboxApp):
    """The sandbox, but some calls answer as OpenAI does for a key it no longer
    accepts: every call made with :data:`REVOKED` (401 ``invalid_api_key``), and, once
    ``files_forbidden`` is set, file downloads (403, a restricted key's missing scope)."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.refused = 0
        self.files_forbidden = False
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        answer = self._refusal(environ)
        if answer is None:
            return super().__call__(environ, start_response)
        with self._lock:
            self.refused += 1
        status, error = answer
        start_response(status, [("Content-Type", "application/json")])
        return [orjson.dumps({"error": error})]

    def _refusal(self, environ: WSGIEnvironment) -> tuple[str, dict[str, Any]] | None:
        if environ.get("HTTP_AUTHORIZATION") == f"Bearer {REVOKED}":
            return "401 Unauthorized", {
                "message": f"Incorrect API key provided: {REVOKED}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        path = str(environ.get("PATH_INFO", ""))
        if self.files_forbidden and path.startswith("/v1/files/") and path.endswith("/content"):
            return "403 Forbidden", {
                "message": "You have insufficient permissions for this operation. "
                "Missing scopes: api.files.read.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        return None


@pytest.fixture
def revoking(env: Env) -> Iterator[tuple[Env, RevokingSandbox]]:
    """``env``, its CLI pointed at a :class:`RevokingSandbox` instead."""
    app = RevokingSandbox(World(time_scale=TIME_SCALE))
    with running_sandbox(app=app) as sandbox, pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_BASE_URL", sandbox.base_url)
        yield Env(sandbox, env.workdir, env.store_url, env.results, env.cli), app


def _submit(env: Env, ids: list[str], *extra: str) -> dict[str, Any]:
    path = write_input(env.workdir / "requests.jsonl", ids)
    result = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--json", *extra)
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- a revoked key -------------------------------------------------------------------------


def test_a_revoked_key_ends_poll_with_exit_1_and_one_line(
    revoking: tuple[Env, RevokingSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, app = revoking
    _submit(env, ["a", "b", "c"], "--max-requests", "1")  # three batches
    monkeypatch.setenv("OPENAI_API_KEY", REVOKED)

    done = run_cli(*POLL, cwd=env.workdir)  # a child: its own logging, as a user sees it

    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert line.startswith("batchfsm: error: retrieve batch batch_")
    assert "HTTP 401 (invalid_api_key)" in line and "check OPENAI_API_KEY" in line
    assert REVOKED not in done.stderr + done.stdout  # scrubbed: sk-***
    assert app.refused == 1  # one call: no retry, no other batch, no second cycle


def test_submit_with_a_revoked_key_exits_1_and_a_good_key_resumes_it(
    revoking: tuple[Env, RevokingSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, app = revoking
    path = write_input(env.workdir / "requests.jsonl", ["a", "b"])
    argv = ("submit", str(path), "--endpoint", EMBEDDINGS)
    monkeypatch.setenv("OPENAI_API_KEY", REVOKED)

    refused = run_cli(*argv, cwd=env.workdir)

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "HTTP 401" in refused.stderr.strip().splitlines()[-1]
    assert app.refused == 1 and env.sandbox.stats.count() == 0  # the upload, refused once
    monkeypatch.setenv("OPENAI_API_KEY", "sk-a-good-key-again")
    again = env.cli(*argv, "--json")
    assert again.code == 0, again.err
    assert [b["requests"] for b in again.json()["batches"]] == [2]


def test_a_forbidden_download_ends_poll_and_leaves_the_harvest_owed(
    revoking: tuple[Env, RevokingSandbox],
) -> None:
    env, app = revoking
    _submit(env, ["a", "b"])
    app.files_forbidden = True

    failed = run_cli(*POLL, cwd=env.workdir)

    assert failed.returncode == 1
    assert "HTTP 403" in _one_line(failed.stderr)
    with SQLiteJobStore(env.store_url.removeprefix("sqlite:///")) as store:
        (record,) = store.list_batches()
        (owed,) = record.pending_effects
        assert owed.handler == "harvest" and owed.lease_owner is None  # released, not held
    app.files_forbidden = False
    assert env.cli(*POLL).code == 0  # the next run takes it at once and delivers
    assert len(result_lines(env.results)) == 2


def test_the_lambda_fails_loudly_on_a_revoked_key(revoking: tuple[Env, RevokingSandbox]) -> None:
    from batchfsm.aws.app import LambdaApp
    from batchfsm.gateway import OpenAIGateway
    from batchfsm.sandbox.testing import openai_client

    env, _app = revoking
    batch_id = _submit(env, ["a"])["batches"][0]["batch_id"]
    revoked = OpenAIGateway(openai_client(base_url=env.sandbox.base_url, api_key=REVOKED))
    settings = Settings(store_url=env.store_url, results_dir=env.results)
    app = LambdaApp(settings=settings, gateway=revoked)
    try:
        with pytest.raises(AuthenticationFailedError, match="HTTP 401"):
            app.handle({"batch_id": batch_id})
        with pytest.raises(AuthenticationFailedError, match="HTTP 401"):
            app.handle({})
    finally:
        app.close()


# -- an unusable results folder ------------------------------------------------------------


def test_an_unusable_results_folder_is_one_line_per_cycle_and_loses_nothing(env: Env) -> None:
    _submit(env, ["a", "b"], "--max-requests", "1")  # two batches of one job...
    _submit(env, ["c"], "--job-id", "second-job")  # ...and one of another
    env.results.write_text("a file where the results folder should be\n")

    for _cycle in range(2):
        done = run_cli("poll", "--once", cwd=env.workdir)
        assert done.returncode == 0, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1, done.stderr  # one cause, said once, for three batches
        assert f"cannot write results to {env.results}: Not a directory" in errors[0]
        assert "Traceback" not in done.stderr

    env.results.unlink()
    assert env.cli(*POLL).code == 0
    delivered = sorted(orjson.loads(line)["custom_id"] for line in result_lines(env.results))
    assert delivered == ["a", "b", "c"]


# -- a crash inside submit -----------------------------------------------------------------

CRASH_AFTER_CREATE = """
import os
from batchfsm.gateway import OpenAIGateway

_create = OpenAIGateway.create


def create(self, *args, **kwargs):
    _create(self, *args, **kwargs)
    os._exit(9)  # killed between the API's create and our own record of it


OpenAIGateway.create = create
"""


def test_submit_after_a_crash_adopts_the_batch_at_once(env: Env) -> None:
    path = write_input(env.workdir / "requests.jsonl", ["a", "b"])
    argv = ("submit", str(path), "--endpoint", EMBEDDINGS)

    crashed = run_cli(*argv, prelude=CRASH_AFTER_CREATE, cwd=env.workdir)
    assert crashed.returncode == 9, crashed.stderr
    assert env.sandbox.stats.count(BATCHES_ROUTE) == 1

    again: CliResult = env.cli(*argv, "--json")  # at once: no 300 s lease to wait out

    assert again.code == 0, again.err
    data = again.json()
    assert data["open_intents"] == []
    assert [b["requests"] for b in data["batches"]] == [2]
    assert env.sandbox.stats.count(BATCHES_ROUTE) == 1  # adopted, not created twice


# -- names that become paths ---------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["../../escape", "a/b", ".hidden"])
def test_a_job_id_that_cannot_be_a_file_name_costs_no_call(env: Env, job_id: str) -> None:
    path = write_input(env.workdir / "requests.jsonl", ["a"])
    result = env.cli("submit", str(path), "--endpoint", EMBEDDINGS, "--job-id", job_id)
    assert result.code == 2
    assert "cannot name a job" in _one_line(result.err)
    assert env.sandbox.stats.count() == 0
    assert not Path(env.store_url.removeprefix("sqlite:///")).exists()
