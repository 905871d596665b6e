"""Pytest fixtures and helpers for testing against the sandbox.

Register as a plugin (``-p batchfsm.sandbox.testing`` or ``pytest_plugins``) to get:

``sandbox_clock``        a :class:`~batchfsm.ports.FrozenClock`; advance it to move batches
``sandbox_scenario``     the :class:`Scenario` (override this fixture to script fates)
``sandbox_app``          the in-process :class:`SandboxApp` (``.world``, ``.stats``)
``sandbox_client``       an official ``openai.OpenAI`` client wired in-process (no socket)
``sandbox_server``       the same app served over HTTP on loopback (:class:`RunningSandbox`)
``sandbox_http_client``  an ``openai.OpenAI`` client talking to ``sandbox_server``
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest

from batchfsm.ports import FrozenClock
from batchfsm.sandbox.app import SandboxApp
from batchfsm.sandbox.scenario import Scenario
from batchfsm.sandbox.server import RunningSandbox, running_sandbox
from batchfsm.sandbox.world import World

__all__ = [
    "batch_input",
    "openai_client",
    "sandbox_app",
    "sandbox_client",
    "sandbox_clock",
    "sandbox_http_client",
    "sandbox_scenario",
    "sandbox_server",
]

IN_PROCESS_BASE_URL = "http://sandbox.invalid/v1"


def openai_client(
    app: SandboxApp | None = None,
    *,
    base_url: str | None = None,
    api_key: str = "test",
    max_retries: int = 0,
) -> openai.OpenAI:
    """The official client, in-process through ``app`` or over HTTP to ``base_url``."""
    if app is not None:
        http_client = httpx2.Client(transport=httpx2.WSGITransport(app=app))
        return openai.OpenAI(
            api_key=api_key,
            base_url=IN_PROCESS_BASE_URL,
            max_retries=max_retries,
            http_client=http_client,
        )
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries)


def batch_input(
    custom_ids: Iterable[str],
    *,
    endpoint: str = "/v1/embeddings",
    model: str = "text-embedding-3-small",
) -> bytes:
    """A valid JSONL input file with one request per custom id."""
    lines = []
    for custom_id in custom_ids:
        body: dict[str, Any] = {"model": model}
        if endpoint == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": f"say {custom_id}"}]
        elif endpoint == "/v1/completions":
            body["prompt"] = f"say {custom_id}"
        else:
            body["input"] = f"text of {custom_id}"
        item = {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
        lines.append(orjson.dumps(item))
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def sandbox_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sandbox_scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def sandbox_app(sandbox_scenario: Scenario, sandbox_clock: FrozenClock) -> SandboxApp:
    return SandboxApp(World(sandbox_scenario, clock=sandbox_clock))


@pytest.fixture
def sandbox_client(sandbox_app: SandboxApp) -> Iterator[openai.OpenAI]:
    with openai_client(sandbox_app) as client:
        yield client


@pytest.fixture
def sandbox_server(sandbox_app: SandboxApp) -> Iterator[RunningSandbox]:
    with running_sandbox(app=sandbox_app) as running:
        yield running


@pytest.fixture
def sandbox_http_client(sandbox_server: RunningSandbox) -> Iterator[openai.OpenAI]:
    with openai_client(base_url=sandbox_server.base_url) as client:
        yield client
