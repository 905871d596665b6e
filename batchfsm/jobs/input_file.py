"""Check a batch input file locally and split it into batches that fit the API limits.

The API rejects a bad input file only *after* upload, often as an asynchronous
``failed`` batch (``errors.data`` codes ``invalid_json_line``, ``duplicate_custom_id``,
``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``). Catching the
same mistakes here costs nothing, names the exact line and field, and happens before a
byte is uploaded: :func:`plan_chunks` validates the *whole* file before it returns
its chunk iterator, so a bad line 90,000 never leaves chunk 1 already submitted.

Both passes stream the file line by line; what is kept between them is one small
record per line (custom_id, size, embedding-input count), not the text. A chunk holds
its own lines' text, so peak memory is one chunk (at most ``max_bytes``), never the
file.

Endpoints: every one the API takes for batches (:mod:`batchfsm.jobs.endpoints`); a
retired one (``/v1/videos``) is refused with the reason.

Limits per batch (https://platform.openai.com/docs/guides/batch): 50,000 requests,
200 MB of input file, and for ``/v1/embeddings`` 50,000 embedding inputs summed over all
requests, where each element of an array ``input`` counts once, a string counts 1, and a
token array (a list of integers) is one input. Chunks are filled greedily in file order,
which for contiguous splitting also gives the fewest chunks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
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
from batchfsm.providers.anthropic.requests import check_line

__all__ = [
    "ENDPOINTS",
    "RETIRED_ENDPOINTS",
    "Chunk",
    "InputSummary",
    "Limits",
    "RequestLine",
    "check_endpoint",
    "plan_chunks",
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
class _LineInfo:
    custom_id: str
    size: int
    embedding_inputs: int


@dataclass(frozen=True, slots=True)
class InputSummary:
    """The result of validating a whole file: totals and where chunks start."""

    path: Path
    endpoint: str
    model: str | None
    """None: the requests name no model (the endpoint's default, where it has one)."""
    requests: int
    size: int
    embedding_inputs: int
    chunk_lengths: tuple[int, ...]
    """Number of requests in each chunk, in order."""
    _lines: tuple[_LineInfo, ...]


def validate_input(path: Path, endpoint: str, *, limits: Limits | None = None) -> InputSummary:
    """Read ``path`` once, checking every line; raise :class:`InputFileError` at the
    first problem, naming the path, the 1-based line and the field."""
    limits = limits or Limits()
    path = Path(path)
    check_endpoint(endpoint, path=str(path))
    infos, model = _check_lines(path, endpoint, limits)
    if not infos:
        raise InputFileError("empty_file: the file has no requests", path=str(path))
    return InputSummary(
        path=path,
        endpoint=endpoint,
        model=model,
        requests=len(infos),
        size=sum(i.size for i in infos),
        embedding_inputs=sum(i.embedding_inputs for i in infos),
        chunk_lengths=_chunk_lengths(infos, limits),
        _lines=tuple(infos),
    )


def _check_lines(path: Path, endpoint: str, limits: Limits) -> tuple[list[_LineInfo], str | None]:
    """Every line checked alone and against the lines before it (unique custom_id, one
    model); returns each line's record and the file's model (``None`` if empty)."""
    seen: dict[str, int] = {}
    infos: list[_LineInfo] = []
    model: str | None = None
    model_line = 0
    optional = endpoint in MODEL_OPTIONAL
    for number, raw in _numbered_lines(path):
        obj = _parse(raw, path, number)
        custom_id = _custom_id(obj, path, number)
        if custom_id in seen:
            raise _error(
                f"duplicate custom_id {custom_id!r} (first on line {seen[custom_id]})",
                path,
                number,
                "custom_id",
            )
        seen[custom_id] = number
        if endpoint == MESSAGES:  # Anthropic's shape, or an OpenAI chat line converted
            check_line(obj, path=str(path), line=number)  # a batch may mix models
            body: dict[str, Any] = {}
            line_model = None
        else:
            _check_request(obj, endpoint, path, number)
            body = obj["body"]
            line_model = _model(body, path, number, optional=optional)
        if not model_line:
            model, model_line = line_model, number
        elif line_model != model:
            raise _error(
                f"model_mismatch: {_named(line_model)} differs from {_named(model)} "
                f"(line {model_line}); a batch takes one model",
                path,
                number,
                "body.model",
            )
        inputs = _embedding_inputs(body, path, number) if endpoint == EMBEDDINGS else 0
        size = len(_strip_newline(raw)) + 1
        _check_fits_alone(size, inputs, limits, path, number)
        infos.append(_LineInfo(custom_id, size, inputs))
    return infos, model


def _chunk_lengths(infos: list[_LineInfo], limits: Limits) -> tuple[int, ...]:
    """The number of requests in each chunk, filling chunks greedily in file order."""
    chunk_lengths: list[int] = []
    in_chunk = chunk_size = chunk_inputs = 0
    for info in infos:
        if in_chunk and (
            in_chunk + 1 > limits.max_requests
            or chunk_size + info.size > limits.max_bytes
            or chunk_inputs + info.embedding_inputs > limits.max_embedding_inputs
        ):
            chunk_lengths.append(in_chunk)
            in_chunk = chunk_size = chunk_inputs = 0
        in_chunk += 1
        chunk_size += info.size
        chunk_inputs += info.embedding_inputs
    chunk_lengths.append(in_chunk)
    return tuple(chunk_lengths)


def plan_chunks(
    path: Path,
    endpoint: str,
    *,
    max_requests: int = 50_000,
    max_bytes: int = 200 * 1024 * 1024,
    max_embedding_inputs: int = 50_000,
) -> Iterator[Chunk]:
    """Validate the whole file, then yield its chunks in order, each within the limits.

    The call itself reads the whole file once and raises :class:`InputFileError` if any
    line is bad or one request alone exceeds a limit, so no chunk exists before the file
    is known good. The returned iterator then reads the file a second time, one chunk in
    memory at a time.
    """
    limits = Limits(max_requests, max_bytes, max_embedding_inputs)
    summary = validate_input(path, endpoint, limits=limits)
    return _read_chunks(summary)


def _read_chunks(summary: InputSummary) -> Iterator[Chunk]:
    infos = iter(enumerate(summary._lines, start=1))
    lines = _numbered_lines(summary.path)
    for index, length in enumerate(summary.chunk_lengths):
        requests: list[RequestLine] = []
        for (number, info), (_, raw) in zip(_take(infos, length), lines, strict=False):
            text = _strip_newline(raw)
            if len(text) + 1 != info.size:
                raise _error("the file changed while it was being read", summary.path, number, None)
            requests.append(
                RequestLine(info.custom_id, text.decode(), number, info.size, info.embedding_inputs)
            )
        if len(requests) != length:
            raise _error(
                "the file changed while it was being read (it is shorter)", summary.path, None, None
            )
        yield Chunk(index=index, requests=tuple(requests))


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


def _take(it: Iterator[tuple[int, _LineInfo]], n: int) -> Iterator[tuple[int, _LineInfo]]:
    for _ in range(n):
        item = next(it, None)
        if item is None:
            return
        yield item


def _strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    return raw


def _error(message: str, path: Path, line: int | None, field: str | None) -> InputFileError:
    return InputFileError(message, path=str(path), line=line, field=field)


def _parse(raw: bytes, path: Path, number: int) -> dict[str, Any]:
    if raw.isspace() or not raw:
        raise _error(
            "blank line: the API rejects blank lines in a batch file (remove it)",
            path,
            number,
            None,
        )
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        raise _error(f"not UTF-8 (byte {exc.start})", path, number, None) from exc
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _error(f"invalid_json_line: {exc}", path, number, None) from exc
    if not isinstance(obj, dict):
        raise _error(f"a line must be a JSON object, not {type(obj).__name__}", path, number, None)
    return obj


def _custom_id(obj: dict[str, Any], path: Path, number: int) -> str:
    if "custom_id" not in obj:
        raise _error("custom_id is missing", path, number, "custom_id")
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        raise _error(
            f"custom_id must be a non-empty string, not {custom_id!r}", path, number, "custom_id"
        )
    return custom_id


def _model(body: dict[str, Any], path: Path, number: int, *, optional: bool) -> str | None:
    model = body.get("model")
    if model is None and optional:
        return None
    if not isinstance(model, str) or not model:
        raise _error("body.model must be a non-empty string", path, number, "body.model")
    return model


def _named(model: str | None) -> str:
    return repr(model) if model is not None else "no model (the endpoint's default)"


def _check_request(obj: dict[str, Any], endpoint: str, path: Path, number: int) -> None:
    method = obj.get("method")
    if method != "POST":
        raise _error(f"method must be 'POST', not {method!r}", path, number, "method")
    url = obj.get("url")
    if url != endpoint:
        raise _error(
            f"url_mismatch: {url!r} is not the batch endpoint {endpoint!r}", path, number, "url"
        )
    if not isinstance(obj.get("body"), dict):
        raise _error("body must be a JSON object", path, number, "body")


def _embedding_inputs(body: dict[str, Any], path: Path, number: int) -> int:
    value = body.get("input")
    if isinstance(value, str):
        return 1
    if isinstance(value, list) and value:
        if all(type(item) is int for item in value):
            return 1  # one pre-tokenised input
        return len(value)
    raise _error(
        "embeddings need body.input: a string or a non-empty array", path, number, "body.input"
    )


def _check_fits_alone(size: int, inputs: int, limits: Limits, path: Path, number: int) -> None:
    if size > limits.max_bytes:
        raise _error(
            f"this request alone is {size} bytes, over the {limits.max_bytes}-byte batch limit",
            path,
            number,
            None,
        )
    if inputs > limits.max_embedding_inputs:
        raise _error(
            f"this request alone has {inputs} embedding inputs, over the limit of "
            f"{limits.max_embedding_inputs} per batch",
            path,
            number,
            "body.input",
        )
