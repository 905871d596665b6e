"""Where batch state lives: the store contract and its backends."""

from batchfsm.persistence.base import JobStore

__all__ = ["JobStore"]
