"""``batchfsm items`` on a ledger too long to print at once: ``--limit``/``--after``
pages, the next page's command on stderr (``next_after`` in ``--json``), streamed
tab-separated rows counted on their last line, a terminal table capped, and an export
written whole, privately, page by page.

The real command line against a real SQLite file, seeded through the store itself.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.items import TERMINAL_ROWS
from batchfsm.cli.main import main
from batchfsm.cli.output import STREAMED_AFTER
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence import SQLiteJobStore
from tests.cli.subprocess_cli import run_cli

JOBS = ("job-a", "job-b")
PER_JOB = 7
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _seed(path: Path, per_job: int = PER_JOB) -> list[tuple[str, str]]:
    """``per_job`` entries in each job, custom_ids with a space and a ``#`` (quoted in
    the printed command), every third one failed; their keys in listing order."""
    entries = [
        LedgerEntry(
            job_id=job,
            custom_id=f"req #{n:05d}",
            line=json.dumps({"custom_id": f"req #{n:05d}", "n": n}),
            state=ItemState.FAILED if n % 3 == 0 else ItemState.PENDING,
            batches=("batch_1",) if n % 2 else ("batch_1", "batch_2"),
        )
        for job in JOBS
        for n in range(per_job)
    ]
    with SQLiteJobStore(path) as db:
        for start in range(0, len(entries), 5_000):
            db.save_ledger(entries[start : start + 5_000])
    return sorted((e.job_id, e.custom_id) for e in entries)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "store.db"
    monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{path}")
    return path


def _items(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["items", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")[:2]) for line in out.splitlines() if not line.startswith("#")]  # type: ignore[misc]


def _next_page(err: str) -> list[str]:
    """The argv the hint on stderr names, run as a shell would split it."""
    (line,) = [x for x in err.splitlines() if "the next page: " in x]
    command = shlex.split(line.split("the next page: ", 1)[1])
    assert command[:2] == ["batchfsm", "items"]
    return command[2:]


@pytest.mark.parametrize("job", [None, "job-b"])
def test_following_the_printed_next_page_visits_every_item_once_in_order(
    store: Path, capsys: pytest.CaptureFixture[str], job: str | None
) -> None:
    keys = _seed(store)
    expected = [k for k in keys if job is None or k[0] == job]
    argv = ["--limit", "3", *(["--job", job] if job else [])]
    seen: list[tuple[str, str]] = []
    for _ in range(len(expected)):
        code, out, err = _items(capsys, *argv)
        assert code == 0, err
        page = _rows(out)
        assert out.splitlines()[0] == f"# {len(page)} item" + ("s" if len(page) != 1 else "")
        seen += page
        if "the next page" not in err:
            break
        assert len(page) == 3
        argv = _next_page(err)
    assert seen == expected


def test_json_pages_carry_next_after_and_keep_the_list_shape(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _seed(store)
    text = _items(capsys, "--json")[1]
    whole = json.loads(text)
    assert list(whole) == ["items"]  # no --limit: the shape as it always was
    assert text == orjson.dumps(whole, option=orjson.OPT_INDENT_2).decode() + "\n"  # as before
    assert [(i["job_id"], i["custom_id"]) for i in whole["items"]] == keys

    code, out, err = _items(capsys, "--json", "--limit", "5")
    page = json.loads(out)
    assert code == 0 and err == ""
    assert page["items"] == whole["items"][:5]
    assert page["next_after"] == "/".join(keys[4])  # JOB/CUSTOM_ID: no --job given
    rest = json.loads(_items(capsys, "--json", "--limit", "100", "--after", page["next_after"])[1])
    assert rest == {"items": whole["items"][5:], "next_after": None}

    in_job = json.loads(_items(capsys, "--json", "--job", "job-a", "--limit", "2")[1])
    assert in_job["next_after"] == keys[1][1]  # with --job: the custom_id alone


def test_after_and_limit_combine_with_state_and_batch(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(store)
    code, out, err = _items(
        capsys, "--job", "job-a", "--state", "failed", "--batch", "batch_2",
        "--after", "req #00000", "--limit", "1",
    )  # fmt: skip
    assert code == 0, err
    assert _rows(out) == [("job-a", "req #00006")]  # failed (n % 3), through batch_2 (even)
    assert "the next page" not in err  # nothing follows it


def test_after_without_a_job_must_name_one(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(store)
    code, out, err = _items(capsys, "--after", "req #00003")
    assert code == 2 and out == ""
    assert "--after 'req #00003'" in err and "JOB/CUSTOM_ID" in err


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_a_limit_below_one_is_a_usage_error(
    store: Path, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["items", "--limit", limit])
    assert exited.value.code == 2
    assert f"--limit: expected a whole number >= 1, not '{limit}'" in capsys.readouterr().err


def test_a_long_listing_streams_and_is_counted_on_its_last_line(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _seed(store, per_job=STREAMED_AFTER)  # twice as many rows as are held
    code, out, err = _items(capsys)
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0] == "# items, streamed: counted on the last line"
    assert lines[1].startswith("# job\tcustom_id")
    assert lines[-1] == f"# {len(keys):,} items"
    assert _rows(out) == keys


def test_an_export_page_is_written_whole_and_private(
    store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _seed(store)
    target = tmp_path / "fix.jsonl"
    code, out, err = _items(capsys, "--job", "job-b", "--state", "failed", "--limit", "2",
                            "--export", str(target))  # fmt: skip
    assert code == 0, err
    assert out.strip() == f"wrote 2 request lines to {target}"
    assert [json.loads(x)["n"] for x in target.read_text().splitlines()] == [0, 3]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fix")] == []  # no leftovers
    argv = _next_page(err)
    assert argv[-2:] == ["--export", "NEXT_FILE"]
    argv[-1] = str(tmp_path / "fix-2.jsonl")
    assert _items(capsys, *argv)[0] == 0
    assert [json.loads(x)["n"] for x in Path(argv[-1]).read_text().splitlines()] == [6]


def test_a_terminal_table_stops_at_its_cap_and_names_the_next_page(store: Path) -> None:
    keys = _seed(store, per_job=TERMINAL_ROWS // 2 + 1)  # two more than a terminal shows
    terminal = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "120", "NO_COLOR": ""}
    done = run_cli("items", "--store", f"sqlite:///{store}", env=terminal)
    assert done.returncode == 0, done.stderr
    cells = [line.split("│") for line in ANSI.sub("", done.stdout).splitlines()]
    shown = [(row[1].strip(), row[2].strip()) for row in cells if len(row) > 3]
    assert shown == keys[:TERMINAL_ROWS]
    assert f"stops at {TERMINAL_ROWS:,} items" in done.stderr
    after = _next_page(done.stderr)
    assert after[after.index("--after") + 1] == "/".join(keys[TERMINAL_ROWS - 1])
    assert after[after.index("--limit") + 1] == str(TERMINAL_ROWS)
