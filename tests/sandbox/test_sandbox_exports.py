"""The sandbox's public names, and that the CLI can list commands without loading it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import batchfsm.sandbox as sandbox


def test_public_api_is_pinned_and_resolves() -> None:
    assert sandbox.__all__ == sorted(sandbox.__all__)
    assert set(sandbox.__all__) == {
        "FATE_METADATA_KEY", "Fate", "Faults", "Phases", "RequestStats", "RunningSandbox",
        "SandboxAPIError", "SandboxApp", "ScaledClock", "Scenario", "ScriptedFault", "World",
        "load_scenario", "make_sandbox_server", "running_sandbox",
    }  # fmt: skip
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None
    assert sandbox.FATE_METADATA_KEY == "sandbox_fate"


def test_importing_the_command_loads_no_server_code() -> None:
    code = (
        "import sys, batchfsm.cli.sandbox as c, argparse;"
        "p = argparse.ArgumentParser(); c.add_parser(p.add_subparsers());"
        "print(sorted(m.split('.')[0] for m in sys.modules"
        " if m.split('.')[0] in {'werkzeug', 'openai', 'httpx2', 'pytest'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert out.strip() == "[]"
