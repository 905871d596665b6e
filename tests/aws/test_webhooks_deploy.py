"""The webhooks variant as deployed: its generated definition (asl-validator clean, the
committed copy current, the callback wait falling back to a poll) and the template's
webhook resources (cfn-lint clean, least privilege, wired to the committed copy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchfsm.aws.stepfunctions import WEBHOOK_FUNCTION_ARN, definition, render
from batchfsm.cli.main import main
from tests.aws.test_deploy import TEMPLATE, lint, load, statements
from tests.aws.test_stepfunctions import validate

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "statemachine-webhooks.asl.json"


def test_the_variant_passes_asl_validator_and_a_broken_one_does_not(tmp_path: Path) -> None:
    broken_def = definition(webhooks=True)
    broken_def["States"]["AwaitWebhook"]["Catch"][0]["Next"] = "NoSuchState"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(broken_def))

    good = validate(COMMITTED)
    bad = validate(broken)

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1 and "NoSuchState" in bad.stdout + bad.stderr


def test_the_committed_variant_is_up_to_date() -> None:
    assert COMMITTED.read_text() == render(webhooks=True), (
        "deploy/statemachine-webhooks.asl.json is stale: run "
        "`batchfsm stepfunctions --webhooks -o deploy/statemachine-webhooks.asl.json`"
    )


def test_the_variant_waits_for_the_webhook_and_falls_back_to_a_poll() -> None:
    plain, variant = definition()["States"], definition(webhooks=True)["States"]
    assert set(variant) - set(plain) == {"AwaitWebhook", "WokenPoll", "FallbackPoll"}
    assert set(plain) - set(variant) == {"WaitToPoll"}
    wait = variant["AwaitWebhook"]
    assert wait["Resource"].endswith(".waitForTaskToken")
    assert wait["Parameters"]["FunctionName"] == WEBHOOK_FUNCTION_ARN
    assert wait["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert wait["TimeoutSecondsPath"] == "$.poll.next_poll_seconds"
    timeout, other = wait["Catch"]
    assert timeout == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.wake",
        "Next": "FallbackPoll",
    }
    assert other["Next"] == "PollFailed"
    assert (variant["WokenPoll"]["Result"], variant["FallbackPoll"]["Result"]) == (
        "webhook",
        "poll",
    )
    assert variant["WokenPoll"]["Next"] == variant["FallbackPoll"]["Next"] == "Poll"
    # A deadline is still a timer: no webhook says a batch is about to expire.
    assert variant["WaitKind"]["Choices"][0]["Next"] == "WaitForDeadline"


def test_the_command_writes_and_checks_the_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "variant.asl.json"
    assert main(["stepfunctions", "--webhooks", "-o", str(out)]) == 0
    assert out.read_text() == render(webhooks=True)
    assert main(["stepfunctions", "--webhooks", "--check", "-o", str(out)]) == 0
    assert main(["stepfunctions", "--check", "-o", str(out)]) == 1  # not the plain one
    capsys.readouterr()


def test_the_template_lints_clean_with_the_webhook_resources() -> None:
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    resources = load(TEMPLATE)["Resources"]
    webhook = {
        "WebhookFunction",
        "WebhookFunctionRole",
        "WebhookFunctionLogs",
        "WebhookStateMachine",
    }
    assert all(resources[name]["Condition"] == "HasWebhooks" for name in webhook)


def test_the_webhook_function_may_do_only_what_its_code_does() -> None:
    resources = load(TEMPLATE)["Resources"]
    policy = statements(resources["WebhookFunctionRole"])
    actions = {
        sid: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for sid, s in policy.items()
    }
    assert actions == {
        "Receipts": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        "WebhookSecret": ["secretsmanager:GetSecretValue"],
        "ResumeExecution": ["states:SendTaskSuccess"],
        "Logs": ["logs:CreateLogStream", "logs:PutLogEvents"],
    }
    # SendTaskSuccess on the webhooks state machine only, named as the stack names it.
    machine = resources["WebhookStateMachine"]["Properties"]
    arn = policy["ResumeExecution"]["Resource"]["Fn::Sub"]
    assert arn.endswith(":stateMachine:${AWS::StackName}-webhooks")
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-webhooks"}
    assert policy["Receipts"]["Resource"] == {"Fn::GetAtt": ["BatchFsmTable", "Arn"]}
    assert policy["WebhookSecret"]["Resource"] == {"Ref": "WebhookSecretArn"}


def test_the_webhook_function_is_wired_to_its_url_secret_and_machine() -> None:
    template = load(TEMPLATE)
    function = template["Resources"]["WebhookFunction"]["Properties"]
    assert function["Handler"] == "batchfsm.aws.webhooks.webhook_handler"
    assert function["FunctionUrlConfig"] == {"AuthType": "NONE"}
    env = function["Environment"]["Variables"]
    assert set(env) == {"BATCHFSM_TABLE", "BATCHFSM_WEBHOOK_SECRET_ARN"}
    machine = template["Resources"]["WebhookStateMachine"]["Properties"]
    assert (TEMPLATE.parent / machine["DefinitionUri"]) == COMMITTED
    assert set(machine["DefinitionSubstitutions"]) == {"PollFunctionArn", "WebhookFunctionArn"}
    assert template["Outputs"]["WebhookUrl"]["Value"] == {
        "Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]
    }
