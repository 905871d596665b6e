"""``batchfsm demo``: every scripted fate really happens, and the summary tells the truth.

One in-process run (``main([... "--json"])``) is shared by the module's tests, which
check its claims against what is on disk: the SQLite store, the result files, the
diagram. One more run goes through the installed console script, as the Quickstart
does, with the user's OpenAI variables pointing nowhere useful.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.fsm.models import EventEntry
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.sqlite.store import SQLiteJobStore

BATCHFSM = str(Path(sys.executable).parent / "batchfsm")
SANDBOX_KEY = "sk-sandbox-demo"
JOBS = ("demo-completes", "demo-failed-lines", "demo-expires", "demo-queue-full",
        "demo-cancelled")  # fmt: skip
UNREACHABLE = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": ""}


@dataclass
class DemoRun:
    code: int
    out: Path
    data: dict[str, Any]
    err: str

    def original(self, job_id: str) -> dict[str, Any]:
        batches: list[dict[str, Any]] = self.data["batches"]
        (batch,) = [b for b in batches if b["job_id"] == job_id and not b["parent_batch_id"]]
        return batch

    def retries_of(self, job_id: str) -> list[dict[str, Any]]:
        return [b for b in self.data["batches"] if b["job_id"] == job_id and b["parent_batch_id"]]

    def ledger(self, job_id: str | None = None) -> dict[str, LedgerEntry]:
        store = SQLiteJobStore(self.out / "store.db")
        try:
            return {e.custom_id: e for e in store.iter_ledger(job_id)}
        finally:
            store.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo") / "batchfsm-demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in UNREACHABLE.items():
            mp.setenv(name, value)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["demo", "--out", str(out), "--json", "--time-scale", "21600"])
    return DemoRun(code, out, orjson.loads(stdout.getvalue()), stderr.getvalue())


def _result_ids(path: str | None) -> list[str]:
    if path is None:
        return []
    return [orjson.loads(line)["custom_id"] for line in Path(path).read_bytes().splitlines()]


def test_every_fate_reaches_its_final_state(demo: DemoRun) -> None:
    assert demo.code == 0, demo.err
    assert demo.data["done"] is True
    states = {job: demo.original(job)["state"] for job in JOBS}
    assert states == {
        "demo-completes": "completed",
        "demo-failed-lines": "completed",
        "demo-expires": "expired",
        "demo-queue-full": "failed",
        "demo-cancelled": "cancelled",
    }


def test_succeeded_counts_are_the_result_lines_on_disk(demo: DemoRun) -> None:
    ledger = demo.ledger()
    delivered: list[str] = []
    for batch in demo.data["batches"]:
        ids = _result_ids(batch["results"])
        assert batch["succeeded"] == len(ids), batch["batch_id"]
        delivered += ids
    succeeded = {cid for cid, e in ledger.items() if e.state is ItemState.SUCCEEDED}
    assert sorted(delivered) == sorted(succeeded)  # each success once, nothing else
    assert len(ledger) == 12 + 16 + 20 + 8 + 12
    assert {e.state for e in ledger.values()} == {ItemState.SUCCEEDED, ItemState.FAILED}


def test_permanent_failures_fail_for_good_and_transient_ones_succeed_on_retry(
    demo: DemoRun,
) -> None:
    ledger = demo.ledger("demo-failed-lines")
    permanent = {cid for cid in ledger if "#fail=400" in cid}
    failed = {cid for cid, e in ledger.items() if e.state is ItemState.FAILED}
    assert failed == permanent and len(permanent) == 2
    errors = [ledger[c].last_error for c in failed]
    assert {e.category for e in errors if e is not None} == {"permanent"} and None not in errors
    assert {ledger[c].attempts for c in failed} == {1}
    transient = {c: e for c, e in ledger.items() if len(e.batches) == 2}
    assert transient
    assert {e.state for e in transient.values()} == {ItemState.SUCCEEDED}
    # a success clears the error of the attempt before it: nothing stale is shown
    assert {e.last_error for e in transient.values()} == {None}
    assert {e.attempts for e in transient.values()} == {2}
    original = demo.original("demo-failed-lines")
    assert (original["succeeded"], original["retry"], original["failed"]) == (
        16 - 2 - len(transient), len(transient), 2,
    )  # fmt: skip


def test_one_retry_round_resends_every_retry_item_and_completes(demo: DemoRun) -> None:
    for job in ("demo-failed-lines", "demo-expires", "demo-queue-full", "demo-cancelled"):
        original = demo.original(job)
        (retry,) = demo.retries_of(job)
        assert retry["parent_batch_id"] == original["batch_id"]
        assert retry["state"] == "completed" and retry["path"][-2:] == ["finalizing", "completed"]
        assert retry["succeeded"] == original["retry"] > 0
        assert retry["retry"] == retry["failed"] == 0
    assert demo.retries_of("demo-completes") == []
    assert len(demo.data["retry_batches"]) == 4
    assert demo.data["waiting_for_retry"] == 0


def test_the_expired_batch_keeps_its_finished_half(demo: DemoRun) -> None:
    expired = demo.original("demo-expires")
    assert expired["path"] == ["validating", "in_progress", "expired"]
    assert (expired["succeeded"], expired["retry"], expired["failed"]) == (10, 10, 0)
    assert len(_result_ids(expired["results"])) == 10
    resent = [e for e in demo.ledger("demo-expires").values() if len(e.batches) == 2]
    assert len(resent) == 10
    assert {e.state for e in resent} == {ItemState.SUCCEEDED}
    assert {e.last_error for e in resent} == {None}  # "not_run" no longer applies
    assert {e.attempts for e in resent} == {1}  # never ran before expiry: no attempt spent


def test_the_queue_full_job_is_resent_whole_and_succeeds(demo: DemoRun) -> None:
    failed = demo.original("demo-queue-full")
    assert failed["path"] == ["validating", "failed"] and failed["results"] is None
    assert (failed["succeeded"], failed["retry"]) == (0, 8)
    ledger = demo.ledger("demo-queue-full")
    assert {e.state for e in ledger.values()} == {ItemState.SUCCEEDED}
    assert {e.attempts for e in ledger.values()} == {1}
    assert {e.last_error for e in ledger.values()} == {None}  # the queue-full error is history


def test_the_cancelled_batch_went_through_cancelling_on_the_demos_own_cancel(
    demo: DemoRun,
) -> None:
    cancelled = demo.original("demo-cancelled")
    assert cancelled["path"] == ["validating", "in_progress", "cancelling", "cancelled"]
    assert demo.data["cancelled"] == [cancelled["batch_id"]]
    assert 0 < cancelled["succeeded"] < 12
    assert cancelled["succeeded"] + cancelled["retry"] == 12
    store = SQLiteJobStore(demo.out / "store.db")
    try:
        events = [h.name for h in store.history(cancelled["batch_id"]) if isinstance(h, EventEntry)]
    finally:
        store.close()
    assert "cancel_requested" in events


def test_the_diagram_highlights_the_edges_taken(demo: DemoRun) -> None:
    mermaid = Path(demo.data["diagram"]["mermaid"]).read_text()
    for edge in (
        "validating --> in_progress: start (taken)",
        "validating --> failed: fail (taken)",
        "in_progress --> finalizing: finalize (taken)",
        "finalizing --> completed: complete (taken)",
        "in_progress --> expired: expire (taken)",
        "in_progress --> cancelling: request_cancel (taken)",
        "cancelling --> cancelled: confirm_cancel (taken)",
    ):
        assert edge in mermaid
    assert mermaid.count("(taken)") == 7  # and nothing else
    for final in ("completed", "failed", "expired", "cancelled"):
        assert f"Class {final} s_current_terminal" in mermaid
    svg = demo.data["diagram"]["svg"]
    if shutil.which("dot"):
        assert Path(svg).read_text().lstrip().startswith("<?xml")
    else:
        assert svg is None


def test_everything_stays_in_the_out_directory(demo: DemoRun) -> None:
    names = {p.name for p in demo.out.iterdir()}
    assert {"store.db", "inputs", "results", "lifecycle.mmd"} <= names
    assert sorted(p.name for p in (demo.out / "inputs").iterdir()) == sorted(
        f"{job}.jsonl" for job in JOBS
    )
    assert demo.data["store_url"] == f"sqlite:///{demo.out / 'store.db'}"


def test_it_refuses_to_empty_a_directory_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path)]) == 2  # bad input
    assert "was not made by `batchfsm demo`" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_console_script_runs_with_no_key_starts_clean_and_prints_the_summary(
    tmp_path: Path,
) -> None:
    out = tmp_path / "batchfsm-demo"
    (out / "results" / "job-old").mkdir(parents=True)
    (out / "results" / "job-old" / "batch_old.jsonl").write_text("{}\n")
    (out / "store.db").write_bytes(b"not a database")
    (out / ".batchfsm-demo").write_text("")  # an earlier run's directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(UNREACHABLE, BATCHFSM_STORE="sqlite:///user.db")

    done = subprocess.run(
        [BATCHFSM, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    for text in (
        "what became of every request",
        "demo-cancelled",
        "↳ retry round",
        "validating -> in_progress -> cancelling -> cancelled",
        "0 requests still wait for retry",
        "batchfsm status --store sqlite:///batchfsm-demo/store.db",
        "unset OPENAI_BASE_URL",
        "batchfsm poll --until-done",
    ):
        assert text in done.stdout
    assert "cycle 1," in done.stdout  # the plain progress lines, not a live display
    assert not (out / "results" / "job-old").exists()
    assert not (tmp_path / "user.db").exists() and not (tmp_path / "batchfsm.db").exists()
    assert SANDBOX_KEY not in done.stdout + done.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert SANDBOX_KEY.encode() not in path.read_bytes(), path
