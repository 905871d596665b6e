"""``release_lost``: the API answers 404 for a batch we track (no API status says so).

The tracker marks the batch lost once and owes this effect; it is never polled again.
Whatever it was doing, its results are out of reach, so every request still pending in
it goes back to ``retry`` without spending an attempt (category ``lost``). Requests it
already settled (a batch that vanished after its harvest) are left alone.
"""

from __future__ import annotations

import logging

from batchfsm.handlers.base import EffectContext
from batchfsm.handlers.settle import apply_fates, max_attempts_for, sender_of, submitted_ids
from batchfsm.ledger.rules import LOST

__all__ = ["release_lost"]

logger = logging.getLogger(__name__)


def release_lost(ctx: EffectContext) -> None:
    """The ``release_lost`` effect (see the module docstring)."""
    record = ctx.record
    job_id = record.job_id
    if job_id is None:
        return
    sender = sender_of(record)
    submitted = submitted_ids(ctx.store, job_id, record.batch_id, sender=sender)
    if not submitted.pending:
        return
    tally = apply_fates(
        ctx.store,
        job_id=job_id,
        batch_id=record.batch_id,
        ids=submitted.pending,
        fates={},
        unaccounted=LOST,
        max_attempts=max_attempts_for(ctx.store, job_id, ctx.settings),
        sender=sender,
    )
    logger.warning(
        "batch %s: lost; %d pending items released for retry",
        record.batch_id,
        tally.settled,
        extra={"batch_id": record.batch_id},
    )
    ctx.note("released_lost", **tally.as_detail())
