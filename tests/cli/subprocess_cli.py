"""Running ``batchfsm`` in a child process, as a shell would.

For what only a real process shows: the console script's exit path (the interpreter's
last flush of stdout, a pipe whose reader left), logging as configured by the command
itself (in-process, pytest's own log handlers come first), and imports blocked by a
``prelude`` (an optional package made to look uninstalled).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["BLOCK_IMPORTS", "cli_command", "run_cli"]

BLOCK_IMPORTS = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"
"""A prelude that makes ``import name`` fail with ModuleNotFoundError, as if the
package were not installed (``.format(names=[...])``)."""


def cli_command(*args: str, prelude: str = "") -> list[str]:
    """The argv of a child running the ``batchfsm`` console script's entry point."""
    code = f"{prelude}\nfrom batchfsm.cli.main import entrypoint\nentrypoint()\n"
    return [sys.executable, "-c", code, *args]


def run_cli(
    *args: str,
    prelude: str = "",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``batchfsm ARGS`` to completion; ``env`` is added to this process's."""
    return subprocess.run(
        cli_command(*args, prelude=prelude),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
