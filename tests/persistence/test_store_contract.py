"""The store contract, run against every backend in ``factories.STORE_FACTORIES``.

Backend-agnostic on purpose: only the public JobStore API is used here. Anything that
needs a backend's internals (corrupt rows, schema files) lives in its own test module.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.errors import DuplicateJobError, JobNotFoundError, StaleJobError
from batchfsm.fsm.models import (
    BatchRecord,
    BatchSnapshot,
    EventEntry,
    HistoryEntry,
    Hop,
    OutboxEntry,
    RejectionEntry,
    TransitionEntry,
)
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.records import (
    ErrorCategory,
    IntentState,
    ItemError,
    ItemState,
    JobRecord,
    LedgerEntry,
    SubmitIntent,
)
from batchfsm.persistence import JobStore, base
from tests.persistence.factories import STORE_FACTORIES

S = BatchStatus
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with STORE_FACTORIES[request.param](tmp_path) as made:
        yield made


# -- builders ----------------------------------------------------------------------------


def effect(state: BatchStatus, handler: str, *, done: bool = False) -> OutboxEntry:
    return OutboxEntry(
        key=OutboxEntry.key_for(state, handler),
        state=state,
        handler=handler,
        implied=False,
        done=done,
    )


def batch(
    batch_id: str,
    state: BatchStatus = S.VALIDATING,
    *,
    job_id: str | None = "job-1",
    outbox: tuple[OutboxEntry, ...] = (),
) -> BatchRecord:
    return BatchRecord(batch_id=batch_id, state=state, job_id=job_id, outbox=outbox)


def hop(source: BatchStatus, dest: BatchStatus, line: int) -> TransitionEntry:
    return TransitionEntry(
        hop=Hop(source=source, dest=dest, implied=False, undocumented=False, line=line, at=T0)
    )


def event(name: str) -> EventEntry:
    return EventEntry(name=name, at=T0, detail={"by": "test"})


def ledger(
    custom_id: str,
    *,
    job_id: str = "job-1",
    batches: tuple[str, ...] = ("b1",),
    state: ItemState = ItemState.PENDING,
    version: int = 0,
) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        custom_id=custom_id,
        line=f'{{"custom_id": "{custom_id}"}}',
        state=state,
        batches=batches,
        version=version,
    )


def intent(intent_id: str, *, job_id: str = "job-1") -> SubmitIntent:
    return SubmitIntent(intent_id=intent_id, job_id=job_id, created_at=T0, custom_ids=("r1", "r2"))


# -- batches -----------------------------------------------------------------------------


def test_every_store_satisfies_the_protocol(store: JobStore) -> None:
    assert isinstance(store, JobStore)
    assert isinstance(store.url, str)
    store.init()
    store.init()  # idempotent


def test_create_then_load_returns_the_same_record_at_version_1(store: JobStore) -> None:
    snapshot = BatchSnapshot.model_validate(
        {
            "id": "batch_abc",
            "status": "in_progress",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-in",
            "output_file_id": "",
            "created_at": 1_767_225_600,
            "in_progress_at": 1_767_225_700,
            "expires_at": 1_767_312_000,
            "request_counts": {"total": 10, "completed": 4, "failed": 1},
            "errors": {"object": "list", "data": [{"code": "x", "message": "m", "line": 3}]},
            "metadata": {"intent_id": "int-1"},
        }
    )
    record = BatchRecord(
        batch_id="batch_abc",
        state=S.IN_PROGRESS,
        version=7,  # ignored: a new batch always starts at 1
        job_id="job-1",
        parent_batch_id="batch_parent",
        snapshot=snapshot,
        observed_at=T0,
        observations=3,
        outbox=(effect(S.VALIDATING, "watch", done=True), effect(S.IN_PROGRESS, "watch")),
        lost=True,
        cancel_requested=True,
    )

    created = store.create(record)
    loaded = store.load("batch_abc")

    assert created.version == 1
    assert loaded == created
    assert loaded.snapshot == snapshot
    assert [e.done for e in loaded.outbox] == [True, False]
    assert (loaded.lost, loaded.cancel_requested) == (True, True)


def test_create_stores_initial_history(store: JobStore) -> None:
    store.create(batch("b1"), history=[event("tracked"), event("noted")])
    assert [e.name for e in store.history("b1") if isinstance(e, EventEntry)] == [
        "tracked",
        "noted",
    ]


def test_create_twice_is_refused_and_keeps_the_first(store: JobStore) -> None:
    store.create(batch("b1", job_id="first"), history=[event("one")])
    with pytest.raises(DuplicateJobError):
        store.create(batch("b1", job_id="second"), history=[event("two")])
    assert store.load("b1").job_id == "first"
    assert len(store.history("b1")) == 1


def test_unknown_batch_is_job_not_found_everywhere(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError):
        store.load("nope")
    with pytest.raises(JobNotFoundError):
        store.history("nope")
    with pytest.raises(JobNotFoundError):
        store.commit(batch("nope"), expected_version=1)
    assert store.list_batches() == []


def test_commit_with_current_version_saves_state_outbox_and_history(store: JobStore) -> None:
    created = store.create(batch("b1", S.IN_PROGRESS))
    moved = created.model_copy(
        update={"state": S.FINALIZING, "outbox": (effect(S.FINALIZING, "watch"),)}
    )

    saved = store.commit(moved, expected_version=1, history=[hop(S.IN_PROGRESS, S.FINALIZING, 2)])

    assert saved.version == 2
    assert store.load("b1") == saved
    assert store.load("b1").outbox == (effect(S.FINALIZING, "watch"),)
    assert store.history("b1") == [hop(S.IN_PROGRESS, S.FINALIZING, 2)]


def test_stale_commit_writes_nothing(store: JobStore) -> None:
    created = store.create(batch("b1", S.IN_PROGRESS), history=[event("tracked")])
    winner = store.commit(
        created.model_copy(update={"state": S.FINALIZING}),
        expected_version=1,
        history=[hop(S.IN_PROGRESS, S.FINALIZING, 2)],
    )
    loser = created.model_copy(
        update={"state": S.CANCELLING, "outbox": (effect(S.CANCELLING, "watch"),)}
    )

    with pytest.raises(StaleJobError) as caught:
        store.commit(loser, expected_version=1, history=[hop(S.IN_PROGRESS, S.CANCELLING, 2)])

    assert caught.value.batch_id == "b1"
    assert caught.value.expected_version == 1
    assert caught.value.actual_version == 2
    assert store.load("b1") == winner
    assert store.history("b1") == [event("tracked"), hop(S.IN_PROGRESS, S.FINALIZING, 2)]


def test_commit_from_the_future_is_stale_too(store: JobStore) -> None:
    store.create(batch("b1"))
    with pytest.raises(StaleJobError):
        store.commit(batch("b1", S.IN_PROGRESS), expected_version=5)
    assert store.load("b1").state is S.VALIDATING


def test_commit_refuses_a_nonsense_expected_version(store: JobStore) -> None:
    store.create(batch("b1"))
    with pytest.raises(ValueError, match="expected_version"):
        store.commit(batch("b1"), expected_version=0)


def test_history_keeps_every_kind_in_commit_order(store: JobStore) -> None:
    record = store.create(batch("b1"), history=[event("tracked")])
    rejection = RejectionEntry(
        line=4,
        status="canceled",
        reason="unknown",
        current=S.IN_PROGRESS,
        at=T0,
        snapshot={"status": "canceled"},
    )
    steps: list[list[HistoryEntry]] = [
        [hop(S.VALIDATING, S.IN_PROGRESS, 2)],
        [],
        [rejection, event("cancel_requested")],
        [hop(S.IN_PROGRESS, S.FINALIZING, 5), hop(S.FINALIZING, S.COMPLETED, 5)],
    ]
    for entries in steps:
        record = store.commit(record, expected_version=record.version, history=entries)

    expected = [event("tracked"), *itertools.chain.from_iterable(steps)]
    assert store.history("b1") == expected
    assert record.version == 1 + len(steps)


def test_history_of_one_batch_is_not_mixed_with_another(store: JobStore) -> None:
    store.create(batch("a"), history=[event("a1")])
    store.create(batch("b"), history=[event("b1")])
    store.commit(store.load("a"), expected_version=1, history=[event("a2")])
    assert store.history("a") == [event("a1"), event("a2")]
    assert store.history("b") == [event("b1")]


def test_list_attention_is_live_batches_plus_terminal_ones_owing_work(store: JobStore) -> None:
    store.create(batch("live", S.IN_PROGRESS))
    store.create(batch("cancelling", S.CANCELLING))
    store.create(batch("owed", S.COMPLETED, outbox=(effect(S.COMPLETED, "harvest"),)))
    store.create(batch("done", S.COMPLETED, outbox=(effect(S.COMPLETED, "harvest", done=True),)))
    store.create(batch("failed-clean", S.FAILED))
    store.create(batch("failed-owed", S.FAILED, outbox=(effect(S.FAILED, "classify_failure"),)))

    ids = [r.batch_id for r in store.list_attention()]

    assert sorted(ids) == ["cancelling", "failed-owed", "live", "owed"]


def test_list_attention_follows_commits(store: JobStore) -> None:
    record = store.create(batch("b1", S.FINALIZING))
    assert [r.batch_id for r in store.list_attention()] == ["b1"]

    record = store.commit(
        record.model_copy(
            update={"state": S.COMPLETED, "outbox": (effect(S.COMPLETED, "harvest"),)}
        ),
        expected_version=record.version,
    )
    assert [r.batch_id for r in store.list_attention()] == ["b1"]

    store.commit(
        record.with_effect("completed#harvest", done=True), expected_version=record.version
    )
    assert store.list_attention() == []
    assert [r.batch_id for r in store.list_batches()] == ["b1"]


def test_list_batches_filters_by_job_in_creation_order(store: JobStore) -> None:
    for name, job in [("z", "job-1"), ("a", "job-2"), ("m", "job-1"), ("orphan", None)]:
        store.create(batch(name, job_id=job))

    assert [r.batch_id for r in store.list_batches()] == ["z", "a", "m", "orphan"]
    assert [r.batch_id for r in store.list_batches("job-1")] == ["z", "m"]
    assert [r.batch_id for r in store.list_batches("job-2")] == ["a"]
    assert store.list_batches("job-3") == []


# -- jobs and intents --------------------------------------------------------------------


def test_jobs_are_created_once_and_listed_in_order(store: JobStore) -> None:
    first = JobRecord(
        job_id="job-b",
        endpoint="/v1/chat/completions",
        created_at=T0,
        source="in.jsonl",
        metadata={"team": "x"},
        requests=12,
    )
    second = JobRecord(job_id="job-a", endpoint="/v1/embeddings", created_at=T0)

    saved = store.put_job(first)
    store.put_job(second)

    assert saved.version == 1
    assert store.load_job("job-b") == saved
    assert [j.job_id for j in store.list_jobs()] == ["job-b", "job-a"]
    with pytest.raises(DuplicateJobError):
        store.put_job(first.model_copy(update={"source": "other.jsonl"}))
    assert store.load_job("job-b").source == "in.jsonl"
    with pytest.raises(JobNotFoundError):
        store.load_job("job-missing")


def test_intent_lifecycle_is_conditional_on_version(store: JobStore) -> None:
    planned = store.save_intent(intent("i1"))
    assert planned.version == 1
    uploaded = store.save_intent(
        planned.model_copy(update={"state": IntentState.UPLOADED, "file_id": "file-1"})
    )
    assert uploaded.version == 2

    # A second writer still holding version 1 loses and changes nothing.
    with pytest.raises(StaleJobError):
        store.save_intent(planned.model_copy(update={"state": IntentState.ABANDONED}))
    # Creating an id that exists is a conflict too, not an overwrite.
    with pytest.raises(StaleJobError):
        store.save_intent(intent("i1"))

    assert store.list_intents() == [uploaded]


def test_list_intents_by_job_and_open_only(store: JobStore) -> None:
    a = store.save_intent(intent("a", job_id="job-1"))
    b = store.save_intent(intent("b", job_id="job-2"))
    c = store.save_intent(intent("c", job_id="job-1"))
    c = store.save_intent(
        c.model_copy(update={"state": IntentState.CREATED, "batch_id": "batch_c"})
    )
    d = store.save_intent(intent("d", job_id="job-1"))
    d = store.save_intent(d.model_copy(update={"state": IntentState.UPLOADED}))

    assert store.list_intents() == [a, b, c, d]
    assert store.list_intents("job-1") == [a, c, d]
    assert store.list_intents("job-1", open_only=True) == [a, d]
    assert store.list_intents(open_only=True) == [a, b, d]


# -- ledger ------------------------------------------------------------------------------


def test_ledger_insert_then_conditional_update(store: JobStore) -> None:
    inserted = store.save_ledger([ledger("r1"), ledger("r2")])
    assert [e.version for e in inserted] == [1, 1]

    failed = ItemError(code="server_error", message="boom", category=ErrorCategory.RETRYABLE)
    updated = store.save_ledger(
        [
            inserted[0].model_copy(
                update={"state": ItemState.RETRY, "attempts": 1, "last_error": failed}
            )
        ]
    )

    assert updated[0].version == 2
    assert store.get_ledger("job-1", ["r1", "r2", "r3"]) == {"r1": updated[0], "r2": inserted[1]}


def test_ledger_conflict_is_stale_and_group_atomic_where_promised(store: JobStore) -> None:
    r1, r2 = store.save_ledger([ledger("r1"), ledger("r2")])
    store.save_ledger([r2.model_copy(update={"state": ItemState.SUCCEEDED})])

    fresh = r1.model_copy(update={"state": ItemState.FAILED})
    stale = r2.model_copy(update={"state": ItemState.RETRY})  # still at version 1
    with pytest.raises(StaleJobError) as caught:
        store.save_ledger([fresh, stale, ledger("r3")])

    assert caught.value.expected_version == 1
    assert caught.value.actual_version == 2
    after = store.get_ledger("job-1", ["r1", "r2", "r3"])
    assert after["r2"].state is ItemState.SUCCEEDED
    if store.ledger_group_atomic:
        assert after["r1"] == r1
        assert "r3" not in after


def test_inserting_an_existing_ledger_entry_is_a_conflict(store: JobStore) -> None:
    (first,) = store.save_ledger([ledger("r1")])
    with pytest.raises(StaleJobError):
        store.save_ledger([ledger("r1", state=ItemState.FAILED)])
    assert store.get_ledger("job-1", ["r1"]) == {"r1": first}


def test_save_ledger_refuses_the_same_entry_twice(store: JobStore) -> None:
    with pytest.raises(ValueError, match="twice"):
        store.save_ledger([ledger("r1"), ledger("r1")])
    assert store.get_ledger("job-1", ["r1"]) == {}
    assert store.save_ledger([]) == []


def test_iter_ledger_filters_and_orders(store: JobStore) -> None:
    store.save_ledger(
        [
            ledger("c", batches=("b1",)),
            ledger("a", batches=("b1", "b2"), state=ItemState.SUCCEEDED),
            ledger("b", batches=("b2",), state=ItemState.RETRY),
            ledger("a", job_id="job-0", batches=("b9",)),
            ledger("z", job_id="job-2", batches=("b1",), state=ItemState.FAILED),
        ]
    )

    def keys(**filters: object) -> list[tuple[str, str]]:
        return [(e.job_id, e.custom_id) for e in store.iter_ledger(**filters)]  # type: ignore[arg-type]

    assert keys() == [
        ("job-0", "a"),
        ("job-1", "a"),
        ("job-1", "b"),
        ("job-1", "c"),
        ("job-2", "z"),
    ]
    assert keys(job_id="job-1") == [("job-1", "a"), ("job-1", "b"), ("job-1", "c")]
    assert keys(batch_id="b1") == [("job-1", "a"), ("job-1", "c"), ("job-2", "z")]
    assert keys(batch_id="b2") == [("job-1", "a"), ("job-1", "b")]
    assert keys(job_id="job-1", batch_id="b1") == [("job-1", "a"), ("job-1", "c")]
    assert keys(state=ItemState.PENDING) == [("job-0", "a"), ("job-1", "c")]
    assert keys(job_id="job-1", state=ItemState.RETRY) == [("job-1", "b")]
    assert keys(batch_id="b1", state=ItemState.FAILED) == [("job-2", "z")]
    assert keys(batch_id="nowhere") == []


def test_iter_ledger_finds_an_entry_by_every_batch_it_went_through(store: JobStore) -> None:
    (entry,) = store.save_ledger([ledger("r1", batches=("b1",))])
    store.save_ledger(
        [entry.model_copy(update={"batches": ("b1", "b2"), "state": ItemState.RETRY})]
    )
    assert [e.custom_id for e in store.iter_ledger(batch_id="b1")] == ["r1"]
    assert [e.custom_id for e in store.iter_ledger(batch_id="b2")] == ["r1"]


def test_iter_ledger_pages_through_everything(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny page so that several pages (and a page boundary inside a job) are crossed.
    monkeypatch.setattr(base, "LEDGER_PAGE", 3)
    entries = [ledger(f"r{n:02d}", job_id=f"job-{n % 2}") for n in range(11)]
    store.save_ledger(entries)

    got = [(e.job_id, e.custom_id) for e in store.iter_ledger()]
    assert got == sorted((e.job_id, e.custom_id) for e in entries)
    assert len(list(store.iter_ledger("job-1"))) == 5


def test_iter_ledger_starts_strictly_after_a_key_with_every_filter(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``after`` (what ``batchfsm items --after`` pages with) gives exactly the entries a
    full listing gives past that key, with any filter, wherever the key lies: inside a
    job, between jobs, on a key that does not exist, before or past everything."""
    assert isinstance(store, base.BaseJobStore)
    monkeypatch.setattr(base, "LEDGER_PAGE", 2)  # page boundaries everywhere
    states = itertools.cycle([ItemState.PENDING, ItemState.RETRY, ItemState.SUCCEEDED])
    entries = [
        ledger(
            f"r{n}", job_id=job, batches=(("b1",) if n % 2 else ("b1", "b2")), state=next(states)
        )
        for job in ("job-1", "job-2", "job-3")
        for n in range(4)
    ]
    store.save_ledger(entries)
    every = sorted(entries, key=lambda e: (e.job_id, e.custom_id))
    afters = [("", ""), ("job-1", "r1"), ("job-1", "r3"), ("job-2", "r15"), ("job-2", ""),
              ("job-20", "r0"), ("job-3", "r3"), ("job-9", "")]  # fmt: skip
    filters: list[dict[str, object]] = [
        {}, {"job_id": "job-2"}, {"state": ItemState.RETRY}, {"batch_id": "b2"},
        {"job_id": "job-2", "state": ItemState.PENDING}, {"job_id": "job-1", "batch_id": "b2"},
        {"batch_id": "b1", "state": ItemState.SUCCEEDED},
    ]  # fmt: skip
    for where in filters:
        for after in afters:
            expected = [
                (e.job_id, e.custom_id)
                for e in every
                if (e.job_id, e.custom_id) > after
                and where.get("job_id", e.job_id) == e.job_id
                and where.get("state", e.state) is e.state
                and where.get("batch_id", e.batches[0]) in e.batches
            ]
            got = store.iter_ledger(after=after, **where)  # type: ignore[arg-type]
            assert [(e.job_id, e.custom_id) for e in got] == expected, (where, after)


