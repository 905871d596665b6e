"""Check a batch input file locally and split it into batches that fit the API limits.

The API rejects a bad input file only *after* upload, often as an asynchronous
``failed`` batch (``errors.data`` codes ``invalid_json_line``, ``duplicate_custom_id``,
``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``). Catching the
same mistakes here costs nothing, names the exact line and field, and happens before a
byte is uploaded: :func:`plan_chunks` validates the *whole* file before it returns
its chunk iterator, so a bad line 90,000 never leaves chunk 1 already submitted.

Both passes stream the file line by line; what is kept between them is an 8-byte digest
per ``custom_id`` (to find repeats, :mod:`batchfsm.jobs.unique_ids`) and a few numbers
per chunk, never the text. A chunk holds its own lines' text, so peak memory is one
chunk (at most ``max_bytes``), never the file.

Endpoints: every one the API takes for batches (:mod:`batchfsm.jobs.endpoints`); a
retired one (``/v1/videos``) is refused with the reason.

Limits per batch (https://platform.openai.com/docs/guides/batch): 50,000 requests,
200 MB of input file, and for ``/v1/embeddings`` 50,000 embedding inputs summed over all
requests, where each element of an array ``input`` counts once, a string counts 1, and a
token array (a list of integers) is one input. Chunks are filled greedily in file order,
which for contiguous splitting also gives the fewest chunks.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchfsm.errors import InputFileError
from batchfsm.jobs.endpoints import (
    ENDPOINTS,
    MESSAGES,
    MODEL_OPTIONAL,
    RETIRED_ENDPOINTS,
    check_endpoint,
)
from batchfsm.jobs.input_lines import (
    check_fits_alone,
    check_request,
    custom_id_of,
    embedding_inputs,
    line_error,
    model_of,
    named_model,
    parse_line,
    strip_newline,
)
from batchfsm.jobs.unique_ids import IdDigests, first_repeat
from batchfsm.ledger.tokens import count_object
from batchfsm.providers.anthropic.requests import check_line

__all__ = [
    "ENDPOINTS",
    "RETIRED_ENDPOINTS",
    "Chunk",
    "ChunkPlan",
    "InputSummary",
    "Limits",
    "RequestLine",
    "check_endpoint",
    "plan_chunks",
    "read_chunks",
    "validate_input",
    "write_chunk",
]

EMBEDDINGS = "/v1/embeddings"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one batch may hold; the defaults are the API's."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    max_embedding_inputs: int = 50_000

    def __post_init__(self) -> None:
        if min(self.max_requests, self.max_bytes, self.max_embedding_inputs) < 1:
            raise ValueError(f"limits must be positive: {self}")


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One request as it will be sent: ``text`` is the original line without its
    newline; ``size`` is the bytes it takes in a chunk file (text + newline)."""

    custom_id: str
    text: str
    line: int
    size: int
    embedding_inputs: int
    input_tokens: int | None = None
    """Counted by :mod:`batchfsm.ledger.tokens` when :func:`plan_chunks` is asked to."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One batch's worth of requests, in file order."""

    index: int
    requests: tuple[RequestLine, ...]

    @property
    def size(self) -> int:
        return sum(r.size for r in self.requests)

    @property
    def embedding_inputs(self) -> int:
        return sum(r.embedding_inputs for r in self.requests)

    @property
    def custom_ids(self) -> tuple[str, ...]:
        return tuple(r.custom_id for r in self.requests)


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """What the validating pass saw of one chunk; the reading pass must see the same
    (else the file changed in between, and nothing of that chunk is sent)."""

    length: int
    size: int
    ids_digest: bytes


@dataclass(frozen=True)
class InputSummary:
    """The result of validating a whole file: totals and the chunks to cut."""

    path: Path
    endpoint: str
    model: str | None
    """None: the requests name no model (the endpoint's default, where it has one)."""
    requests: int
    size: int
    embedding_inputs: int
    chunks: tuple[ChunkPlan, ...]

    @property
    def chunk_lengths(self) -> tuple[int, ...]:
        """Number of requests in each chunk, in order."""
        return tuple(c.length for c in self.chunks)


