"""The embedded SQLite store (the default): standard library only."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.persistence.sqlite.store import SQLiteJobStore

__all__ = ["SQLiteJobStore"]


def __getattr__(name: str) -> Any:  # loaded on first use: importing a submodule stays cheap
    if name != "SQLiteJobStore":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module("batchfsm.persistence.sqlite.store").SQLiteJobStore
