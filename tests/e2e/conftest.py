"""End-to-end: the real CLI, the official client over HTTP, a sandbox on a loopback port.

Each test gets a working directory with its own SQLite store and results directory,
and a ``cli`` helper that runs ``batchfsm.cli.main.main`` and returns (exit code, stdout,
stderr). The sandbox runs on scaled time, so a 24 h window passes in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.sandbox import RunningSandbox, Scenario, running_sandbox

# 24 sandbox hours in about 0.35 real seconds; the default 14 s life of a batch is ~0.06 ms.
TIME_SCALE = 250_000.0


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


@dataclass
class Env:
    sandbox: RunningSandbox
    workdir: Path
    store_url: str
    results: Path
    cli: Callable[..., CliResult]

    def environ(self) -> dict[str, str]:
        return {
            "OPENAI_BASE_URL": self.sandbox.base_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "BATCHFSM_STORE": self.store_url,
            "BATCHFSM_RESULTS_DIR": str(self.results),
        }


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def time_scale() -> float:
    return TIME_SCALE


@pytest.fixture
def env(
    tmp_path: Path,
    scenario: Scenario,
    time_scale: float,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Env]:
    monkeypatch.chdir(tmp_path)
    with running_sandbox(scenario, time_scale=time_scale) as sandbox:

        def cli(*argv: str) -> CliResult:
            capsys.readouterr()
            code = main(list(argv))
            captured = capsys.readouterr()
            return CliResult(code, captured.out, captured.err)

        made = Env(
            sandbox=sandbox,
            workdir=tmp_path,
            store_url=f"sqlite:///{tmp_path / 'store.db'}",
            results=tmp_path / "results",
            cli=cli,
        )
        for name, value in made.environ().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BATCHFSM_POLL_INTERVAL", "0.05")
        yield made
