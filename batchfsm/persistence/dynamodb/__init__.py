"""The DynamoDB store: a single-table design with conditional commits; botocore only,
imported when a ``dynamodb://`` URL is opened."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

__all__ = ["DynamoDBJobStore"]


def __getattr__(name: str) -> Any:  # loaded on first use: importing a submodule stays cheap
    if name != "DynamoDBJobStore":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module("batchfsm.persistence.dynamodb.store").DynamoDBJobStore
