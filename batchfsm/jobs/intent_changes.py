"""The ledger changes and errors of an intent's ending, as pure functions.

:class:`batchfsm.jobs.intents.Intents` applies them through the chunked ledger writer
(:func:`batchfsm.persistence.ledger_writer.update_ledger`); each decides from the entry
it is given, so a lost race recomputes it from the entry read again.
"""

from __future__ import annotations

from batchfsm.errors import GatewayError
from batchfsm.ledger.records import ErrorCategory, ItemError, ItemState, LedgerEntry, SubmitIntent
from batchfsm.persistence.ledger_writer import Change

__all__ = ["INPUT_REJECTIONS", "rejection", "release"]

INPUT_REJECTIONS = frozenset({400, 413, 422})
"""Answers that reject the request itself: sending it again would be refused again.
(401/403 are about the key, 404 about the uploaded file: those items are not at fault.)"""


def release(intent: SubmitIntent, failure: ItemError | None) -> Change:
    def change(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.intent_id != intent.intent_id:
            return None
        if entry.state is not ItemState.PENDING:
            return None
        if failure is not None and failure.category == ErrorCategory.QUEUE_FULL:
            return entry.model_copy(
                update={"state": ItemState.RETRY, "last_error": _repeated(entry, failure)}
            )
        if failure is not None:
            return entry.model_copy(update={"state": ItemState.FAILED, "last_error": failure})
        if not entry.batches:
            return None
        return entry.model_copy(update={"state": ItemState.RETRY})

    return change


def _repeated(entry: LedgerEntry, failure: ItemError) -> ItemError:
    """``failure``, counting how many times in a row the entry met the same error."""
    last = entry.last_error
    if last is not None and (last.category, last.code) == (failure.category, failure.code):
        return failure.model_copy(update={"repeats": last.repeats + 1})
    return failure


def rejection(exc: GatewayError) -> ItemError | None:
    """The error that fails an intent's items, when the API refused their input."""
    if exc.status_code not in INPUT_REJECTIONS:
        return None
    return ItemError(
        code=exc.code or f"http_{exc.status_code}",
        message=str(exc)[:500],
        category=ErrorCategory.INPUT,
    )
