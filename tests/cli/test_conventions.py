"""The command line's conventions: ``-v``/``-q`` anywhere, ``python -m batchfsm``,
shell completion, help for every command and option, exit code 2 for bad input, and
Ctrl-C that never prints a traceback."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchfsm.cli.main import main, main_parser
from tests.cli.live import live, request_file
from tests.cli.subprocess_cli import cli_command, run_cli

pytestmark = pytest.mark.timeout(180)


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*prefix, name), sub))
                found.extend(_commands(sub, (*prefix, name)))
    return found


COMMANDS = _commands(main_parser())


@pytest.mark.parametrize(("words", "parser"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_command_has_a_description_and_every_option_a_help_text(
    words: tuple[str, ...], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not missing, f"batchfsm {' '.join(words)}: options without help: {missing}"
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert parser.description and parser.description.split()[0] in shown


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["status"], 0, 0),
        (["-v", "status"], 1, 0),
        (["status", "-vv"], 2, 0),
        (["-v", "status", "-v"], 1, 0),  # after the command, its own count is kept
        (["status", "-q"], 0, 1),
        (["-q", "poll", "--once"], 0, 1),
    ],
)
def test_verbosity_is_taken_before_or_after_the_command(
    argv: list[str], verbose: int, quiet: int
) -> None:
    args = main_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_v_after_the_command_logs_more_and_q_less(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'new.db'}"
    loud = run_cli("init", "--store", store, "-v", cwd=tmp_path)
    assert loud.returncode == 0 and "INFO batchfsm" in loud.stderr, loud.stderr
    store2 = f"sqlite:///{tmp_path / 'other.db'}"
    quiet = run_cli("init", "--store", store2, "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_python_m_batchfsm_is_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchfsm", "--help"], capture_output=True, text=True,
        check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: batchfsm ")
    version = subprocess.run(
        [sys.executable, "-m", "batchfsm", "--version"], capture_output=True, text=True,
        check=False, cwd=tmp_path,
    )  # fmt: skip
    assert version.stdout.startswith("batchfsm ")


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    done = run_cli("completion", "bash", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "batchfsm.bash"
    script.write_text(done.stdout)
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(batchfsm st); COMP_CWORD=1; _shtab_batchfsm; echo "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(batchfsm poll --unt); COMP_CWORD=2; _shtab_batchfsm; "
        'echo "${COMPREPLY[*]}"\n'
    )
    shown = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    first, second = shown.stdout.splitlines()[:2]
    assert set(first.split()) >= {"status", "stepfunctions"}
    assert second.split() == ["--until-done"]


@pytest.mark.parametrize("shell", ["zsh", "fish", "tcsh"])
def test_other_shells_get_a_script_too(shell: str, tmp_path: Path) -> None:
    done = run_cli("completion", shell, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "batchfsm" in done.stdout and "submit" in done.stdout


def test_a_missing_key_is_bad_input(tmp_path: Path) -> None:
    path = request_file(tmp_path / "in.jsonl", ["a"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    done = subprocess.run(
        cli_command("submit", str(path), "--endpoint", "/v1/chat/completions"),
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "OPENAI_API_KEY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "argv",
    [["history", "batch_nope"], ["retry", "--job", "nope"], ["cancel", "batch_nope"],
     ["results", "--job", "nope"]],
)  # fmt: skip
def test_an_id_the_store_does_not_know_is_bad_input(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith("nope is not in this store")


def test_ctrl_c_while_the_command_starts_prints_no_traceback(tmp_path: Path) -> None:
    prelude = (
        "import batchfsm.cli.main as m\n"
        "def interrupted():\n    raise KeyboardInterrupt\n"
        "m.main_parser = interrupted\n"
    )
    done = run_cli("status", prelude=prelude, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (130, "batchfsm: interrupted\n")


def test_ctrl_c_during_a_submit_prints_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real SIGINT, at moments from building the parser (which imports the commands
    and ``openai``: where a traceback used to come from) to the upload of 20,000 lines.
    (The interpreter's own start and ``import batchfsm``, some 30 ms, come before any
    handler can exist.)"""
    prelude = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
    with live(tmp_path, monkeypatch, capsys) as run:
        path = request_file(run.home / "big.jsonl", [f"r{i:05d}" for i in range(20_000)])
        codes = []
        for delay in (0.25, 0.6, 1.2, 2.5):
            child = subprocess.Popen(
                cli_command("submit", str(path), "--endpoint", "/v1/chat/completions",
                            "--job-id", f"j{int(delay * 100)}", prelude=prelude),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=run.home,
            )  # fmt: skip
            time.sleep(delay)
            child.send_signal(signal.SIGINT)
            _out, err = child.communicate(timeout=60)
            assert "Traceback" not in err, err
            codes.append(child.returncode)
            if child.returncode == 130:
                assert err.strip().splitlines()[-1] == "batchfsm: interrupted"
        assert set(codes) <= {0, 130} and 130 in codes
