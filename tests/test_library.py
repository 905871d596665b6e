"""The library as the README shows it: ``batchfsm.submit``, ``poll``, ``results`` and
``build_runtime`` against the sandbox; silent logging unless the host asks, and the
one-call console setup."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import batchfsm
from batchfsm.observability.logs import JsonFormatter, log_context
from tests.cli.live import Live, live, request_file


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> object:
    with live(tmp_path, monkeypatch, capsys) as running:
        yield running


def test_submit_poll_and_read_the_results_from_python(run: Live) -> None:
    path = request_file(run.home / "in.jsonl", ["b", "c", "a", "d#fail=400"])
    job = batchfsm.submit(path, "/v1/chat/completions")
    assert isinstance(job, batchfsm.SubmitResult) and not job.resumed
    assert len(job.launched) == 1
    cycles: list[int] = []
    run.advance(3600)
    summary = batchfsm.poll(interval=0, on_cycle=lambda report: cycles.append(report.number))
    assert isinstance(summary, batchfsm.PollSummary) and summary.done
    assert cycles and summary.cycles == len(cycles)
    rows = list(batchfsm.results(job.job.job_id))
    assert [r["custom_id"] for r in rows] == ["a", "b", "c"]
    assert [r["custom_id"] for r in batchfsm.results(job.job.job_id, order="input")] == [
        "b", "c", "a",
    ]  # fmt: skip
    again = batchfsm.submit(path, "/v1/chat/completions")
    assert again.resumed and again.launched == []


def test_the_runtime_builder_gives_the_object_graph(run: Live) -> None:
    with batchfsm.build_runtime() as runtime:
        assert isinstance(runtime, batchfsm.Runtime)
        assert runtime.settings.store_url == "sqlite:///batchfsm.db"
        assert runtime.store.list_batches() == []


def test_results_of_an_unknown_job_raise(run: Live) -> None:
    store = batchfsm.open_store("sqlite:///batchfsm.db")
    store.init()
    store.close()
    with pytest.raises(batchfsm.BatchFSMError, match="job nope is not in this store"):
        list(batchfsm.results("nope"))


def test_the_library_prints_nothing_unless_logging_is_configured(tmp_path: Path) -> None:
    code = (
        "import logging, batchfsm\n"
        "logging.getLogger('batchfsm.tracker').warning('batch_abcdefgh went wrong')\n"
    )
    silent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=tmp_path)  # fmt: skip
    assert (silent.stdout, silent.stderr) == ("", "")
    hosted = subprocess.run(
        [sys.executable, "-c", "import logging; logging.basicConfig()\n" + code],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert "batch_abcdefgh went wrong" in hosted.stderr


def test_configure_logging_is_one_call_for_lines_or_json() -> None:
    stream = io.StringIO()
    try:
        batchfsm.configure_logging("INFO", stream=stream)
        logging.getLogger("batchfsm.poller").info("cycle %d", 3)
        assert stream.getvalue() == "INFO batchfsm.poller: cycle 3\n"
        stream.truncate(0)
        stream.seek(0)
        batchfsm.configure_logging("INFO", json=True, stream=stream)  # replaces the first
        with log_context(job_id="job-1"):
            logging.getLogger("batchfsm.tracker").warning("batch_Q1w2E3r4 stuck", extra={"n": 2})
        (line,) = stream.getvalue().splitlines()
        data = json.loads(line)
        assert data["batch_id"] == "batch_Q1w2E3r4" and data["job_id"] == "job-1"
        assert (data["level"], data["logger"], data["n"]) == ("WARNING", "batchfsm.tracker", 2)
    finally:
        logger = logging.getLogger("batchfsm")
        for handler in list(logger.handlers):
            if getattr(handler, "_batchfsm_console", False):
                logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_the_json_formatter_keeps_exceptions_and_prefers_the_records_own_ids() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "batchfsm.x", logging.ERROR, __file__, 1, "failed batch_zzzzzzzz", None, sys.exc_info()
        )
    record.batch_id = "batch_given"
    data = json.loads(JsonFormatter().format(record))
    assert data["batch_id"] == "batch_given"
    assert "ValueError: boom" in data["exception"]
