"""Shared pieces for the job tests: a tracker on a real SQLite file wired to a sandbox.

In-process tests share one :class:`FrozenClock` between the sandbox and the tracker, so
``Poller(..., sleep=clock.advance)`` moves the API's time and ours together.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batchfsm.config import Settings
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import FrozenClock, JobStore
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.tracker import Tracker
from batchfsm.wiring import build_runtime

EMBEDDINGS = "/v1/embeddings"
BATCHES_ROUTE = "POST /v1/batches"
RETRIEVE_ROUTE = "GET /v1/batches/{batch_id}"
UPLOAD_ROUTE = "POST /v1/files"


def sandbox(scenario: Scenario | None = None, clock: FrozenClock | None = None) -> SandboxApp:
    return SandboxApp(World(scenario or Scenario(), clock=clock or FrozenClock()))


def write_input(path: Path, custom_ids: Iterable[str], endpoint: str = EMBEDDINGS) -> Path:
    path.write_bytes(batch_input(list(custom_ids), endpoint=endpoint))
    return path


def make_tracker(
    tmp_path: Path,
    app: SandboxApp,
    clock: FrozenClock,
    *,
    store: JobStore | None = None,
    lease_seconds: float = 300.0,
) -> Tracker:
    """A tracker on ``tmp_path/store.db`` talking to ``app`` in-process (no sleeps)."""
    gateway = OpenAIGateway(openai_client(app), sleep=lambda _s: None)
    settings = Settings(results_dir=tmp_path / "results", lease_seconds=lease_seconds)
    runtime = build_runtime(
        settings,
        store=store or SQLiteJobStore(tmp_path / "store.db"),
        gateway=gateway,
        sink=DirectorySink(tmp_path / "results"),
        handlers=default_registry(),
        clock=clock,
        workdir=tmp_path,
    )
    return runtime.tracker


def result_lines(results: Path) -> list[str]:
    """Every delivered result line under a DirectorySink root."""
    return [
        line for path in sorted(results.glob("*/*.jsonl")) for line in path.read_text().splitlines()
    ]
