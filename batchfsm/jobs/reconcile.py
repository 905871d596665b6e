"""Closing the submit intents a crash left open.

On the next start every open intent whose lease has run out is taken over (a
conditional write, so two reconcilers never both act) and finished from what the API
and the ledger say:

* ``uploaded``: the batch may exist. The account's batches are listed (once per
  reconcile, and only if such an intent exists) and searched for
  ``metadata.batchfsm_intent``: a batch found is adopted (no duplicate), none found is
  created now from the uploaded file (no orphan);
* ``planned`` with entries it claimed: launched now from the ledger's original lines;
* ``planned`` with none: abandoned.

An API failure for one intent leaves it open for the next start and never stops the
others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from batchfsm.errors import GatewayError, StaleJobError
from batchfsm.jobs.claims import owned_entries
from batchfsm.jobs.intents import INTENT_KEY, Intents, lease_ends
from batchfsm.ledger.records import IntentState, SubmitIntent

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchSnapshot

__all__ = ["ReconcileReport", "reconcile_intents"]

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What :func:`reconcile_intents` did, by intent id."""

    adopted: list[str] = field(default_factory=list)
    """A batch existed (found by its metadata) and is now tracked."""
    relaunched: list[str] = field(default_factory=list)
    """No batch existed; it was created now from the ledger's lines."""
    abandoned: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    """Younger than the lease (another process may be submitting it) or taken by one."""
    failed: list[str] = field(default_factory=list)
    """The API failed; left open for the next start."""

    @property
    def open(self) -> int:
        return len(self.in_flight) + len(self.failed)


def reconcile_intents(
    intents: Intents, *, job_id: str | None = None, min_age: float | None = None
) -> ReconcileReport:
    """Close every open intent whose lease has run out (with ``min_age``: that was
    last leased at least ``min_age`` seconds ago).

    Lists the account's batches at most once, and only if an ``uploaded`` intent needs
    it. Never raises for one intent's API failure: that intent stays open (``failed``).
    """
    report = ReconcileReport()
    early = timedelta(seconds=0 if min_age is None else intents.lease_seconds - min_age)
    now = intents.clock.now()
    remote = _RemoteIntents(intents)
    for seen in intents.store.list_intents(job_id, open_only=True):
        if now < lease_ends(seen, intents.lease_seconds) - early:
            report.in_flight.append(seen.intent_id)
            continue
        try:  # take it: a conditional write, so two reconcilers never both act
            intent = intents.store.save_intent(seen.model_copy(update=intents.lease(now)))
        except StaleJobError:
            report.in_flight.append(seen.intent_id)
            continue
        try:
            outcome = _finish(intents, intent, remote, report)
        except GatewayError as exc:
            logger.warning("intent %s left open: %s", intent.intent_id, exc)
            outcome = report.failed if intents.is_open(intent) else report.abandoned
        outcome.append(intent.intent_id)
    return report


def _finish(
    intents: Intents, intent: SubmitIntent, remote: _RemoteIntents, report: ReconcileReport
) -> list[str]:
    """Carry one taken-over intent to its end; returns the report's list it belongs in."""
    job = intents.store.load_job(intent.job_id)
    if intent.state == IntentState.UPLOADED:
        found = remote.find(intent.intent_id)
        if found is not None:
            intents.adopt(job, intent, found)
            return report.adopted
        return report.relaunched if intents.create(job, intent) is not None else report.abandoned
    if owned_entries(intents.store, intent) and intents.launch(job, intent):
        return report.relaunched
    intents.abandon(intent, reason="its items were never claimed")
    return report.abandoned


class _RemoteIntents:
    """The account's batches that carry an intent id, listed on first use only."""

    def __init__(self, intents: Intents) -> None:
        self._intents = intents
        self._found: dict[str, BatchSnapshot] | None = None

    def find(self, intent_id: str) -> BatchSnapshot | None:
        if self._found is None:
            self._found = self._list()
        return self._found.get(intent_id)

    def _list(self) -> dict[str, BatchSnapshot]:
        gateway = self._intents.gateway
        assert gateway is not None
        found: dict[str, BatchSnapshot] = {}
        for snapshot in gateway.iter_batches():
            intent_id = (snapshot.metadata or {}).get(INTENT_KEY)
            if intent_id and intent_id not in found:  # newest first: the first one wins
                found[intent_id] = snapshot
        return found
