"""Anthropic's Message Batches API behind the engine's :class:`~batchfsm.ports.BatchGateway`.

The official ``anthropic`` client (imported only when a client is built) does the HTTP:
its auth (``ANTHROPIC_API_KEY``, read by the client itself), its base URL
(``ANTHROPIC_BASE_URL``, how ``batchfsm sandbox --dialect anthropic`` is reached) and
its error types; its own retries are off, the gateway retries as the OpenAI one does
(full-jitter backoff on 429, 5xx including 529 ``overloaded_error``, timeouts and
connection errors; ``create`` only when the batch surely was not created).

The port was drawn for OpenAI's files; each call means here:

* ``upload(path)`` *holds* the lines: the API takes requests inline, so nothing is sent.
  Each line becomes a request (:func:`~batchfsm.providers.anthropic.requests.to_request`)
  and the requests are kept in this process under an id made from their digest,
  ``held-...``, until ``create`` sends them. A process that crashed holds nothing: a
  ``create`` for an id it does not hold is refused like a vanished file (404), and the
  intent goes back to ``planned`` to be held again from the ledger's lines.
* ``create`` sends them (``POST /v1/messages/batches``). There is no batch metadata, so
  the intent tag cannot travel: crash recovery matches batches by size and creation
  time instead (:mod:`batchfsm.jobs.untagged`).
* ``retrieve``, ``cancel`` and ``iter_batches`` read ``MessageBatch`` objects into the
  engine's shape (:func:`~batchfsm.providers.anthropic.mapping.read_anthropic`).
* ``download(batch_id)`` streams ``client.messages.batches.results``, which retrieves
  the batch and follows its ``results_url``, rewriting each line for the ledger
  (:func:`~batchfsm.providers.anthropic.mapping.result_line`).

The key never reaches a message or a log: it is scrubbed from the API's text, and an
SDK exception whose text carries it is not chained.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchfsm.errors import BatchNotFoundError, GatewayError, UndecodableSnapshotError
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.fsm.wire import raw_answer
from batchfsm.providers.anthropic.calls import retry_reason, scrub, translate
from batchfsm.providers.anthropic.mapping import ENDPOINT, read_anthropic, result_line
from batchfsm.providers.anthropic.requests import RequestProblem, to_request
from batchfsm.providers.profiles import PROFILES
from batchfsm.providers.retries import Retrying

if TYPE_CHECKING:
    import anthropic

__all__ = ["RESULTS_LIFETIME", "AnthropicGateway"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RESULTS_LIFETIME = 28 * 24 * 3600
"""What the record takes as the results' lifetime from the batch's end: results are kept
"29 days after creation", and a batch ends within 24 h of it, so its end plus 28 days
is never after the true moment (a warning comes early, never late)."""

DOWNLOAD_CHUNK = 1024 * 1024


class AnthropicGateway:
    """Message Batches with retries and typed errors (see the module docstring).

    ``client`` is an ``anthropic.Anthropic``; a copy with ``max_retries=0`` is used.
    ``sleep`` and ``rng`` are injected so tests see the delays without waiting.
    """

    output_expires_after = RESULTS_LIFETIME
    """Read by the tracker onto each record it creates (see :data:`RESULTS_LIFETIME`)."""

    def __init__(
        self,
        client: anthropic.Anthropic,
        *,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client.with_options(max_retries=0) if client.max_retries else client
        self.retrying = Retrying(
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            retry_after_cap=retry_after_cap,
            sleep=sleep,
            rng=rng or random.Random(),
        )
        self.profile = PROFILES["anthropic"]
        key = getattr(client, "api_key", None)
        self._secret = key if isinstance(key, str) and key else None
        self._held: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    # -- batches --------------------------------------------------------------------------

    def retrieve(self, batch_id: str) -> BatchSnapshot:
        """One ``GET /v1/messages/batches/{id}``."""
        batches = self._client.messages.batches
        answer = self._call(
            "retrieve",
            f"batch {batch_id}",
            lambda: _body(batches.with_raw_response.retrieve(batch_id)),
            batch_id=batch_id,
        )
        return self._snapshot(answer, batch_id)

    def cancel(self, batch_id: str) -> BatchSnapshot:
        """Ask to cancel; the answer is usually ``canceling`` (``cancelling``)."""
        batches = self._client.messages.batches
        answer = self._call(
            "cancel",
            f"batch {batch_id}",
            lambda: _body(batches.with_raw_response.cancel(batch_id)),
            batch_id=batch_id,
        )
        return self._snapshot(answer, batch_id)

    def create(
        self, input_file_id: str, endpoint: str, metadata: Mapping[str, str] | None = None
    ) -> BatchSnapshot:
        """Send the requests held under ``input_file_id`` as one batch. ``metadata`` is not
        sent: Message Batches carry none (crash recovery does without it)."""
        if endpoint != ENDPOINT:
            raise GatewayError(
                f"create batch: Anthropic batches are {ENDPOINT} requests, not {endpoint}",
                status_code=400,
                code="invalid_request_error",
            )
        with self._lock:
            held = self._held.get(input_file_id)
        if held is None:
            raise BatchNotFoundError(
                f"create batch from {input_file_id}: its requests are not held by this "
                "process (held requests live in memory until sent); they are held again "
                "from the ledger",
                status_code=404,
            )
        batches = self._client.messages.batches
        requests: list[Any] = [orjson.loads(line) for line in held]
        try:
            answer = self._call(
                "create",
                f"batch of {len(held)} requests",
                lambda: _body(batches.with_raw_response.create(requests=requests)),
                idempotent=False,
            )
        except GatewayError as exc:
            status = exc.status_code
            if status is not None and 400 <= status < 500 and status != 429:
                self._release(input_file_id)  # refused: never sent again under this id
            raise
        self._release(input_file_id)
        return self._snapshot(answer, None)

    def iter_batches(self, limit: int = 100) -> Iterator[BatchSnapshot]:
        """Every batch of the workspace, newest first, a page (retried) at a time."""
        batches = self._client.messages.batches
        after: str | None = None
        while True:
            options: dict[str, Any] = {"limit": limit}
            if after is not None:
                options["after_id"] = after
            page = self._call(
                "list",
                "batches" + (f" after {after}" if after else ""),
                functools.partial(_listed, batches, options),
            )
            if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
                raise GatewayError(f"list batches: unexpected answer {raw_answer(page)}")
            data: list[Any] = page["data"]
            for item in data:
                yield self._snapshot(item, None)
            last = page.get("last_id") or (data[-1].get("id") if data else None)
            if not data or page.get("has_more") is not True or not isinstance(last, str):
                return
            after = last

    # -- "files" --------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Hold the JSONL lines of ``path`` as requests (nothing is sent); their id."""
        lines: list[bytes] = []
        digest = hashlib.sha256()
        with Path(path).open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    request = to_request(orjson.loads(raw))
                except (orjson.JSONDecodeError, RequestProblem, AttributeError) as exc:
                    raise GatewayError(
                        f"hold {Path(path).name}: line {number} is no Message Batch "
                        f"request ({exc})",
                        status_code=400,
                        code="invalid_request_error",
                    ) from None
                line = orjson.dumps(request)
                digest.update(line + b"\n")
                lines.append(line)
        held_id = f"held-{digest.hexdigest()[:24]}"
        with self._lock:
            self._held[held_id] = lines
        return held_id

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        """Stream the results of batch ``file_id`` to ``dest``, one rewritten line per
        request; None (no request) when there is none. Written beside ``dest`` and
        renamed only once complete, so a broken stream leaves no file. A 404 (the batch,
        or its results after 29 days) raises :class:`BatchNotFoundError`."""
        if not file_id:
            return None
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        batches = self._client.messages.batches

        def attempt() -> Path:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            try:
                with (
                    os.fdopen(fd, "wb") as fh,
                    batches.with_streaming_response.results(file_id) as response,
                ):
                    for line in _lines(response.iter_bytes(DOWNLOAD_CHUNK)):
                        fh.write(result_line(line) + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return dest

        return self._call("download", f"results of batch {file_id}", attempt, batch_id=file_id)

    # -- helpers --------------------------------------------------------------------------

    def _release(self, held_id: str) -> None:
        with self._lock:
            self._held.pop(held_id, None)

    def _snapshot(self, answer: object, batch_id: str | None) -> BatchSnapshot:
        """The answer as a snapshot; an unreadable one keeps Anthropic's own words (not
        the mapped shape) in the error, scrubbed of the key."""
        data = read_anthropic(answer) if isinstance(answer, Mapping) else answer
        try:
            return BatchSnapshot.from_api(data, batch_id=batch_id)
        except UndecodableSnapshotError as exc:
            raw = orjson.loads(scrub(orjson.dumps(raw_answer(answer)).decode(), self._secret))
            word = answer.get("processing_status") if isinstance(answer, Mapping) else None
            raise UndecodableSnapshotError(
                scrub(str(exc), self._secret),
                batch_id=batch_id,
                problems=tuple(scrub(p, self._secret) for p in exc.problems),
                raw=raw,
                status=word if isinstance(word, str) else None,
            ) from None

    @property
    def max_attempts(self) -> int:
        return self.retrying.max_attempts

    def _call(
        self,
        operation: str,
        subject: str,
        fn: Callable[[], T],
        *,
        batch_id: str | None = None,
        idempotent: bool = True,
    ) -> T:
        with translate(operation, subject, batch_id=batch_id, secret=self._secret):
            return self.retrying.call(
                fn,
                operation=operation,
                subject=subject,
                reason=functools.partial(retry_reason, idempotent=idempotent),
                logger=log,
            )


def _body(response: Any) -> object:
    """A raw response's JSON body; its text when it is not JSON (an HTML page from a
    proxy), which the snapshot then refuses as undecodable."""
    content: bytes = response.http_response.content
    try:
        parsed: object = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace")
    return parsed


def _listed(batches: Any, options: dict[str, Any]) -> object:
    return _body(batches.with_raw_response.list(**options))


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (without their newline) from a stream of byte chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending
