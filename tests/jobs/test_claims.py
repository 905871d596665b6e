"""Claims on stores whose group writes are not atomic, and the intent lease.

Races are interleaved deterministically: a store subclass writes a ledger group entry
by entry (as DynamoDB writes a big group, one transaction after another) and lets a
rival run at a chosen point inside it. The API is the sandbox, in-process.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.errors import GatewayUnavailableError
from batchfsm.jobs.claims import claim_items
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import IntentState, ItemState, JobRecord, LedgerEntry
from batchfsm.persistence.items import LedgerWrite
from batchfsm.persistence.memory import MemoryJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Faults, SandboxApp, Scenario, ScriptedFault
from batchfsm.tracker import Tracker
from tests.e2e.support import BATCHES_ROUTE, EMBEDDINGS, UPLOAD_ROUTE, make_tracker, sandbox
from tests.e2e.support import write_input as write_requests
from tests.persistence.dynamodb_server import fresh_store

OLD_BATCH = "batch_old"


class PiecemealStore(MemoryJobStore):
    """Writes a ledger group one entry at a time (a conflict stops the rest, earlier
    entries stay written), and runs ``rival`` once, after ``rival_after`` entries."""

    ledger_group_atomic = False

    def __init__(self) -> None:
        super().__init__()
        self.rival: Callable[[], object] | None = None
        self.rival_after = 0
        self._written = 0

    def _put_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        for write in writes:
            self._maybe_run_rival()
            super()._put_ledger([write])
            self._written += 1
        self._maybe_run_rival()

    def _maybe_run_rival(self) -> None:
        if self.rival is not None and self._written >= self.rival_after:
            rival, self.rival = self.rival, None
            rival()


def _retry_ledger(tracker: Tracker, ids: list[str]) -> JobRecord:
    """A job whose items all wait in ``retry`` after a first batch."""
    job = tracker.store.put_job(
        JobRecord(job_id="job-1", endpoint=EMBEDDINGS, created_at=tracker.clock.now())
    )
    lines = write_requests(Path(tempfile.mkdtemp()) / "in.jsonl", ids).read_text().splitlines()
    tracker.store.save_ledger(
        [
            LedgerEntry(
                job_id=job.job_id,
                custom_id=cid,
                line=line,
                state=ItemState.RETRY,
                attempts=1,
                batches=(OLD_BATCH,),
            )
            for cid, line in zip(ids, lines, strict=True)
        ]
    )
    return job


def _claim_retry(entry: LedgerEntry | None, _cid: str) -> LedgerEntry | None:
    if entry is None or entry.state is not ItemState.RETRY or entry.batches != (OLD_BATCH,):
        return None
    return entry


def _sent(app: SandboxApp) -> Counter[str]:
    """How many times each custom_id was sent in a batch the API created."""
    sent: Counter[str] = Counter()
    for batch_id in app.world.batch_ids():
        content = app.world.get_file(app.world.retrieve_batch(batch_id)["input_file_id"]).content
        sent.update(orjson.loads(line)["custom_id"] for line in content.splitlines())
    return sent


@settings(max_examples=25, deadline=None)
@given(
    items=st.integers(min_value=1, max_value=8),
    cut=st.integers(min_value=0, max_value=9),
    rival_launches_first=st.booleans(),
)
def test_two_retries_claiming_the_same_items_send_each_once_and_strand_none(
    items: int, cut: int, rival_launches_first: bool
) -> None:
    # GIVEN two retry runs that listed the same retry items before either planned (a
    # rival's intent is invisible until written), on a store without atomic groups.
    with tempfile.TemporaryDirectory() as tmp:
        clock = FrozenClock()
        app = sandbox(clock=clock)
        store = PiecemealStore()
        mine = make_tracker(Path(tmp), app, clock, store=store)
        rival = make_tracker(Path(tmp), app, clock, store=store)
        ids = [f"r{i}" for i in range(items)]
        job = _retry_ledger(mine, ids)
        my_intent = Intents.of(mine).plan(job.job_id, ids, parent_batch_ids=[OLD_BATCH])
        rival_intent = Intents.of(rival).plan(job.job_id, ids, parent_batch_ids=[OLD_BATCH])
        claimed = {}

        # WHEN the rival claims while my claim is `cut` entries in, then both launch.
        def rival_claims() -> None:
            claimed["rival"] = claim_items(rival.store, rival_intent, _claim_retry)

        store.rival, store.rival_after = rival_claims, cut
        claimed["mine"] = claim_items(mine.store, my_intent, _claim_retry)
        if store.rival is not None:  # `cut` past my last write: the rival comes after
            store.rival = None
            rival_claims()
        order = [("rival", rival), ("mine", mine)]
        for name, tracker in order if rival_launches_first else order[::-1]:
            Intents.of(tracker).launch(job, claimed[name])

        # THEN every item went out exactly once, in one of the two batches, and nothing
        # is left pending without a batch nor owned by a closed intent.
        assert _sent(app) == Counter(ids)
        mine_ids, rival_ids = set(claimed["mine"].custom_ids), set(claimed["rival"].custom_ids)
        assert mine_ids.isdisjoint(rival_ids) and mine_ids | rival_ids == set(ids)
        for entry in store.iter_ledger(job.job_id):
            assert entry.state is ItemState.PENDING and len(entry.batches) == 2, entry
            assert entry.attempts == 1  # a claim never spends an attempt
        assert store.list_intents(open_only=True) == []


def test_an_abandoned_retry_hands_back_only_what_it_claimed(tmp_path: Path) -> None:
    # GIVEN my retry intent, planned and then silent (crashed before claiming), and a
    # rival that later claimed the same items and has not launched yet.
    clock = FrozenClock()
    app = sandbox(clock=clock)
    store = PiecemealStore()
    mine, rival, reconciler = (make_tracker(tmp_path, app, clock, store=store) for _ in range(3))
    ids = ["a", "b", "c"]
    job = _retry_ledger(mine, ids)
    my_intent = Intents.of(mine).plan(job.job_id, ids, parent_batch_ids=[OLD_BATCH])
    clock.advance(301)
    rival_intent = claim_items(
        rival.store,
        Intents.of(rival).plan(job.job_id, ids, parent_batch_ids=[OLD_BATCH]),
        _claim_retry,
    )

    # WHEN a reconciler abandons my expired intent (it owns nothing).
    report = reconcile_intents(Intents.of(reconciler))
    assert report.abandoned == [my_intent.intent_id]
    assert report.in_flight == [rival_intent.intent_id]

    # THEN the rival's claims are untouched (not handed back to retry, where a third
    # run could send them again) and the rival sends them once.
    assert {e.state for e in store.iter_ledger()} == {ItemState.PENDING}
    assert Intents.of(rival).launch(job, rival_intent) is not None
    assert _sent(app) == Counter(ids)
    assert [i.state for i in store.list_intents()] == ["abandoned", "created"]


def test_a_poller_hands_stranded_items_back_to_retry_and_sends_them_once(
    tmp_path: Path,
) -> None:
    # GIVEN items claimed by an intent that was closed without sending them (a crash
    # between the claim and the release, say): pending, with no batch of their own.
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock, store=PiecemealStore())
    job = _retry_ledger(tracker, ["a", "b"])
    intent = Intents.of(tracker).plan(job.job_id, ["a", "b"], parent_batch_ids=[OLD_BATCH])
    intent = claim_items(tracker.store, intent, _claim_retry)
    tracker.store.save_intent(intent.model_copy(update={"state": IntentState.ABANDONED}))

    # WHEN a poller runs with nothing else to do.
    poller = Poller(tracker, sleep=clock.advance)
    first = poller.cycle(auto_retry=True)

    # THEN it returns them to retry (no attempt spent), and the next cycle sends them.
    assert sorted(first.released) == ["a", "b"] and first.retry_items == 2
    assert {e.attempts for e in tracker.store.iter_ledger()} == {1}
    second = poller.cycle(auto_retry=True)
    assert len(second.retried) == 1 and _sent(app) == Counter(["a", "b"])


def test_a_crashed_intent_is_taken_over_only_after_its_lease_and_sent_once(
    tmp_path: Path,
) -> None:
    # GIVEN a submitter that planned and claimed, then went silent before uploading.
    clock = FrozenClock()
    app = sandbox(clock=clock)
    store = MemoryJobStore()
    first = make_tracker(tmp_path, app, clock, store=store, lease_seconds=300)
    second = make_tracker(tmp_path, app, clock, store=store, lease_seconds=300)
    job = store.put_job(JobRecord(job_id="job-1", endpoint=EMBEDDINGS, created_at=clock.now()))
    intent = Intents.of(first).plan(job.job_id, ["a", "b"])
    intent = claim_items(first.store, intent, _new_entries(tmp_path, job.job_id, ["a", "b"]))
    assert intent.lease_owner == first.owner

    # WHEN another process reconciles within the lease, then after it.
    clock.advance(299)
    assert reconcile_intents(Intents.of(second)).in_flight == [intent.intent_id]
    assert app.stats.count(UPLOAD_ROUTE) == 0
    clock.advance(2)
    report = reconcile_intents(Intents.of(second))

    # THEN it is taken (in the taker's name) and sent once; the first process, waking
    # up, loses its next intent write and creates nothing.
    assert report.relaunched == [intent.intent_id]
    (taken,) = store.list_intents()
    assert taken.state == "created" and taken.lease_owner == second.owner
    assert Intents.of(first).launch(job, intent) is None
    assert app.stats.count(BATCHES_ROUTE) == 1
    assert _sent(app) == Counter(["a", "b"])


def test_the_upload_renews_the_lease(tmp_path: Path) -> None:
    # GIVEN an intent planned at t0 with a 60 s lease, uploaded at t0+50, whose create
    # then failed ambiguously (a 500: the batch may exist).
    clock = FrozenClock()
    faults = Faults(script=(ScriptedFault(route=BATCHES_ROUTE, call=1, kind="server_error"),))
    app = sandbox(Scenario(faults=faults), clock)
    tracker = make_tracker(tmp_path, app, clock, store=MemoryJobStore(), lease_seconds=60)
    job = tracker.store.put_job(
        JobRecord(job_id="job-1", endpoint=EMBEDDINGS, created_at=clock.now())
    )
    intent = Intents.of(tracker).plan(job.job_id, ["a"])
    intent = claim_items(tracker.store, intent, _new_entries(tmp_path, job.job_id, ["a"]))
    clock.advance(50)
    with pytest.raises(GatewayUnavailableError):
        Intents.of(tracker).launch(job, intent)

    # THEN the lease runs from the upload: at t0+61 it is still held, at t0+111 not.
    (uploaded,) = tracker.store.list_intents(open_only=True)
    assert uploaded.state == "uploaded" and uploaded.lease_until == clock.now() + timedelta(
        seconds=60
    )
    clock.advance(11)
    assert reconcile_intents(Intents.of(tracker)).in_flight == [intent.intent_id]
    clock.advance(50)
    assert reconcile_intents(Intents.of(tracker)).relaunched == [intent.intent_id]
    assert len(app.world.batch_ids()) == 1


def _new_entries(
    tmp_path: Path, job_id: str, ids: list[str]
) -> Callable[[LedgerEntry | None, str], LedgerEntry | None]:
    text = write_requests(tmp_path / "new.jsonl", ids).read_text()
    lines = dict(zip(ids, text.splitlines(), strict=True))

    def new(entry: LedgerEntry | None, cid: str) -> LedgerEntry | None:
        if entry is not None:
            return None
        return LedgerEntry(job_id=job_id, custom_id=cid, line=lines[cid])

    return new


@pytest.mark.parametrize("rival_at", [0, 2])
def test_two_submits_of_one_job_racing_on_dynamodb_send_each_request_once(
    tmp_path: Path, rival_at: int
) -> None:
    # GIVEN a real DynamoDB table (moto server) and two submits of the same file whose
    # intents were both planned (neither saw the other's: index reads may lag).
    clock = FrozenClock()
    app = sandbox(clock=clock)
    ids = [f"r{i}" for i in range(4)]
    path = write_requests(tmp_path / "in.jsonl", ids)
    lines = dict(zip(ids, path.read_text().splitlines(), strict=True))
    with fresh_store() as store:
        mine, rival = (make_tracker(tmp_path, app, clock, store=store) for _ in range(2))
        first = submit_job(mine, path, EMBEDDINGS)  # the job exists; these are sent
        assert len(first.launched) == 1
        extra = [f"x{i}" for i in range(3)]
        lines |= {cid: lines[ids[0]].replace(ids[0], cid) for cid in extra}
        my_intent = Intents.of(mine).plan(first.job.job_id, extra)
        rival_intent = Intents.of(rival).plan(first.job.job_id, extra)

        def insert(entry: LedgerEntry | None, cid: str) -> LedgerEntry | None:
            if entry is None:
                return LedgerEntry(job_id=first.job.job_id, custom_id=cid, line=lines[cid])
            return None

        # WHEN both insert-claim the same new entries, the rival first or in between.
        claimed = {}
        if rival_at == 0:
            claimed["rival"] = claim_items(rival.store, rival_intent, insert)
        claimed["mine"] = claim_items(mine.store, my_intent, insert)
        if rival_at:
            claimed["rival"] = claim_items(rival.store, rival_intent, insert)
        for name, tracker in (("mine", mine), ("rival", rival)):
            Intents.of(tracker).launch(first.job, claimed[name])

        # THEN exactly one of them owns each entry (inserts are conditional), and each
        # request went out once.
        owners = {e.custom_id: e.intent_id for e in store.iter_ledger(first.job.job_id)}
        assert {owners[c] for c in extra} == {
            (rival_intent if rival_at == 0 else my_intent).intent_id
        }
        assert _sent(app) == Counter(ids + extra)
        # And a whole second submit of the same file resumes, sending nothing.
        again = submit_job(rival, path, EMBEDDINGS)
        assert again.resumed and again.launched == []
        assert _sent(app) == Counter(ids + extra)
