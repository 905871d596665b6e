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

from batchfsm.handlers.base import HandlerRegistry

__all__ = ["default_registry"]


def default_registry() -> HandlerRegistry:
    """Every handler the lifecycle spec names, with ``watch`` on each heartbeat and run
    inline (it only reads the record and the clock)."""
    from batchfsm.handlers.failure import classify_failure
    from batchfsm.handlers.harvest import harvest
    from batchfsm.handlers.lost import release_lost
    from batchfsm.handlers.watch import watch
    from batchfsm.tracker import LOST_EFFECT

    return HandlerRegistry(
        handlers={
            "watch": watch,
            "harvest": harvest,
            "classify_failure": classify_failure,
            LOST_EFFECT: release_lost,
        },
        on_heartbeat=("watch",),
        inline=frozenset({"watch"}),
    )
