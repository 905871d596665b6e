"""An in-process store for tests and one-off runs: nothing survives the process.

It keeps *serialised* items in dicts, exactly as a real backend would, so every load goes
through the same JSON mapping and state check as SQLite or DynamoDB and the contract
suite exercises the shared half (:class:`~batchfsm.persistence.base.BaseJobStore`) for
real. One lock makes every primitive atomic, including a whole ledger group.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from datetime import datetime

from batchfsm.errors import DuplicateJobError, JobNotFoundError, StaleJobError
from batchfsm.persistence.base import (
    BaseJobStore,
    BatchItem,
    IntentItem,
    JobItem,
    LedgerItem,
    LedgerWrite,
    ledger_key,
)


class MemoryJobStore(BaseJobStore):
    """Dicts behind a lock; ``memory://`` in a store URL."""

    ledger_group_atomic = True

    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.Lock()
        self._closed = False
        # Dicts keep insertion order, which is the creation order the contract promises.
        self._batches: dict[str, BatchItem] = {}
        self._history: dict[str, list[str]] = {}
        self._jobs: dict[str, JobItem] = {}
        self._intents: dict[str, IntentItem] = {}
        self._ledger: dict[tuple[str, str], LedgerItem] = {}
        self._receipts: dict[str, tuple[str, datetime]] = {}
        self._tokens: dict[str, str] = {}
        self._budgets: dict[str, tuple[int, str]] = {}

    def init(self) -> None:
        self._check_open()

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    # -- batches -------------------------------------------------------------------------
    def _insert_batch(self, item: BatchItem, history: Sequence[str]) -> None:
        with self._lock:
            self._check_open()
            if item.batch_id in self._batches:
                raise DuplicateJobError(item.batch_id)
            self._batches[item.batch_id] = item
            self._history[item.batch_id] = list(history)

    def _get_batch(self, batch_id: str) -> BatchItem | None:
        with self._lock:
            self._check_open()
            return self._batches.get(batch_id)

    def _swap_batch(
        self, item: BatchItem, *, expected_version: int, history: Sequence[str]
    ) -> None:
        with self._lock:
            self._check_open()
            current = self._batches.get(item.batch_id)
            if current is None:
                raise JobNotFoundError(item.batch_id)
            if current.version != expected_version:
                raise StaleJobError(
                    item.batch_id,
                    expected_version=expected_version,
                    actual_version=current.version,
                )
            self._batches[item.batch_id] = item
            self._history[item.batch_id].extend(history)

    def _get_history(self, batch_id: str) -> list[str] | None:
        with self._lock:
            self._check_open()
            entries = self._history.get(batch_id)
            return list(entries) if entries is not None else None

    def _scan_batches(self, *, job_id: str | None, attention_only: bool) -> list[BatchItem]:
        with self._lock:
            self._check_open()
            return [
                item
                for item in self._batches.values()
                if (job_id is None or item.job_id == job_id)
                and (not attention_only or item.needs_attention)
            ]

    # -- jobs and intents ----------------------------------------------------------------
    def _insert_job(self, item: JobItem) -> None:
        with self._lock:
            self._check_open()
            if item.job_id in self._jobs:
                raise DuplicateJobError(item.job_id, kind="job")
            self._jobs[item.job_id] = item

    def _get_job(self, job_id: str) -> JobItem | None:
        with self._lock:
            self._check_open()
            return self._jobs.get(job_id)

    def _scan_jobs(self) -> list[JobItem]:
        with self._lock:
            self._check_open()
            return list(self._jobs.values())

    def _put_intent(self, item: IntentItem, *, expected_version: int) -> None:
        with self._lock:
            self._check_open()
            current = self._intents.get(item.intent_id)
            actual = current.version if current is not None else 0
            if actual != expected_version:
                raise StaleJobError(
                    item.intent_id,
                    kind="intent",
                    expected_version=expected_version,
                    actual_version=current.version if current is not None else None,
                )
            self._intents[item.intent_id] = item

    def _scan_intents(
        self, *, job_id: str | None, states: frozenset[str] | None
    ) -> list[IntentItem]:
        with self._lock:
            self._check_open()
            return [
                item
                for item in self._intents.values()
                if (job_id is None or item.job_id == job_id)
                and (states is None or item.state in states)
            ]

    # -- ledger --------------------------------------------------------------------------
    def _put_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        with self._lock:
            self._check_open()
            # Check every condition first, then write: the group is all or nothing.
            for write in writes:
                key = (write.item.job_id, write.item.custom_id)
                current = self._ledger.get(key)
                actual = current.version if current is not None else 0
                if actual != write.expected_version:
                    raise StaleJobError(
                        ledger_key(*key),
                        kind="ledger entry",
                        expected_version=write.expected_version,
                        actual_version=current.version if current is not None else None,
                    )
            for write in writes:
                self._ledger[(write.item.job_id, write.item.custom_id)] = write.item

    def _get_ledger(self, job_id: str, custom_ids: Sequence[str]) -> list[LedgerItem]:
        with self._lock:
            self._check_open()
            found = (self._ledger.get((job_id, custom_id)) for custom_id in custom_ids)
            return [item for item in found if item is not None]

    def _scan_ledger(
        self,
        *,
        job_id: str | None,
        batch_id: str | None,
        state: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[LedgerItem]:
        with self._lock:
            self._check_open()
            # The first ``limit`` keys, not the whole ledger sorted for every page.
            keys = heapq.nsmallest(
                limit,
                (
                    key
                    for key, item in self._ledger.items()
                    if (after is None or key > after)
                    and (job_id is None or item.job_id == job_id)
                    and (state is None or item.state == state)
                    and (batch_id is None or batch_id in item.batches)
                ),
            )
            return [self._ledger[key] for key in keys]

    def _count_ledger(self, job_id: str | None) -> dict[str, int]:
        with self._lock:
            self._check_open()
            counts: dict[str, int] = {}
            for item in self._ledger.values():
                if job_id is None or item.job_id == job_id:
                    counts[item.state] = counts.get(item.state, 0) + 1
            return counts

    # -- webhooks ------------------------------------------------------------------------
    def _insert_receipt(self, event_id: str, data: str, expires_at: datetime) -> bool:
        with self._lock:
            self._check_open()
            if event_id in self._receipts:
                return False
            self._receipts[event_id] = (data, expires_at)
            return True

    def _get_receipt(self, event_id: str) -> str | None:
        with self._lock:
            self._check_open()
            found = self._receipts.get(event_id)
            return found[0] if found else None

    def _put_token(self, scope: str, token: str) -> None:
        with self._lock:
            self._check_open()
            self._tokens[scope] = token

    def _take_token(self, scope: str) -> str | None:
        with self._lock:
            self._check_open()
            return self._tokens.pop(scope, None)

    # -- token budgets -------------------------------------------------------------------
    def _get_budget(self, model: str) -> tuple[int, str] | None:
        with self._lock:
            self._check_open()
            return self._budgets.get(model)

    def _put_budget(self, model: str, data: str, *, version: int, expected_version: int) -> None:
        with self._lock:
            self._check_open()
            current = self._budgets.get(model)
            actual = current[0] if current else 0
            if actual != expected_version:
                raise StaleJobError(
                    model,
                    kind="token budget",
                    expected_version=expected_version,
                    actual_version=actual if current else None,
                )
            self._budgets[model] = (version, data)
