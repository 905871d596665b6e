"""``batchfsm init``, ``status`` and ``history`` as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchfsm.cli.main import main
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.handlers.base import HandlerRegistry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.tracker import Tracker
from tests.persistence.dynamodb_server import server, unique_table

C = 1_774_437_191


def snap(status: str, **fields: object) -> BatchSnapshot:
    return BatchSnapshot.model_validate(
        {"id": "batch_abc", "status": status, "created_at": C, "expires_at": C + 86_400, **fields}
    )


@pytest.fixture
def tracked(tmp_path: Path) -> str:
    """A store with one batch that advanced, saw a stale read and an unknown status."""
    path = tmp_path / "store.db"
    with SQLiteJobStore(path) as store:
        tracker = Tracker(store, None, HandlerRegistry(handlers={}), clock=FrozenClock())
        tracker.track(snap("validating"), job_id="job-1")
        tracker.apply(
            "batch_abc",
            snap("in_progress", in_progress_at=C + 3, request_counts={"total": 4, "completed": 1}),
        )
        tracker.apply("batch_abc", snap("validating"))
        tracker.apply("batch_abc", snap("canceled"))
    return f"sqlite:///{path}"


def test_init_creates_the_sqlite_file_and_is_idempotent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert main(["init", "--store", url]) == 0
    assert main(["init", "--store", url]) == 0
    assert (tmp_path / "new.db").is_file()
    assert capsys.readouterr().out.count("store ready") == 2


def test_status_json_has_the_documented_shape(
    tracked: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--store", tracked, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["batches"]
    assert set(row) == {
        "batch_id",
        "job_id",
        "state",
        "version",
        "lost",
        "cancel_requested",
        "request_counts",
        "deadline",
        "observed_at",
        "output_file_id",
        "error_file_id",
        "pending_effects",
        "parent_batch_id",
        "model",
        "usage",
        "results_expire_at",
        "undecodable",
        "input_tokens",
    }
    assert (row["batch_id"], row["job_id"], row["state"]) == ("batch_abc", "job-1", "in_progress")
    # the API sent no "failed": unknown, not 0
    assert row["request_counts"] == {"total": 4, "completed": 1, "failed": None}
    assert row["pending_effects"] == ["in_progress#watch"]
    assert row["deadline"] == datetime.fromtimestamp(C + 86_400, UTC).isoformat()


def test_history_json_lists_transitions_rejections_with_reasons(
    tracked: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["history", "batch_abc", "--store", tracked, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)["history"]
    assert [
        (h["kind"], h.get("from"), h.get("to"), h.get("reason"), h.get("status")) for h in history
    ] == [
        ("transition", "validating", "in_progress", None, None),
        ("rejection", None, None, "stale", "validating"),
        ("rejection", None, None, "unknown", "canceled"),
    ]
    assert history[2]["snapshot"]["status"] == "canceled"


def test_history_and_status_tables_for_people(
    tracked: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["history", "batch_abc", "--store", tracked]) == 0
    out = capsys.readouterr().out
    assert "validating -> in_progress" in out
    assert "rejected 'canceled' (unknown)" in out
    assert main(["status", "--store", tracked]) == 0
    assert "batch_abc" in capsys.readouterr().out


def test_history_of_an_unknown_batch_is_an_error_not_a_traceback(
    tracked: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["history", "batch_nope", "--store", tracked]) == 2  # bad input
    err = capsys.readouterr().err
    assert "batch batch_nope is not in this store" in err and "Traceback" not in err


def test_an_unknown_store_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--store", "postgres://db/x"]) == 2
    assert "postgres://db/x" in capsys.readouterr().err


def test_dynamodb_init_creates_the_table_and_other_commands_name_init_when_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, region = server()
    table = unique_table()
    url = f"dynamodb://{table}?region={region}&endpoint_url={endpoint}"
    assert main(["status", "--store", url]) == 2
    assert "batchfsm init" in capsys.readouterr().err
    assert main(["init", "--store", url]) == 0
    assert main(["init", "--store", url]) == 0
    capsys.readouterr()
    assert main(["status", "--store", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"batches": [], "queued": []}
