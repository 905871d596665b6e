"""Operations: metrics (``batchfsm metrics``, ``poll --metrics-port``, EMF from the
Lambda), JSON log lines with batch and job ids in the Lambda, and the progress of long
downloads and harvests on the screen."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from batchfsm.cli.main import main
from batchfsm.config import Settings
from batchfsm.observability.metrics import Figures, emit_emf
from tests.cli.live import Live, live, request_file
from tests.cli.subprocess_cli import run_cli


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> object:
    with live(tmp_path, monkeypatch, capsys) as running:
        yield running


def _submit(run: Live, ids: list[str]) -> None:
    path = request_file(run.home / "in.jsonl", ids)
    ran = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions")
    assert ran.code == 0, ran.err


def test_metrics_in_the_prometheus_format(run: Live) -> None:
    _submit(run, ["a", "b", "c#fail=400"])
    run.advance(1)  # still validating
    assert run.cli("poll", "--once", "-q").code == 0
    open_batch = run.cli("metrics")
    assert open_batch.code == 0, open_batch.err
    assert 'batchfsm_items{state="pending"} 3.0' in open_batch.out
    assert re.search(r"batchfsm_oldest_open_batch_age_seconds \d", open_batch.out)
    assert re.search(r"batchfsm_deadline_margin_seconds -?\d", open_batch.out)
    assert "batchfsm_enqueued_input_tokens{" in open_batch.out
    run.settle()
    ended = run.cli("metrics")
    assert 'batchfsm_items{state="succeeded"} 2.0' in ended.out
    assert 'batchfsm_items{state="failed"} 1.0' in ended.out
    assert 'batchfsm_batches{state="completed"} 1.0' in ended.out
    assert re.search(r'batchfsm_tokens\{kind="input",model="m"\} [1-9]', ended.out)
    data = json.loads(run.cli("metrics", "--json").out)
    assert (data["items"]["succeeded"], data["items"]["failed"]) == (2, 1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_poll_serves_the_metrics_while_it_runs(run: Live) -> None:
    _submit(run, ["a", "b"])
    port = _free_port()
    codes: list[int] = []
    poller = threading.Thread(
        target=lambda: codes.append(
            main(["poll", "-q", "--interval", "0.1", "--timeout", "3", "--metrics-port", str(port)])
        )
    )
    poller.start()
    scraped = ""
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as page:
                scraped = page.read().decode()
            if "batchfsm_items" in scraped:
                break
        except OSError:
            time.sleep(0.05)
    poller.join(timeout=30)
    assert 'batchfsm_items{state="pending"} 2.0' in scraped
    assert codes == [0]


def test_emf_lines_for_cloudwatch(capsys: pytest.CaptureFixture[str]) -> None:
    figures = Figures(items={"succeeded": 5, "retry": 1}, batches={"in_progress": 1},
                      oldest_open_age_s=120.0, deadline_margin_s=3600.0,
                      enqueued_tokens={"m": 900}, tokens={("m", "input"): 40})  # fmt: skip
    emit_emf(figures, "batchfsm-test")
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "batchfsm-test"
    assert document["Items_succeeded"] == [5.0] and document["DeadlineMargin"] == [3600.0]
    assert document["EnqueuedInputTokens"] == [900.0] and document["Tokens_input"] == [40.0]


def test_the_lambda_prints_emf_only_when_a_namespace_is_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from batchfsm.aws.app import LambdaApp

    quiet = LambdaApp(settings=Settings(store_url="memory://", openai_api_key="sk-x"))  # type: ignore[arg-type]
    quiet.runtime  # noqa: B018
    quiet.emit_metrics()
    assert capsys.readouterr().out == ""
    loud = LambdaApp(settings=Settings(store_url="memory://", openai_api_key="sk-x",  # type: ignore[arg-type]
                                       metrics_namespace="batchfsm"))  # fmt: skip
    loud.runtime  # noqa: B018
    loud.emit_metrics()
    assert '"Namespace":"batchfsm"' in capsys.readouterr().out.replace(" ", "")


def test_lambda_log_lines_are_json_with_the_batch_and_job(tmp_path: Path) -> None:
    code = """
import logging, sys
class LambdaLoggerHandler(logging.StreamHandler):  # the runtime's handler, by name
    pass
root = logging.getLogger()
root.addHandler(LambdaLoggerHandler(sys.stdout))
root.setLevel(logging.INFO)
from batchfsm.observability.logs import lambda_json_logs, log_context
assert lambda_json_logs() == 1
with log_context(batch_id="batch_abc123", job_id="job-7"):
    logging.getLogger("batchfsm.tracker").info("observed %s", "in_progress")
logging.getLogger("batchfsm.poller").warning("batch_zzz999 is late", extra={"hours": 3})
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)  # fmt: skip
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert (first["batch_id"], first["job_id"], first["message"]) == (
        "batch_abc123", "job-7", "observed in_progress",
    )  # fmt: skip
    assert (second["batch_id"], second["hours"], second["level"]) == ("batch_zzz999", 3, "WARNING")


def test_a_long_harvest_shows_its_progress_on_a_terminal(run: Live) -> None:
    _submit(run, [f"r{i:05d}" for i in range(4_500)])
    run.advance(6 * 3600)  # ended: the next poll downloads and harvests it
    done = run_cli("poll", "--once", cwd=run.home, env={"FORCE_COLOR": "1", "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    assert re.search(r"downloading file-\w+", screen)
    assert "result lines" in screen and ": 2,000 result lines" in screen
    assert re.search(r"harvested batch_\w+: 4,500 result lines in \d", screen)
