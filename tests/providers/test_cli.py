"""``--provider`` and ``batchfsm sandbox --dialect`` through ``batchfsm.cli.main.main``:
a Together job run from the command line against the Together dialect, an endpoint the
provider does not take refused before anything is sent, a bad ``BATCHFSM_PROVIDER``
named, and the sandbox's printed instructions working for ``AzureOpenAI``."""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import openai
import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.cli.sandbox import add_parser, serve_command
from batchfsm.sandbox import Fate, RunningSandbox, Scenario, World, running_sandbox
from batchfsm.sandbox.dialects import DialectApp
from batchfsm.sandbox.testing import batch_input
from tests.providers.test_end_to_end import point_at

CHAT: Final = "/v1/chat/completions"
TIME_SCALE = 250_000.0
SCENARIO = Scenario(seed=3, by_order=(Fate(failure_rate=0.4, failure_codes=(500,)),))


@pytest.fixture
def together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSandbox]:
    app = DialectApp(World(SCENARIO, time_scale=TIME_SCALE), "together")
    with running_sandbox(app=app) as sandbox:
        point_at(monkeypatch, sandbox, "together")
        monkeypatch.delenv("BATCHFSM_PROVIDER")  # given as --provider instead
        monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("BATCHFSM_RESULTS_DIR", str(tmp_path / "results"))
        monkeypatch.chdir(tmp_path)
        yield sandbox


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_together_job_from_the_command_line(
    tmp_path: Path, together: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input([f"r{i}" for i in range(10)], endpoint=CHAT, model="llama"))

    code, out, err = _cli(
        capsys, "submit", str(path), "--endpoint", CHAT, "--provider", "together", "--json"
    )
    assert code == 0, err
    job_id = orjson.loads(out)["job"]["job_id"]
    code, out, err = _cli(
        capsys, "poll", "--until-done", "--auto-retry", "--interval", "0.02", "--timeout", "20",
        "--provider", "together", "--json",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _cli(capsys, "items", "--job", job_id, "--json")
    items: list[dict[str, Any]] = orjson.loads(out)["items"]
    assert {i["state"] for i in items} == {"succeeded"} and len(items) == 10
    code, out, err = _cli(capsys, "status", "--json")
    batches = orjson.loads(out)["batches"]
    assert [b["state"] for b in batches] == ["completed", "completed"]
    assert together.stats.count("POST /v1/batches") == 2


def test_without_the_together_profile_the_upload_is_refused_before_any_batch(
    tmp_path: Path, together: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same sandbox read with OpenAI's profile: the upload is refused (wrong
    purpose) before any batch exists, so the profile is what makes Together work."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input(["a"], endpoint=CHAT))
    code, _, err = _cli(capsys, "submit", str(path), "--endpoint", CHAT, "--provider", "openai")
    assert code == 1
    assert "purpose 'batch-api'" in err
    assert together.stats.count("POST /v1/batches") == 0


def test_an_endpoint_the_provider_does_not_take_is_refused_before_any_call(
    tmp_path: Path, together: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input(["a"]))
    code, _, err = _cli(
        capsys, "submit", str(path), "--endpoint", "/v1/embeddings", "--provider", "groq"
    )
    assert code == 2
    assert "Groq (groq) takes no batches for /v1/embeddings" in err
    assert together.stats.count() == 0
    assert not (tmp_path / "store.db").exists()


def test_a_bad_provider_variable_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHFSM_PROVIDER", "mistral")
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input(["a"]))
    code, _, err = _cli(capsys, "submit", str(path), "--endpoint", "/v1/embeddings")
    assert code != 0
    assert "BATCHFSM_PROVIDER='mistral'" in err
    with pytest.raises(SystemExit):
        main(["poll", "--provider", "mistral"])
    assert "invalid choice: 'mistral'" in capsys.readouterr().err


def test_the_sandbox_s_azure_instructions_work_for_azure_openai(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["sandbox", "--dialect", "azure", "--time-scale", "1000"])
    stop, out, codes = threading.Event(), io.StringIO(), []
    thread = threading.Thread(target=lambda: codes.append(serve_command(args, stop=stop, out=out)))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "OPENAI_API_VERSION=" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        text = out.getvalue()
        assert "azure dialect" in text and "unset OPENAI_BASE_URL" in text
        for line in text.splitlines():
            if line.strip().startswith("export "):
                name, value = line.strip()[7:].split("#")[0].strip().split("=", 1)
                monkeypatch.setenv(name, value)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        with openai.AzureOpenAI(max_retries=0) as client:
            file_id = client.files.create(
                file=("in.jsonl", batch_input(["a"], endpoint=CHAT)), purpose="batch"
            ).id
            created = client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            assert created.status == "validating"
        assert "BATCHFSM_PROVIDER=azure" in text
    finally:
        stop.set()
        thread.join(timeout=5)
    assert codes == [0]
