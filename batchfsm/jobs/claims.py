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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from batchfsm.ledger.records import CLOSED_INTENT_STATES, ItemState, LedgerEntry, SubmitIntent
from batchfsm.persistence.ledger_writer import Change, rewrite_ledger, update_ledger

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = [
    "claim_items",
    "claim_owned",
    "closed_intents",
    "is_stranded",
    "owned_entries",
    "release_stranded",
]

logger = logging.getLogger(__name__)


def owned_entries(store: JobStore, intent: SubmitIntent) -> dict[str, LedgerEntry]:
    """The intent's entries it may send: claimed by it and still ``pending`` (in the
    intent's order)."""
    entries = store.get_ledger(intent.job_id, intent.custom_ids)
    return {
        cid: entry
        for cid in intent.custom_ids
        if (entry := entries.get(cid)) is not None
        and entry.intent_id == intent.intent_id
        and entry.state is ItemState.PENDING
    }


def claim_items(store: JobStore, intent: SubmitIntent, claim: Change) -> SubmitIntent:
    """:func:`claim_owned`, for a caller that reads what it owns later."""
    return claim_owned(store, intent, claim)[0]


def claim_owned(
    store: JobStore,
    intent: SubmitIntent,
    claim: Change,
    *,
    known: Mapping[str, LedgerEntry] | None = None,
) -> tuple[SubmitIntent, dict[str, LedgerEntry]]:
    """Claim the intent's entries, then narrow the intent to the ones it got.

    ``claim(entry_or_None, custom_id)`` says whether an item is free, by returning the
    entry to write (a new one for None) or None; this function stamps it ``pending``
    with the intent's id. Entries already stamped with it are left alone, so repeating
    a half-written group is harmless. ``known``: see
    :func:`~batchfsm.persistence.ledger_writer.rewrite_ledger`.

    Returns the intent, rewritten (conditionally) if rivals took some of its items, and
    the entries it owns as written, in its order: the entries each chunk's winning
    write stamped, plus those that write found already stamped with the intent (a
    repeated half-written group), which is exactly what :func:`owned_entries` would
    read back at that moment, without reading it back.
    """

    def plan(
        ids: Sequence[str], current: Mapping[str, LedgerEntry]
    ) -> tuple[list[LedgerEntry], list[LedgerEntry]]:
        ours: list[LedgerEntry] = []
        writes: list[LedgerEntry] = []
        for cid in ids:
            entry = current.get(cid)
            if entry is not None and entry.intent_id == intent.intent_id:
                if entry.state is ItemState.PENDING:
                    ours.append(entry)
                continue
            new = claim(entry, cid)
            if new is not None:
                writes.append(
                    new.model_copy(
                        update={"intent_id": intent.intent_id, "state": ItemState.PENDING}
                    )
                )
        return ours, writes

    chunks = rewrite_ledger(
        store, intent.job_id, list(intent.custom_ids), plan, lambda p: p[1], known=known
    )
    got = {e.custom_id: e for (ours, _), written in chunks for e in (*ours, *written)}
    owned = {cid: got[cid] for cid in intent.custom_ids if cid in got}
    if len(owned) == len(intent.custom_ids):
        return intent, owned
    logger.info(
        "intent %s: %d of %d items taken elsewhere",
        intent.intent_id,
        len(intent.custom_ids) - len(owned),
        len(intent.custom_ids),
    )
    return store.save_intent(intent.model_copy(update={"custom_ids": tuple(owned)})), owned


def closed_intents(store: JobStore, job_id: str) -> dict[str, SubmitIntent]:
    """The job's intents in a final state, by id."""
    return {i.intent_id: i for i in store.list_intents(job_id) if i.state in CLOSED_INTENT_STATES}


def is_stranded(entry: LedgerEntry, closed: dict[str, SubmitIntent]) -> bool:
    """A ``pending`` entry whose claiming intent closed without putting it in a batch."""
    if entry.state is not ItemState.PENDING or entry.intent_id is None:
        return False
    intent = closed.get(entry.intent_id)
    if intent is None:  # open (or not listed yet): its owner may still send it
        return False
    return intent.batch_id is None or not entry.batches or entry.batches[-1] != intent.batch_id


def release_stranded(store: JobStore, job_id: str) -> list[str]:
    """Hand stranded retry items back to ``retry`` (their attempts unchanged).

    A stranded entry that never ran (no batch) stays ``pending`` for a resumed submit
    to claim: it is the submit's to send, and auto-retry must not guess its metadata.
    Returns the custom_ids released.
    """
    closed = closed_intents(store, job_id)
    if not closed:
        return []
    stranded = [
        entry.custom_id
        for entry in store.iter_ledger(job_id, state=ItemState.PENDING)
        if entry.batches and is_stranded(entry, closed)
    ]

    def release(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or not entry.batches or not is_stranded(entry, closed):
            return None
        return entry.model_copy(update={"state": ItemState.RETRY})

    released = update_ledger(store, job_id, stranded, release)
    if released:
        logger.warning("job %s: %d stranded items back in retry", job_id, len(released))
    return [e.custom_id for e in released]
