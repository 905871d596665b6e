"""``batchfsm.aws.lambda_handler`` as Lambda runs it: configured by environment variables
only, one app per container, the key fetched once from Secrets Manager and never shown."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from batchfsm import aws
from batchfsm.aws.contract import CONTRACT_FIELDS
from batchfsm.aws.secrets import resolve_api_key
from batchfsm.config import ConfigError, Settings
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.server import running_sandbox
from tests.aws.conftest import Deployment

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

KEY = "sk-live-this-must-never-be-printed-1234567890"
ONE_BATCH_KEYS = {
    "batch_id",
    "job_id",
    "status",
    "action",
    "request_counts",
    "succeeded",
    "retry",
    "failed",
    "pending",
    "next_poll_seconds",
    "poll_at",
    "deadline",
    "deadline_near",
    "retry_job_ids",
    "lost",
    "cancel_requested",
    "error",
}


@pytest.fixture
def container() -> Iterator[None]:
    aws.reset_container()
    yield
    aws.reset_container()


def test_the_handler_reads_its_key_from_secrets_manager_once_per_container(
    aws_env: str,
    table: str,
    bucket: str,
    secrets: SecretsManagerClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    container: None,
) -> None:
    arn = secrets.create_secret(
        Name=f"batchfsm-{table}", SecretString=json.dumps({"OPENAI_API_KEY": KEY})
    )["ARN"]
    scenario = Scenario(default=Fate(phases=Phases(in_progress_s=600)))
    with running_sandbox(scenario) as sandbox:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        for name, value in {
            "BATCHFSM_TABLE": table,
            "BATCHFSM_RESULTS": f"s3://{bucket}/prod",
            "BATCHFSM_OPENAI_KEY_SECRET_ARN": arn,
            "BATCHFSM_WORKDIR": str(tmp_path),
            "OPENAI_BASE_URL": sandbox.base_url,
        }.items():
            monkeypatch.setenv(name, value)
        caplog.set_level(logging.DEBUG)

        first = aws.lambda_handler({}, None)
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        second = aws.lambda_handler({}, None)  # a warm container: no second fetch

    assert first["action"] == second["action"] == "process_results"  # nothing tracked yet
    assert first["batches"] == [] and first["batches_total"] == 0
    assert set(CONTRACT_FIELDS) <= set(first)
    shown = caplog.text + json.dumps([first, second])
    assert KEY not in shown and KEY[:12] not in shown


def test_one_batch_answers_with_every_documented_field(deploy: Any) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=Phases(in_progress_s=3600))))
    job_id, (batch_id,) = dep.submit(["a", "b", "c"])

    waiting = dep.app.handle({"batch_id": batch_id})
    assert set(waiting) == ONE_BATCH_KEYS
    assert waiting["status"] == "validating" and waiting["action"] == "wait"
    assert waiting["next_poll_seconds"] == 30 and waiting["poll_at"].endswith("Z")
    assert waiting["pending"] == 3 and waiting["job_id"] == job_id

    dep.clock.advance(2 * 3600)
    done = dep.app.handle({"batch_id": batch_id})
    assert (done["status"], done["action"], done["next_poll_seconds"]) == (
        "completed",
        "process_results",
        0,
    )
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert (done["succeeded"], done["retry"], done["failed"]) == (3, 0, 0)
    assert json.loads(json.dumps(done)) == done

    job = dep.app.handle({"job_id": job_id})
    assert set(CONTRACT_FIELDS) <= set(job)
    assert job["action"] == "process_results" and job["succeeded"] == 3
    assert [b["batch_id"] for b in job["batches"]] == [batch_id]


def test_a_record_that_does_not_know_its_item_count_is_counted_from_the_ledger(
    deploy: Any,
) -> None:
    dep: Deployment = deploy(Scenario(default=Fate(phases=Phases(in_progress_s=3600))))
    _job_id, (batch_id,) = dep.submit(["a", "b", "c", "d"])
    store = dep.app.runtime.store
    known = dep.app.handle({"batch_id": batch_id})
    record = store.load(batch_id)
    assert record.items == 4
    # As recorded before records kept their item count:
    store.commit(record.model_copy(update={"items": None}), expected_version=record.version)
    counted = dep.app.handle({"batch_id": batch_id})
    assert (known["status"], known["pending"]) == (counted["status"], counted["pending"])
    assert counted["pending"] == 4 and counted["succeeded"] == counted["retry"] == 0


def test_results_can_go_to_a_directory_instead_of_s3(deploy: Any, tmp_path: Path) -> None:
    dep: Deployment = deploy(BATCHFSM_RESULTS=str(tmp_path / "results"))
    job_id, (batch_id,) = dep.submit(["a", "b"])
    dep.clock.advance(3600)

    assert dep.app.handle({"batch_id": batch_id})["succeeded"] == 2
    assert (tmp_path / "results" / job_id / f"{batch_id}.jsonl").read_text().count("\n") == 2


def test_a_secret_without_a_key_is_a_clear_error(secrets: SecretsManagerClient) -> None:
    arn = secrets.create_secret(Name="batchfsm-empty-json", SecretString='{"other": "x"}')["ARN"]
    env = {"BATCHFSM_OPENAI_KEY_SECRET_ARN": arn}
    with pytest.raises(ConfigError, match="OPENAI_API_KEY or api_key"):
        resolve_api_key(Settings.from_env(env), client=secrets)
    missing = arn + "-gone"
    with pytest.raises(ConfigError, match="ResourceNotFoundException") as info:
        resolve_api_key(
            Settings.from_env({"BATCHFSM_OPENAI_KEY_SECRET_ARN": missing}), client=secrets
        )
    assert missing in str(info.value)
    with pytest.raises(ConfigError, match="BATCHFSM_OPENAI_KEY_SECRET_ARN"):
        resolve_api_key(Settings.from_env({}))


def test_a_bare_secret_string_is_the_key(secrets: SecretsManagerClient) -> None:
    arn = secrets.create_secret(Name="batchfsm-bare", SecretString=f"  {KEY}\n")["ARN"]
    env = Settings.from_env({"BATCHFSM_OPENAI_KEY_SECRET_ARN": arn})
    assert resolve_api_key(env, client=secrets) == KEY
    # The environment wins, so a local run needs no AWS at all.
    local = Settings.from_env({"OPENAI_API_KEY": "sk-env"})
    assert resolve_api_key(local, client=None) == "sk-env"


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    both = aws.LambdaApp(
        {"BATCHFSM_STORE": "memory://", "BATCHFSM_TABLE": "t", "OPENAI_API_KEY": "sk-x"}
    )
    with pytest.raises(ConfigError, match="BATCHFSM_STORE or BATCHFSM_TABLE"):
        both.handle({})
    backoff = aws.LambdaApp({"BATCHFSM_RETRY_BACKOFF_BASE": "soon"})
    with pytest.raises(ConfigError, match="BATCHFSM_RETRY_BACKOFF_BASE"):
        backoff.backoff()


def test_the_settings_are_parsed_once_or_taken_ready_made(tmp_path: Path) -> None:
    app = aws.LambdaApp({"BATCHFSM_TABLE": "jobs", "BATCHFSM_RETRY_BACKOFF_CAP": "90"})
    assert app.settings is app.settings
    assert app.settings.store_url == "dynamodb://jobs"  # the table, as a store URL
    assert app.backoff().cap == 90.0
    ready = Settings.from_env({"BATCHFSM_STORE": "memory://", "BATCHFSM_RETRY_BACKOFF_BASE": "5"})
    given = aws.LambdaApp({"BATCHFSM_RETRY_BACKOFF_BASE": "soon"}, settings=ready)
    assert given.settings is ready  # the mapping is not read at all
    assert given.backoff().base == 5.0
    both = aws.LambdaApp(settings=Settings(store_url="memory://", table="jobs"))
    with pytest.raises(ConfigError, match="BATCHFSM_STORE or BATCHFSM_TABLE"):
        both.settings  # noqa: B018


def test_a_cold_start_whose_build_fails_says_why_and_the_next_invocation_builds(
    aws_env: str,
    secrets: SecretsManagerClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    container: None,
) -> None:
    name = f"batchfsm-late-{tmp_path.name}"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for variable, value in {
        "BATCHFSM_STORE": "memory://",
        "BATCHFSM_OPENAI_KEY_SECRET_ARN": name,
        "BATCHFSM_WORKDIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(variable, value)
    collecting: list[bool] = []
    build = aws.LambdaApp._build

    def observed_build(app: aws.LambdaApp) -> Any:
        collecting.append(gc.isenabled())
        return build(app)

    monkeypatch.setattr(aws.LambdaApp, "_build", observed_build)
    try:
        with pytest.raises(ConfigError, match="ResourceNotFoundException"):
            aws.lambda_handler({}, None)  # the secret is not there yet
        assert gc.isenabled()
        secrets.create_secret(Name=name, SecretString=KEY)
        answer = aws.lambda_handler({}, None)  # same container: it builds now
        assert (answer["action"], answer["batches_total"]) == ("process_results", 0)
        assert collecting == [False, False]  # both builds ran with the collector paused
        assert gc.isenabled()
    finally:
        gc.unfreeze()  # this is a test process, not a function's container


def test_the_collector_is_paused_for_a_build_and_back_after_it_even_when_it_fails() -> None:
    seen: list[bool] = []

    def failing_build() -> None:
        seen.append(gc.isenabled())
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle, kept (frozen), not collected mid-build
        raise ConfigError("set OPENAI_API_KEY or BATCHFSM_OPENAI_KEY_SECRET_ARN")

    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with pytest.raises(ConfigError), aws.collector_paused():
            failing_build()
        assert seen == [False]
        assert gc.isenabled()
        assert gc.get_freeze_count() > before
        gc.disable()
        with aws.collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()
        gc.unfreeze()  # this is a test process, not a function's container


def test_importing_the_entry_point_builds_nothing() -> None:
    code = (
        "import sys, batchfsm.aws.lambda_app as a\n"
        "from batchfsm.fsm.engine import rulebook\n"
        "heavy = {'boto3', 'botocore', 'openai', 'httpx2', 'sqlite3', 'werkzeug', 'flask',\n"
        "         'moto', 'rich', 'graphviz', 'batchfsm.sandbox', 'batchfsm.wiring'}\n"
        "print(sorted(heavy & set(sys.modules)), a._CONTAINER, rulebook.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[] {} 0"


def test_a_store_of_another_kind_works_too(tmp_path: Path) -> None:
    """memory:// with the sandbox: the handler is not tied to DynamoDB."""
    with running_sandbox(Scenario()) as sandbox:
        app = aws.LambdaApp(
            {
                "BATCHFSM_STORE": "memory://",
                "BATCHFSM_RESULTS": str(tmp_path / "r"),
                "BATCHFSM_WORKDIR": str(tmp_path / "w"),
                "OPENAI_API_KEY": "sk-x",
                "OPENAI_BASE_URL": sandbox.base_url,
            }
        )
        try:
            answer: dict[str, Any] = app.handle(None)
        finally:
            app.close()
    assert answer["action"] == "process_results" and answer["batches"] == []
