"""Getting a job's results out: every delivered result of a job, merged across its
batches and retry rounds into one ordered stream.

Results are delivered per batch (``<results-dir>/<job_id>/<batch_id>.jsonl``, each line
``{"custom_id", "batch_id", "response"}``, each request at most once over all of them).
:func:`iter_results` reads those files once to index where each ``custom_id``'s line
starts, then yields the lines in the order asked for, reading each from disk when its
turn comes: a 1 GB job is merged in about the memory of its ids.

The input order is rebuilt from the job's submit intents (each lists its custom_ids in
the order of the input file, the first round before any retry), so the input file is
not needed; ids no intent lists come last, in custom_id order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import orjson

from batchfsm.persistence.sinks import DirectorySink

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = ["ORDERS", "JobResult", "ResultOrder", "input_order", "iter_results"]

ResultOrder = Literal["custom_id", "input"]
ORDERS: tuple[ResultOrder, ...] = ("custom_id", "input")
_PREFIX = b'{"custom_id":"'
_OPEN_FILES = 64


@dataclass(frozen=True, slots=True)
class JobResult:
    """One delivered result: its request's id, the batch that ran it, and the line as
    delivered (``{"custom_id", "batch_id", "response"}``, no newline)."""

    custom_id: str
    batch_id: str
    line: bytes

    def json(self) -> dict[str, Any]:
        """The line, parsed."""
        data: dict[str, Any] = orjson.loads(self.line)
        return data


def input_order(store: JobStore, job_id: str) -> list[str]:
    """The job's custom_ids in the order of its input file, from its submit intents."""
    seen: dict[str, None] = {}
    for intent in store.list_intents(job_id):
        for custom_id in intent.custom_ids:
            seen.setdefault(custom_id, None)
    return list(seen)


def _custom_id(raw: bytes) -> str:
    """The line's custom_id: read from its start when it is plain, else parsed."""
    if raw.startswith(_PREFIX):
        end = raw.find(b'"', len(_PREFIX))
        value = raw[len(_PREFIX) : end]
        if end > 0 and b"\\" not in value:
            return value.decode()
    custom_id: str = orjson.loads(raw)["custom_id"]
    return custom_id


def _index(sink: DirectorySink, job_id: str) -> dict[str, tuple[Path, int, str]]:
    """custom_id -> (file, offset of its line, batch id), over every delivered batch."""
    index: dict[str, tuple[Path, int, str]] = {}
    for batch_id in sink.batches(job_id):
        path = sink.path_for(job_id, batch_id)
        offset = 0
        with path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    index.setdefault(_custom_id(raw), (path, offset, batch_id))
                offset += len(raw)
    return index


def iter_results(
    store: JobStore, results_dir: Path, job_id: str, *, order: ResultOrder = "custom_id"
) -> Iterator[JobResult]:
    """Every delivered result of ``job_id``, once each, in ``custom_id`` or input order.

    :raises JobNotFoundError: the store has no such job (before anything is read).
    """
    store.load_job(job_id)
    index = _index(DirectorySink(results_dir), job_id)
    if order == "input":
        known = [c for c in input_order(store, job_id) if c in index]
        listed = set(known)
        keys = known + sorted(c for c in index if c not in listed)
    else:
        keys = sorted(index)
    handles: dict[Path, IO[bytes]] = {}
    try:
        for custom_id in keys:
            path, offset, batch_id = index[custom_id]
            handle = handles.get(path)
            if handle is None:
                if len(handles) >= _OPEN_FILES:  # a job of many batches: stay well under ulimit
                    handles.pop(next(iter(handles))).close()
                handle = handles[path] = path.open("rb")
            handle.seek(offset)
            yield JobResult(custom_id, batch_id, handle.readline().rstrip(b"\r\n"))
    finally:
        for handle in handles.values():
            handle.close()
