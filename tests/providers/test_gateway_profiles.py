"""The gateway applies a profile where a snapshot is built: the same Together answer is
``in_progress`` through Together's profile and an unknown word, rejected and recorded
verbatim by the tracker, through OpenAI's. The machine itself never changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from batchfsm.config import Settings
from batchfsm.fsm.models import RejectionEntry
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.persistence import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.providers import PROFILES, profile_named
from batchfsm.sandbox import Scenario, World
from batchfsm.sandbox.dialects import DialectApp
from batchfsm.sandbox.testing import batch_input
from batchfsm.tracker import Tracker

CHAT = "/v1/chat/completions"


@pytest.fixture
def together() -> Iterator[tuple[FrozenClock, openai.OpenAI]]:
    clock = FrozenClock()
    app = DialectApp(World(Scenario(), clock=clock), "together")
    http = httpx2.Client(transport=httpx2.WSGITransport(app=app))
    with openai.OpenAI(
        api_key="k", base_url="http://sandbox.invalid/v1", http_client=http, max_retries=0
    ) as client:
        yield clock, client


def test_the_same_answer_read_through_two_profiles(
    tmp_path: Path, together: tuple[FrozenClock, openai.OpenAI]
) -> None:
    clock, client = together
    right = OpenAIGateway(client, profile=PROFILES["together"])
    wrong = OpenAIGateway(client)  # OpenAI's profile
    path = tmp_path / "in.jsonl"
    path.write_bytes(batch_input(["a", "b"], endpoint=CHAT))
    created = right.create(right.upload(path), CHAT, {"k": "v"})
    assert created.id is not None and created.status == "validating"
    clock.advance(5)

    assert right.retrieve(created.id).status == "in_progress"
    assert wrong.retrieve(created.id).status == "IN_PROGRESS"
    assert [b.status for b in right.iter_batches()] == ["in_progress"]

    store = SQLiteJobStore(tmp_path / "store.db")
    tracker = Tracker(store, wrong, default_registry(), settings=Settings(), clock=clock)
    tracker.track(created)
    report = tracker.observe(created.id)
    assert report.record is not None and report.record.state.value == "validating"
    (rejected,) = [e for e in store.history(created.id) if isinstance(e, RejectionEntry)]
    assert (rejected.status, rejected.reason) == ("IN_PROGRESS", "unknown")
    store.close()


@pytest.mark.parametrize(
    ("provider", "sent"),
    [("openai", True), ("azure", True), ("groq", False), ("together", False),
     ("openrouter", False), ("compatible", False)],
)  # fmt: skip
def test_output_expires_after_is_sent_only_where_the_provider_documents_it(
    provider: str, sent: bool
) -> None:
    bodies: list[bytes] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.content)
        return httpx2.Response(
            200,
            json={"id": "batch_1", "object": "batch", "endpoint": CHAT, "status": "validating",
                  "input_file_id": "file-1", "completion_window": "24h", "created_at": 1},
        )  # fmt: skip

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    with openai.OpenAI(api_key="k", base_url="http://x.invalid/v1", http_client=http) as client:
        gateway = OpenAIGateway(
            client, profile=profile_named(provider), output_expires_after=86_400
        )
        gateway.create("file-1", CHAT, {})
    assert (b"output_expires_after" in bodies[0]) is sent
    assert gateway.output_expires_after == (86_400 if sent else None)
