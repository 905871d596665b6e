"""The README's promises that code can check."""

from __future__ import annotations

import re
from pathlib import Path

from batchfsm.fsm.diagram import mermaid_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_and_ci_runs_the_second_verbatim() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert (ROOT / command.split()[0]).is_file()


def test_the_embedded_lifecycle_diagram_is_current() -> None:
    block = README.split("<!-- lifecycle:start -->", 1)[1].split("<!-- lifecycle:end -->")[0]
    assert block.strip() == mermaid_markdown().strip(), (
        "README lifecycle block is stale: paste `batchfsm.fsm.diagram.mermaid_markdown()`"
    )
