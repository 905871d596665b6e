"""The webhooks variant on "AWS": the generated state machine driven through its
callback path by the ASL interpreter, the webhook function behind a function URL.

What runs for real: the poll function (:class:`LambdaApp`) and the webhook function
(:class:`WebhookFunction`) in-process, on moto's server over HTTP (DynamoDB for the
store, the receipts and the task tokens; Secrets Manager for the signing secret; Step
Functions' ``SendTaskSuccess``); the sandbox over HTTP, sending signed webhooks when
batches end; and a stand-in for the function URL, a loopback HTTP server turning each
request into the payload-2.0 event Lambda would pass.

What stands in, because AWS Step Functions cannot run here: the ASL interpreter
(``tests/aws/asl_interpreter.py``) runs the definition, and its callback wait is fed by
the ``SendTaskSuccess`` calls the webhook function makes; they go to moto (which
accepts them but runs no executions) and are observed on the function's botocore client
as they leave it.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import orjson
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from batchfsm.aws.app import LambdaApp
from batchfsm.aws.stepfunctions import definition
from batchfsm.aws.webhooks import WebhookFunction, scope_of
from batchfsm.fsm.models import EventEntry
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.testing import batch_input
from batchfsm.sandbox.webhook_endpoints import (
    RunningWebhookSandbox,
    running_sandbox_with_webhooks,
)
from batchfsm.sandbox.webhooks import WebhookFaults, new_secret, sign
from tests.aws.asl_interpreter import Execution, Interpreter, TaskFailed
from tests.aws.conftest import EMBEDDINGS

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

POLL_FN = "arn:aws:lambda:us-east-1:123456789012:function:batchfsm-poll"
WEBHOOK_FN = "arn:aws:lambda:us-east-1:123456789012:function:batchfsm-webhooks"
SCENARIO = Scenario(
    default=Fate(phases=Phases(validating_s=20, in_progress_s=900, finalizing_s=30))
)
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Stack:
    clock: FrozenClock
    sandbox: RunningWebhookSandbox
    poll: LambdaApp
    webhooks: WebhookFunction
    url: str
    tmp: Path
    secret_arn: str = ""
    resumed: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def submit(self, count: int = 4) -> str:
        from batchfsm.jobs.submit import submit_job

        tag = uuid.uuid4().hex[:6]
        path = self.tmp / f"{tag}.jsonl"
        path.write_bytes(batch_input([f"{tag}-{i}" for i in range(count)]))
        result = submit_job(self.poll.runtime.tracker, path, EMBEDDINGS)
        (batch_id,) = result.launched
        return batch_id

    def invoke(self, function: str, payload: Any) -> Any:
        apps: dict[str, LambdaApp | WebhookFunction] = {
            POLL_FN: self.poll,
            WEBHOOK_FN: self.webhooks,
        }
        try:
            answer = apps[function].handle(payload, None)
        except Exception as exc:
            raise TaskFailed(type(exc).__name__, str(exc)) from exc
        return json.loads(json.dumps(answer))

    def callback(self, batch_id: str) -> Any:
        """The wait of ``AwaitWebhook``: sandbox time passes a minute at a time; once the
        batch has ended, the webhook has a few real seconds to resume the task."""

        def wait(token: str, timeout: float) -> Any:
            waited = 0.0
            while waited < timeout:
                step = min(60.0, timeout - waited)
                self.clock.advance(step)
                waited += step
                if self.sandbox.world.retrieve_batch(batch_id)["status"] in TERMINAL:
                    try:
                        sent, output = self.resumed.get(timeout=3.0)
                    except queue.Empty:  # lost: the rest of the wait passes at once
                        self.clock.advance(timeout - waited)
                        return None
                    assert sent == token
                    return json.loads(output)
            return None

        return wait

    def run(self, batch_id: str) -> Execution:
        return Interpreter(
            definition(webhooks=True),
            invoke=self.invoke,
            sleep=self.clock.advance,
            now=self.clock.now,
            substitutions={"PollFunctionArn": POLL_FN, "WebhookFunctionArn": WEBHOOK_FN},
            callback=self.callback(batch_id),
        ).run({"batch_id": batch_id})

    def noticed(self, batch_id: str) -> list[str]:
        return [
            e.detail["via"]
            for e in self.poll.runtime.store.history(batch_id)
            if isinstance(e, EventEntry) and e.name == "noticed"
        ]


def function_url(function: WebhookFunction, answers: list[dict[str, Any]]) -> Any:
    """A WSGI app standing in for the function URL: each request becomes the payload
    2.0 event Lambda passes (body base64-encoded, as for any non-text content type)."""

    def app(environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        event = {
            "version": "2.0",
            "rawPath": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": base64.b64encode(request.get_data()).decode(),
            "isBase64Encoded": True,
            "requestContext": {"http": {"method": request.method, "path": request.path}},
        }
        answer = function.handle(event, None)
        answers.append(answer)
        response = Response(answer["body"], status=answer["statusCode"])
        response.headers.update(answer["headers"])
        return response(environ, start_response)

    return app


@pytest.fixture
def faults() -> WebhookFaults:
    return WebhookFaults()


@pytest.fixture
def stack(
    aws_env: str,
    table: str,
    bucket: str,
    secrets: SecretsManagerClient,
    tmp_path: Path,
    faults: WebhookFaults,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", aws_env)
    secret = new_secret()
    arn = secrets.create_secret(
        Name=f"batchfsm-webhook-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"OPENAI_WEBHOOK_SECRET": secret}),
    )["ARN"]
    clock = FrozenClock()
    with running_sandbox_with_webhooks(SCENARIO, clock=clock, faults=faults) as sandbox:
        poll = LambdaApp(
            {
                "BATCHFSM_TABLE": table,
                "BATCHFSM_RESULTS": f"s3://{bucket}/runs/test",
                "BATCHFSM_WORKDIR": str(tmp_path / "work"),
                "OPENAI_API_KEY": "sk-test-not-a-real-key-0000",
                "OPENAI_BASE_URL": sandbox.base_url,
            },
            clock=clock,
        )
        webhooks = WebhookFunction({"BATCHFSM_TABLE": table, "BATCHFSM_WEBHOOK_SECRET_ARN": arn})
        answers: list[dict[str, Any]] = []
        server = make_server("127.0.0.1", 0, function_url(webhooks, answers), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/"
        made = Stack(clock, sandbox, poll, webhooks, url, tmp_path, arn, answers=answers)

        def observe(params: dict[str, Any], **_: Any) -> None:
            made.resumed.put((params["taskToken"], params["output"]))

        webhooks.stepfunctions.meta.events.register(
            "provide-client-params.sfn.SendTaskSuccess", observe
        )
        sandbox.sender.add_endpoint(url, secret=secret)
        try:
            yield made
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
            poll.close()
            webhooks.close()


def test_the_webhook_resumes_the_waiting_execution(stack: Stack) -> None:
    batch_id = stack.submit()
    execution = stack.run(batch_id)
    assert execution.status == "SUCCEEDED", execution
    assert execution.output["poll"]["action"] == "process_results"
    # It waited for the webhook, was woken by it, and polled once more to end.
    assert "AwaitWebhook" in execution.path and "WokenPoll" in execution.path
    assert "FallbackPoll" not in execution.path[execution.path.index("WokenPoll") :]
    assert stack.noticed(batch_id)[-1] == "webhook"
    resumed = [a for a in stack.answers if "resumed" in a["body"]]
    assert [json.loads(a["body"])["resumed"] for a in resumed] == [[f"batch:{batch_id}"]]
    # The receipt is in DynamoDB; the token was taken.
    (sent,) = [s for s in stack.sandbox.sender.sent if s.batch_id == batch_id]
    assert stack.poll.runtime.store.get_event(sent.webhook_id) is not None
    assert stack.poll.runtime.store.pop_wait_token(f"batch:{batch_id}") is None


@pytest.mark.parametrize("faults", [WebhookFaults(duplicates=3, forge=True)])
def test_duplicates_resume_once_and_a_forgery_resumes_nothing(stack: Stack) -> None:
    batch_id = stack.submit()
    execution = stack.run(batch_id)
    assert execution.status == "SUCCEEDED", execution
    statuses = sorted((s.kind, s.status) for s in stack.sandbox.sender.sent)
    assert statuses == [("duplicate", 200)] * 3 + [("event", 200), ("forged", 400)]
    bodies = [json.loads(a["body"]) for a in stack.answers if a["statusCode"] == 200]
    assert sum(1 for b in bodies if b.get("resumed")) == 1
    assert sum(1 for b in bodies if b.get("duplicate")) == 3
    assert stack.resumed.empty()  # nothing else was sent to Step Functions


def test_a_lost_webhook_times_out_into_the_fallback_poll(stack: Stack) -> None:
    batch_id = stack.submit()
    stack.sandbox.sender.lose(batch_id)
    execution = stack.run(batch_id)
    assert execution.status == "SUCCEEDED", execution
    assert "FallbackPoll" in execution.path and "WokenPoll" not in execution.path
    assert stack.noticed(batch_id)[-1] == "poll"
    assert not stack.answers


def test_a_forged_delivery_is_refused_and_leaves_the_token(stack: Stack) -> None:
    batch_id = stack.submit()
    store = stack.poll.runtime.store
    stack.webhooks.handle(
        {"action": "await_webhook", "scope": {"batch_id": batch_id}, "task_token": "tok-1"}
    )
    body = orjson.dumps({"id": "evt_1", "type": "batch.completed", "data": {"id": batch_id}})
    now = int(time.time())
    headers = {
        "webhook-id": "wh_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(new_secret(), "wh_1", now, body),
    }
    assert httpx2.post(stack.url, content=body, headers=headers).status_code == 400
    assert store.get_event("wh_1") is None
    assert stack.resumed.empty()
    assert store.pop_wait_token(f"batch:{batch_id}") == "tok-1"


def test_function_url_events_are_read_strictly(stack: Stack) -> None:
    fn = stack.webhooks
    get = fn.handle({"requestContext": {"http": {"method": "GET"}}, "headers": {}})
    assert get["statusCode"] == 405
    bad = fn.handle({"httpMethod": "POST", "body": "%%%", "isBase64Encoded": True})
    assert bad["statusCode"] == 400
    huge = fn.handle({"httpMethod": "POST", "body": "x" * (1024 * 1024 + 1), "headers": {}})
    assert huge["statusCode"] == 413
    unsigned = fn.handle({"httpMethod": "POST", "body": "{}", "headers": {}})
    assert unsigned["statusCode"] == 400
    assert scope_of({"job_id": "j"}) == "job:j"
    with pytest.raises(ValueError, match="names no batch_id"):
        fn.handle({"action": "await_webhook", "scope": {}, "task_token": "t"})
    with pytest.raises(ValueError, match="task_token"):
        fn.handle({"action": "await_webhook", "scope": {"batch_id": "b"}})


def test_a_rotated_secret_is_read_again(stack: Stack, secrets: SecretsManagerClient) -> None:
    body = orjson.dumps({"id": "evt_r", "type": "batch.completed", "data": {"id": "batch_r"}})

    def deliver(secret: str, webhook_id: str) -> int:
        now = int(time.time())
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign(secret, webhook_id, now, body),
        }
        return httpx2.post(stack.url, content=body, headers=headers).status_code

    assert deliver(new_secret(), "wh_r0") == 400  # the container has read its secret now
    rotated = new_secret()
    secrets.put_secret_value(SecretId=stack.secret_arn, SecretString=rotated)
    assert deliver(rotated, "wh_r1") == 400  # read less than a minute ago: not again
    stack.webhooks._read_at -= 120
    assert deliver(rotated, "wh_r2") == 200
    assert deliver(new_secret(), "wh_r3") == 400  # and forgeries are still forgeries
