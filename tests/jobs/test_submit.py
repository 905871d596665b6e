"""submit_job and the intent protocol, against the sandbox in-process and a SQLite file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.cli.views import submit_json
from batchfsm.errors import (
    GatewayError,
    GatewayUnavailableError,
    InputFileError,
    StoreUnavailableError,
)
from batchfsm.fsm.models import BatchRecord, HistoryEntry
from batchfsm.jobs.input_file import Limits
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.metadata import (
    INTENT_KEY,
    JOB_KEY,
    MAX_KEY_CHARS,
    MAX_VALUE_CHARS,
    check_metadata,
)
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.jobs.retry import Backoff
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ErrorCategory, IntentState, ItemState, LedgerEntry, NewClaim
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Faults, Scenario, ScriptedFault
from batchfsm.sandbox.testing import batch_input, openai_client
from tests.e2e.support import (
    BATCHES_ROUTE,
    EMBEDDINGS,
    UPLOAD_ROUTE,
    make_tracker,
    result_lines,
    sandbox,
    write_input,
)


class CrashAfterCreate(SQLiteJobStore):
    """A store whose first batch insert fails: the process 'dies' right after create."""

    failures = 1

    def create(self, record: BatchRecord, history: Sequence[HistoryEntry] = ()) -> BatchRecord:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("disk gone (simulated crash)")
        return super().create(record, history)


def test_a_bad_line_is_named_and_nothing_is_uploaded(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    path = write_input(tmp_path / "in.jsonl", ["a", "b", "c"])
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"POST"', '"GET"')
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(InputFileError) as caught:
        submit_job(tracker, path, EMBEDDINGS)

    assert caught.value.line == 3 and caught.value.field == "method"
    assert "line 3" in str(caught.value)
    assert app.stats.count(UPLOAD_ROUTE) == 0 and app.stats.count(BATCHES_ROUTE) == 0
    assert tracker.store.list_jobs() == [] and list(tracker.store.iter_ledger()) == []


def test_an_input_over_the_limits_becomes_several_batches_of_one_job(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    ids = [f"r{i}" for i in range(7)]

    result = submit_job(
        tracker,
        write_input(tmp_path / "in.jsonl", ids),
        EMBEDDINGS,
        metadata={"project": "x"},
        limits=Limits(max_requests=3),
    )

    assert len(result.batches) == 3 and len(result.launched) == 3
    data = submit_json(tracker.store, result)
    assert [b["requests"] for b in data["batches"]] == [3, 3, 1]
    assert data["job"]["requests"] == 7 and data["job"]["resumed"] is False
    # Every request has its original line and sits in exactly one batch.
    entries = list(tracker.store.iter_ledger(result.job.job_id))
    assert sorted(e.custom_id for e in entries) == sorted(ids)
    assert all(e.state is ItemState.PENDING and len(e.batches) == 1 for e in entries)
    assert all(f'"custom_id":"{e.custom_id}"' in e.line for e in entries)
    # The batches carry the job and intent ids, plus the user's metadata.
    remote = app.world.list_batches(limit=100)["data"]
    assert {b["metadata"][JOB_KEY] for b in remote} == {result.job.job_id}
    assert len({b["metadata"][INTENT_KEY] for b in remote}) == 3
    assert all(b["metadata"]["project"] == "x" for b in remote)


def test_running_the_same_submit_again_resumes_instead_of_paying_twice(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    path = write_input(tmp_path / "in.jsonl", ["a", "b"])

    first = submit_job(tracker, path, EMBEDDINGS)
    second = submit_job(tracker, path, EMBEDDINGS)

    assert second.resumed and second.launched == []
    assert second.job.job_id == first.job.job_id
    assert app.stats.count(BATCHES_ROUTE) == 1
    # A chosen job id runs the same file again, as a new job.
    third = submit_job(tracker, path, EMBEDDINGS, job_id="again")
    assert third.launched and app.stats.count(BATCHES_ROUTE) == 2


def test_a_crash_between_create_and_the_store_write_is_adopted_not_duplicated(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    store = CrashAfterCreate(tmp_path / "store.db")
    tracker = make_tracker(tmp_path, app, clock, store=store)
    path = write_input(tmp_path / "in.jsonl", ["a", "b", "c"])

    with pytest.raises(StoreUnavailableError):
        submit_job(tracker, path, EMBEDDINGS)
    assert app.stats.count(BATCHES_ROUTE) == 1
    assert store.list_batches() == []
    (intent,) = store.list_intents(open_only=True)
    assert intent.state == "uploaded"

    # A restart within the lease leaves it alone: the first process may still be alive.
    assert reconcile_intents(Intents.of(tracker)).in_flight == [intent.intent_id]
    clock.advance(301)
    report = reconcile_intents(Intents.of(tracker))

    assert report.adopted == [intent.intent_id]
    (record,) = store.list_batches()
    assert app.stats.count(BATCHES_ROUTE) == 1  # no duplicate batch
    assert all(e.batches == (record.batch_id,) for e in store.iter_ledger())
    assert store.list_intents(open_only=True) == []
    # And a re-run of the submit finds everything covered.
    assert submit_job(tracker, path, EMBEDDINGS).launched == []
    assert app.stats.count(BATCHES_ROUTE) == 1


def test_an_ambiguous_create_failure_is_relaunched_once_by_reconcile(tmp_path: Path) -> None:
    clock = FrozenClock()
    faults = Faults(script=(ScriptedFault(route=BATCHES_ROUTE, call=1, kind="server_error"),))
    app = sandbox(Scenario(faults=faults), clock)
    tracker = make_tracker(tmp_path, app, clock)

    with pytest.raises(GatewayUnavailableError):
        submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a"]), EMBEDDINGS)
    clock.advance(301)
    report = reconcile_intents(Intents.of(tracker))

    assert report.relaunched and not report.adopted
    assert len(app.world.batch_ids()) == 1
    assert len(tracker.store.list_batches()) == 1


def test_reconcile_lists_batches_only_when_an_uploaded_intent_needs_it(tmp_path: Path) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a"]), EMBEDDINGS)

    report = reconcile_intents(Intents.of(tracker), min_age=0)

    assert report.open == 0
    assert app.stats.count("GET /v1/batches") == 0


_key = st.text(min_size=0, max_size=70)
_value = st.text(max_size=520)


@given(st.dictionaries(_key, _value, max_size=18))
def test_metadata_is_accepted_exactly_when_it_fits_beside_batchfsm_s_two_pairs(
    metadata: dict[str, str],
) -> None:
    fits = (
        len(metadata) <= 14
        and all(0 < len(k) <= MAX_KEY_CHARS for k in metadata)
        and all(len(v) <= MAX_VALUE_CHARS for v in metadata.values())
        and not {JOB_KEY, INTENT_KEY} & set(metadata)
    )
    if fits:
        assert check_metadata(metadata) == metadata
    else:
        with pytest.raises(InputFileError):
            check_metadata(metadata)


def test_reserved_metadata_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="reserved"):
        check_metadata({INTENT_KEY: "mine"})


def test_a_create_the_api_refuses_fails_the_items_loudly_instead_of_looping(
    tmp_path: Path,
) -> None:
    """The sandbox answers 400 for a fate it does not know, as OpenAI answers 400 for a
    create it rejects: resending would be refused again, so the items fail with the
    API's reason (no attempt spent) rather than being left pending or retried for ever."""
    clock = FrozenClock()
    app = sandbox(clock=clock)
    tracker = make_tracker(tmp_path, app, clock)
    path = write_input(tmp_path / "in.jsonl", ["a", "b"])

    with pytest.raises(GatewayError) as caught:
        submit_job(tracker, path, EMBEDDINGS, metadata={"sandbox_fate": "no-such-fate"})

    assert caught.value.status_code == 400
    entries = list(tracker.store.iter_ledger())
    assert [(e.custom_id, e.state, e.attempts) for e in entries] == [
        ("a", ItemState.FAILED, 0),
        ("b", ItemState.FAILED, 0),
    ]
    error = entries[0].last_error
    assert error is not None and error.category == "input"
    assert "400" in (error.message or "")
    assert [i.state for i in tracker.store.list_intents()] == ["abandoned"]
    assert tracker.store.list_batches() == []
    assert app.stats.count(BATCHES_ROUTE) == 1


