"""The public surface: what ``import batchfsm`` promises."""

from __future__ import annotations

import subprocess
import sys

import batchfsm


def test_public_names_are_pinned() -> None:
    assert batchfsm.__all__ == [
        "BatchFSMError",
        "BatchRecord",
        "BatchSnapshot",
        "BatchStatus",
        "FrozenClock",
        "JobStore",
        "OpenAIGateway",
        "PollReport",
        "PollSummary",
        "ReplayResult",
        "Rulebook",
        "Runtime",
        "Settings",
        "SubmitResult",
        "Tracker",
        "build_runtime",
        "configure_logging",
        "open_store",
        "poll",
        "replay",
        "results",
        "rulebook",
        "submit",
    ]
    functions = {"configure_logging", "poll", "results", "submit"}
    assert sorted(batchfsm.__all__) == sorted([*batchfsm._EXPORTS, *functions])
    for name in batchfsm.__all__:
        assert getattr(batchfsm, name) is not None


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_importing_the_package_and_the_core_does_no_heavy_imports() -> None:
    loaded = _modules_after("import batchfsm, batchfsm.fsm, batchfsm.tracker")
    for heavy in (
        "openai",
        "boto3",
        "botocore",
        "httpx2",
        "sqlite3",
        "graphviz",
        "rich",
        "werkzeug",
    ):
        assert heavy not in loaded, heavy


def test_the_rulebook_is_not_built_at_import() -> None:
    loaded = _modules_after("import batchfsm.fsm")
    assert "transitions.core" in loaded  # imported, but no machine exists yet
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import batchfsm.fsm.engine as e; print(e.rulebook.cache_info().currsize)",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "0"
