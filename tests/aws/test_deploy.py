"""deploy/template.yaml: cfn-lint clean, the same table as deploy/dynamodb-table.yaml,
IAM limited to what the code calls, wired to the committed state machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
TABLE_ONLY = ROOT / "deploy" / "dynamodb-table.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), str(path)], check=False, capture_output=True, text=True, timeout=120
    )


def test_cfn_lint_passes_and_would_catch_a_mistake(tmp_path: Path) -> None:
    clean = lint(TEMPLATE)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Runtime: python3.11", "Runtime: python2.7"))
    result = lint(broken)
    assert result.returncode != 0 and "python2.7" in result.stdout


def test_the_table_is_the_one_batchfsm_init_creates() -> None:
    ours = load(TEMPLATE)["Resources"]["BatchFsmTable"]
    theirs = load(TABLE_ONLY)["Resources"]["BatchFsmTable"]
    assert ours == theirs


def statements(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        s["Sid"]: s
        for p in resource["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    }


def test_the_function_may_do_only_what_the_code_does() -> None:
    resources = load(TEMPLATE)["Resources"]
    policy = statements(resources["PollFunctionRole"])
    actions = {
        sid: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for sid, s in policy.items()
    }
    assert actions == {
        "JobTable": [
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ],
        "ResultObjects": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
        "ResultListing": ["s3:ListBucket"],
        "OpenAIKey": ["secretsmanager:GetSecretValue"],
        "Logs": ["logs:CreateLogStream", "logs:PutLogEvents"],
    }
    assert all("*" not in a for acts in actions.values() for a in acts)
    assert policy["OpenAIKey"]["Resource"] == {"Ref": "OpenAIKeySecretArn"}
    assert policy["ResultObjects"]["Resource"] == {
        "Fn::Sub": "${ResultsBucket.Arn}/${ResultsPrefix}/*"
    }
    machine = resources["PollStateMachine"]["Properties"]
    (invoke,) = machine["Policies"][0]["Statement"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"][0] == {"Fn::GetAtt": ["PollFunction", "Arn"]}


def test_the_function_and_state_machine_are_wired_to_the_generated_pieces() -> None:
    resources = load(TEMPLATE)["Resources"]
    function = resources["PollFunction"]["Properties"]
    assert function["Handler"] == "batchfsm.aws.lambda_handler"
    env = function["Environment"]["Variables"]
    assert {"BATCHFSM_TABLE", "BATCHFSM_RESULTS", "BATCHFSM_OPENAI_KEY_SECRET_ARN"} <= set(env)
    assert "OPENAI_API_KEY" not in env  # the key lives in Secrets Manager only
    machine = resources["PollStateMachine"]["Properties"]
    assert (TEMPLATE.parent / machine["DefinitionUri"]).is_file()
    assert set(machine["DefinitionSubstitutions"]) == {"PollFunctionArn"}
    schedule = machine["Events"]["Sweep"]
    assert schedule["Type"] == "ScheduleV2" and schedule["Properties"]["Input"] == "{}"
