"""``watch``: a non-terminal batch, looked at on entry and on every observation.

Nothing here moves the batch; it raises alerts, each at most once per batch
(``ctx.alert``), measured on the injected clock against the provider's own timestamps
(the ``*_at`` fields of https://platform.openai.com/docs/api-reference/batch/object;
the original used its own submit time instead):

* ``deadline_<h>h`` - ``h`` hours of the 24 h window have elapsed (``warn_after_hours``,
  default 20, i.e. 4 h left). The window ends at ``expires_at``, else ``created_at`` +
  24 h (:meth:`~batchfsm.fsm.models.BatchSnapshot.deadline`).
* ``past_deadline`` - still not terminal after the deadline (e.g. stuck finalizing).
  A batch first seen past its deadline gets this alert only, not the earlier warnings.
* Neither deadline alert fires for a provider that does not expire batches (Azure's
  global batch runs past ``expires_at``: :attr:`~batchfsm.providers.ProviderProfile.expires`),
  where both would be false.
* ``finalizing_slow`` / ``cancelling_slow`` - in that state for longer than
  ``finalizing_alert_minutes`` (30) / ``cancelling_alert_minutes`` (10), counted from the
  snapshot's ``finalizing_at`` / ``cancelling_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from batchfsm.fsm.models import COMPLETION_WINDOW
from batchfsm.fsm.spec import BatchStatus
from batchfsm.handlers.base import EffectContext
from batchfsm.providers import profile_for

__all__ = ["deadline_key", "watch"]


def deadline_key(hours: float) -> str:
    """The alert key of the ``hours``-elapsed warning, e.g. ``deadline_20h``."""
    return f"deadline_{hours:g}h"


def _span(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def watch(ctx: EffectContext) -> None:
    """The ``watch`` effect and heartbeat (see the module docstring)."""
    record = ctx.record
    if record.terminal or record.lost:
        return  # watching a state we already left is pointless
    now = ctx.now
    state = record.state.value
    deadline = record.deadline() if profile_for(ctx.settings).expires else None
    if deadline is not None:
        if now >= deadline:
            ctx.alert(
                "past_deadline",
                f"still {state} {_span(now - deadline)} after its deadline {deadline.isoformat()}",
                deadline=deadline.isoformat(),
                state=state,
            )
        else:
            opened = deadline - COMPLETION_WINDOW
            for hours in sorted(ctx.settings.warn_after_hours):
                if now >= opened + timedelta(hours=hours):
                    ctx.alert(
                        deadline_key(hours),
                        f"{_span(deadline - now)} left before the 24 h window closes "
                        f"(still {state})",
                        deadline=deadline.isoformat(),
                        state=state,
                    )
    snapshot = record.snapshot
    if snapshot is None:
        return
    for status, minutes, key in (
        (BatchStatus.FINALIZING, ctx.settings.finalizing_alert_minutes, "finalizing_slow"),
        (BatchStatus.CANCELLING, ctx.settings.cancelling_alert_minutes, "cancelling_slow"),
    ):
        entered = snapshot.entered_at(status)
        if record.state is not status or entered is None:
            continue
        since = datetime.fromtimestamp(entered, UTC)
        if now - since >= timedelta(minutes=minutes):
            ctx.alert(
                key,
                f"{status.value} for {_span(now - since)} (alert after {minutes:g} min)",
                since=since.isoformat(),
            )
