"""Ids you can paste: never cut or folded, on a terminal of any width or in a pipe.

Through the console script in a child process: a pipe gets tab-separated rows; a
terminal (rich takes ``FORCE_COLOR``/``TTY_COMPATIBLE`` for one, ``COLUMNS`` for its
width) gets a table whose id columns are whole and whose other columns fold.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchfsm.fsm.models import BatchSnapshot
from batchfsm.handlers.base import HandlerRegistry
from batchfsm.ledger.records import ErrorCategory, ItemError, ItemState, JobRecord, LedgerEntry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.tracker import Tracker
from tests.cli.subprocess_cli import run_cli

BATCH = "batch_" + "K" * 40
JOB = "job-with-a-long-name-" + "x" * 30
CUSTOM = "ticket-" + "9" * 50
MESSAGE = (
    "The model produced a response that could not be parsed because the request asked "
    "for a schema the model does not support; fix the schema and send the request again."
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
C = 1_774_437_191


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = tmp_path / "store.db"
    with SQLiteJobStore(path) as db:
        tracker = Tracker(db, None, HandlerRegistry(handlers={}), clock=FrozenClock())
        snapshot = {"id": BATCH, "status": "validating", "created_at": C, "expires_at": C + 86400}
        tracker.track(BatchSnapshot.model_validate(snapshot), job_id=JOB)
        db.put_job(JobRecord(job_id=JOB, endpoint="/v1/embeddings", created_at=datetime.now(UTC)))
        error = ItemError(code="invalid_schema", message=MESSAGE, category=ErrorCategory.PERMANENT)
        entry = LedgerEntry(job_id=JOB, custom_id=CUSTOM, line="{}", state=ItemState.FAILED,
                            attempts=1, batches=(BATCH,), last_error=error)  # fmt: skip
        db.save_ledger([entry])
    return f"sqlite:///{path}"


def _terminal(columns: int) -> dict[str, str]:
    return {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": str(columns), "NO_COLOR": ""}


@pytest.mark.parametrize("command", [["status"], ["items"]])
def test_a_pipe_gets_tab_separated_rows_with_whole_ids(store: str, command: list[str]) -> None:
    done = run_cli(*command, "--store", store, env={"COLUMNS": "40"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# 1 ") and lines[1].startswith("# ")
    (row,) = lines[2:]
    cells = row.split("\t")
    assert len(cells) == len(lines[1].removeprefix("# ").split("\t"))
    assert JOB in cells
    if command == ["status"]:
        assert cells[0] == BATCH
    else:
        assert cells[1] == CUSTOM and cells[4] == BATCH
        assert cells[5] == f"invalid_schema: {MESSAGE}"  # the whole message, never cut


@pytest.mark.parametrize("columns", [40, 80, 200])
@pytest.mark.parametrize("command", [["status"], ["items"]])
def test_a_terminal_of_any_width_shows_every_id_whole(
    store: str, command: list[str], columns: int
) -> None:
    done = run_cli(*command, "--store", store, env=_terminal(columns))
    assert done.returncode == 0, done.stderr
    text = ANSI.sub("", done.stdout)
    assert "…" not in text
    lines = text.splitlines()
    assert any(BATCH in line for line in lines), text
    assert any(JOB in line for line in lines), text
    if command == ["items"]:
        assert any(CUSTOM in line for line in lines), text
        folded = "".join(line.split("│")[-2].strip() for line in lines if line.count("│") > 2)
        assert folded.replace(" ", "").endswith(MESSAGE.replace(" ", ""))  # folded, not cut


def test_titles_count_in_words_people_use(store: str) -> None:
    done = run_cli("status", "--store", store)
    assert done.stdout.splitlines()[0] == "# 1 tracked batch"
