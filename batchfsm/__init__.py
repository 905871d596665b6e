"""batchfsm: run OpenAI Batch API jobs without losing work.

The public names are loaded on first use, so ``import batchfsm`` costs almost nothing
and pulls in neither ``openai`` nor ``boto3``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "BatchFSMError": "batchfsm.errors",
    "BatchRecord": "batchfsm.fsm.models",
    "BatchSnapshot": "batchfsm.fsm.models",
    "BatchStatus": "batchfsm.fsm.spec",
    "FrozenClock": "batchfsm.ports",
    "JobStore": "batchfsm.persistence.base",
    "OpenAIGateway": "batchfsm.gateway",
    "PollReport": "batchfsm.tracker",
    "ReplayResult": "batchfsm.fsm.replay",
    "Rulebook": "batchfsm.fsm.engine",
    "Settings": "batchfsm.config",
    "Tracker": "batchfsm.tracker",
    "open_store": "batchfsm.persistence.url",
    "replay": "batchfsm.fsm.replay",
    "rulebook": "batchfsm.fsm.engine",
}

__all__ = [
    "BatchFSMError",
    "BatchRecord",
    "BatchSnapshot",
    "BatchStatus",
    "FrozenClock",
    "JobStore",
    "OpenAIGateway",
    "PollReport",
    "ReplayResult",
    "Rulebook",
    "Settings",
    "Tracker",
    "open_store",
    "replay",
    "rulebook",
]

if TYPE_CHECKING:
    from batchfsm.config import Settings
    from batchfsm.errors import BatchFSMError
    from batchfsm.fsm.engine import Rulebook, rulebook
    from batchfsm.fsm.models import BatchRecord, BatchSnapshot
    from batchfsm.fsm.replay import ReplayResult, replay
    from batchfsm.fsm.spec import BatchStatus
    from batchfsm.gateway import OpenAIGateway
    from batchfsm.persistence.url import open_store
    from batchfsm.ports import FrozenClock, JobStore
    from batchfsm.tracker import PollReport, Tracker


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batchfsm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
