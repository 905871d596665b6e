"""The pure core: lifecycle spec, records, the rulebook machine, replay and diagrams.

Importing this package performs no I/O and imports neither openai nor boto3.
"""

from batchfsm.fsm.engine import Applied, Rulebook, rulebook
from batchfsm.fsm.models import (
    BatchRecord,
    BatchSnapshot,
    EventEntry,
    HistoryEntry,
    Hop,
    OutboxEntry,
    RejectionEntry,
    TransitionEntry,
)
from batchfsm.fsm.spec import EDGES, INITIAL, TERMINAL, BatchStatus, Edge, EdgeKind

__all__ = [
    "EDGES",
    "INITIAL",
    "TERMINAL",
    "Applied",
    "BatchRecord",
    "BatchSnapshot",
    "BatchStatus",
    "Edge",
    "EdgeKind",
    "EventEntry",
    "HistoryEntry",
    "Hop",
    "OutboxEntry",
    "RejectionEntry",
    "Rulebook",
    "TransitionEntry",
    "rulebook",
]
