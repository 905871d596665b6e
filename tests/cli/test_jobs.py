"""Argument handling of submit/poll/retry/cancel/items that needs no API at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchfsm.cli.main import main
from batchfsm.cli.views import item_json
from batchfsm.ledger.records import ErrorCategory, ItemError, ItemState, LedgerEntry


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens


def test_metadata_without_equals_sign_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")
    code = main(["submit", str(path), "--endpoint", "/v1/embeddings", "--metadata", "oops"])
    assert code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["poll", "--once", "--until-done"],
        ["poll", "--interval", "-1"],
        ["poll", "--timeout", "soon"],
        ["submit", "x.jsonl", "--endpoint", "/v1/videos"],  # retired: the API refuses it
        ["submit", "x.jsonl", "--endpoint", "/v1/moderation"],
        ["submit", "x.jsonl", "--endpoint", "/v1/embeddings", "--max-requests", "0"],
        ["items", "--state", "done"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's own exit
        main(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_items_on_an_empty_store_prints_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0  # reading never creates a store (see test_bad_input)
    capsys.readouterr()
    assert main(["items", "--json"]) == 0
    assert capsys.readouterr().out.strip().replace(" ", "").replace("\n", "") == '{"items":[]}'
    assert main(["items"]) == 0
    assert "0 items" in capsys.readouterr().out


def test_cancel_of_an_untracked_batch_fails_without_calling_the_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cancel", "batch_unknown"]) == 2  # an id the store does not know: bad input
    assert "batch_unknown is not in this store" in capsys.readouterr().err


def test_item_json_never_includes_the_request_line() -> None:
    entry = LedgerEntry(
        job_id="j",
        custom_id="c",
        line='{"secret": "prompt text"}',
        state=ItemState.RETRY,
        attempts=2,
        batches=("b1", "b2"),
        last_error=ItemError(code="http_500", message="boom", category=ErrorCategory.RETRYABLE),
    )
    assert item_json(entry) == {
        "job_id": "j",
        "custom_id": "c",
        "state": "retry",
        "attempts": 2,
        "batches": ["b1", "b2"],
        "last_error": {
            "code": "http_500",
            "message": "boom",
            "category": "retryable",
            "at": None,
            "repeats": 1,
        },
        "usage": None,
    }
