"""Closing the submit intents a crash left open.

On the next start every open intent whose lease has run out is taken over (a
conditional write, so two reconcilers never both act) and finished from what the API
and the ledger say:

* ``uploaded``: the batch may exist. The account's batches are listed (newest first,
  only if such an intent exists, and only back to the oldest open intent's creation
  time) and searched for ``metadata.batchfsm_intent``, else the intent's uploaded file,
  else (a provider whose batches carry neither, Anthropic) the one batch of the
  intent's size created since it was planned (:mod:`batchfsm.jobs.untagged`): a batch
  found is adopted (no duplicate), none found is created now (no orphan);
* ``planned`` with entries it claimed: launched now from the ledger's original lines;
* ``planned`` with none: abandoned.

An API failure for one intent leaves it open for the next start and never stops the
others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from batchfsm.errors import (
    AuthenticationFailedError,
    BatchNotFoundError,
    GatewayError,
    StaleJobError,
)
from batchfsm.jobs.claims import owned_entries
from batchfsm.jobs.intents import Intents, lease_ends
from batchfsm.jobs.metadata import INTENT_KEY
from batchfsm.jobs.owners import owner_is_gone
from batchfsm.jobs.untagged import is_untagged, match_untagged
from batchfsm.ledger.records import IntentState, JobRecord, SubmitIntent

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord, BatchSnapshot

__all__ = ["ReconcileReport", "reconcile_intents"]

logger = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=15)
"""How far the API's clock (a batch's ``created_at``) may lag ours (an intent's
``created_at``) before a reconcile would stop reading the batch list too early."""


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
    open_intents = intents.store.list_intents(job_id, open_only=True)
    uploaded = [i.created_at for i in open_intents if i.state == IntentState.UPLOADED]
    remote = _RemoteIntents(intents, min(uploaded, default=None))
    for seen in open_intents:
        live = now < lease_ends(seen, intents.lease_seconds) - early
        if live and not owner_is_gone(seen.lease_owner):  # a crashed owner: take it now
            report.in_flight.append(seen.intent_id)
            continue
        try:  # take it: a conditional write, so two reconcilers never both act
            intent = intents.store.save_intent(seen.model_copy(update=intents.lease(now)))
        except StaleJobError:
            report.in_flight.append(seen.intent_id)
            continue
        try:
            outcome = _finish(intents, intent, remote, report)
        except AuthenticationFailedError:
            raise  # the key, not this intent: the next one would fail the same way
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
        found = remote.find(intent.intent_id, intent.file_id) or remote.untagged_match(intent)
        if found is not None:
            intents.adopt(job, intent, found)
            return report.adopted
        return report.relaunched if _create(intents, job, intent) is not None else report.abandoned
    if owned_entries(intents.store, intent) and intents.launch(job, intent):
        return report.relaunched
    intents.abandon(intent, reason="its items were never claimed")
    return report.abandoned


def _create(intents: Intents, job: JobRecord, intent: SubmitIntent) -> BatchRecord | None:
    """Create an uploaded intent's batch. If its input is gone (404: the file expired,
    or the requests a provider without files held in a process that died), ``create``
    puts the intent back to ``planned``; it is sent again now, from the ledger."""
    try:
        return intents.create(job, intent)
    except BatchNotFoundError:
        listed = intents.store.list_intents(intent.job_id, open_only=True)
        again = next((i for i in listed if i.intent_id == intent.intent_id), None)
        if again is None or again.state != IntentState.PLANNED:
            raise
        return intents.launch(job, again)


class _RemoteIntents:
    """The account's batches that carry an intent id, read page by page on demand.

    The list is newest first, and a batch of an intent is created after the intent was
    written, so the walk stops at the oldest open intent's creation time (less
    :data:`CLOCK_SKEW` for the two clocks) instead of reading the organisation's whole
    batch history: a reconcile costs the pages of batches created since then, and none
    at all when no ``uploaded`` intent needs it.
    """

    def __init__(self, intents: Intents, oldest: datetime | None) -> None:
        self._intents = intents
        self._cutoff = None if oldest is None else (oldest - CLOCK_SKEW).timestamp()
        self._found: dict[str, BatchSnapshot] = {}
        self._by_file: dict[str, BatchSnapshot] = {}
        self._untagged: list[BatchSnapshot] = []
        self._pages: Iterator[BatchSnapshot] | None = None
        self._done = False

    def find(self, intent_id: str, file_id: str | None) -> BatchSnapshot | None:
        """The batch tagged with ``intent_id``, else the one created from the intent's
        uploaded file (a provider that drops batch metadata, such as Together: the file
        was uploaded by this intent alone, so a batch made from it is the intent's)."""
        while not self._done and intent_id not in self._found and file_id not in self._by_file:
            self._read_one()
        found = self._found.get(intent_id)
        return found if found is not None or file_id is None else self._by_file.get(file_id)

    def _read_one(self) -> None:
        if self._pages is None:
            gateway = self._intents.gateway
            assert gateway is not None
            self._pages = gateway.iter_batches()
        try:
            snapshot = next(self._pages, None)
        except GatewayError:
            self._pages = None  # a failed page ends the generator: start over next time
            raise
        if snapshot is None:
            self._done = True
            return
        created = snapshot.created_at
        if self._cutoff is not None and created is not None and created < self._cutoff:
            self._done = True  # older than every open intent: no batch of ours beyond
            return
        intent_id = (snapshot.metadata or {}).get(INTENT_KEY)
        if intent_id and intent_id not in self._found:  # newest first: the first one wins
            self._found[intent_id] = snapshot
        if snapshot.input_file_id and snapshot.input_file_id not in self._by_file:
            self._by_file[snapshot.input_file_id] = snapshot
        if is_untagged(snapshot):  # no metadata, no file: Anthropic's Message Batches
            self._untagged.append(snapshot)

    def untagged_match(self, intent: SubmitIntent) -> BatchSnapshot | None:
        """The untagged batch that fits ``intent`` by size and creation time, once the
        walk is done (:mod:`batchfsm.jobs.untagged`, which names the one window it
        cannot close at once)."""
        if not self._done or not self._untagged:
            return None
        return match_untagged(self._intents, intent, self._untagged, skew=CLOCK_SKEW)