Progress = Callable[[str], None]
"""Told what a long step is doing (``"checking in.jsonl: 120,000 lines"``), for a display."""

PROGRESS_EVERY = 10_000
"""Lines between two progress notes while a file is checked."""


def validate_input(
    path: Path, endpoint: str, *, limits: Limits | None = None, progress: Progress | None = None
) -> InputSummary:
    """Read ``path`` once, checking every line; raise :class:`InputFileError` at the
    first problem, naming the path, the 1-based line and the field."""
    limits = limits or Limits()
    path = Path(path)
    check_endpoint(endpoint, path=str(path))
    cutter = _ChunkCutter(limits)
    ids = IdDigests()
    model = _check_lines(path, endpoint, limits, cutter, ids, progress)
    if not cutter.requests:
        raise InputFileError("empty_file: the file has no requests", path=str(path))
    if suspects := ids.repeats():
        _refuse_repeat(path, suspects)
    return InputSummary(
        path=path,
        endpoint=endpoint,
        model=model,
        requests=cutter.requests,
        size=cutter.total_size,
        embedding_inputs=cutter.total_inputs,
        chunks=cutter.finish(),
    )


class _ChunkCutter:
    """Cuts the lines into chunks greedily in file order, as the first pass reads them."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.chunks: list[ChunkPlan] = []
        self.requests = self.total_size = self.total_inputs = 0
        self._start_chunk()

    def _start_chunk(self) -> None:
        self.length = self.size = self.inputs = 0
        self.ids = _ids_digest()

    def add(self, custom_id: str, size: int, inputs: int) -> None:
        limits = self.limits
        if self.length and (
            self.length + 1 > limits.max_requests
            or self.size + size > limits.max_bytes
            or self.inputs + inputs > limits.max_embedding_inputs
        ):
            self._close_chunk()
        self.length += 1
        self.size += size
        self.inputs += inputs
        self.ids.update(custom_id.encode() + b"\0")
        self.requests += 1
        self.total_size += size
        self.total_inputs += inputs

    def _close_chunk(self) -> None:
        self.chunks.append(ChunkPlan(self.length, self.size, self.ids.digest()))
        self._start_chunk()

    def finish(self) -> tuple[ChunkPlan, ...]:
        if self.length:
            self._close_chunk()
        return tuple(self.chunks)


def _ids_digest() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=16)


def _check_lines(
    path: Path,
    endpoint: str,
    limits: Limits,
    cutter: _ChunkCutter,
    ids: IdDigests,
    progress: Progress | None,
) -> str | None:
    """Every line checked alone and against the lines before it (one model); returns
    the file's model (``None`` if it names none). Repeated ids are found afterwards."""
    model: str | None = None
    model_line = 0
    optional = endpoint in MODEL_OPTIONAL
    for number, raw in _numbered_lines(path):
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(f"checking {path.name}: {number:,} lines")
        obj = parse_line(raw, path, number)
        custom_id = custom_id_of(obj, path, number)
        ids.add(custom_id)
        if endpoint == MESSAGES:  # Anthropic's shape, or an OpenAI chat line converted
            check_line(obj, path=str(path), line=number)  # a batch may mix models
            body: dict[str, Any] = {}
            line_model = None
        else:
            check_request(obj, endpoint, path, number)
            body = obj["body"]
            line_model = model_of(body, path, number, optional=optional)
        if not model_line:
            model, model_line = line_model, number
        elif line_model != model:
            raise line_error(
                f"model_mismatch: {named_model(line_model)} differs from {named_model(model)} "
                f"(line {model_line}); a batch takes one model",
                path,
                number,
                "body.model",
            )
        inputs = embedding_inputs(body, path, number) if endpoint == EMBEDDINGS else 0
        size = len(strip_newline(raw)) + 1
        check_fits_alone(
            size,
            inputs,
            max_bytes=limits.max_bytes,
            max_inputs=limits.max_embedding_inputs,
            path=path,
            number=number,
        )
        cutter.add(custom_id, size, inputs)
    return model


