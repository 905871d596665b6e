"""Which submit intent owns which ledger entry: claims that hold on any store.

An intent may send a request only after *claiming* its ledger entry: a write,
conditional on the entry's version, that makes it ``pending`` and stamps it with the
intent's id (``LedgerEntry.intent_id``). Ownership is then read back from the entries
themselves, never inferred from which writes seemed to succeed. That is what makes
claims safe where a group write is not atomic (DynamoDB writes a big group as several
transactions): a group that lost a race half-way is re-read, the entries already ours
are recognised by their stamp, and nothing is left claimed by an intent that does not
know it.

Two rules follow, and every sender keeps them:

* an intent sends exactly the entries that carry its id and are still ``pending``
  (:func:`owned_entries`, read just before the upload);
* an entry stamped by an intent that closed without sending it is free again:
  :func:`release_stranded` hands such retry items back to ``retry`` (no attempt spent),
  and a resumed submit may claim never-sent ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from batchfsm.errors import StaleJobError
from batchfsm.ledger.records import ItemState, LedgerEntry, SubmitIntent

if TYPE_CHECKING:
    from batchfsm.tracker import Tracker

__all__ = [
    "CLOSED_INTENT_STATES",
    "Change",
    "claim_items",
    "closed_intents",
    "owned_entries",
    "release_stranded",
    "update_ledger",
]

logger = logging.getLogger(__name__)

LEDGER_CHUNK = 500
MAX_CONFLICT_RETRIES = 8
CLOSED_INTENT_STATES = frozenset({"created", "abandoned"})
"""Final intent states: an intent never leaves them (``planned`` may be re-entered)."""

Change = Callable[[LedgerEntry | None, str], LedgerEntry | None]
"""``change(entry_or_None, custom_id)``: the entry to write, or None to leave it."""


def update_ledger(
    tracker: Tracker, job_id: str, custom_ids: Sequence[str], change: Change
) -> list[LedgerEntry]:
    """Apply ``change`` to each entry, in conditional groups.

    ``change`` must be idempotent: a group that lost a version check is re-read and
    ``change`` applied again (on a non-atomic store part of the group may have been
    written by then). Returns the entries written by successful group writes only.
    """
    written: list[LedgerEntry] = []
    for start in range(0, len(custom_ids), LEDGER_CHUNK):
        group = custom_ids[start : start + LEDGER_CHUNK]
        for _ in range(MAX_CONFLICT_RETRIES):
            current = tracker.store.get_ledger(job_id, group)
            updates = [new for cid in group if (new := change(current.get(cid), cid)) is not None]
            try:
                written.extend(tracker.store.save_ledger(updates))
            except StaleJobError:
                logger.info("job %s: ledger changed under us, re-reading", job_id)
                continue
            break
        else:
            raise StaleJobError(f"ledger of {job_id}", expected_version=-1, actual_version=None)
    return written


def owned_entries(tracker: Tracker, intent: SubmitIntent) -> dict[str, LedgerEntry]:
    """The intent's entries it may send: claimed by it and still ``pending`` (in the
    intent's order)."""
    entries = tracker.store.get_ledger(intent.job_id, intent.custom_ids)
    return {
        cid: entry
        for cid in intent.custom_ids
        if (entry := entries.get(cid)) is not None
        and entry.intent_id == intent.intent_id
        and entry.state is ItemState.PENDING
    }


def claim_items(tracker: Tracker, intent: SubmitIntent, claim: Change) -> SubmitIntent:
    """Claim the intent's entries, then narrow the intent to the ones it got.

    ``claim(entry_or_None, custom_id)`` says whether an item is free, by returning the
    entry to write (a new one for None) or None; this function stamps it ``pending``
    with the intent's id. Entries already stamped with it are left alone, so repeating
    a half-written group is harmless. Returns the intent, rewritten (conditionally) if
    rivals took some of its items.
    """

    def stamp(entry: LedgerEntry | None, custom_id: str) -> LedgerEntry | None:
        if entry is not None and entry.intent_id == intent.intent_id:
            return None
        new = claim(entry, custom_id)
        if new is None:
            return None
        return new.model_copy(update={"intent_id": intent.intent_id, "state": ItemState.PENDING})

    update_ledger(tracker, intent.job_id, list(intent.custom_ids), stamp)
    owned = owned_entries(tracker, intent)
    if len(owned) == len(intent.custom_ids):
        return intent
    logger.info(
        "intent %s: %d of %d items taken elsewhere",
        intent.intent_id,
        len(intent.custom_ids) - len(owned),
        len(intent.custom_ids),
    )
    return tracker.store.save_intent(intent.model_copy(update={"custom_ids": tuple(owned)}))


def closed_intents(tracker: Tracker, job_id: str) -> dict[str, SubmitIntent]:
    """The job's intents in a final state, by id."""
    return {
        i.intent_id: i
        for i in tracker.store.list_intents(job_id)
        if i.state in CLOSED_INTENT_STATES
    }


def is_stranded(entry: LedgerEntry, closed: dict[str, SubmitIntent]) -> bool:
    """A ``pending`` entry whose claiming intent closed without putting it in a batch."""
    if entry.state is not ItemState.PENDING or entry.intent_id is None:
        return False
    intent = closed.get(entry.intent_id)
    if intent is None:  # open (or not listed yet): its owner may still send it
        return False
    return intent.batch_id is None or not entry.batches or entry.batches[-1] != intent.batch_id


def release_stranded(tracker: Tracker, job_id: str) -> list[str]:
    """Hand stranded retry items back to ``retry`` (their attempts unchanged).

    A stranded entry that never ran (no batch) stays ``pending`` for a resumed submit
    to claim: it is the submit's to send, and auto-retry must not guess its metadata.
    Returns the custom_ids released.
    """
    closed = closed_intents(tracker, job_id)
    if not closed:
        return []
    stranded = [
        entry.custom_id
        for entry in tracker.store.iter_ledger(job_id, state=ItemState.PENDING)
        if entry.batches and is_stranded(entry, closed)
    ]

    def release(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or not entry.batches or not is_stranded(entry, closed):
            return None
        return entry.model_copy(update={"state": ItemState.RETRY})

    released = update_ledger(tracker, job_id, stranded, release)
    if released:
        logger.warning("job %s: %d stranded items back in retry", job_id, len(released))
    return [e.custom_id for e in released]
