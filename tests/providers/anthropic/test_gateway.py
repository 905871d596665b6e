"""``AnthropicGateway`` against the sandbox over loopback, with the official client:
retries (and the one call that must not be retried), typed errors, a results stream
cut short and read again, answers that are no ``MessageBatch`` (kept as sent), the
client built from the environment, and the key kept out of every message and log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from batchfsm.errors import (
    BatchNotFoundError,
    ConfigError,
    GatewayUnavailableError,
    UndecodableSnapshotError,
)
from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes
from batchfsm.ports import FrozenClock
from batchfsm.providers.anthropic import make_anthropic_client
from batchfsm.providers.anthropic.gateway import AnthropicGateway
from batchfsm.sandbox import Fate, Faults, Phases, Scenario, ScriptedFault
from batchfsm.sandbox.anthropic import AnthropicSandboxApp, RunningAnthropic, running_anthropic
from batchfsm.sandbox.anthropic_world import AnthropicWorld
from tests.providers.anthropic.support import (
    CREATE,
    KEY,
    RESULTS,
    RETRIEVE,
    anthropic_line,
    client_for,
    create,
    gateway_for,
    write_lines,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PHASES = Phases(validating_s=10, in_progress_s=100, finalizing_s=10)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def _sandbox(clock: FrozenClock, *script: ScriptedFault) -> Iterator[RunningAnthropic]:
    scenario = Scenario(default=Fate(phases=PHASES), faults=Faults(script=script))
    with running_anthropic(scenario, clock=clock) as running:
        yield running


def _send(gateway: AnthropicGateway, tmp_path: Path, ids: Iterable[str]) -> str:
    held = gateway.upload(write_lines(tmp_path / "in.jsonl", [anthropic_line(c) for c in ids]))
    batch_id = gateway.create(held, "/v1/messages").id
    assert batch_id is not None
    return batch_id


def test_reads_are_retried_and_a_cut_results_stream_is_read_again(
    tmp_path: Path, clock: FrozenClock
) -> None:
    faults = (
        ScriptedFault(route=RETRIEVE, call=1, kind="server_error"),
        ScriptedFault(route=RETRIEVE, call=2, kind="rate_limit"),
        ScriptedFault(route=RESULTS, call=1, kind="truncate"),
    )
    for sandbox in _sandbox(clock, *faults):
        gateway = gateway_for(sandbox)
        batch_id = _send(gateway, tmp_path, ["a-1", "a-2-fail-500", "a-3-fail-400"])
        clock.advance(200)
        snapshot = gateway.retrieve(batch_id)  # two failures, then the answer
        assert snapshot.status == "completed" and snapshot.output_file_id == batch_id
        assert sandbox.stats.count(RETRIEVE) == 3

        path = gateway.download(snapshot.output_file_id, tmp_path / "out" / "results.jsonl")
        assert path is not None and sandbox.stats.count(RESULTS) == 2
        kinds = {o.custom_id: o.kind for o in iter_outcomes(path)}
        assert kinds == {"a-1": OutcomeKind.SUCCEEDED, "a-2-fail-500": OutcomeKind.RETRYABLE,
                         "a-3-fail-400": OutcomeKind.PERMANENT}  # fmt: skip
        assert gateway.download(None, tmp_path / "none.jsonl") is None


def test_create_is_not_retried_when_the_batch_may_exist(tmp_path: Path, clock: FrozenClock) -> None:
    """A 500 on create may have created the batch: one call, then the reconcile decides.
    The held requests stay, so the same process can still send them."""
    for sandbox in _sandbox(clock, ScriptedFault(route=CREATE, call=1, kind="server_error")):
        gateway = gateway_for(sandbox)
        held = gateway.upload(write_lines(tmp_path / "in.jsonl", [anthropic_line("x")]))
        with pytest.raises(GatewayUnavailableError):
            gateway.create(held, "/v1/messages")
        assert sandbox.stats.count(CREATE) == 1
        assert gateway.create(held, "/v1/messages").status == "in_progress"
        with pytest.raises(BatchNotFoundError):  # sent: no longer held
            gateway.create(held, "/v1/messages")


def test_a_rate_limited_create_is_retried(tmp_path: Path, clock: FrozenClock) -> None:
    for sandbox in _sandbox(clock, ScriptedFault(route=CREATE, call=1, kind="rate_limit")):
        batch_id = _send(gateway_for(sandbox), tmp_path, ["y"])
        assert batch_id.startswith("msgbatch_") and sandbox.stats.count(CREATE) == 2


class _Proxy:
    """A proxy in front of the sandbox that answers one retrieve with ``body``."""

    def __init__(self, app: AnthropicSandboxApp, body: bytes, content_type: str) -> None:
        self.app, self.body, self.content_type = app, body, content_type
        self.calls = 0

    def __call__(self, environ: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path.count("/") == 4:
            self.calls += 1
            if self.calls == 1:
                start("200 OK", [("Content-Type", self.content_type)])
                return [self.body]
        return self.app(environ, start)


@pytest.mark.parametrize(
    ("body", "content_type", "kept"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html", "body"),
        (orjson.dumps({"id": "msgbatch_x", "processing_status": "in_progress",
                       "request_counts": "lots"}), "application/json", "processing_status"),
    ],
)  # fmt: skip
def test_an_answer_that_is_no_message_batch_is_refused_and_kept_as_sent(
    clock: FrozenClock, body: bytes, content_type: str, kept: str
) -> None:
    from batchfsm.sandbox.anthropic import RunningAnthropic as Running

    app = AnthropicSandboxApp(AnthropicWorld(Scenario(), clock=clock))
    with running_anthropic(app=app) as sandbox:
        proxied = _Proxy(app, body, content_type)
        from batchfsm.sandbox.server import base_url_of, make_sandbox_server

        server = make_sandbox_server(proxied)
        import threading

        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            running = Running(base_url_of(server).removesuffix("/v1"), app)
            gateway = gateway_for(running)
            batch = create(client_for(sandbox), [anthropic_line("z")])
            with pytest.raises(UndecodableSnapshotError) as caught:
                gateway.retrieve(batch.id)
            assert kept in caught.value.raw  # Anthropic's own answer, not the mapped one
            assert gateway.retrieve(batch.id).status == "in_progress"
        finally:
            server.shutdown()
            server.server_close()


def test_the_key_is_never_in_a_message_or_a_log(
    tmp_path: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for sandbox in _sandbox(clock, ScriptedFault(route=RETRIEVE, call=1, kind="server_error")):
        gateway = gateway_for(sandbox)
        with pytest.raises(BatchNotFoundError) as caught:
            gateway.retrieve("msgbatch_missing")
        assert KEY not in str(caught.value) and KEY not in repr(caught.value.__cause__)
        assert KEY not in caplog.text and "retry 1 of 4" in caplog.text


def test_the_client_reads_its_own_variables_and_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FrozenClock
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_anthropic_client()
    for sandbox in _sandbox(clock):
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", sandbox.base_url)
        gateway = AnthropicGateway(make_anthropic_client())
        assert list(gateway.iter_batches()) == []


def test_the_lambda_builds_the_anthropic_gateway_with_the_key_it_holds() -> None:
    """With ``BATCHFSM_PROVIDER=anthropic`` the Lambda's key (its variable or secret) goes
    to the anthropic client, never to an OpenAI one."""
    from pydantic import SecretStr

    from batchfsm.aws.app import LambdaApp
    from batchfsm.config import Settings
    from batchfsm.providers import PROFILES, make_client

    settings = Settings(provider="anthropic", openai_api_key=SecretStr(KEY))
    gateway = LambdaApp(settings=settings)._openai_gateway(settings)
    assert isinstance(gateway, AnthropicGateway)
    with pytest.raises(ConfigError, match="anthropic client"):
        make_client(PROFILES["anthropic"], api_key=KEY)
