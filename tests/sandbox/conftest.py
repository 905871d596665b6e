"""Shared helpers: a harness that bundles a frozen clock, a sandbox app and the client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import pytest
from openai.types import Batch

from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.testing import (
    batch_input,
    openai_client,
    sandbox_app,
    sandbox_client,
    sandbox_clock,
    sandbox_http_client,
    sandbox_scenario,
    sandbox_server,
)

__all__ = [
    "Harness",
    "sandbox_app",
    "sandbox_client",
    "sandbox_clock",
    "sandbox_http_client",
    "sandbox_scenario",
    "sandbox_server",
]


@dataclass
class Harness:
    clock: FrozenClock
    app: SandboxApp
    client: openai.OpenAI
    closers: list[Callable[[], None]] = field(default_factory=list)

    def upload(self, content: bytes, filename: str = "in.jsonl") -> str:
        return self.client.files.create(file=(filename, content), purpose="batch").id

    def submit(
        self,
        custom_ids: list[str],
        *,
        endpoint: str = "/v1/embeddings",
        metadata: dict[str, str] | None = None,
        model: str = "text-embedding-3-small",
    ) -> Batch:
        file_id = self.upload(batch_input(custom_ids, endpoint=endpoint, model=model))
        return self.create(file_id, endpoint=endpoint, metadata=metadata)

    def create(
        self,
        file_id: str,
        *,
        endpoint: str = "/v1/embeddings",
        metadata: dict[str, str] | None = None,
    ) -> Batch:
        return self.client.batches.create(
            input_file_id=file_id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata=metadata,
        )

    def at(self, batch_id: str, seconds_from_now: float) -> Batch:
        self.clock.advance(seconds_from_now)
        return self.client.batches.retrieve(batch_id)

    def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        assert file_id, "expected a file id"
        raw = self.client.files.content(file_id).content
        return [orjson.loads(line) for line in raw.splitlines()]


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(scenario: Scenario | None = None, *, time_scale: float = 1.0) -> Harness:
        clock = FrozenClock()
        app = SandboxApp(World(scenario, clock=clock, time_scale=time_scale))
        harness = Harness(clock=clock, app=app, client=openai_client(app))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.client.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
