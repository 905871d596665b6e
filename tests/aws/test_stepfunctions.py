"""The generated ASL: valid for a published validator, derived from the contract, and the
committed copy in deploy/ is what the generator writes today."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from batchfsm.aws.contract import ACTIONS, CONTRACT_FIELDS
from batchfsm.aws.stepfunctions import FUNCTION_ARN, definition, render
from batchfsm.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "statemachine.asl.json"
VALIDATE = ROOT / "scripts" / "asl-validate.sh"


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    """asl-validator (npm, pinned), installed on first use by scripts/asl-validate.sh."""
    return subprocess.run(
        [str(VALIDATE), *map(str, paths)], check=False, capture_output=True, text=True, timeout=180
    )


def test_the_generated_definition_passes_asl_validator(tmp_path: Path) -> None:
    generated = tmp_path / "generated.asl.json"
    generated.write_text(render())
    broken_def = definition()
    broken_def["States"]["WaitToPoll"]["Next"] = "NoSuchState"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(broken_def))

    good = validate(generated, COMMITTED)
    bad = validate(broken)

    assert good.returncode == 0, good.stdout + good.stderr
    # The check can fail: a dangling transition is reported, naming the state.
    assert bad.returncode == 1 and "NoSuchState" in bad.stdout + bad.stderr


def test_the_committed_copy_is_up_to_date() -> None:
    assert COMMITTED.read_text() == render(), (
        "deploy/statemachine.asl.json is stale: run "
        "`batchfsm stepfunctions -o deploy/statemachine.asl.json`"
    )


def test_the_definition_routes_every_action_and_selects_the_contract() -> None:
    states = definition()["States"]
    routed = {
        rule.get("StringEquals")
        for choice in states["Settle"]["Choices"]
        for rule in [choice, *choice.get("And", [])]
    }
    assert set(ACTIONS) <= routed
    poll = states["Poll"]
    assert poll["Parameters"]["FunctionName"] == FUNCTION_ARN
    assert set(poll["ResultSelector"]) == {f"{f}.$" for f in CONTRACT_FIELDS}
    for task in ("Poll", "SubmitRetries"):
        retried = {e for r in states[task]["Retry"] for e in r["ErrorEquals"]}
        assert {
            "Lambda.ServiceException",
            "Lambda.TooManyRequestsException",
            "States.Timeout",
            "StoreUnavailableError",
        } <= retried
        assert states[task]["Catch"][0]["Next"] == "PollFailed"
    assert states["WaitToPoll"]["SecondsPath"] == "$.poll.next_poll_seconds"
    assert states["WaitForDeadline"]["TimestampPath"] == "$.poll.poll_at"


def test_the_output_is_deterministic() -> None:
    assert render() == render()
    assert json.loads(render()) == definition()


def test_the_command_prints_writes_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stepfunctions"]) == 0
    assert capsys.readouterr().out == render()

    target = tmp_path / "deploy" / "sm.json"
    assert main(["stepfunctions", "--check", "-o", str(target)]) == 1  # missing: stale
    assert "stale" in capsys.readouterr().err
    assert main(["stepfunctions", "-o", str(target)]) == 0
    assert target.read_text() == render()
    assert main(["stepfunctions", "--check", "-o", str(target)]) == 0
    target.write_text(render().replace("Poll", "Pol", 1))
    assert main(["stepfunctions", "--check", "-o", str(target)]) == 1
