"""The Anthropic provider from the command line (``batchfsm.cli.main.main``): replay of
recorded Message Batch histories, a job in OpenAI's chat lines submitted and polled
with ``--provider anthropic`` against ``batchfsm sandbox --dialect anthropic``, bad
input refused before anything is sent, and the sandbox's printed instructions.
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.cli.sandbox import add_parser, exports, serve_command
from batchfsm.sandbox import Fate, Scenario
from batchfsm.sandbox.anthropic import RunningAnthropic, running_anthropic
from tests.providers.anthropic.support import CREATE, anthropic_line, openai_line, write_lines

EXAMPLES = Path(__file__).resolve().parents[3] / "batchfsm" / "examples" / "anthropic"
TIME_SCALE = 250_000.0


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "final", "implied", "rejected"),
    [
        ("mixed_results", "completed", [["in_progress", "finalizing"]], []),
        ("expired_partial", "expired", [], []),
        ("cancelled_stale_read", "cancelled", [], [[3, "in_progress", "stale"]]),
    ],
)
def test_recorded_histories_replay_through_the_anthropic_profile(
    capsys: pytest.CaptureFixture[str],
    name: str,
    final: str,
    implied: list[list[str]],
    rejected: list[list[object]],
) -> None:
    path = EXAMPLES / f"{name}.jsonl"
    code, out, err = _cli(capsys, "replay", str(path), "--provider", "anthropic", "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["final_state"] == final
    assert [[t["from"], t["to"]] for t in result["transitions"] if t["implied"]] == implied
    assert [[r["line"], r["status"], r["reason"]] for r in result["rejected"]] == rejected
    assert result["effects"][-1] == {"state": final, "handler": "harvest"}

    code, _out, err = _cli(capsys, "replay", str(path))  # read as OpenAI's: no status
    assert code == 2 and "status" in err


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningAnthropic]:
    scenario = Scenario(seed=5, by_order=(Fate(failure_rate=0.4, failure_codes=(500,)),))
    with running_anthropic(scenario, time_scale=TIME_SCALE) as running:
        for line in exports(running.base_url, "anthropic"):  # what the sandbox prints
            name, value = line.removeprefix("export ").split("#")[0].strip().split("=", 1)
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("BATCHFSM_PROVIDER")  # given as --provider instead
        for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("BATCHFSM_RESULTS_DIR", str(tmp_path / "results"))
        monkeypatch.chdir(tmp_path)
        yield running


def test_one_chat_file_sent_to_anthropic_from_the_command_line(
    tmp_path: Path, sandbox: RunningAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "requests.jsonl", [openai_line(f"r{i}") for i in range(10)])

    code, out, err = _cli(capsys, "submit", str(path), "--provider", "anthropic", "--json")
    assert code == 0, err
    job_id = orjson.loads(out)["job"]["job_id"]
    code, out, err = _cli(
        capsys, "poll", "--until-done", "--auto-retry", "--interval", "0.02", "--timeout", "30",
        "--provider", "anthropic", "--json",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _cli(capsys, "items", "--job", job_id, "--json")
    items: list[dict[str, Any]] = orjson.loads(out)["items"]
    assert {i["state"] for i in items} == {"succeeded"} and len(items) == 10
    assert {i["attempts"] for i in items} == {1, 2}  # the 500s ran twice
    assert sandbox.stats.count(CREATE) == 2
    delivered = sorted((tmp_path / "results" / job_id).glob("*.jsonl"))
    assert len(delivered) == 2


def test_bad_input_is_refused_before_anything_is_sent(
    tmp_path: Path, sandbox: RunningAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [anthropic_line("ok"), {**anthropic_line("x"), "custom_id": "has#hash"}]
    path = write_lines(tmp_path / "bad.jsonl", lines)
    code, _out, err = _cli(capsys, "submit", str(path), "--provider", "anthropic")
    assert code == 2 and "line 2" in err and "custom_id" in err
    code, _out, err = _cli(capsys, "submit", str(path))  # OpenAI's: an endpoint is needed
    assert code == 2 and "--endpoint is required" in err
    code, _out, err = _cli(capsys, "submit", str(path), "--endpoint", "/v1/messages")
    assert code == 2 and "--provider anthropic" in err
    assert sandbox.stats.count(CREATE) == 0


def test_the_sandbox_command_prints_what_to_export(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["sandbox", "--dialect", "anthropic", "--time-scale", "3600"])
    stop, out, err = threading.Event(), io.StringIO(), io.StringIO()
    thread = threading.Thread(target=serve_command, args=(args,),
                              kwargs={"stop": stop, "out": out, "err": err})  # fmt: skip
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "ANTHROPIC_BASE_URL" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    text = out.getvalue()
    assert "anthropic dialect" in text and "export BATCHFSM_PROVIDER=anthropic" in text
    assert "export ANTHROPIC_API_KEY=" in text and err.getvalue() == ""
    refused = parser.parse_args(["sandbox", "--dialect", "anthropic", "--webhook-url", "http://x"])
    assert serve_command(refused, stop=stop, out=io.StringIO(), err=err) == 2
    assert "no batch webhooks" in err.getvalue()
