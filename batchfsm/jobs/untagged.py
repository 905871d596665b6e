"""Crash recovery for batches that carry no tag: find an intent's batch by its size and
its creation time.

OpenAI's batches carry the intent id in their metadata, Together's the file the intent
uploaded. Anthropic's Message Batches carry neither: no metadata, no input file. What
is left to recognise a batch an intent created before its process died is what the API
does show: how many requests it holds and when it was created. The reconcile
(:mod:`batchfsm.jobs.reconcile`) reads the workspace's batches newest first and stops at
the oldest open intent's creation time; among the ones with no tag, an intent's batch
is the one that

* holds exactly as many requests as the intent owns (``request_counts`` sum),
* was created after the intent was planned and before now (each less and more
  :data:`~batchfsm.jobs.reconcile.CLOCK_SKEW`, for the two clocks),
* is tracked by no one (a batch another intent adopted is in the store).

All of it runs under the intent's lease, taken over by one conditional write, so two
reconcilers never match (and never create) for the same intent.

**The window that cannot be reconciled at once.** Two or more intents of the same size,
whose processes all died between sending ``create`` and recording its answer (or
another tool creating a batch of that size in the same workspace meanwhile), leave two
or more untracked batches that fit one intent, and nothing in a running batch says
whose it is. The engine then adopts none and creates nothing (a guess could deliver one
job's results to another; a new batch would pay twice): the intent stays open, its
requests neither resent nor lost, and each reconcile logs an ERROR naming the
candidates. Once they have ended (within their 24 hours) their results name their
requests: the candidate whose results carry exactly the intent's ``custom_id`` s is
adopted then, and harvested as usual. Only if none or several match (the results are
gone, 29 days on; another tool sent the very same ids) does the intent stay open for a
person to close.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from batchfsm.errors import GatewayError, JobNotFoundError

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchSnapshot
    from batchfsm.jobs.intents import Intents
    from batchfsm.ledger.records import SubmitIntent

__all__ = ["AmbiguousBatchError", "is_untagged", "match_untagged"]

logger = logging.getLogger(__name__)


class AmbiguousBatchError(GatewayError):
    """Several untracked batches fit one intent: none is adopted, nothing is created."""


def is_untagged(snapshot: BatchSnapshot) -> bool:
    """Whether nothing in the batch names who created it (no metadata, no input file)."""
    return not snapshot.metadata and not snapshot.input_file_id


def match_untagged(
    intents: Intents,
    intent: SubmitIntent,
    candidates: Sequence[BatchSnapshot],
    *,
    skew: timedelta,
) -> BatchSnapshot | None:
    """The one untagged batch that fits ``intent`` (see the module), or None if none does.

    :raises AmbiguousBatchError: more than one fits.
    """
    size = len(intent.custom_ids)
    low = (intent.created_at - skew).timestamp()
    high = (intents.clock.now() + skew).timestamp()
    fits = [
        snapshot
        for snapshot in candidates
        if snapshot.id
        and snapshot.request_counts is not None
        and snapshot.request_counts.total == size
        and snapshot.created_at is not None
        and low <= snapshot.created_at <= high
        and not _tracked(intents, snapshot.id)
    ]
    if len(fits) <= 1:
        return fits[0] if fits else None
    owned = [s for s in fits if _results_name(intents, s, set(intent.custom_ids))]
    if len(owned) == 1:
        logger.warning(
            "intent %s: of %d untagged batches of its size, %s is its own by its results",
            intent.intent_id,
            len(fits),
            owned[0].id,
        )
        return owned[0]
    names = ", ".join(str(s.id) for s in fits)
    logger.error(
        "intent %s: %d untracked batches of %d requests were created since it was planned "
        "(%s) and none carries a tag to say which is its own; none adopted, nothing "
        "created: the intent stays open until their results tell (once they end)",
        intent.intent_id,
        len(fits),
        size,
        names,
    )
    raise AmbiguousBatchError(
        f"intent {intent.intent_id}: {len(fits)} untagged batches fit it ({names})"
    )


def _results_name(intents: Intents, snapshot: BatchSnapshot, custom_ids: set[str]) -> bool:
    """Whether an ended batch's results are exactly for ``custom_ids``; False while it
    runs (no results yet) or when they cannot be read."""
    if not snapshot.output_file_id or intents.gateway is None:
        return False
    with tempfile.TemporaryDirectory(dir=intents.workdir, prefix="batchfsm-match-") as tmp:
        try:
            path = intents.gateway.download(snapshot.output_file_id, Path(tmp) / "results")
        except GatewayError as exc:
            logger.warning("batch %s: results unreadable for matching: %s", snapshot.id, exc)
            return False
        if path is None:
            return False
        named: set[str] = set()
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    custom_id = orjson.loads(raw).get("custom_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(custom_id, str):
                    named.add(custom_id)
    return named == custom_ids


def _tracked(intents: Intents, batch_id: str) -> bool:
    try:
        intents.store.load(batch_id)
    except JobNotFoundError:
        return False
    return True
