"""The one door to the Batch API: the only module that imports ``openai``.

:class:`OpenAIGateway` wraps an ``openai.OpenAI`` client (so the same code runs against
OpenAI, OpenAI-compatible gateways and the local sandbox, picked by ``OPENAI_BASE_URL``)
and adds what a poller needs from it:

* **Its own retries**, with full-jitter exponential backoff (delay drawn uniformly from
  ``[0, min(cap, base * 2**n)]``) on 429, 5xx, timeouts and connection errors, honouring
  ``Retry-After``/``retry-after-ms`` up to ``retry_after_cap``. Any other 4xx is final at
  once. The client's own retries are switched off (``max_retries=0``) so the two never
  multiply. ``create`` is not idempotent, so it retries only failures that prove the
  batch was not created (429, or a connection that never opened); after an ambiguous
  failure (5xx, timeout, dropped connection) the caller reconciles through the intent id
  it put in ``metadata`` (see :meth:`OpenAIGateway.iter_batches`).
* **One translation boundary** (:func:`_translate`): SDK and transport errors become
  :class:`~batchfsm.errors.BatchNotFoundError` (404), :class:`AuthenticationFailedError`
  (401/403, never retried), :class:`RateLimitedError` (429 after retries),
  :class:`GatewayUnavailableError` (5xx/timeouts/connection after retries) or
  :class:`GatewayError` (other 4xx), keeping the status code and the API's message.
  The API key never reaches a message or a log record: it is scrubbed from the API's
  text, and the SDK exception is not chained when its text contains it.
* **One snapshot per call**: ``retrieve`` makes one HTTP request (barring retries) and
  returns a :class:`~batchfsm.fsm.models.BatchSnapshot` with the raw status string, or
  raises :class:`~batchfsm.errors.UndecodableSnapshotError` (wrong-typed fields, an HTML
  body) for the tracker to record on that one batch.
* **Safe downloads**: result files stream to a temporary file beside the destination and
  are renamed into place only when complete, so a broken download leaves nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import httpx2
import openai

from batchfsm.config import DEFAULT_OUTPUT_EXPIRES_AFTER
from batchfsm.errors import (
    AuthenticationFailedError,
    GatewayError,
    GatewayUnavailableError,
    UndecodableSnapshotError,
    gateway_error_for,
)
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.ledger.records import QUEUE_FULL_CODE
from batchfsm.providers import PROFILES, ProviderProfile
from batchfsm.providers.retries import Retrying, transport_reason
from batchfsm.providers.wire import list_all, upload_file

__all__ = ["OpenAIGateway"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DOWNLOAD_CHUNK = 1024 * 1024

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")


class OpenAIGateway:
    """Batch and file operations with retries and typed errors.

    Parameters
    ----------
    client:
        An ``openai.OpenAI`` client; a copy with ``max_retries=0`` is used.
    max_attempts:
        Tries per operation, the first included.
    backoff_base, backoff_cap:
        Full-jitter backoff: the n-th retry sleeps ``uniform(0, min(cap, base * 2**n))``.
    retry_after_cap:
        A server's ``Retry-After`` is obeyed up to this many seconds.
    output_expires_after:
        Seconds each created batch's result files stay downloadable (3600..2592000, as
        ``Settings``); None sends nothing (their lifetime is then the provider's).
    sleep, rng:
        Injected so tests can see the delays without waiting.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 60.0,
        output_expires_after: int | None = DEFAULT_OUTPUT_EXPIRES_AFTER,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        profile: ProviderProfile | None = None,
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
        self.profile = profile or PROFILES["openai"]
        # Sent only where the provider documents it: an unknown parameter may be refused.
        self.output_expires_after = output_expires_after if self.profile.output_expiry else None
        key = getattr(client, "api_key", None)
        self._secret = key if isinstance(key, str) and key else None

    @classmethod
    def from_env(cls, **options: Any) -> OpenAIGateway:
        """A gateway on ``openai.OpenAI()``, which reads ``OPENAI_API_KEY`` and
        ``OPENAI_BASE_URL`` itself; ``options`` go to the gateway."""
        return cls(openai.OpenAI(max_retries=0), **options)

    # -- batches --------------------------------------------------------------------------

    def retrieve(self, batch_id: str) -> BatchSnapshot:
        """One ``GET /batches/{id}``; an unknown status string passes through as is."""
        batch = self._call(
            "retrieve",
            f"batch {batch_id}",
            lambda: self._client.batches.retrieve(batch_id),
            batch_id=batch_id,
        )
        return self._snapshot(batch, batch_id)

    def create(
        self, input_file_id: str, endpoint: str, metadata: Mapping[str, str] | None = None
    ) -> BatchSnapshot:
        """Create a batch (24 h window, result files living ``output_expires_after`` from
        their creation: the API's only anchor). Retried only when surely not created."""
        seconds = self.output_expires_after
        expiry: Any = {"anchor": "created_at", "seconds": seconds} if seconds else openai.omit
        batch = self._call(
            "create",
            f"batch from {input_file_id}",
            lambda: self._client.batches.create(
                input_file_id=input_file_id,
                endpoint=cast(Any, endpoint),
                completion_window="24h",
                metadata=dict(metadata) if metadata is not None else None,
                output_expires_after=expiry,
            ),
            idempotent=False,
        )
        return self._snapshot(batch, None)

    def cancel(self, batch_id: str) -> BatchSnapshot:
        """Ask to cancel; the returned snapshot is usually ``cancelling``."""
        batch = self._call(
            "cancel",
            f"batch {batch_id}",
            lambda: self._client.batches.cancel(batch_id),
            batch_id=batch_id,
        )
        return self._snapshot(batch, batch_id)

    def _snapshot(self, batch: object, batch_id: str | None) -> BatchSnapshot:
        """The client's answer as a snapshot. The client validates nothing (wrong-typed
        fields come back as is, a non-JSON 200 as a string): :meth:`BatchSnapshot.from_api`
        refuses those, and the key is scrubbed from everything its error keeps."""
        data = batch.to_dict(warnings=False) if isinstance(batch, openai.BaseModel) else batch
        data = self.profile.read_batch(data)  # the provider's shape and words -> OpenAI's
        try:
            return BatchSnapshot.from_api(data, batch_id=batch_id)
        except UndecodableSnapshotError as exc:
            raise _scrubbed(exc, self._secret) from None

    def iter_batches(self, limit: int = 100) -> Iterator[BatchSnapshot]:
        """Every batch of the organisation, newest first, one page (retried) at a time.

        Used to reconcile submit intents: find the batch whose ``metadata`` carries an
        intent id after a crash between ``create`` and recording its result.
        """
        if self.profile.list_shape == "array":  # one bare JSON array, no pages (Together)
            for batch in self._call("list", "batches", functools.partial(list_all, self._client)):
                yield self._snapshot(batch, None)
            return
        after: str | None = None
        while True:
            page = self._call(
                "list",
                "batches" + (f" after {after}" if after else ""),
                functools.partial(
                    self._client.batches.list, limit=limit, after=after or openai.omit
                ),
            )
            for batch in page.data:
                yield self._snapshot(batch, None)
            if not page.data or page.has_more is False:
                return
            after = page.data[-1].id

    # -- files ----------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Upload a JSONL input file (``purpose="batch"``, or the profile's route and
        purpose), streamed from disk."""
        path = Path(path)

        def attempt() -> str:
            with path.open("rb") as fh:
                return upload_file(self._client, self.profile, path.name, fh)

        return self._call("upload", f"file {path.name}", attempt)

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        """Stream a result file to ``dest``; ``None`` (no request) when there is no file.

        ``""`` and ``None`` both mean "no file" (an empty ``error_file_id`` is seen on
        clean batches). The bytes go to a temporary file beside ``dest``, renamed only
        once complete; a failed or truncated download leaves no file. 404 raises
        :class:`~batchfsm.errors.BatchNotFoundError` (the file expired or never existed).
        """
        if not file_id:
            return None
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> Path:
            fd, tmp_name = tempfile.mkstemp(
                dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
            )
            try:
                with (
                    os.fdopen(fd, "wb") as fh,
                    self._client.files.with_streaming_response.content(file_id) as response,
                ):
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp_name, dest)
            finally:
                Path(tmp_name).unlink(missing_ok=True)
            return dest

        return self._call("download", f"file {file_id}", attempt)

    # -- retries --------------------------------------------------------------------------

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
        with _translate(operation, subject, batch_id=batch_id, secret=self._secret):
            return self.retrying.call(
                fn,
                operation=operation,
                subject=subject,
                reason=functools.partial(_retry_reason, idempotent=idempotent),
                logger=log,
            )


def _retry_reason(exc: Exception, *, idempotent: bool) -> str | None:
    """Why ``exc`` is worth another try (for the log), or ``None`` if it is final."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429 and exc.code == QUEUE_FULL_CODE:
            return None  # the model's queue is full: only time helps (the caller backs off)
        if status == 429:
            return "HTTP 429"
        if status >= 500 and idempotent:
            return f"HTTP {status}"
        return None
    return transport_reason(exc, connection_error=openai.APIConnectionError, idempotent=idempotent)


