"""A rig of real parts: the sandbox speaking the Batch API to the official openai client
(in-process, through httpx2's WSGI transport), our gateway, a SQLite store in a temp
file, a DirectorySink, and the Tracker with the default handlers, all on one FrozenClock.

Ledger entries are seeded the way submit creates them: one per request, ``pending``,
``batches=(batch_id,)``, holding the original request line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from batchfsm.config import Settings
from batchfsm.errors import DuplicateJobError
from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.handlers.base import EffectContext, HandlerRegistry
from batchfsm.ledger.records import ItemError, ItemState, JobRecord, LedgerEntry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.ports import FrozenClock, ResultSink
from batchfsm.sandbox import Fate, Phases, SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.tracker import PollReport, Tracker

ENDPOINT = "/v1/embeddings"

SCENARIO = Scenario(
    named={
        "all_429": Fate(kind="all_fail", failure_codes=(429,)),
        "expire_half": Fate(kind="expire", expire_fraction=0.5),
        "expire_half_unbilled": Fate(kind="expire", expire_fraction=0.5, batch_usage="missing"),
        "slow": Fate(phases=Phases(in_progress_s=100.0, cancelling_s=30.0)),
        "slow_cancel": Fate(phases=Phases(in_progress_s=100.0, cancelling_s=1800.0)),
        "stuck": Fate(kind="stuck_finalizing", stuck_finalizing_s=30 * 3600.0),
        "vanish": Fate(disappear_after_s=5.0, disappear_from="created"),
    }
)


def error_of(entry: LedgerEntry) -> ItemError:
    """The entry's last error, which the test expects to be there."""
    assert entry.last_error is not None, f"{entry.custom_id} has no last error"
    return entry.last_error


@dataclass
class Rig:
    tmp: Path
    clock: FrozenClock
    app: SandboxApp
    client: openai.OpenAI
    gateway: OpenAIGateway
    store: SQLiteJobStore
    sink: DirectorySink
    settings: Settings = field(default_factory=Settings)
    submitted: int = 0

    def tracker(
        self,
        *,
        registry: HandlerRegistry | None = None,
        sink: ResultSink | None = None,
        owner: str = "poller-1",
    ) -> Tracker:
        return Tracker(
            self.store,
            self.gateway,
            registry or default_registry(),
            settings=self.settings,
            clock=self.clock,
            sink=sink or self.sink,
            workdir=self.tmp / "work",
            owner=owner,
        )

    def upload(self, content: bytes) -> str:
        self.submitted += 1
        path = self.tmp / f"input-{self.submitted}.jsonl"
        path.write_bytes(content)
        return self.gateway.upload(path)

    def submit(
        self,
        custom_ids: Sequence[str],
        *,
        fate: str | None = None,
        job_id: str = "job-1",
        content: bytes | None = None,
        ledger_only: Sequence[str] = (),
        attempts: dict[str, int] | None = None,
        tracker: Tracker | None = None,
    ) -> str:
        """Upload, create, seed the ledger, track. ``ledger_only``: ids recorded as
        submitted in this batch but absent from its input (they will be missing)."""
        content = content if content is not None else batch_input(custom_ids)
        lines = {
            orjson.loads(raw)["custom_id"]: raw.decode()
            for raw in batch_input([*custom_ids, *ledger_only]).splitlines()
        }
        file_id = self.upload(content)
        metadata = {"sandbox_fate": fate} if fate else {}
        snapshot = self.gateway.create(file_id, ENDPOINT, metadata)
        assert snapshot.id is not None
        with contextlib.suppress(DuplicateJobError):
            self.store.put_job(
                JobRecord(job_id=job_id, endpoint=ENDPOINT, created_at=self.clock.now())
            )
        attempts = attempts or {}
        self.store.save_ledger(
            [
                LedgerEntry(
                    job_id=job_id,
                    custom_id=cid,
                    line=lines[cid],
                    attempts=attempts.get(cid, 0),
                    batches=(snapshot.id,),
                )
                for cid in [*custom_ids, *ledger_only]
            ]
        )
        (tracker or self.tracker()).track(snapshot, job_id=job_id)
        return snapshot.id

    def run(
        self, batch_id: str, seconds: float = 60.0, tracker: Tracker | None = None
    ) -> PollReport:
        """Advance the shared clock, then one poll."""
        self.clock.advance(seconds)
        return (tracker or self.tracker()).observe(batch_id)

    def ledger(self, job_id: str = "job-1") -> dict[str, LedgerEntry]:
        return {e.custom_id: e for e in self.store.iter_ledger(job_id)}

    def states(self, job_id: str = "job-1") -> dict[str, ItemState]:
        return {cid: e.state for cid, e in self.ledger(job_id).items()}

    def results(self, batch_id: str, job_id: str = "job-1") -> list[str]:
        """custom_ids delivered for the batch (duplicates would show twice)."""
        if not self.sink.has(job_id, batch_id):
            return []
        return [cid for cid, _ in self.sink.read_batch(job_id, batch_id)]

    def events(self, batch_id: str, name: str) -> list[EventEntry]:
        return [
            e for e in self.store.history(batch_id) if isinstance(e, EventEntry) and e.name == name
        ]

    def alerts(self, batch_id: str) -> list[str]:
        return [str(e.detail["key"]) for e in self.events(batch_id, "alert")]

    def context(self, record: BatchRecord, sink: ResultSink | None = None) -> EffectContext:
        """A context for calling a handler directly, as the tracker would."""
        return EffectContext(
            record=record,
            effect=record.outbox[-1] if record.outbox else None,
            store=self.store,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings,
            sink=sink or self.sink,
            workdir=self.tmp / "work",
        )

    def file_content(self, file_id: str) -> bytes:
        return self.app.world.get_file(file_id).content

    def set_file_content(self, file_id: str, content: bytes) -> None:
        self.app.world.get_file(file_id).content = content

    def delete_file(self, file_id: str) -> None:
        # How a result file "expires": deleted through the API, as OpenAI eventually does.
        assert self.client.files.delete(file_id).deleted

    def materialise(self, batch_id: str, seconds: float) -> dict[str, Any]:
        """Move sandbox time and look at the batch through the API, without our poller
        (the sandbox writes the result files the first time it is seen terminal)."""
        self.clock.advance(seconds)
        return self.client.batches.retrieve(batch_id).model_dump()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = FrozenClock()
    app = SandboxApp(World(SCENARIO, clock=clock))
    client = openai_client(app)
    store = SQLiteJobStore(tmp_path / "batchfsm.db")
    store.init()
    try:
        yield Rig(
            tmp=tmp_path,
            clock=clock,
            app=app,
            client=client,
            gateway=OpenAIGateway(client, sleep=lambda _s: None),
            store=store,
            sink=DirectorySink(tmp_path / "results"),
        )
    finally:
        store.close()
        client.close()
