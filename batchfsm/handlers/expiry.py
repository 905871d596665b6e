"""When a batch's result files stop being downloadable, and what the harvest does then.

A batch is created with ``output_expires_after`` (:class:`~batchfsm.config.Settings`),
so the moment its output and error files expire is known
(:meth:`~batchfsm.fsm.models.BatchRecord.results_expire_at`). The harvest uses it twice:
a harvest still owed near that moment warns once, and a 404 on a result file after it
is named ``results_expired`` (its requests are sent again without spending an attempt)
rather than a file gone for an unknown reason.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from batchfsm.handlers.base import EffectContext

__all__ = ["EXPIRY_WARNING_MAX", "expired_at", "results_expired", "warn_if_expiring"]

logger = logging.getLogger("batchfsm.handlers.harvest")

EXPIRY_WARNING_MAX = timedelta(hours=24)
"""A harvest still owed warns this long before the result files expire (or, for a
lifetime under four days, in its last quarter)."""


def expired_at(ctx: EffectContext) -> datetime | None:
    """When the batch's result files expired, if that moment is known and has passed."""
    expires = ctx.record.results_expire_at()
    return expires if expires is not None and ctx.now >= expires else None


def results_expired(ctx: EffectContext, what: str, file_id: str, expired: datetime) -> None:
    """A result file answered 404 after its expiry: say so loudly, once per file."""
    batch_id = ctx.record.batch_id
    logger.error(
        "batch %s: the %s file %s expired at %s before it was downloaded; its requests go "
        "back to retry without spending an attempt (results it held are lost)",
        batch_id,
        what,
        file_id,
        expired.isoformat(),
        extra={"batch_id": batch_id, "file": what},
    )
    ctx.note("results_expired", file=what, file_id=file_id, expired_at=expired.isoformat())
    ctx.alert(
        f"{what}_file_expired",
        f"{what} file {file_id} expired at {expired.isoformat()} before it was downloaded",
        file_id=file_id,
    )


def warn_if_expiring(ctx: EffectContext) -> None:
    """A harvest that failed before and is still owed near the files' expiry warns
    once (``results_expiring``): after that moment its results are gone for good."""
    effect = ctx.effect
    expires = ctx.record.results_expire_at()
    lifetime = ctx.record.output_expires_after
    if effect is None or effect.attempts < 2 or expires is None or lifetime is None:
        return
    lead = min(EXPIRY_WARNING_MAX, timedelta(seconds=lifetime / 4))
    now = ctx.now
    if expires - lead <= now < expires:
        ctx.alert(
            "results_expiring",
            f"the output and error files expire at {expires.isoformat()} "
            f"({int((expires - now).total_seconds() // 60)} min left) and the harvest "
            f"has not succeeded yet ({effect.attempts - 1} failed attempts, last: "
            f"{effect.last_error or 'unknown'})",
            expires_at=expires.isoformat(),
        )
