"""``batchfsm diagram`` as a user runs it: drawing, one batch's path from a real store,
and the staleness check that keeps ``diagrams/`` in step with the spec."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchfsm.cli.diagram import add_parser, run
from batchfsm.cli.main import main
from batchfsm.fsm import BatchRecord, BatchSnapshot, rulebook
from batchfsm.fsm.diagram import render, svg_fingerprint
from batchfsm.fsm.spec import BatchStatus as S
from batchfsm.persistence import JobStore, MemoryJobStore, open_store

COMMITTED = Path(__file__).resolve().parents[2] / "diagrams"
NAMES = ("batch_lifecycle.mmd", "batch_lifecycle.dot", "batch_lifecycle.svg")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batchfsm")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["diagram", *argv])


def track(store: JobStore, batch_id: str, *statuses: str) -> None:
    """Feed observed statuses through the real rulebook into the store, as a poller does."""
    engine = rulebook()
    record = store.create(BatchRecord(batch_id=batch_id))
    for status in statuses:
        applied = engine.apply(record, BatchSnapshot(id=batch_id, status=status))
        record = store.commit(
            applied.record, expected_version=record.version, history=applied.history
        )


@pytest.fixture
def copy_of_committed(tmp_path: Path) -> Path:
    target = tmp_path / "diagrams"
    shutil.copytree(COMMITTED, target)
    return target


# -- drawing --------------------------------------------------------------------------------
def test_default_is_mermaid_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse()) == 0
    assert capsys.readouterr().out == render("mermaid")


def test_output_file_in_each_format(tmp_path: Path) -> None:
    for fmt in ("mermaid", "dot", "svg", "png"):
        target = tmp_path / f"out.{fmt}"
        assert run(parse("--format", fmt, "-o", str(target))) == 0
        if fmt == "png":
            assert target.read_bytes().startswith(b"\x89PNG")
        elif fmt == "svg":
            assert svg_fingerprint(target.read_text()) == svg_fingerprint(render("svg"))
        else:
            assert target.read_text() == render(fmt)
        assert target.stat().st_mode & 0o644 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.dot",
        "out.mermaid",
        "out.png",
        "out.svg",
    ]  # no temporary files left


def test_wired_into_the_batchfsm_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", "--format", "dot"]) == 0
    assert capsys.readouterr().out == render("dot")
    assert main(["diagram", "--check", "--dir", str(COMMITTED)]) == 0


def test_png_needs_an_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("--format", "png")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "-o FILE" in captured.err


def test_unwritable_output_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse("-o", str(tmp_path / "no" / "such" / "dir.mmd"))) == 2
    assert "cannot write" in capsys.readouterr().err


# -- one batch, many batches -----------------------------------------------------------------
def test_batch_path_from_a_sqlite_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/batches.db"
    store = open_store(url)
    store.init()
    # in_progress -> failed is a tolerated (undocumented) edge.
    track(store, "batch_a", "in_progress", "failed")
    store.close()

    assert run(parse("--batch", "batch_a", "--store", url)) == 0
    out = capsys.readouterr().out
    assert 'title: "Batch lifecycle: batch_a"' in out
    taken = [line.strip() for line in out.splitlines() if "taken" in line]
    assert taken == [
        "validating --> in_progress: start (taken)",
        "in_progress --> failed: fail (undocumented, taken)",
    ]
    assert "Class failed s_current_terminal" in out
    assert "Class in_progress s_visited" in out


def test_injected_store_and_several_batches(tmp_path: Path) -> None:
    store = MemoryJobStore()
    track(store, "done", "in_progress", "finalizing", "completed")
    track(store, "cancelled", "in_progress", "cancelling", "cancelled")
    track(store, "fresh")  # still validating, no hops

    target = tmp_path / "paths.dot"
    args = parse(
        "--format",
        "dot",
        "-o",
        str(target),
        "--batch",
        "done",
        "--batch",
        "cancelled",
        "--batch",
        "fresh",
    )
    assert run(args, store=store) == 0

    expected = render(
        "dot",
        highlight_edges=[
            (S.VALIDATING, S.IN_PROGRESS),
            (S.IN_PROGRESS, S.FINALIZING),
            (S.FINALIZING, S.COMPLETED),
            (S.IN_PROGRESS, S.CANCELLING),
            (S.CANCELLING, S.CANCELLED),
        ],
        current_states={S.COMPLETED, S.CANCELLED, S.VALIDATING},
        title="Batch lifecycle: done, cancelled, fresh",
    )
    assert target.read_text() == expected


def test_unknown_batch_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse("--batch", "batch_nope"), store=MemoryJobStore()) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "batch_nope" in captured.err
    assert "Traceback" not in captured.err


# -- committed files -------------------------------------------------------------------------
def test_committed_diagrams_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    """Fails when the spec changed and `batchfsm diagram --update` was not run."""
    assert run(parse("--check", "--dir", str(COMMITTED))) == 0, capsys.readouterr().err
    assert (COMMITTED / "batch_lifecycle.mmd").read_text() == render("mermaid")
    assert (COMMITTED / "batch_lifecycle.dot").read_text() == render("dot")


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("batch_lifecycle.mmd", "finalize", "finalise"),
        ("batch_lifecycle.dot", "style=dashed", "style=solid"),
        ("batch_lifecycle.svg", 'stroke-dasharray="5,2"', ""),
        ("batch_lifecycle.svg", "</svg>", ""),  # truncated: not even XML any more
    ],
)
def test_check_names_the_stale_file(
    copy_of_committed: Path, capsys: pytest.CaptureFixture[str], name: str, old: str, new: str
) -> None:
    path = copy_of_committed / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))

    assert run(parse("--check", "--dir", str(copy_of_committed))) == 1
    err = capsys.readouterr().err
    stale = [line for line in err.splitlines() if line.startswith("stale:")]
    assert stale == [line for line in stale if name in line]
    assert len(stale) == 1
    assert "--update" in err


def test_check_reports_a_missing_file(
    copy_of_committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy_of_committed / "batch_lifecycle.dot").unlink()
    assert run(parse("--check", "--dir", str(copy_of_committed))) == 1
    assert "batch_lifecycle.dot: missing" in capsys.readouterr().err


def test_svg_from_another_graphviz_version_is_not_stale(copy_of_committed: Path) -> None:
    path = copy_of_committed / "batch_lifecycle.svg"
    text = path.read_text().replace("graphviz version", "graphviz version 12.1.0 (was")
    path.write_text(text.replace('viewBox="', 'viewBox="1 ', 1))
    assert run(parse("--check", "--dir", str(copy_of_committed))) == 0


def test_update_writes_what_check_accepts(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    assert run(parse("--update", "--dir", str(target))) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES)
    assert run(parse("--check", "--dir", str(target))) == 0
    for name in NAMES[:2]:
        assert (target / name).read_bytes() == (COMMITTED / name).read_bytes()


# -- without Graphviz ------------------------------------------------------------------------
_RUN_WITHOUT_DOT = """
import argparse, sys
from batchfsm.cli.main import main
from batchfsm.cli.diagram import add_parser, run
parser = argparse.ArgumentParser(prog="batchfsm")
add_parser(parser.add_subparsers(dest="command"))
sys.exit(run(parser.parse_args(["diagram", *sys.argv[1:]])))
"""


def run_without_dot(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": str(empty)}  # the real OS lookup finds no `dot`
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_DOT, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )


def test_svg_without_graphviz_exits_2_with_install_advice(tmp_path: Path) -> None:
    done = run_without_dot(tmp_path, "--format", "svg", "-o", str(tmp_path / "x.svg"))
    assert done.returncode == 2
    assert "Graphviz" in done.stderr
    assert "apt-get install graphviz" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.svg").exists()


def test_check_without_graphviz_checks_the_text_files_and_says_so(
    tmp_path: Path, copy_of_committed: Path
) -> None:
    done = run_without_dot(tmp_path, "--check", "--dir", str(copy_of_committed))
    assert done.returncode == 0, done.stderr
    assert "batch_lifecycle.svg not checked" in done.stderr

    mmd = copy_of_committed / "batch_lifecycle.mmd"
    mmd.write_text(mmd.read_text() + "%% edited\n")
    done = run_without_dot(tmp_path, "--check", "--dir", str(copy_of_committed))
    assert done.returncode == 1
    assert "batch_lifecycle.mmd" in done.stderr