def test_count_ledger_by_state(store: JobStore) -> None:
    store.save_ledger(
        [
            ledger("a"),
            ledger("b"),
            ledger("c", state=ItemState.SUCCEEDED),
            ledger("d", job_id="job-2", state=ItemState.FAILED),
        ]
    )
    assert store.count_ledger("job-1") == {
        ItemState.PENDING: 2,
        ItemState.QUEUED: 0,
        ItemState.SUCCEEDED: 1,
        ItemState.RETRY: 0,
        ItemState.FAILED: 0,
    }
    assert store.count_ledger() == {
        ItemState.PENDING: 2,
        ItemState.QUEUED: 0,
        ItemState.SUCCEEDED: 1,
        ItemState.RETRY: 0,
        ItemState.FAILED: 1,
    }
    assert sum(store.count_ledger("job-none").values()) == 0


# -- property: the version counts exactly the commits that won ----------------------------

_batch_ids = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=12))
def test_version_and_history_count_only_successful_commits(
    store: JobStore, steps: list[tuple[bool, int]]
) -> None:
    # One store serves every example, so each example tracks a batch of its own.
    batch_id = f"prop-{next(_batch_ids)}"
    record = store.create(batch(batch_id))
    won = history_len = 0
    for fresh, n_entries in steps:
        entries = [event(f"e{i}") for i in range(n_entries)]
        if fresh:
            record = store.commit(record, expected_version=record.version, history=entries)
            won += 1
            history_len += n_entries
        else:
            with pytest.raises(StaleJobError):
                store.commit(record, expected_version=record.version - 1 or 99, history=entries)

    assert store.load(batch_id).version == 1 + won == record.version
    assert len(store.history(batch_id)) == history_len
