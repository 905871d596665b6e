"""A settlement effect run again after a retry has claimed what it settled.

A terminal batch's settlement (``harvest``, ``classify_failure``, ``release_lost``) runs
under a lease and is marked done only after it returned, so a poller that dies between
the two leaves it owed and it runs again. Meanwhile the items it put in ``retry`` may
have been claimed by a retry intent of another poller: ``pending``, stamped with that
intent, and still listing the settled batch last until the new batch is created. The
re-run must see them as claimed, not as still waiting for the old batch's verdict:
settling them again would spend a second attempt for one execution (failing a request
that ran once) and pull them from under the intent about to send them.

The interleaving is driven deterministically: an in-process sandbox on a frozen clock,
a store whose commit "crashes" the poller right after the harvest, and the rival's
claim placed between the crash and the re-run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import orjson

from batchfsm.errors import StoreUnavailableError
from batchfsm.fsm.models import BatchRecord, EventEntry, HistoryEntry
from batchfsm.jobs.claims import claim_items
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.persistence.memory import MemoryJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, SandboxApp, Scenario
from tests.e2e.support import EMBEDDINGS, make_tracker, result_lines, sandbox, write_input

IDS = ["a", "b", "c"]


class CrashAfterHarvest(MemoryJobStore):
    """Fails the commit that marks ``harvest`` done, once: the poller dies after the
    handler settled the ledger and before the effect was recorded as done."""

    armed = True

    def commit(
        self,
        record: BatchRecord,
        *,
        expected_version: int,
        history: Sequence[HistoryEntry] = (),
    ) -> BatchRecord:
        if self.armed and any(e.handler == "harvest" and e.done for e in record.outbox):
            self.armed = False
            raise StoreUnavailableError("the poller died before recording the harvest")
        return super().commit(record, expected_version=expected_version, history=history)


def _sent(app: SandboxApp) -> Counter[str]:
    sent: Counter[str] = Counter()
    for batch_id in app.world.batch_ids():
        content = app.world.get_file(app.world.retrieve_batch(batch_id)["input_file_id"]).content
        sent.update(orjson.loads(line)["custom_id"] for line in content.splitlines())
    return sent


def test_a_harvest_run_again_leaves_alone_what_a_retry_claimed_meanwhile(
    tmp_path: Path,
) -> None:
    # GIVEN a first batch whose every request fails with a 500 (retried, one attempt
    # spent), with at most two attempts per request, harvested by a poller that dies
    # before it can mark the harvest done.
    clock = FrozenClock()
    scenario = Scenario(by_order=(Fate(failure_rate=1.0, failure_codes=(500,)),))
    app = sandbox(scenario, clock)
    store = CrashAfterHarvest()
    crashed, rival, restarted = (make_tracker(tmp_path, app, clock, store=store) for _ in range(3))
    path = write_input(tmp_path / "requests.jsonl", IDS)
    job = submit_job(crashed, path, EMBEDDINGS, max_attempts=2).job
    (first,) = store.list_batches()
    clock.advance(3600)
    try:
        crashed.poll_once()
    except StoreUnavailableError:
        pass
    else:  # pragma: no cover - the store above always fails that commit
        raise AssertionError("the harvest was expected to crash")
    assert {e.state for e in store.iter_ledger()} == {ItemState.RETRY}

    # WHEN, once the dead poller's lease ran out, a rival retry claims the items (and
    # has not created its batch yet) just before a restarted poller runs the harvest
    # again.
    clock.advance(301)
    intent = Intents.of(rival).plan(job.job_id, IDS, parent_batch_ids=[first.batch_id])

    def claim(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
        if entry is None or entry.state is not ItemState.RETRY:
            return None
        return entry if entry.batches == (first.batch_id,) else None

    intent = claim_items(store, intent, claim)
    assert set(intent.custom_ids) == set(IDS)
    restarted.drain(first.batch_id)

    # THEN the re-run settles nothing again (no second attempt spent, no settlement
    # recorded: the first run's note died with its poller) and is done; the rival
    # sends its claim, and every request runs twice in all, succeeds on its second
    # attempt and is delivered once.
    for entry in store.iter_ledger():
        assert entry.state is ItemState.PENDING and entry.attempts == 1, entry
        assert entry.intent_id == intent.intent_id
    events = [e.name for e in store.history(first.batch_id) if isinstance(e, EventEntry)]
    assert "harvested" not in events
    assert all(e.done for e in store.load(first.batch_id).outbox)
    assert Intents.of(rival).launch(store.load_job(job.job_id), intent) is not None
    clock.advance(3600)
    summary = Poller(restarted, sleep=clock.advance).run(
        until_done=True, auto_retry=True, interval=60, timeout=6 * 3600
    )
    assert summary.done
    assert _sent(app) == Counter(dict.fromkeys(IDS, 2))
    for entry in store.iter_ledger():
        assert entry.state is ItemState.SUCCEEDED and entry.attempts == 2, entry
        assert len(entry.batches) == 2
    results = result_lines(tmp_path / "results")
    assert Counter(orjson.loads(line)["custom_id"] for line in results) == Counter(IDS)
