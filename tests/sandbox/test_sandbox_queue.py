"""The sandbox's enqueued-token limit per model, through the official client (peak
tokens per model in ``GET /sandbox/stats``; with no limit set nothing is counted)."""

from __future__ import annotations

import io

import httpx2
import pytest

from batchfsm.ledger.tokens import count_line
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.queue import parse_queue_limits
from batchfsm.sandbox.testing import batch_input, openai_client

ENDPOINT = "/v1/embeddings"


def _tokens(ids: list[str]) -> int:
    return sum(count_line(line, ENDPOINT) for line in batch_input(ids).splitlines())


def _create(client, ids: list[str]) -> str:  # type: ignore[no-untyped-def]
    file = client.files.create(file=("in.jsonl", io.BytesIO(batch_input(ids))), purpose="batch")
    return str(
        client.batches.create(input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h").id
    )


def test_a_batch_past_the_limit_fails_and_tokens_come_back_when_batches_end() -> None:
    first, second, third = (
        [f"a{i}" for i in range(10)],
        [f"b{i}" for i in range(10)],
        [f"c{i}" for i in range(10)],
    )
    limit = _tokens(first) + _tokens(second)
    clock = FrozenClock()
    app = SandboxApp(World(Scenario(queue_limits={"text-embedding-3-small": limit}), clock=clock))
    with openai_client(app) as client:
        a, b = _create(client, first), _create(client, second)
        c = _create(client, third)
        clock.advance(3)
        assert client.batches.retrieve(a).status == "in_progress"
        refused = client.batches.retrieve(c)
        assert refused.status == "failed"
        assert refused.errors is not None and refused.errors.data is not None
        assert refused.errors.data[0].code == "token_limit_exceeded"
        clock.advance(60)  # a and b completed: their tokens are released
        assert client.batches.retrieve(b).status == "completed"
        d = _create(client, third)
        clock.advance(3)
        assert client.batches.retrieve(d).status == "in_progress"
        stats = (
            httpx2.Client(transport=httpx2.WSGITransport(app=app))
            .get("http://sandbox.invalid/sandbox/stats")
            .json()
        )
    assert stats["queue"] == {
        "limits": {"text-embedding-3-small": limit},
        "peak": {"text-embedding-3-small": limit},
    }


def test_no_limit_counts_nothing_and_refuses_nothing() -> None:
    app = SandboxApp(World(Scenario(), clock=FrozenClock()))
    with openai_client(app) as client:
        batch_id = _create(client, ["x"])
        assert client.batches.retrieve(batch_id).status == "validating"
    assert app.world.queue.snapshot() == {"limits": {}, "peak": {}}


def test_a_limit_for_another_model_leaves_this_one_alone() -> None:
    app = SandboxApp(World(Scenario(queue_limits={"gpt-4o": 1}), clock=FrozenClock()))
    with openai_client(app) as client:
        _create(client, [f"x{i}" for i in range(50)])
    assert app.world.queue.snapshot()["peak"] == {
        "text-embedding-3-small": _tokens([f"x{i}" for i in range(50)])
    }


def test_queue_limit_specs() -> None:
    assert parse_queue_limits(["gpt-4o-mini=2000000,*=10", "m=1"]) == {
        "gpt-4o-mini": 2_000_000,
        "*": 10,
        "m": 1,
    }
    with pytest.raises(ValueError, match="MODEL=TOKENS"):
        parse_queue_limits(["gpt-4o-mini"])
