"""What each state owes: recovery handlers run from the outbox.

===================  =====================================  ==============================
handler              owed on entering                       module
===================  =====================================  ==============================
``watch``            validating, in_progress, finalizing,   :mod:`~batchfsm.handlers.watch`
                     cancelling (and every heartbeat)
``harvest``          completed, expired, cancelled          :mod:`~batchfsm.handlers.harvest`
``classify_failure`` failed                                 :mod:`~batchfsm.handlers.failure`
``release_lost``     lost (the API answered 404)            :mod:`~batchfsm.handlers.lost`
===================  =====================================  ==============================

The handler modules are imported by :func:`default_registry`, not here, so importing
``batchfsm.handlers.base`` (as the tracker does) stays cheap.
"""

from __future__ import annotations

from batchfsm.fsm.spec import LOST_EFFECT
from batchfsm.handlers.base import EffectContext, HandlerRegistry

__all__ = ["default_registry"]


def default_registry() -> HandlerRegistry:
    """Every handler the lifecycle spec names, with ``watch`` on each heartbeat and run
    inline (it only reads the record and the clock)."""
    from batchfsm.handlers.watch import watch

    return HandlerRegistry(
        handlers={
            "watch": watch,
            "harvest": _harvest,
            "classify_failure": _classify_failure,
            LOST_EFFECT: _release_lost,
        },
        on_heartbeat=("watch",),
        inline=frozenset({"watch"}),
    )


# The terminal handlers (and the parsers and ledger code behind them) are imported when
# a batch first needs one, not by every poller at start: a Lambda cold start polling a
# batch still in progress never loads them.


def _harvest(ctx: EffectContext) -> None:
    from batchfsm.handlers.harvest import harvest

    harvest(ctx)


def _classify_failure(ctx: EffectContext) -> None:
    from batchfsm.handlers.failure import classify_failure

    classify_failure(ctx)


def _release_lost(ctx: EffectContext) -> None:
    from batchfsm.handlers.lost import release_lost

    release_lost(ctx)
