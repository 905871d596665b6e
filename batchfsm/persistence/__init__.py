"""Where batch state lives: the store contract, its backends and URL selection.

``open_store(url)`` picks a backend from a URL (``sqlite:///batchfsm.db`` by default).
The embedded stores use only the standard library; the DynamoDB store, and with it
boto3, is imported only when a ``dynamodb://`` URL is opened.
"""

from __future__ import annotations

from batchfsm.persistence.base import BaseJobStore, JobStore
from batchfsm.persistence.memory import MemoryJobStore
from batchfsm.persistence.sqlite import SQLiteJobStore
from batchfsm.persistence.url import default_store_url, open_store

__all__ = [
    "BaseJobStore",
    "JobStore",
    "MemoryJobStore",
    "SQLiteJobStore",
    "default_store_url",
    "open_store",
]
