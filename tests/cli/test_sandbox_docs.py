"""The sandbox as a user meets it: its ``--help`` documents the markers, fates and
scenario files, the example there is a valid scenario, and a fate named in a job's
metadata strikes its first batch only, not the retry rounds that resend its requests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from batchfsm.cli.sandbox import SANDBOX_EPILOG
from batchfsm.sandbox.scenario import Scenario, load_scenario
from tests.cli.live import Live, live, request_file
from tests.cli.subprocess_cli import run_cli


def test_sandbox_help_documents_markers_fates_and_scenarios(tmp_path: Path) -> None:
    done = run_cli("sandbox", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for marker in ("#fail=400", "#fail=429", "#fail=500", "#fail=timeout"):
        assert marker in done.stdout
    for fate in ("complete", "all_fail", "expire", "token_limit_exceeded", "stuck_finalizing"):
        assert f"  {fate} " in done.stdout
    assert "sandbox_fate=" in done.stdout and "by_order" in done.stdout
    assert "fate_on_resend" in done.stdout


def test_the_scenario_example_in_the_help_is_valid(tmp_path: Path) -> None:
    text = SANDBOX_EPILOG.split("unknown keys are refused):\n", 1)[1]
    example = "".join(line for line in text.splitlines(keepends=True) if line.startswith("  "))
    example = example.split("  phases (sandbox seconds)")[0]
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(json.loads(example)))
    assert isinstance(load_scenario(path), Scenario)


def _states(run: Live) -> list[tuple[str, str | None]]:
    rows = json.loads(run.cli("status", "--json").out)["batches"]
    return [(r["state"], r["parent_batch_id"]) for r in rows]


@pytest.mark.parametrize(("on_resend", "retry_state"), [("default", "completed"),
                                                        ("same", "expired")])  # fmt: skip
def test_a_named_fate_strikes_the_first_batch_not_its_retry_rounds(
    on_resend: str, retry_state: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    scenario = Scenario(fate_on_resend=on_resend)  # type: ignore[arg-type]
    with live(tmp_path, monkeypatch, capsys, scenario) as run:
        path = request_file(run.home / "in.jsonl", [f"r{i}" for i in range(6)])
        submitted = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions",
                            "--metadata", "sandbox_fate=expire")  # fmt: skip
        assert submitted.code == 0, submitted.err
        run.settle(rounds=10, step=6 * 3600, auto_retry=True)
        states = _states(run)
    assert states[0] == ("expired", None)
    retries = [state for state, parent in states if parent is not None]
    assert retries and retries[0] == retry_state
    if on_resend == "default":
        assert retries == ["completed"]  # one round, done: no expiring again and again
    else:
        assert re.fullmatch(r"(expired,)+\w+,?", ",".join(retries) + ",")
