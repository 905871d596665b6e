"""A local OpenAI Batch API server with scripted fates and fault injection.

Nobody can make OpenAI expire a batch on demand; the sandbox can. Point the official
client at it (``base_url`` or ``OPENAI_BASE_URL``) and rehearse every status: validation
failures, partial failures, expiry with partial output, slow cancellation, stuck
finalizing, vanished batches, 429/500 answers, stale reads and truncated downloads.

In-process (tests)::

    world = World(Scenario(...), clock=FrozenClock())
    app = SandboxApp(world)           # a WSGI app; use httpx2.WSGITransport(app=app)

Over HTTP::

    with running_sandbox(scenario, time_scale=3600) as sb:
        client = openai.OpenAI(api_key="x", base_url=sb.base_url)

Pytest fixtures live in :mod:`batchfsm.sandbox.testing`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.sandbox.api_errors import SandboxAPIError
    from batchfsm.sandbox.app import SandboxApp
    from batchfsm.sandbox.clock import ScaledClock
    from batchfsm.sandbox.scenario import (
        FATE_METADATA_KEY,
        Fate,
        Faults,
        Phases,
        Scenario,
        ScriptedFault,
        load_scenario,
    )
    from batchfsm.sandbox.server import RunningSandbox, make_sandbox_server, running_sandbox
    from batchfsm.sandbox.stats import RequestStats
    from batchfsm.sandbox.world import World

# Exported lazily, so ``batchfsm sandbox --help`` and ``import batchfsm.cli.sandbox``
# load neither werkzeug nor the world until a sandbox is really built.
_HOMES = {
    "FATE_METADATA_KEY": "scenario",
    "Fate": "scenario",
    "Faults": "scenario",
    "Phases": "scenario",
    "RequestStats": "stats",
    "RunningSandbox": "server",
    "SandboxAPIError": "api_errors",
    "SandboxApp": "app",
    "ScaledClock": "clock",
    "Scenario": "scenario",
    "ScriptedFault": "scenario",
    "World": "world",
    "load_scenario": "scenario",
    "make_sandbox_server": "server",
    "running_sandbox": "server",
}

__all__ = [
    "FATE_METADATA_KEY",
    "Fate",
    "Faults",
    "Phases",
    "RequestStats",
    "RunningSandbox",
    "SandboxAPIError",
    "SandboxApp",
    "ScaledClock",
    "Scenario",
    "ScriptedFault",
    "World",
    "load_scenario",
    "make_sandbox_server",
    "running_sandbox",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return list(__all__)
