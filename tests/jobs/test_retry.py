"""retry_items: new batches from the ledger's retry items, linked to their parents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.errors import GatewayUnavailableError
from batchfsm.fsm.models import EventEntry
from batchfsm.jobs import retry as retry_module
from batchfsm.jobs.input_file import Limits
from batchfsm.jobs.retry import Backoff, RetryResult, retry_items
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ItemState, SubmitIntent
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Faults, SandboxApp, Scenario, ScriptedFault
from batchfsm.tracker import Tracker
from tests.e2e.support import EMBEDDINGS, UPLOAD_ROUTE, make_tracker, sandbox, write_input


def _run_to_rest(tracker: Tracker, clock: FrozenClock) -> None:
    summary = Poller(tracker, sleep=clock.advance).run(until_done=True, interval=5, timeout=3600)
    assert summary.done


def _input_ids(app: SandboxApp, batch_id: str) -> list[str]:
    batch = app.world.retrieve_batch(batch_id)
    content = app.world.get_file(batch["input_file_id"]).content
    return [orjson.loads(line)["custom_id"] for line in content.splitlines()]


def test_retry_sends_only_retry_items_and_links_the_parent(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    ids = ["ok", "flaky#fail=500", "bad#fail=400"]
    result = submit_job(tracker, write_input(tmp_path / "in.jsonl", ids), EMBEDDINGS)
    (parent,) = result.launched
    _run_to_rest(tracker, clock)
    states = {e.custom_id: e.state for e in tracker.store.iter_ledger()}
    assert states == {
        "ok": ItemState.SUCCEEDED,
        "flaky#fail=500": ItemState.RETRY,
        "bad#fail=400": ItemState.FAILED,
    }

    retried = retry_items(tracker)

    (record,) = retried.batches
    assert record.parent_batch_id == parent
    assert _input_ids(app, record.batch_id) == ["flaky#fail=500"]
    flaky = tracker.store.get_ledger(result.job.job_id, ["flaky#fail=500"])["flaky#fail=500"]
    assert flaky.batches == (parent, record.batch_id)
    assert flaky.state is ItemState.PENDING
    history = tracker.store.history(record.batch_id)
    assert any(
        isinstance(h, EventEntry) and h.name == "retry_of" and h.detail["parent_batch_id"] == parent
        for h in history
    )
    # Nothing left in retry: a second call sends nothing.
    assert retry_items(tracker).batches == []


def test_retry_batches_respect_the_same_limits_as_a_submit(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(Scenario(default=Fate(failure_rate=1.0, failure_codes=(500,))), clock)
    tracker = make_tracker(tmp_path, app, clock)
    ids = [f"r{i}" for i in range(5)]
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ids), EMBEDDINGS)
    _run_to_rest(tracker, clock)

    retried = retry_items(tracker, limits=Limits(max_requests=2))

    assert [len(_input_ids(app, b.batch_id)) for b in retried.batches] == [2, 2, 1]
    assert sorted(cid for b in retried.batches for cid in _input_ids(app, b.batch_id)) == ids


def test_a_failed_upload_hands_the_items_back_to_retry(tmp_path: Path) -> None:
    clock = FrozenClock()
    # Upload 1 is the submit; uploads 2-6 (every try of the retry's upload) fail.
    script = tuple(
        ScriptedFault(route=UPLOAD_ROUTE, call=n, kind="server_error") for n in range(2, 7)
    )
    app = sandbox(Scenario(faults=Faults(script=script)), clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["x#fail=500"]), EMBEDDINGS)
    _run_to_rest(tracker, clock)

    with pytest.raises(GatewayUnavailableError):
        retry_items(tracker)

    (entry,) = tracker.store.iter_ledger()
    assert entry.state is ItemState.RETRY and len(entry.batches) == 1
    assert tracker.store.list_intents(open_only=True) == []
    assert len(retry_items(tracker).batches) == 1  # the next try goes through


def test_queue_full_items_wait_for_the_backoff_only_when_one_is_given(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(Scenario(by_order=(Fate(kind="token_limit_exceeded"),)), clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a", "b"]), EMBEDDINGS)
    _run_to_rest(tracker, clock)
    (entry, _) = tracker.store.iter_ledger()
    assert entry.state is ItemState.RETRY
    assert entry.last_error is not None and entry.last_error.category == "queue_full"

    waiting = retry_items(tracker, backoff=Backoff(base=600, cap=3600))
    assert waiting.batches == [] and waiting.waiting[0].items == 2
    assert retry_items(tracker, backoff=Backoff(base=600)).next_ready == waiting.next_ready

    # A person running `batchfsm retry` does not wait.
    assert len(retry_items(tracker).batches) == 1


@given(
    base=st.floats(min_value=0, max_value=1e4),
    cap=st.floats(min_value=0, max_value=1e5),
    n=st.integers(min_value=1, max_value=60),
)
def test_backoff_doubles_up_to_its_cap(base: float, cap: float, n: int) -> None:
    backoff = Backoff(base=base, cap=cap)
    assert backoff.delay(1) == min(cap, base)
    assert backoff.delay(n) <= backoff.delay(n + 1) <= cap
    if base * 2 ** (n - 1) < cap:
        assert backoff.delay(n) == base * 2 ** (n - 1)


class RacingStore(SQLiteJobStore):
    """Lets a rival process run its whole retry just before our first intent is saved."""

    rival: Callable[[], object] | None = None

    def save_intent(self, intent: SubmitIntent) -> SubmitIntent:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        return super().save_intent(intent)


def test_two_retries_racing_for_the_same_items_send_them_once(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    ours = RacingStore(tmp_path / "store.db")
    tracker = make_tracker(tmp_path, app, clock, store=ours)
    submit_job(
        tracker, write_input(tmp_path / "in.jsonl", ["a#fail=500", "b#fail=500"]), EMBEDDINGS
    )
    _run_to_rest(tracker, clock)
    rival = make_tracker(tmp_path, app, clock, store=SQLiteJobStore(tmp_path / "store.db"))
    rival_result: list[RetryResult] = []
    ours.rival = lambda: rival_result.append(retry_items(rival))

    mine = retry_items(tracker)

    assert len(rival_result[0].batches) == 1 and mine.batches == []
    assert len(app.world.batch_ids()) == 2
    assert {len(e.batches) for e in ours.iter_ledger()} == {2}
    assert {i.state for i in ours.list_intents()} == {"created", "abandoned"}


def test_retry_items_read_a_few_at_a_time_are_split_as_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger is read in chunks of ``STREAM_CHUNK`` (here 2) and spooled to disk:
    the batches are cut across chunk boundaries exactly as from all the items at once,
    each item sent once, in custom_id order."""
    monkeypatch.setattr(retry_module, "STREAM_CHUNK", 2)
    clock = FrozenClock()
    app = sandbox(Scenario(default=Fate(failure_rate=1.0, failure_codes=(500,))), clock)
    tracker = make_tracker(tmp_path, app, clock)
    ids = [f"r{i}" for i in range(7)]
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ids), EMBEDDINGS)
    _run_to_rest(tracker, clock)

    retried = retry_items(tracker, limits=Limits(max_requests=3))

    sent = [_input_ids(app, b.batch_id) for b in retried.batches]
    assert sent == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]
    assert all(e.state is ItemState.PENDING for e in tracker.store.iter_ledger())
    assert retry_items(tracker).batches == []