@contextmanager
def _translate(
    operation: str, subject: str, *, batch_id: str | None, secret: str | None
) -> Iterator[None]:
    """Turn SDK and transport errors into the batchfsm gateway errors."""
    try:
        yield
    except openai.APIStatusError as exc:
        status = exc.status_code
        text = f"{operation} {subject}: HTTP {status}{_api_detail(exc, secret)}"
        code = exc.code if isinstance(exc.code, str) else None
        kind = gateway_error_for(status)
        if kind is AuthenticationFailedError:
            text += " (the API refused the key: check OPENAI_API_KEY and OPENAI_BASE_URL)"
        _raise(kind(text, batch_id=batch_id, status_code=status, code=code), exc, secret)
    except openai.APIConnectionError as exc:
        cause = type(exc.__cause__ or exc).__name__
        text = f"{operation} {subject}: cannot reach the API ({cause})"
        _raise(GatewayUnavailableError(text, batch_id=batch_id), exc, secret)
    except httpx2.TransportError as exc:
        text = f"{operation} {subject}: connection broke ({type(exc).__name__})"
        _raise(GatewayUnavailableError(text, batch_id=batch_id), exc, secret)
    except openai.APIError as exc:
        text = f"{operation} {subject}: unexpected answer ({_scrub(exc.message, secret)})"
        _raise(GatewayError(text, batch_id=batch_id), exc, secret)


