"""Where batch state lives: the store contract, its backends and URL selection.

``open_store(url)`` picks a backend from a URL (callers pass ``Settings.store_url``).
Backends are imported on first use: the embedded stores use only the standard library;
the DynamoDB store, and with it boto3, is imported only when a ``dynamodb://`` URL is
opened, and a DynamoDB poller (the Lambda) never loads ``sqlite3``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from batchfsm.persistence.base import BaseJobStore, JobStore
from batchfsm.persistence.url import open_store

if TYPE_CHECKING:
    from batchfsm.persistence.memory import MemoryJobStore
    from batchfsm.persistence.sqlite.store import SQLiteJobStore

__all__ = [
    "BaseJobStore",
    "JobStore",
    "MemoryJobStore",
    "SQLiteJobStore",
    "open_store",
]

_LAZY = {
    "MemoryJobStore": "batchfsm.persistence.memory",
    "SQLiteJobStore": "batchfsm.persistence.sqlite.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchfsm.persistence' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
