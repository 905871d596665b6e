"""Bad input at the command line: one clear line saying what and where, the documented
exit code, no traceback, and nothing written (issue 11)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.main import EXIT_BROKEN_PIPE, EXTRAS, main
from tests.cli.subprocess_cli import BLOCK_IMPORTS, cli_command, run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "batchfsm" / "examples"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHFSM_STORE", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- replay ------------------------------------------------------------------------------


def test_replay_of_a_directory_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_error_line(captured.err) == (
        f"batchfsm: error: {tmp_path}: is a directory, not a file"
    )


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_replay_of_a_file_without_observations_exits_2(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(content)
    assert main(["replay", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no "final_state": "validating" nobody observed
    assert "history.jsonl: holds no observation" in one_error_line(captured.err)


def test_replay_into_a_pipe_closed_early_stops_quietly(tmp_path: Path) -> None:
    """`batchfsm replay FILE --json | head -3`: the reader leaves after three lines."""
    lines = [{"status": "validating"}, {"status": "in_progress"}]
    lines += [{"status": "validating"}] * 20_000  # stale reads: a long "rejected" list
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    with subprocess.Popen(
        cli_command("replay", str(path), "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        head = [child.stdout.readline() for _ in range(3)]
        child.stdout.close()  # what `head` does once it has its lines
        err = child.stderr.read().decode()
        code = child.wait(timeout=60)
    assert head[0] == b"{\n"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "BrokenPipe" not in err
    assert code == EXIT_BROKEN_PIPE


# -- sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_sandbox_refuses_a_port_out_of_range(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's own exit, before listening
        main(["sandbox", "--port", port])
    assert exited.value.code == 2
    assert "must be a port from 0 to 65535" in capsys.readouterr().err


# -- read commands never create a store --------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["items"],
        ["history", "batch_abc"],
        ["diagram", "--batch", "batch_abc"],
    ],
)
def test_read_commands_on_a_missing_store_say_so_and_create_nothing(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "deeper" / "store.db"
    assert main([*argv, "--store", f"sqlite:///{missing}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{missing} does not exist" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "typo").exists()


def test_the_default_store_is_not_created_by_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 2
    assert "batchfsm.db does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_init_creates_the_store_that_status_then_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
    assert main(["init", "--store", url]) == 0
    assert main(["status", "--store", url, "--json"]) == 0
    assert main(["items", "--store", url, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"batches": []' in out and '"items": []' in out


# -- submit: names that become paths -----------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "problem"),
    [
        ("../../escape", "starts with a dot"),
        ("a/b", "contains a path separator"),
        (".hidden", "starts with a dot"),
        ("a\\b", "contains a path separator"),
        ("tab\there", "contains a control character"),
        ("x" * 201, "is longer than 200 bytes"),
    ],
)
def test_submit_refuses_a_job_id_that_cannot_be_a_file_name(
    tmp_path: Path, job_id: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_text("{}\n")
    store = tmp_path / "state" / "store.db"
    argv = ["submit", str(requests), "--endpoint", "/v1/embeddings", "--job-id", job_id]
    assert main([*argv, "--store", f"sqlite:///{store}"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"field '--job-id': {job_id!r} cannot name a job: it {problem}" in line
    assert not store.parent.exists()  # nothing written (and nothing could be uploaded)


# -- missing optional dependencies -------------------------------------------------------


def test_a_dynamodb_store_without_the_aws_extra_says_what_to_install(tmp_path: Path) -> None:
    done = run_cli(
        "status",
        "--store",
        "dynamodb://jobs?region=us-east-1",
        prelude=BLOCK_IMPORTS.format(names=["botocore", "boto3"]),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        "batchfsm: error: a dynamodb:// store needs the botocore package, which is not "
        "installed: pip install 'batchfsm[aws]'"
    )


def test_a_dynamodb_store_without_a_region_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    assert main(["status", "--store", "dynamodb://jobs"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "batchfsm: error: dynamodb://jobs: no AWS region: add ?region=... or set AWS_REGION"
    )


@pytest.mark.parametrize("fmt", ["svg", "png", "dot"])
def test_a_graphviz_format_without_the_diagrams_extra_says_what_to_install(
    tmp_path: Path, fmt: str
) -> None:
    done = run_cli(
        "diagram",
        "--format",
        fmt,
        "-o",
        str(tmp_path / f"out.{fmt}"),
        prelude=BLOCK_IMPORTS.format(names=["graphviz"]),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'batchfsm[diagrams]'" in one_error_line(done.stderr)
    assert not (tmp_path / f"out.{fmt}").exists()


def test_any_extra_module_missing_deep_inside_a_command_is_one_clear_line(
    tmp_path: Path,
) -> None:
    """The safety net: an import of an extra's module that no earlier check caught."""
    prelude = (
        "import batchfsm.cli.store as store\n"
        "def broken(args):\n"
        "    import botocore.config  # noqa: F401\n"
        "store.run_status = broken\n" + BLOCK_IMPORTS.format(names=["botocore"])
    )
    done = run_cli("status", prelude=prelude, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        "batchfsm: error: this needs the botocore package, which is not installed: "
        "pip install 'batchfsm[aws]'"
    )


def test_every_extra_is_known_to_the_missing_module_message() -> None:
    """An extra added to pyproject.toml must be named when its module is missing."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {k: v for k, v in project["optional-dependencies"].items() if k != "test"}
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = requirement.split(">")[0].split("=")[0].split("[")[0].strip().lower()
            assert EXTRAS.get(name) == extra, f"add {name!r}: {extra!r} to cli.main.EXTRAS"


def test_the_blocking_prelude_really_blocks() -> None:
    code = BLOCK_IMPORTS.format(names=["botocore"]) + "import botocore.config\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "ModuleNotFoundError" in done.stderr
