"""The one exception tree of batchfsm.

Every error the library raises on purpose derives from :class:`BatchFSMError`, so a
poller can catch one class and still tell cases apart. Context is keyword-only and kept
as attributes; the original exception, where there is one, is on ``__cause__``.

::

    BatchFSMError
    ├── SpecError                   the lifecycle spec contradicts itself
    ├── UnknownStatusError          a status outside the eight (from the API or storage)
    ├── TransitionError             a refused move; batch_id, current, requested
    │   ├── TerminalStateError      the batch is already terminal
    │   └── InvalidTransitionError  no path in the allowed graph
    ├── StoreError
    │   ├── JobNotFoundError
    │   ├── DuplicateJobError       create() on an id that exists
    │   ├── StaleJobError           lost the optimistic version check
│   │   └── ConflictRetriesExhaustedError  lost it on every attempt
    │   ├── StoreNotInitialisedError  the table/schema is missing: run ``batchfsm init``
    │   ├── StoreUnavailableError   the backend failed (sqlite3.Error, ClientError)
    │   └── StoreURLError           a --store URL that names no known store
    ├── GatewayError                the OpenAI API failed; batch_id, status_code
    │   ├── BatchNotFoundError      404: the batch or file is gone
    │   ├── RateLimitedError        429 after retries
    │   ├── GatewayUnavailableError 5xx, timeouts, connection failures after retries
    │   ├── AuthenticationFailedError  401/403: the key is wrong, revoked or not allowed
    │   └── UndecodableSnapshotError   a 200 answer that is not a Batch object we can read
    ├── InputFileError              bad JSONL: path, line, field
    ├── ConfigError                 a setting (environment or option) we cannot use
    ├── HandlerError                a recovery handler failed; effect_key
    └── MissingDependencyError      an optional part is not installed; extra, missing
        └── GraphvizNotFoundError   svg/png asked for, but Graphviz is not installed
"""

from __future__ import annotations


class BatchFSMError(Exception):
    """Base class of every error batchfsm raises on purpose."""


class SpecError(BatchFSMError):
    """The lifecycle spec is inconsistent; raised while building the rulebook."""


class UnknownStatusError(BatchFSMError):
    """A status string outside the eight; ``raw`` keeps it verbatim for the record."""

    def __init__(self, raw: object, *, batch_id: str | None = None, where: str = "") -> None:
        self.raw = raw
        self.batch_id = batch_id
        self.where = where
        place = f" in {where}" if where else ""
        who = f"batch {batch_id}: " if batch_id else ""
        super().__init__(f"{who}unknown batch status {raw!r}{place}")


class TransitionError(BatchFSMError):
    """A move the lifecycle does not allow; names the batch, its state and the request."""

    def __init__(self, *, batch_id: str, current: str, requested: str, reason: str) -> None:
        self.batch_id = batch_id
        self.current = current
        self.requested = requested
        self.reason = reason
        super().__init__(f"batch {batch_id}: cannot move {current} -> {requested} ({reason})")


class TerminalStateError(TransitionError):
    """The batch is in a terminal, absorbing state."""


class InvalidTransitionError(TransitionError):
    """No edge (or path) of the allowed graph leads there."""


class StoreError(BatchFSMError):
    """Base of persistence failures."""


class JobNotFoundError(StoreError):
    """``kind`` says what was missing: a batch, a job, an intent or a ledger entry."""

    def __init__(self, batch_id: str, *, kind: str = "batch") -> None:
        self.batch_id = batch_id
        self.kind = kind
        super().__init__(f"{kind} {batch_id} is not in this store")


class DuplicateJobError(StoreError):
    def __init__(self, batch_id: str, *, kind: str = "batch") -> None:
        self.batch_id = batch_id
        self.kind = kind
        super().__init__(f"{kind} {batch_id} is already in this store")


class StaleJobError(StoreError):
    """Another writer committed first; reload and re-apply, never overwrite."""

    def __init__(
        self,
        batch_id: str,
        *,
        expected_version: int,
        actual_version: int | None,
        kind: str = "batch",
    ) -> None:
        self.batch_id = batch_id
        self.kind = kind
        self.expected_version: int | None = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"{kind} {batch_id}: stale write (expected version {expected_version}, "
            f"store has {actual_version})"
        )


