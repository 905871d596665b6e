"""``batchfsm webhooks serve | register | test`` and ``poll --webhooks``, end to end: the
real command line, the official client over HTTP to the sandbox (its Batch API and its
webhook endpoint management), and the intake served on a loopback port."""

from __future__ import annotations

import argparse
import io
import re
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.cli.webhooks import serve_command
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import running_sandbox
from batchfsm.sandbox.testing import batch_input
from batchfsm.sandbox.webhook_endpoints import (
    RunningWebhookSandbox,
    running_sandbox_with_webhooks,
)
from batchfsm.sandbox.webhooks import new_secret
from tests.webhooks.conftest import wait_until


@dataclass
class Cli:
    sandbox: RunningWebhookSandbox
    clock: FrozenClock
    tmp: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    monkeypatch.chdir(tmp_path)
    clock = FrozenClock()
    with running_sandbox_with_webhooks(clock=clock) as sandbox:
        monkeypatch.setenv("OPENAI_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("BATCHFSM_RESULTS_DIR", str(tmp_path / "results"))
        yield Cli(sandbox, clock, tmp_path, capsys)


@pytest.fixture
def serve(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """``batchfsm webhooks serve --port 0`` in a thread; (its URL, its secret)."""
    secret = new_secret()
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", secret)
    stop, out, err = threading.Event(), io.StringIO(), io.StringIO()
    args = argparse.Namespace(
        host="127.0.0.1", port=0, path="/webhooks/openai", workers=1, results_dir=None, store=None
    )
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(serve_command(args, stop=stop, out=out, err=err))
    )
    thread.start()
    wait_until(lambda: "listening on" in out.getvalue())
    url = re.search(r"listening on (\S+)", out.getvalue())
    assert url is not None
    try:
        yield url.group(1), secret
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0], err.getvalue()
    assert secret not in out.getvalue() + err.getvalue()


def test_serve_ingests_a_batch_when_its_webhook_arrives(cli: Cli, serve: tuple[str, str]) -> None:
    url, secret = serve
    cli.sandbox.sender.add_endpoint(url, secret=secret)
    (cli.tmp / "in.jsonl").write_bytes(batch_input(["a", "b", "c"]))
    code, out, _ = cli("submit", "in.jsonl", "--endpoint", "/v1/embeddings", "--json")
    assert code == 0
    (batch,) = orjson.loads(out)["batches"]
    cli.clock.advance(3600)

    def completed() -> bool:
        code, out, _ = cli("status", "--json")
        return code == 0 and orjson.loads(out)["batches"][0]["state"] == "completed"

    wait_until(completed, timeout=15)
    code, out, _ = cli("history", batch["batch_id"], "--json")
    events = [e for e in orjson.loads(out)["history"] if e["kind"] == "event"]
    assert {"name": "noticed", "via": "webhook"} in [
        {"name": e["name"], "via": e["detail"].get("via")} for e in events
    ]