@pytest.mark.parametrize("fault", ["queue_full", "queue_full_429"])
def test_a_create_refused_for_a_full_queue_waits_in_retry_and_is_resent_after_the_backoff(
    tmp_path: Path, fault: Literal["queue_full", "queue_full_429"]
) -> None:
    """Nothing is wrong with requests the queue had no room for: they go back to
    ``retry`` with no attempt spent (never failed as bad input), wait out the queue-full
    backoff, and the retry round delivers every result once."""
    clock = FrozenClock()
    faults = Faults(script=(ScriptedFault(route=BATCHES_ROUTE, call=1, kind=fault),))
    app = sandbox(Scenario(faults=faults), clock)
    tracker = make_tracker(tmp_path, app, clock)
    path = write_input(tmp_path / "in.jsonl", ["a", "b", "c"])

    result = submit_job(tracker, path, EMBEDDINGS)

    assert result.launched == [] and tracker.store.list_batches() == []
    entries = list(tracker.store.iter_ledger())
    assert [(e.state, e.attempts) for e in entries] == [(ItemState.RETRY, 0)] * 3
    error = entries[0].last_error
    assert error is not None
    assert (error.category, error.code) == (ErrorCategory.QUEUE_FULL, "token_limit_exceeded")
    assert error.at == clock.now()
    assert [i.state for i in tracker.store.list_intents()] == [IntentState.ABANDONED]

    poller = Poller(tracker, backoff=Backoff(base=600, cap=3600), sleep=clock.advance)
    first = poller.cycle(auto_retry=True)
    assert first.retried == [] and first.waiting[0].items == 3
    assert first.waiting[0].ready_at == clock.now() + timedelta(seconds=600)

    summary = poller.run(until_done=True, interval=120, timeout=6 * 3600, auto_retry=True)

    assert summary.done
    assert app.stats.count(BATCHES_ROUTE) == 2
    final = list(tracker.store.iter_ledger())
    assert [(e.state, e.attempts) for e in final] == [(ItemState.SUCCEEDED, 1)] * 3
    assert len(result_lines(tmp_path / "results")) == 3