class ConflictRetriesExhaustedError(StaleJobError):
    """Every attempt of an optimistic write lost its race
    (:func:`batchfsm.persistence.optimistic.retry_on_conflict`): something keeps
    rewriting the same item. Nothing was overwritten; the work can simply run again."""

    def __init__(self, subject: str, *, attempts: int) -> None:
        self.subject = subject
        self.attempts = attempts
        self.batch_id = subject
        self.kind = "write"
        self.expected_version = None
        self.actual_version = None
        StoreError.__init__(
            self, f"{subject}: gave up after {attempts} attempts, each lost to another writer"
        )


class StoreNotInitialisedError(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist; run `batchfsm init --store ...` first")


class StoreUnavailableError(StoreError):
    """The backend itself failed; the cause is on ``__cause__``."""


class StoreURLError(StoreError, ValueError):
    """A store URL that cannot be understood."""


class GatewayError(BatchFSMError):
    """The OpenAI API (or a compatible server) failed."""

    def __init__(
        self,
        message: str,
        *,
        batch_id: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.status_code = status_code
        self.code = code
        """The API's own error code (e.g. ``duplicate_custom_id``), when it gave one."""
        super().__init__(message)


class BatchNotFoundError(GatewayError):
    """404 on a batch or one of its files: it is gone, not a reason to retry forever."""


class RateLimitedError(GatewayError):
    """429 after the gateway's retries were spent."""


class GatewayUnavailableError(GatewayError):
    """5xx, timeouts or connection failures after the gateway's retries were spent."""


class AuthenticationFailedError(GatewayError):
    """401/403: the API refused the key itself (wrong, revoked, or without access).

    Not a per-batch failure: every call with the same key fails the same way, so
    pollers let it through and the command ends (exit 1) instead of retrying each batch
    every cycle for ever.
    """


class UndecodableSnapshotError(GatewayError):
    """The API answered (200) with something that is not a Batch object batchfsm can
    read: fields of the wrong type (``request_counts: "lots"``), no ``status``, or a
    body that is not JSON at all (an HTML page from a proxy).

    It concerns one batch, never the poll: the tracker records it on that batch (the raw
    answer in its history, a counter on its record) and goes on with the others, and
    the batch keeps what it had. ``problems`` says what is wrong, field by field;
    ``raw`` is the answer as sent (a JSON object, or ``{"body": text}``), shortened when
    it is large; ``status`` the raw status, when there was a string one.
    """

    def __init__(
        self,
        message: str,
        *,
        batch_id: str | None = None,
        problems: tuple[str, ...] = (),
        raw: dict[str, object] | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(message, batch_id=batch_id)
        self.problems = problems
        self.raw: dict[str, object] = raw if raw is not None else {}
        self.status = status


class InputFileError(BatchFSMError, ValueError):
    """Bad input: says which file, which line (1-based) and which field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.detail = message
        where = []
        if path:
            where.append(path)
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field {field!r}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(f"{prefix}{message}")


class ConfigError(BatchFSMError, ValueError):
    """An environment variable or option has a value we cannot use (or none is set)."""


class HandlerError(BatchFSMError):
    """A recovery handler failed; the effect stays owed and is retried on the next poll.

    Raised for failures the handler can explain in one line (``detail``, the message
    without the effect key, the same for every batch hit by one cause such as an
    unusable results folder): logged as that line, with no traceback.
    """

    def __init__(self, message: str, *, effect_key: str) -> None:
        self.effect_key = effect_key
        self.detail = message
        super().__init__(f"{effect_key}: {message}")


class MissingDependencyError(BatchFSMError):
    """An optional part of batchfsm is not installed (an extra such as ``aws``).

    ``missing`` names what is absent, ``extra`` the extra that brings it (None when it
    is not a Python package, e.g. Graphviz's ``dot``). It is the user's setup, not a
    failure of the API or the store: the command line exits 2 with the message, which
    says what to install.
    """

    def __init__(self, message: str, *, missing: str, extra: str | None = None) -> None:
        self.missing = missing
        self.extra = extra
        super().__init__(message)


class GraphvizNotFoundError(MissingDependencyError):
    """Rendering a diagram needs Graphviz (the ``dot`` program or the Python package).

    ``missing`` names what is absent; the message says how to install it, because the
    person who sees it is usually running ``batchfsm diagram`` on a fresh machine.
    """

    def __init__(self, message: str, *, missing: str) -> None:
        super().__init__(message, missing=missing, extra="diagrams")


def gateway_error_for(status: int) -> type[GatewayError]:
    """The gateway error an HTTP status means, for every provider's client alike."""
    if status == 404:
        return BatchNotFoundError
    if status in (401, 403):  # the key itself: every call would fail the same way
        return AuthenticationFailedError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return GatewayUnavailableError
    return GatewayError
