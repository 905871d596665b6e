"""No silent surprises: an empty store, a diagram's format, maintainers' options, a
read-only folder, counts in words, and requests another process still holds."""

from __future__ import annotations

import errno
import json
import re
import socket
from pathlib import Path

import pytest

from batchfsm.cli.main import main
from tests.cli.live import live, request_file
from tests.cli.subprocess_cli import run_cli


def test_poll_until_done_on_an_empty_store_says_which_store_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with live(tmp_path, monkeypatch, capsys) as run:
        ran = run.cli("poll", "--until-done", "--interval", "0")
    assert ran.code == 0
    assert ran.out.splitlines()[-1] == "done after 1 cycle: 0 batches, 0 items in retry"
    where = f"sqlite:///batchfsm.db ({run.home / 'batchfsm.db'})"
    assert f"nothing to poll: the store {where} tracks no batch" in ran.err
    assert "--store" in ran.err and "BATCHFSM_STORE" in ran.err


def test_poll_on_a_store_whose_batches_all_ended_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with live(tmp_path, monkeypatch, capsys) as run:
        path = request_file(run.home / "in.jsonl", ["a", "b"])
        assert run.cli("submit", str(path), "--endpoint", "/v1/chat/completions").code == 0
        run.settle()
        ran = run.cli("poll", "--until-done")
    assert "nothing left to poll: all 1 batch in" in ran.err


@pytest.mark.parametrize(
    ("name", "starts"),
    [("x.svg", "<?xml"), ("x.dot", "digraph"), ("x.gv", "digraph"), ("x.mmd", "---")],
)
def test_diagram_takes_the_format_from_the_file_suffix(
    name: str, starts: str, tmp_path: Path
) -> None:
    out = tmp_path / name
    done = run_cli("diagram", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_text().lstrip().startswith(starts)


def test_an_explicit_format_wins_over_the_suffix(tmp_path: Path) -> None:
    out = tmp_path / "x.svg"
    assert run_cli("diagram", "--format", "mermaid", "-o", str(out)).returncode == 0
    assert out.read_text().startswith("---")


def test_maintainers_options_work_but_are_not_in_help(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["diagram", "--help"])
    shown = capsys.readouterr().out
    assert "--check" not in shown and "--update" not in shown and "--dir" not in shown
    assert main(["diagram", "--check", "--dir", str(tmp_path)]) == 1  # nothing committed there
    assert "missing" in capsys.readouterr().err


def test_the_demo_in_a_read_only_folder_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only file system answers EROFS, which is no PermissionError."""
    monkeypatch.chdir(tmp_path)
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "batchfsm-demo":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "batchfsm: error: batchfsm-demo: Read-only file system\n"


def test_a_store_that_cannot_be_opened_names_the_file_and_the_option(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    done = run_cli("init", "--store", "sqlite:///file/sub/store.db", cwd=tmp_path)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    assert "file/sub/store.db" in done.stderr


def test_requests_held_by_another_process_are_said_with_their_time_and_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A submit interrupted on another host leaves its lease; a re-run here says what is
    held, by whom, until when, and how leases are set, instead of "0 batches"."""
    from batchfsm.jobs.intents import Intents

    with live(tmp_path, monkeypatch, capsys) as run:
        path = request_file(run.home / "in.jsonl", ["a", "b", "c"])

        def interrupted(self: Intents, *args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as elsewhere:
            elsewhere.setattr(socket, "gethostname", lambda: "other-host")
            elsewhere.setattr(Intents, "_send", interrupted)  # claimed, not yet uploaded
            first = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions")
        assert first.code == 130
        again = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions")
    assert again.code == 0, again.err
    assert "resumed: 3 requests in 0 batches (none sent now)" in again.out
    held = again.err
    assert "3 requests of this job are held by process" in held
    assert "on host other-host until" in held
    assert re.search(r" UTC \(in [45] min \d\d s\): it may still be sending them", held)
    assert "BATCHFSM_LEASE_SECONDS (now 300 s" in held and "`batchfsm poll`" in held


def test_submit_json_still_says_what_is_held_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchfsm.jobs.intents import Intents

    with live(tmp_path, monkeypatch, capsys) as run:
        path = request_file(run.home / "in.jsonl", ["a"])

        def interrupted(self: Intents, *args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as elsewhere:
            elsewhere.setattr(socket, "gethostname", lambda: "other-host")
            elsewhere.setattr(Intents, "_send", interrupted)  # claimed, not yet uploaded
            run.cli("submit", str(path), "--endpoint", "/v1/chat/completions")
        again = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions", "--json")
    assert json.loads(again.out)["open_intents"]
    assert "held by process" in again.err
