"""A user's working directory with a sandbox to talk to, for tests through the real CLI.

:func:`live` starts the sandbox over loopback on a frozen clock (the test moves time
with ``advance``), points ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` at it, and makes a
fresh directory the working directory, with the default store and results directory in
it, as a user's shell would be. ``cli`` runs ``batchfsm ARGS`` in-process
(:func:`batchfsm.cli.main.main`) and returns the exit code with what it printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.server import RunningSandbox, running_sandbox

__all__ = ["Live", "Ran", "live", "request_file"]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@dataclass
class Live:
    home: Path
    sandbox: RunningSandbox
    clock: FrozenClock
    capsys: pytest.CaptureFixture[str]

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.home / 'batchfsm.db'}"

    def cli(self, *args: str) -> Ran:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def settle(self, *, rounds: int = 8, step: float = 3600.0, auto_retry: bool = False) -> None:
        """Move sandbox time on and poll once per step, until everything has ended."""
        for _ in range(rounds):
            self.advance(step)
            args = ["poll", "--once", "-q", *(["--auto-retry"] if auto_retry else [])]
            assert self.cli(*args).code == 0


@contextmanager
def live(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    scenario: Scenario | None = None,
) -> Iterator[Live]:
    clock = FrozenClock()
    home = tmp_path / "work"
    home.mkdir()
    monkeypatch.chdir(home)
    for name in ("BATCHFSM_STORE", "BATCHFSM_RESULTS_DIR", "OPENAI_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHFSM_RETRY_BACKOFF_BASE", "0")
    app = SandboxApp(World(scenario or Scenario(), clock=clock))
    with running_sandbox(app=app) as sandbox:
        monkeypatch.setenv("OPENAI_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox")
        yield Live(home=home, sandbox=sandbox, clock=clock, capsys=capsys)


def request_file(path: Path, custom_ids: list[str], *, metadata_model: str = "m") -> Path:
    """A chat-completions request file, one line per custom_id, in that order."""
    lines = [
        orjson.dumps(
            {
                "custom_id": cid,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": metadata_model, "messages": [{"role": "user", "content": cid}]},
            }
        )
        for cid in custom_ids
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
