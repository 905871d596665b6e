"""``batchfsm demo --provider anthropic``: the same rehearsal against the sandbox's
Anthropic dialect, with the user's Anthropic and OpenAI variables pointing nowhere."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.ledger.records import ItemState
from batchfsm.persistence.sqlite.store import SQLiteJobStore

UNREACHABLE = {
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    "ANTHROPIC_API_KEY": "",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "OPENAI_API_KEY": "",
}


def test_the_anthropic_rehearsal_ends_every_batch_as_scripted(tmp_path: Path) -> None:
    out = tmp_path / "batchfsm-demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in UNREACHABLE.items():
            mp.setenv(name, value)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            argv = ["demo", "--provider", "anthropic", "--out", str(out), "--json"]
            code = main([*argv, "--time-scale", "21600"])
    assert code == 0, stderr.getvalue()
    data = orjson.loads(stdout.getvalue())
    first = {b["job_id"]: b for b in data["batches"] if not b["parent_batch_id"]}
    assert {job: b["state"] for job, b in first.items()} == {
        "demo-completes": "completed",
        "demo-failed-lines": "completed",
        "demo-expires": "expired",
        "demo-cancelled": "cancelled",
    }
    assert all(b["batch_id"].startswith("msgbatch_") for b in data["batches"])

    store = SQLiteJobStore(out / "store.db")
    try:
        entries = list(store.iter_ledger())
    finally:
        store.close()
    failed = {e.custom_id for e in entries if e.state is ItemState.FAILED}
    assert failed and all(c.endswith("-fail-400") for c in failed)
    assert all(e.attempts == 1 for e in entries if e.state is ItemState.FAILED)
    assert {e.state for e in entries} == {ItemState.SUCCEEDED, ItemState.FAILED}


@pytest.mark.parametrize(
    ("provider", "shown", "not_shown"),
    [
        ("anthropic", ["export ANTHROPIC_API_KEY=", "--provider anthropic"], ["OPENAI_API_KEY"]),
        ("openai", ["export OPENAI_API_KEY=", "--endpoint /v1/chat/completions"], ["ANTHROPIC"]),
    ],
)
def test_the_closing_hint_names_the_api_the_demo_rehearsed(
    tmp_path: Path, provider: str, shown: list[str], not_shown: list[str]
) -> None:
    from batchfsm.demo.report import BatchOutcome, DemoReport, print_summary

    batch = BatchOutcome(
        batch_id="msgbatch_1", job_id="demo-completes", fate="completes",
        expected_state="completed", state="completed", path=("in_progress", "completed"),
        succeeded=3, retry=0, failed=0, results=None, parent_batch_id=None,
    )  # fmt: skip
    report = DemoReport(
        out=tmp_path, done=True, cycles=2, batches=[batch], cancelled=[],
        waiting_for_retry=0, provider=provider,
    )  # fmt: skip
    text = io.StringIO()
    print_summary(report, text)
    hint = text.getvalue().split("The same commands against the real API:")[1]
    assert all(s in hint for s in shown), hint
    assert not any(s in hint for s in not_shown), hint
