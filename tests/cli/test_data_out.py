"""Getting data out, through the real CLI against the sandbox: the merged results
export, the failed lines ready to resubmit, history as a replayable file, readable event
details, and no stale error on a request that succeeded."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from batchfsm.sandbox.scenario import Fate, Scenario
from tests.cli.live import Live, live, request_file

IDS = ["q-10", "q-02", "q-07", "q-01#fail=400", "q-05", "q-03", "q-09", "q-04"]
"""Input order differs from custom_id order; one permanent failure (its marker fails it
in every batch). The first batch's fate fails a seeded half of the others with HTTP 500;
its retry round, a resend, meets the default fate and runs them all."""
FLAKY = Scenario(named={"flaky": Fate(failure_rate=0.5, failure_codes=(500,))})


@pytest.fixture
def done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> object:
    """A job whose first batch completed with failed lines and whose retry round ran."""
    with live(tmp_path, monkeypatch, capsys, FLAKY) as run:
        path = request_file(run.home / "in.jsonl", IDS)
        ran = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions",
                      "--job-id", "j1", "--metadata", "sandbox_fate=flaky")  # fmt: skip
        assert ran.code == 0, ran.err
        run.settle(auto_retry=True)
        yield run


def _job_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_results_are_merged_over_the_retry_round_in_custom_id_order(done: Live) -> None:
    ran = done.cli("results", "--job", "j1")
    assert ran.code == 0, ran.err
    rows = _job_lines(ran.out)
    ids = [r["custom_id"] for r in rows]
    assert ids == sorted(i for i in IDS if "400" not in i)  # each success once, sorted
    assert len({r["batch_id"] for r in rows}) == 2  # first batch and its retry round
    assert all(isinstance(r["response"], dict) for r in rows)
    assert "wrote 7 results of 8 requests, in custom_id order" in ran.err
    assert "1 failed" in ran.err and "--state failed --export" in ran.err


def test_results_in_input_order_to_a_private_file(done: Live) -> None:
    out = done.home / "merged.jsonl"
    ran = done.cli("results", "--job", "j1", "--order", "input", "-o", str(out))
    assert ran.code == 0, ran.err
    assert ran.out == ""
    assert [r["custom_id"] for r in _job_lines(out.read_text())] == [
        i for i in IDS if "400" not in i
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_results_of_an_unknown_job_is_bad_input(done: Live) -> None:
    ran = done.cli("results", "--job", "nope")
    assert ran.code == 2
    assert ran.err.strip() == "batchfsm: error: job nope is not in this store"


def test_failed_lines_are_exported_as_sent_and_can_be_resubmitted(done: Live) -> None:
    fix = done.home / "fix.jsonl"
    ran = done.cli("items", "--job", "j1", "--state", "failed", "--export", str(fix))
    assert ran.code == 0, ran.err
    assert ran.out.strip() == f"wrote 1 request line to {fix}"
    (line,) = fix.read_text().splitlines()
    original = next(
        x for x in (done.home / "in.jsonl").read_text().splitlines() if "q-01#fail=400" in x
    )
    assert line == original
    assert stat.S_IMODE(fix.stat().st_mode) == 0o600
    fixed = fix.read_text().replace("q-01#fail=400", "q-01")
    fix.write_text(fixed)
    again = done.cli("submit", str(fix), "--endpoint", "/v1/chat/completions")
    assert again.code == 0, again.err
    assert "submitted: 1 request in 1 batch (1 sent now)" in again.out


def test_a_success_clears_the_error_of_an_earlier_attempt(done: Live) -> None:
    ran = done.cli("items", "--job", "j1", "--json")
    items = {i["custom_id"]: i for i in json.loads(ran.out)["items"]}
    transient = [i for i in items.values() if len(i["batches"]) == 2]
    assert transient  # the seeded half that failed with HTTP 500 first
    for item in transient:
        assert (item["state"], item["attempts"], item["last_error"]) == ("succeeded", 2, None)
    failed = items["q-01#fail=400"]["last_error"]
    assert failed is not None and failed["category"] == "permanent"


def test_the_whole_last_error_is_shown_never_cut(done: Live) -> None:
    ran = done.cli("items", "--job", "j1", "--state", "failed")
    message = json.loads(done.cli("items", "--job", "j1", "--state", "failed", "--json").out)[
        "items"
    ][0]["last_error"]["message"]
    (row,) = [line for line in ran.out.splitlines() if not line.startswith("#")]
    assert row.split("\t")[-1].endswith(" ".join(message.split()))


def _first_batch(run: Live) -> str:
    rows = json.loads(run.cli("status", "--json").out)["batches"]
    return str(next(r["batch_id"] for r in rows if r["parent_batch_id"] is None))


def test_history_snapshots_replay_to_the_same_path(done: Live) -> None:
    batch = _first_batch(done)
    snapshots = done.home / "h.jsonl"
    ran = done.cli("history", batch, "--snapshots", str(snapshots))
    assert ran.code == 0, ran.err
    assert "`batchfsm replay" in ran.out
    replayed = json.loads(done.cli("replay", str(snapshots), "--json").out)
    history = json.loads(done.cli("history", batch, "--json").out)["history"]
    recorded = [(h["from"], h["to"]) for h in history if h["kind"] == "transition"]
    assert [(t["from"], t["to"]) for t in replayed["transitions"]] == recorded
    assert replayed["final_state"] == "completed"


def test_replay_reads_history_json_as_it_is(done: Live) -> None:
    batch = _first_batch(done)
    saved = done.home / "h.json"
    saved.write_text(done.cli("history", batch, "--json").out)
    ran = done.cli("replay", str(saved))
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0] == f"# {saved}: final state completed"


def test_event_details_are_fields_not_python_dicts(done: Live) -> None:
    ran = done.cli("history", _first_batch(done))
    harvested = next(line for line in ran.out.splitlines() if "\tharvested" in line or
                     "harvested:" in line)  # fmt: skip
    assert "harvested: status=completed; " in harvested
    assert "usage.input_tokens=" in harvested or "model=" in harvested
    assert "{" not in harvested and "'" not in harvested