def _refuse_repeat(path: Path, suspects: set[int]) -> None:
    """Raise for the first line repeating an earlier ``custom_id`` (reading the file
    once more, comparing the suspects' ids themselves)."""
    ids = ((n, custom_id_of(parse_line(raw, path, n), path, n)) for n, raw in _numbered_lines(path))
    repeat = first_repeat(ids, suspects)
    if repeat is not None:
        number, custom_id, first = repeat
        raise line_error(
            f"duplicate custom_id {custom_id!r} (first on line {first})",
            path,
            number,
            "custom_id",
        )


def plan_chunks(
    path: Path,
    endpoint: str,
    *,
    max_requests: int = 50_000,
    max_bytes: int = 200 * 1024 * 1024,
    max_embedding_inputs: int = 50_000,
    count_tokens: bool = False,
) -> Iterator[Chunk]:
    """Validate the whole file, then yield its chunks in order, each within the limits.

    The call itself reads the whole file once and raises :class:`InputFileError` if any
    line is bad or one request alone exceeds a limit, so no chunk exists before the file
    is known good. The returned iterator then reads the file a second time, one chunk in
    memory at a time, counting each request's input tokens if ``count_tokens``.
    """
    limits = Limits(max_requests, max_bytes, max_embedding_inputs)
    summary = validate_input(path, endpoint, limits=limits)
    return read_chunks(summary, count_tokens=count_tokens)


def read_chunks(summary: InputSummary, *, count_tokens: bool = False) -> Iterator[Chunk]:
    """The chunks ``summary`` planned, read again one at a time (see :func:`plan_chunks`)."""
    path, endpoint = summary.path, summary.endpoint
    lines = _numbered_lines(path)
    for index, plan in enumerate(summary.chunks):
        requests: list[RequestLine] = []
        ids = _ids_digest()
        size = 0
        for number, raw in itertools.islice(lines, plan.length):
            text = strip_newline(raw)
            obj = _reread(text, path, number)
            custom_id = obj["custom_id"]
            inputs = (
                embedding_inputs(obj.get("body", {}), path, number) if endpoint == EMBEDDINGS else 0
            )
            tokens = count_object(obj, endpoint) if count_tokens else None
            requests.append(
                RequestLine(custom_id, text.decode(), number, len(text) + 1, inputs, tokens)
            )
            ids.update(custom_id.encode() + b"\0")
            size += len(text) + 1
        if (len(requests), size, ids.digest()) != (plan.length, plan.size, plan.ids_digest):
            raise line_error("the file changed while it was being read", path, None, None)
        yield Chunk(index=index, requests=tuple(requests))


def _reread(text: bytes, path: Path, number: int) -> dict[str, Any]:
    """A line read again after validation; anything odd means the file changed."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        obj = None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("custom_id"), str)
        or ("body" in obj and not isinstance(obj["body"], dict))
    ):
        raise line_error("the file changed while it was being read", path, number, None)
    return obj


def write_chunk(requests: Iterable[RequestLine | str], dest: Path) -> int:
    """Write request lines as JSONL for upload; returns the bytes written.

    Written to a temporary file beside ``dest`` and renamed into place, so ``dest`` is
    either complete or absent. Accepts :class:`RequestLine` s or bare line texts (the
    ledger keeps those for retry batches).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for request in requests:
                text = request.text if isinstance(request, RequestLine) else request
                data = text.encode() + b"\n"
                fh.write(data)
                written += len(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


# -- helpers ---------------------------------------------------------------------------


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    with fh:
        yield from enumerate(fh, start=1)
