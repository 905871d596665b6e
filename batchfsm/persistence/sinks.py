"""Where the results of succeeded requests go, delivered exactly once per batch.

The unit of delivery is one batch of one job: ``write_batch(job_id, batch_id, results)``
either publishes every result of that batch or nothing, and publishing the same batch a
second time (a crash and re-run, a duplicate webhook, a second poller racing the first)
writes nothing and returns 0. Callers may ask :meth:`ResultSink.has` first to skip
downloading and parsing a batch that is already delivered.

:class:`DirectorySink` layout::

    <root>/<job_id>/<batch_id>.jsonl          successes only, one line per custom_id:
                                              {"custom_id", "batch_id", "response": <body>}
    <root>.quarantine/<job_id>/<batch_id>.jsonl   lines kept aside for a human (malformed,
                                              unparseable), written by quarantine()

So ``<root>/**/*.jsonl`` is successes and nothing else; the quarantine sits in a sibling
directory (override with ``quarantine_dir``). Guarantees:

* **Atomic**: lines go to a hidden temporary file in the job directory, which is fsynced
  and then published under its final name in one step. If ``results`` raises midway,
  the temporary file is removed: no partial file, nothing listed.
* **Exactly once**: the final name is claimed with ``os.link``, which fails if the name
  exists, so of two concurrent writers exactly one publishes and the other discards its
  copy (returns 0). On a filesystem without hard links it falls back to ``os.replace``:
  still atomic, and a racing writer replaces the file with identical content.
* **Streaming**: ``results`` is consumed once, line by line; bodies are written as the
  raw JSON bytes given (``LineOutcome.body``) and never re-serialised. A custom_id seen
  twice in one batch is written once (the first).
* An empty batch still publishes an empty file, so ``has`` says it was delivered.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from batchfsm.ports import QuarantinedLine

__all__ = ["MAX_NAME_BYTES", "DirectorySink", "MemorySink", "unsafe_name"]

MAX_NAME_BYTES = 200
"""The longest id used as a file name: leaves room for the suffixes added to it (an
upload's ``<job>.<intent>.jsonl``) under the usual 255-byte limit of a file name."""


def _result_line(custom_id: str, batch_id: str, body: bytes) -> bytes:
    if b"\n" in body:  # pretty-printed JSON would break the JSONL framing
        body = orjson.dumps(orjson.loads(body))
    return b"".join((
        b'{"custom_id":', orjson.dumps(custom_id),
        b',"batch_id":', orjson.dumps(batch_id),
        b',"response":', body, b"}\n",
    ))  # fmt: skip


def _quarantine_line(job_id: str, batch_id: str, item: QuarantinedLine) -> bytes:
    return orjson.dumps({
        "job_id": job_id,
        "batch_id": batch_id,
        "source": item.source,
        "line": item.line,
        "reason": item.reason,
        "raw": item.raw.decode(errors="replace"),
    }) + b"\n"  # fmt: skip


def _unique(results: Iterable[tuple[str, bytes]], batch_id: str) -> Iterator[bytes]:
    seen: set[str] = set()
    for custom_id, body in results:
        if custom_id in seen:
            continue
        seen.add(custom_id)
        yield _result_line(custom_id, batch_id, body)


def unsafe_name(value: str) -> str | None:
    """Why ``value`` cannot be used as one file or folder name, or None if it can.

    Job and batch ids become path components (``<root>/<job_id>/<batch_id>.jsonl``,
    S3 keys alike): anything that could leave the folder (``..``, a separator), hide a
    file (a leading dot), break a line or exceed a file name's length is refused. A
    user's ``--job-id`` is checked with this before anything is written or uploaded.
    """
    if not value:
        return "is empty"
    if value.startswith("."):
        return "starts with a dot (a hidden file or a parent folder)"
    if any(c in value for c in "/\\"):
        return "contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    if len(value.encode()) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def _check_name(kind: str, value: str) -> None:
    """Ids become path components: refuse anything that could escape the directory."""
    problem = unsafe_name(value)
    if problem is not None:
        raise ValueError(f"{kind} {value!r} cannot be used as a file name: it {problem}")


class DirectorySink:
    """JSONL files of successes under ``root``; see the module docstring for the rules."""

    def __init__(self, root: Path, *, quarantine_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.quarantine_dir = (
            Path(quarantine_dir)
            if quarantine_dir is not None
            else self.root.with_name(self.root.name + ".quarantine")
        )

    def path_for(self, job_id: str, batch_id: str) -> Path:
        _check_name("job_id", job_id)
        _check_name("batch_id", batch_id)
        return self.root / job_id / f"{batch_id}.jsonl"

    def has(self, job_id: str, batch_id: str) -> bool:
        return self.path_for(job_id, batch_id).exists()

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        dest = self.path_for(job_id, batch_id)
        if dest.exists():
            return 0
        with _folder_errors(self.root):
            return _publish(dest, _unique(results, batch_id))

    def quarantine(self, job_id: str, batch_id: str, lines: Iterable[QuarantinedLine]) -> int:
        _check_name("job_id", job_id)
        _check_name("batch_id", batch_id)
        dest = self.quarantine_dir / job_id / f"{batch_id}.jsonl"
        if dest.exists():
            return 0
        with _folder_errors(self.quarantine_dir):
            return _publish(dest, (_quarantine_line(job_id, batch_id, item) for item in lines))

    def batches(self, job_id: str) -> list[str]:
        """Batch ids delivered for ``job_id``, sorted."""
        _check_name("job_id", job_id)
        return sorted(p.stem for p in (self.root / job_id).glob("*.jsonl"))

    def read_batch(self, job_id: str, batch_id: str) -> Iterator[tuple[str, bytes]]:
        """Stream back ``(custom_id, raw body)`` of a delivered batch."""
        with self.path_for(job_id, batch_id).open("rb") as fh:
            for raw in fh:
                row = orjson.loads(raw)
                yield row["custom_id"], orjson.dumps(row["response"])


@contextmanager
def _folder_errors(folder: Path) -> Iterator[None]:
    """An OSError writing under ``folder`` names ``folder`` itself, not the job folder
    or temporary file it met: one unusable results folder is then one cause, said the
    same way for every batch (and logged once per poll cycle), whatever job it is."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(folder)) from exc


def _publish(dest: Path, lines: Iterable[bytes]) -> int:
    """Write ``lines`` to a temp file, then claim ``dest`` only if it does not exist."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    count = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for data in lines:
                fh.write(data)
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return 0  # another writer published this batch first
        except OSError as exc:
            if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}:
                raise
            if dest.exists():
                return 0
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return count
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemorySink:
    """In-memory sink with the same once-only, all-or-nothing rules (tests, dry runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        self.quarantined: dict[tuple[str, str], list[QuarantinedLine]] = {}

    def has(self, job_id: str, batch_id: str) -> bool:
        with self._lock:
            return (job_id, batch_id) in self.results

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        if self.has(job_id, batch_id):
            return 0
        seen: set[str] = set()
        rows: list[tuple[str, bytes]] = []
        for custom_id, body in results:
            if custom_id not in seen:
                seen.add(custom_id)
                rows.append((custom_id, bytes(body)))
        with self._lock:
            if (job_id, batch_id) in self.results:
                return 0
            self.results[(job_id, batch_id)] = rows
        return len(rows)

    def read_batch(self, job_id: str, batch_id: str) -> Iterator[tuple[str, bytes]]:
        """Stream back ``(custom_id, raw body)`` of a delivered batch."""
        with self._lock:
            rows = list(self.results.get((job_id, batch_id), ()))
        yield from rows

    def quarantine(self, job_id: str, batch_id: str, lines: Iterable[QuarantinedLine]) -> int:
        items = list(lines)
        with self._lock:
            if (job_id, batch_id) in self.quarantined:
                return 0
            self.quarantined[(job_id, batch_id)] = items
        return len(items)
