"""Shared pieces of the Anthropic tests: the official ``anthropic`` client over loopback
to the sandbox's Anthropic dialect, a tracker on a real store, request files.

The sandbox and the tracker share one :class:`FrozenClock`, so ``Poller(...,
sleep=clock.advance)`` moves the API's time and ours together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anthropic
import orjson
from anthropic.types.messages import MessageBatch

from batchfsm.config import Settings
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import FrozenClock, JobStore
from batchfsm.providers.anthropic import AnthropicGateway
from batchfsm.sandbox.anthropic import RunningAnthropic
from batchfsm.tracker import Tracker
from batchfsm.wiring import build_runtime

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-api03-sandbox-not-a-real-key-0123456789"
CREATE = "POST /v1/messages/batches"
RETRIEVE = "GET /v1/messages/batches/{batch_id}"
RESULTS = "GET /v1/messages/batches/{batch_id}/results"
LIST = "GET /v1/messages/batches"


def anthropic_line(custom_id: str, text: str | None = None) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text or f"say hello to {custom_id}"}],
        },
    }


def openai_line(custom_id: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": f"say hello to {custom_id}"},
            ],
        },
    }


def write_lines(path: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def client_for(sandbox: RunningAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=KEY,
        base_url=sandbox.base_url,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
    )


def create(client: anthropic.Anthropic, lines: Iterable[Mapping[str, Any]]) -> MessageBatch:
    """``batches.create`` with request dicts (the client types them as TypedDicts)."""
    return client.messages.batches.create(requests=cast(Any, list(lines)))


def gateway_for(sandbox: RunningAnthropic) -> AnthropicGateway:
    return AnthropicGateway(client_for(sandbox), sleep=lambda _s: None)


@dataclass
class Place:
    """Where state lives for one run: a store URL's store, and its name for ids."""

    name: str
    store: JobStore


@contextmanager
def place(kind: str, tmp_path: Path) -> Iterator[Place]:
    if kind == "sqlite":
        store = SQLiteJobStore(tmp_path / "store.db")
        try:
            yield Place("sqlite", store)
        finally:
            store.close()
        return
    from tests.persistence.dynamodb_server import fresh_store

    with fresh_store() as ddb:
        yield Place("dynamodb", ddb)


def tracker_on(
    tmp_path: Path,
    sandbox: RunningAnthropic,
    clock: FrozenClock,
    store: JobStore,
    *,
    lease_seconds: float = 300.0,
) -> Tracker:
    """A tracker of the ``anthropic`` profile on ``store``, results under tmp_path."""
    settings = Settings(
        provider="anthropic", results_dir=tmp_path / "results", lease_seconds=lease_seconds
    )
    runtime = build_runtime(
        settings, store=store, gateway=gateway_for(sandbox), clock=clock, workdir=tmp_path
    )
    return runtime.tracker


def delivered(results: Path) -> list[dict[str, Any]]:
    """Every delivered result line under a DirectorySink root, parsed."""
    return [
        orjson.loads(line)
        for path in sorted(results.glob("*/*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
