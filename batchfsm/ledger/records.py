"""Records beside the batch lifecycle: jobs, submit intents and the per-request ledger.

A *job* is what a user submitted (one input file); it becomes one or more batches
(split to respect the API limits, plus retry batches). Every request of a job has one
ledger entry keyed by ``(job_id, custom_id)`` that says where it stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field

from batchfsm.ledger.usage import LineUsage

_set = object.__setattr__
_new = object.__new__


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """``BaseModel.model_copy``, without its generic copying for the common shallow
        update (a million-entry ledger copies each entry a few times). Like pydantic's,
        the update is not validated."""
        if deep or not update:
            return super().model_copy(update=update, deep=deep)
        new = _new(type(self))
        values = self.__dict__.copy()
        values.update(update)
        fields_set = self.__pydantic_fields_set__
        if not fields_set.issuperset(update):  # shared when unchanged: it is never mutated
            fields_set = fields_set | update.keys()
        _set(new, "__dict__", values)
        _set(new, "__pydantic_fields_set__", fields_set)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_private__", None)
        return new


class NewClaim(NamedTuple):
    """One request of a fresh job, as its first ledger entry will hold it
    (:meth:`batchfsm.ports.JobStore.insert_claimed`)."""

    custom_id: str
    line: str
    input_tokens: int | None


class JobRecord(_Record):
    job_id: str
    endpoint: str
    created_at: datetime
    source: str | None = None
    """Where the input came from (a path), for humans; retries never re-read it."""
    metadata: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = 3
    requests: int = 0
    version: int = 0


class IntentState(StrEnum):
    """Where a submit intent stands (:mod:`batchfsm.jobs.intents` walks it through)."""

    PLANNED = "planned"
    """Saved, its entries being claimed; nothing uploaded yet."""
    UPLOADED = "uploaded"
    """Its input file is uploaded; the batch may or may not exist yet."""
    CREATED = "created"
    """The batch exists and is tracked (final)."""
    ABANDONED = "abandoned"
    """Closed without a batch (final)."""


OPEN_INTENT_STATES = frozenset({IntentState.PLANNED, IntentState.UPLOADED})
"""An open intent owns its entries: a process may still be sending them."""
CLOSED_INTENT_STATES = frozenset({IntentState.CREATED, IntentState.ABANDONED})
"""Final: an intent never leaves them."""


class SubmitIntent(_Record):
    """Written before any upload, so a crash between ``create`` and our own write is
    reconciled by finding the batch whose metadata carries ``intent_id``.

    An open intent is *leased*: until ``lease_until`` only ``lease_owner`` works on it;
    after that a reconciler may take it over (a conditional write that renews the
    lease in its own name), so a crashed submitter's intent is finished exactly once.
    """

    intent_id: str
    job_id: str
    created_at: datetime
    custom_ids: tuple[str, ...]
    state: IntentState = IntentState.PLANNED
    file_id: str | None = None
    batch_id: str | None = None
    parent_batch_ids: tuple[str, ...] = ()
    input_tokens: int | None = None
    """Input tokens of the requests it sends (:mod:`batchfsm.ledger.tokens`), set at the
    upload; None: not counted."""
    lease_owner: str | None = None
    """The process (``Tracker.owner``) working on the intent."""
    lease_until: datetime | None = None
    """Nobody else takes the intent before this. None: written before leases existed;
    ``created_at`` plus ``Settings.lease_seconds`` stands in for it."""
    version: int = 0


class ItemState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    """Waiting for room in its model's enqueued-token budget (never sent yet, or
    refused with ``token_limit_exceeded``): the poller sends it when batches end."""
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


class ErrorCategory(StrEnum):
    """Why an item is not ``succeeded`` (``ItemError.category``)."""

    PERMANENT = "permanent"
    """The request itself was refused (4xx): sending it again would fail again."""
    RETRYABLE = "retryable"
    """It ran and failed in a way worth another try (5xx, 429, timeout)."""
    NOT_RUN = "not_run"
    """The batch expired or was cancelled before it ran (no attempt spent)."""
    MISSING = "missing"
    """The batch ended without a line for it."""
    QUEUE_FULL = "queue_full"
    """The batch failed with ``token_limit_exceeded``: wait, then resend."""
    INPUT = "input"
    """The batch or its input file was refused as a whole."""
    LOST = "lost"
    """The API no longer knows the batch (404)."""
    MALFORMED = "malformed"
    """Its result line could not be read."""
    ROUNDS = "rounds"
    """Sent in ``max_rounds`` batches without a result (expired, cancelled, missing each
    time): failed, so an auto-retry does not resend it for ever."""
    RESULTS_EXPIRED = "results_expired"
    """The batch's output or error file expired (404 after ``output_expires_after``)
    before it was downloaded: its result is out of reach, so it is sent again."""


QUEUE_FULL_CODE = "token_limit_exceeded"
"""The API's error code when a model's enqueued-token queue is full, on a failed batch
or on a refused create (:attr:`ErrorCategory.QUEUE_FULL`)."""

INTENT_KEY = "batchfsm_intent"
"""The batch metadata key naming the submit intent that created the batch (set at
``create``, see :mod:`batchfsm.jobs.metadata`): the ledger entries the batch carries are
stamped with that intent until a retry claims them."""


class ItemError(_Record):
    code: str | None = None
    message: str | None = None
    category: ErrorCategory
    at: datetime | None = None
    """When the error was met, where no batch records it (a create the API refused)."""
    repeats: int = 1
    """How many times in a row the entry met this error (same category and code)."""


class LedgerEntry(_Record):
    """One request of one job. ``attempts`` counts real executions only: a line in the
    output or error file other than ``batch_expired``/``batch_cancelled``."""

    job_id: str
    custom_id: str
    line: str
    """The original request line, so a retry never needs the input file again."""
    state: ItemState = ItemState.PENDING
    attempts: int = 0
    batches: tuple[str, ...] = ()
    last_error: ItemError | None = None
    result_batch_id: str | None = None
    input_tokens: int | None = None
    """The request's input tokens, counted at submit (:mod:`batchfsm.ledger.tokens`)."""
    intent_id: str | None = None
    """The submit intent that last claimed the entry, set in the same conditional write
    that makes it ``pending`` for a new batch. Only that intent sends it, and once the
    intent is closed without sending it, the entry is free again (see
    :func:`batchfsm.jobs.claims.release_stranded`)."""
    usage: LineUsage | None = None
    """The tokens its succeeded result line reported (:mod:`batchfsm.ledger.usage`);
    None: not succeeded, or the line reported none."""
    version: int = 0