def test_repeated_queue_full_refusals_double_the_wait(tmp_path: Path) -> None:
    clock = FrozenClock()
    script = tuple(ScriptedFault(route=BATCHES_ROUTE, call=n, kind="queue_full") for n in (1, 2, 3))
    app = sandbox(Scenario(faults=Faults(script=script)), clock)
    tracker = make_tracker(tmp_path, app, clock)
    submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a"]), EMBEDDINGS)
    poller = Poller(tracker, backoff=Backoff(base=100, cap=10_000), sleep=clock.advance)

    waits = []
    for _ in range(3):
        (waiting,) = poller.cycle(auto_retry=True).waiting
        waits.append((waiting.ready_at - clock.now()).total_seconds())
        clock.set(waiting.ready_at)
        poller.cycle(auto_retry=True)  # resent: refused (calls 2, 3), then created (4)

    assert waits == [100, 200, 400]
    assert app.stats.count(BATCHES_ROUTE) == 4
    assert len(tracker.store.list_batches()) == 1
    (entry,) = tracker.store.iter_ledger()
    assert entry.attempts == 0 and entry.last_error is not None
    assert entry.last_error.repeats == 3


def test_reconcile_reads_the_batch_list_only_back_to_the_oldest_open_intent(
    tmp_path: Path,
) -> None:
    """An organisation with a long batch history: finding a crashed intent's batch must
    not walk every page of it, only the batches created since the intent was written."""
    clock = FrozenClock()
    app = sandbox(clock=clock)
    client = openai_client(app)
    old_input = client.files.create(
        file=("old.jsonl", batch_input(["x"], endpoint=EMBEDDINGS)), purpose="batch"
    )
    for _ in range(150):  # a day of someone else's batches: two pages of 100
        client.batches.create(
            input_file_id=old_input.id, endpoint="/v1/embeddings", completion_window="24h"
        )
    clock.advance(24 * 3600)
    store = CrashAfterCreate(tmp_path / "store.db")
    tracker = make_tracker(tmp_path, app, clock, store=store)
    with pytest.raises(StoreUnavailableError):
        submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a", "b"]), EMBEDDINGS)
    clock.advance(301)

    report = reconcile_intents(Intents.of(tracker))

    assert len(report.adopted) == 1
    assert app.stats.count("GET /v1/batches") == 1  # one page, not the whole history
    assert app.stats.count(BATCHES_ROUTE) == 151  # and no duplicate


def test_submit_says_what_each_chunk_is_doing_for_a_display(tmp_path: Path) -> None:
    clock = FrozenClock()
    tracker = make_tracker(tmp_path, sandbox(clock=clock), clock)
    notes: list[str] = []

    submit_job(
        tracker,
        write_input(tmp_path / "in.jsonl", [f"r{i}" for i in range(5)]),
        EMBEDDINGS,
        limits=Limits(max_requests=2),
        progress=notes.append,
    )

    assert notes == [
        "chunk 1 of 3: 2 requests: claiming in the ledger, then uploading",
        "chunk 2 of 3: 2 requests: claiming in the ledger, then uploading",
        "chunk 3 of 3: 1 request: claiming in the ledger, then uploading",
    ]


class RivalClaimsFirst(SQLiteJobStore):
    """A racing submit of the same job claims request ``a`` for its own (still open)
    intent just before this submit's one-insert claim of the chunk."""

    def insert_claimed(self, job_id: str, intent_id: str, claims: Sequence[NewClaim]) -> bool:
        first = claims[0]
        self.save_ledger(
            [LedgerEntry(job_id=job_id, custom_id=first.custom_id, line=first.line,
                         intent_id="intent_rival")]
        )  # fmt: skip
        return super().insert_claimed(job_id, intent_id, claims)


def test_a_fresh_submit_that_finds_a_request_claimed_sends_only_the_rest(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    app = sandbox(clock=clock)
    store = RivalClaimsFirst(tmp_path / "store.db")
    tracker = make_tracker(tmp_path, app, clock, store=store)

    result = submit_job(tracker, write_input(tmp_path / "in.jsonl", ["a", "b", "c"]), EMBEDDINGS)

    (batch,) = result.batches
    assert batch.items == 2  # the rival's request is the rival's to send
    entries = {e.custom_id: e for e in store.iter_ledger(result.job.job_id)}
    assert entries["a"].intent_id == "intent_rival" and entries["a"].batches == ()
    assert entries["b"].batches == entries["c"].batches == (batch.batch_id,)
    (intent,) = [i for i in store.list_intents(result.job.job_id) if i.batch_id]
    assert intent.custom_ids == ("b", "c")
