"""OpenAI's batch webhooks, consumed: verified, deduplicated, and turned into an
observation of the batch they name.

OpenAI sends ``batch.completed``, ``batch.failed``, ``batch.expired`` and
``batch.cancelled`` (Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` headers, HMAC-SHA256 with the endpoint's ``whsec_`` secret, five
minutes of tolerance), at least once, for up to 72 hours, in no particular order, and
carrying only the batch id. So an event here never moves a state on its own word: it
only triggers the normal observation (retrieve, apply, commit, outbox) of that batch,
which a forged, reordered or stale event cannot turn into a wrong state.

* :mod:`~batchfsm.webhooks.verify`: the signature, checked by the official client;
* :mod:`~batchfsm.webhooks.intake`: verify, parse, deduplicate in the store, answer,
  and hand the work to a background worker (:mod:`~batchfsm.webhooks.bridge`);
* :mod:`~batchfsm.webhooks.app`: the intake as a WSGI and an ASGI application, to mount
  behind any server; :mod:`~batchfsm.webhooks.server` serves it on loopback;
* :mod:`~batchfsm.webhooks.schedule`: the stretched poll schedule for pollers, now the
  fallback;
* :mod:`~batchfsm.webhooks.endpoints`: registering and testing an endpoint through the
  API's endpoint management.

Submodules load on first use: a poller importing the schedule loads neither werkzeug
nor ``openai``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.webhooks.app import WebhookASGIApp, WebhookWSGIApp
    from batchfsm.webhooks.bridge import EventBridge
    from batchfsm.webhooks.intake import Delivery, WebhookIntake
    from batchfsm.webhooks.schedule import StretchedSchedule
    from batchfsm.webhooks.server import RunningIntake, running_intake
    from batchfsm.webhooks.verify import BATCH_EVENTS, WebhookVerifier

__all__ = [
    "BATCH_EVENTS",
    "Delivery",
    "EventBridge",
    "RunningIntake",
    "StretchedSchedule",
    "WebhookASGIApp",
    "WebhookIntake",
    "WebhookVerifier",
    "WebhookWSGIApp",
    "running_intake",
]

_HOMES = {
    "BATCH_EVENTS": "verify",
    "Delivery": "intake",
    "EventBridge": "bridge",
    "RunningIntake": "server",
    "StretchedSchedule": "schedule",
    "WebhookASGIApp": "app",
    "WebhookIntake": "intake",
    "WebhookVerifier": "verify",
    "WebhookWSGIApp": "app",
    "running_intake": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return list(__all__)
