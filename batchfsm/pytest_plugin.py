"""pytest fixtures for users' own tests (registered as the ``batchfsm`` pytest plugin).

``replay_history`` replays a recorded history (a JSONL path or a list of Batch dicts)
and returns a :class:`~batchfsm.fsm.replay.ReplayResult`; the sandbox fixtures come from
:mod:`batchfsm.sandbox.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from batchfsm.fsm.history_file import read_history
from batchfsm.fsm.replay import ReplayResult, replay

pytest_plugins = ["batchfsm.sandbox.testing"]

ReplayHistory = Callable[[Path | str | Iterable[Mapping[str, Any]]], ReplayResult]


@pytest.fixture
def replay_history() -> ReplayHistory:
    def run(source: Path | str | Iterable[Mapping[str, Any]]) -> ReplayResult:
        if isinstance(source, Path | str):
            return replay(list(read_history(source)))
        return replay(source)

    return run