def _api_detail(exc: openai.APIStatusError, secret: str | None) -> str:
    """`` (code): message`` from the API's error body, scrubbed of the key."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    code = exc.code or exc.type
    detail = f" ({code})" if code else ""
    if isinstance(message, str) and message:
        detail += f": {message}"
    return _scrub(detail, secret)


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("sk-***", text)


def _scrubbed(exc: UndecodableSnapshotError, secret: str | None) -> UndecodableSnapshotError:
    """``exc`` with the key removed from its message, problems and raw answer."""
    raw = json.loads(_scrub(json.dumps(exc.raw, ensure_ascii=False), secret))
    problems = tuple(_scrub(p, secret) for p in exc.problems)
    text, batch_id, status = _scrub(str(exc), secret), exc.batch_id, exc.status
    return UndecodableSnapshotError(
        text, batch_id=batch_id, problems=problems, raw=raw, status=status
    )


def _raise(error: GatewayError, exc: BaseException, secret: str | None) -> NoReturn:
    """Raise ``error`` chained to ``exc``, unless ``exc``'s own text carries the key."""
    leaks = secret is not None and secret in f"{exc} {getattr(exc, 'body', '')}"
    if leaks or _KEY_PATTERN.search(str(exc)):
        raise error from None
    raise error from exc