def test_serve_needs_the_secret(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    err = io.StringIO()
    args = argparse.Namespace(
        host="127.0.0.1", port=0, path="/w", workers=1, results_dir=None, store=None
    )
    assert serve_command(args, out=io.StringIO(), err=err) == 2
    assert "OPENAI_WEBHOOK_SECRET" in err.getvalue()


def test_register_writes_the_secret_privately_and_test_sends_a_sample(
    cli: Cli, serve: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _secret = serve
    secret_file = cli.tmp / "webhook-secret"
    code, out, err = cli("webhooks", "register", "--url", url, "--secret-file", str(secret_file))
    assert code == 0, err
    written = secret_file.read_text().strip()
    assert written.startswith("whsec_") and written not in out + err
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "registered we_" in out
    # Registering again finds the endpoint instead of making a second one.
    code, out, _ = cli("webhooks", "register", "--url", url, "--secret-file", str(cli.tmp / "x"))
    assert code == 0 and "already registered" in out and not (cli.tmp / "x").exists()
    assert len(cli.sandbox.sender.endpoints()) == 1
    # An existing secret file is never overwritten.
    code, _, err = cli(
        "webhooks", "register", "--url", url + "2", "--secret-file", str(secret_file)
    )
    assert code == 2 and "exists already" in err
    # The serving intake has another secret: the sample is refused, and says so.
    code, out, _ = cli("webhooks", "test", "--url", url)
    assert code == 1 and "HTTP 400, REFUSED" in out


def test_test_reports_an_accepted_sample(cli: Cli, serve: tuple[str, str]) -> None:
    url, secret = serve
    endpoint = cli.sandbox.sender.add_endpoint(url, secret=secret)
    code, out, _ = cli(
        "webhooks", "test", "--endpoint-id", endpoint.id, "--event", "batch.failed", "--json"
    )
    assert code == 0
    assert orjson.loads(out) == {
        "endpoint_id": endpoint.id,
        "event_type": "batch.failed",
        "status_code": 200,
        "ok": True,
    }
    (sample,) = cli.sandbox.sender.sent
    assert sample.kind == "test" and sample.status == 200


def test_without_endpoint_management_the_dashboard_steps_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sandbox() as plain:  # the Batch API only: /v1/webhook_endpoints is 404
        monkeypatch.setenv("OPENAI_BASE_URL", plain.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        code = main(
            [
                "webhooks",
                "register",
                "--url",
                "https://x.example/hook",
                "--secret-file",
                str(tmp_path / "s"),
            ]
        )
    err = capsys.readouterr().err
    assert code == 1 and "dashboard" in err and "https://x.example/hook" in err
    assert not (tmp_path / "s").exists()


def test_poll_with_webhooks_runs(cli: Cli) -> None:
    (cli.tmp / "in.jsonl").write_bytes(batch_input(["a"]))
    assert cli("submit", "in.jsonl", "--endpoint", "/v1/embeddings")[0] == 0
    code, out, err = cli("poll", "--once", "--webhooks", "--poll-ceiling", "900", "--json")
    assert code == 0, err
    assert orjson.loads(out)["cycles"] == 1


def test_the_sandbox_command_sends_webhooks_to_a_configured_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``batchfsm sandbox --webhook-url`` and ``batchfsm webhooks serve``, both as
    commands, on one secret: a submitted batch is ingested because its webhook came."""
    from batchfsm.cli import sandbox as sandbox_command
    from batchfsm.cli.main import main_parser

    monkeypatch.chdir(tmp_path)
    secret = new_secret()
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    with socket.socket() as probe:  # the intake's port, chosen before the sandbox starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = f"http://127.0.0.1:{port}/hook"
    intake_out, sandbox_out = io.StringIO(), io.StringIO()
    stop = threading.Event()
    sandbox_args = main_parser().parse_args(
        ["sandbox", "--time-scale", "100000", "--webhook-url", hook]
    )
    threads = [
        threading.Thread(
            target=sandbox_command.serve_command,
            args=(sandbox_args,),
            kwargs={"stop": stop, "out": sandbox_out},
        )
    ]
    threads[0].start()
    try:
        wait_until(lambda: "webhook endpoints" in sandbox_out.getvalue())
        base = re.search(r"OPENAI_BASE_URL=(\S+)", sandbox_out.getvalue())
        assert base is not None and f"sending signed batch webhooks to {hook}" in (
            sandbox_out.getvalue()
        )
        monkeypatch.setenv("OPENAI_BASE_URL", base.group(1))
        args = argparse.Namespace(
            host="127.0.0.1", port=port, path="/hook", workers=1, results_dir=None, store=None
        )
        threads.append(
            threading.Thread(
                target=serve_command, args=(args,), kwargs={"stop": stop, "out": intake_out}
            )
        )
        threads[1].start()
        wait_until(lambda: "listening on" in intake_out.getvalue())
        (tmp_path / "in.jsonl").write_bytes(batch_input(["a", "b"]))
        assert main(["submit", "in.jsonl", "--endpoint", "/v1/embeddings"]) == 0

        def completed() -> bool:
            capsys.readouterr()
            main(["status", "--json"])
            batches = orjson.loads(capsys.readouterr().out)["batches"]
            return bool(batches[0]["state"] == "completed")

        wait_until(completed, timeout=15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert secret not in intake_out.getvalue() + sandbox_out.getvalue()
