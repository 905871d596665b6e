"""Real parts for the webhook tests, all over loopback HTTP.

* the sandbox (its Batch API and endpoint management) on a real threaded server, with
  its :class:`~batchfsm.sandbox.webhooks.WebhookSender` delivering signed events;
* the intake (:mod:`batchfsm.webhooks`) on another real server, verifying with the
  official ``openai`` client and deduplicating in a SQLite file;
* two trackers on that one file, as two processes would have: the intake's and the
  poller's, each with its own store connection and the official client as gateway.

Sandbox time is a :class:`FrozenClock` the test advances (shared with the trackers), so
batches end exactly when a test says; signatures use the real wall clock, as OpenAI's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from batchfsm.config import Settings
from batchfsm.fsm.models import EventEntry, TransitionEntry
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.sandbox.webhook_endpoints import (
    RunningWebhookSandbox,
    running_sandbox_with_webhooks,
)
from batchfsm.sandbox.webhooks import WebhookFaults, new_secret
from batchfsm.tracker import Tracker
from batchfsm.webhooks.server import RunningIntake, build_intake, running_intake
from batchfsm.wiring import build_runtime

EMBEDDINGS = "/v1/embeddings"
RETRIEVE = "GET /v1/batches/{batch_id}"
SCENARIO = Scenario(
    named={
        "completes": Fate(phases=Phases(validating_s=60, in_progress_s=3600, finalizing_s=60)),
        "fails_lines": Fate(failure_rate=0.5, failure_codes=(400,)),
        "expires": Fate(kind="expire", expire_fraction=0.5),
        "queue_full": Fate(kind="token_limit_exceeded"),
    }
)


def wait_until(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> float:
    """Poll ``check`` until true; the seconds it took (fails the test on timeout)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not true after {timeout} s: {check}")
        time.sleep(step)
    return time.monotonic() - start


@dataclass
class Rig:
    clock: FrozenClock
    sandbox: RunningWebhookSandbox
    intake: RunningIntake
    secret: SecretStr
    tmp: Path
    trackers: list[Tracker] = field(default_factory=list)

    def tracker(self, **settings: Any) -> Tracker:
        """A tracker of its own on the shared store file (another "process")."""
        gateway = OpenAIGateway(openai_client(base_url=self.sandbox.base_url))
        (self.tmp / "work").mkdir(exist_ok=True)
        runtime = build_runtime(
            Settings(results_dir=self.tmp / "results", **settings),
            store=SQLiteJobStore(self.tmp / "store.db"),
            gateway=gateway,
            sink=DirectorySink(self.tmp / "results"),
            handlers=default_registry(),
            clock=self.clock,
            workdir=self.tmp / "work",
        )
        self.trackers.append(runtime.tracker)
        return runtime.tracker

    @property
    def store(self) -> SQLiteJobStore:
        store = self.trackers[0].store
        assert isinstance(store, SQLiteJobStore)
        return store

    def submit(self, fate: str, count: int = 4) -> str:
        """One batch of ``count`` requests meeting the scenario's ``fate``; its id."""
        from batchfsm.jobs.submit import submit_job

        tag = f"{fate}-{uuid.uuid4().hex[:6]}"
        path = self.tmp / f"{tag}.jsonl"
        path.write_bytes(batch_input([f"{tag}-{i}" for i in range(count)]))
        result = submit_job(self.trackers[0], path, EMBEDDINGS, metadata={"sandbox_fate": fate})
        (batch_id,) = result.launched
        return batch_id

    def retrieves(self, batch_id: str) -> int:
        return sum(1 for r in self.sandbox.app.stats.log if r.path == f"/v1/batches/{batch_id}")

    def settled(self, batch_id: str) -> bool:
        record = self.store.load(batch_id)
        return record.terminal and not any(not e.done for e in record.outbox)

    def noticed(self, batch_id: str) -> list[str]:
        """Which path noticed each transition ("via" of every ``noticed`` event)."""
        return [
            e.detail["via"]
            for e in self.store.history(batch_id)
            if isinstance(e, EventEntry) and e.name == "noticed"
        ]

    def terminal_transitions(self, batch_id: str) -> int:
        return sum(
            1
            for e in self.store.history(batch_id)
            if isinstance(e, TransitionEntry) and e.hop.dest.value in _TERMINAL
        )


_TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture
def faults() -> WebhookFaults:
    return WebhookFaults()


@pytest.fixture
def rig(tmp_path: Path, faults: WebhookFaults) -> Iterator[Rig]:
    clock = FrozenClock()
    secret = SecretStr(new_secret())
    with running_sandbox_with_webhooks(SCENARIO, clock=clock, faults=faults) as sandbox:
        rig = Rig(clock, sandbox, None, secret, tmp_path)  # type: ignore[arg-type]
        rig.tracker()  # trackers[0]: submits, and the poller's
        intake_tracker = rig.tracker()
        intake = build_intake(intake_tracker, secret, settle_delays=(0.2, 0.4, 0.8))
        with running_intake(intake) as running:
            rig.intake = running
            sandbox.sender.add_endpoint(running.url, secret=secret.get_secret_value())
            yield rig
        for tracker in rig.trackers:
            tracker.store.close()
