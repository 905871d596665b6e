"""The one optimistic-concurrency loop: read, change, conditional write, and on a lost
race read again and redo the change.

Every write of a record, an intent or a ledger group is conditional on the version it
was read at; a writer that lost (:class:`~batchfsm.errors.StaleJobError`) must re-read
and recompute, never overwrite. Each caller's ``attempt`` does one read-change-write,
told whether it is a retry (then it must re-read instead of trusting what it held).
Retries are bounded and spaced by a short jittered backoff, so pollers racing on one
batch spread out instead of colliding again; when they run out the caller gets a
:class:`~batchfsm.errors.ConflictRetriesExhaustedError` naming what was contended and
how often it was tried. Nothing gives up silently.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from batchfsm.errors import ConflictRetriesExhaustedError, StaleJobError

__all__ = ["MAX_CONFLICT_RETRIES", "conflict_backoff", "retry_on_conflict"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CONFLICT_RETRIES = 8
"""Attempts per write. A conflict means another writer just committed; eight lost
races in a row only happen when something keeps rewriting the same item."""

_BACKOFF_BASE_S = 0.002
_BACKOFF_CAP_S = 0.1


def conflict_backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (0-based): none before the first
    retry (the winner has already committed), then full jitter, doubling up to 0.1 s."""
    if attempt <= 1:
        return 0.0
    return random.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** (attempt - 1)))


def retry_on_conflict(
    attempt: Callable[[bool], T],
    *,
    subject: str,
    attempts: int = MAX_CONFLICT_RETRIES,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Run ``attempt(retry)`` until it returns without a version conflict.

    ``retry`` is False on the first call (the caller may use what it already holds)
    and True after a lost race (the caller must read again). ``subject`` names what is
    contended (``"batch batch_abc"``, ``"ledger of job-1"``) for logs and the error.

    :raises ConflictRetriesExhaustedError: every attempt lost its race; it names
        ``subject`` and the attempts made, and chains the last conflict.
    """
    last: StaleJobError | None = None
    for number in range(attempts):
        pause = conflict_backoff(number)
        if pause:
            sleep(pause)
        try:
            return attempt(number > 0)
        except ConflictRetriesExhaustedError:
            raise  # an inner loop already gave up: do not multiply the attempts
        except StaleJobError as exc:
            last = exc
            logger.info("%s: lost a write race (attempt %d), re-reading", subject, number + 1)
    raise ConflictRetriesExhaustedError(subject, attempts=attempts) from last
