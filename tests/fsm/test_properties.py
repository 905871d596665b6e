"""Property-based checks over random observation sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot
from batchfsm.fsm.paths import graph
from batchfsm.fsm.spec import EDGES, ENTERED_AT_FIELD, INITIAL, TERMINAL, BatchStatus

EDGE_SET = {(e.source, e.dest) for e in EDGES}
TIMESTAMP_FIELDS = [f for s, f in ENTERED_AT_FIELD.items() if s is not INITIAL]

statuses = st.one_of(
    st.sampled_from([s.value for s in BatchStatus]),
    st.sampled_from(["canceling", "canceled", "queued", ""]),
)
snapshots = st.builds(
    lambda status, stamps: BatchSnapshot.model_validate(
        {"id": "b", "status": status, "created_at": 1, **dict.fromkeys(stamps, 5)}
    ),
    statuses,
    st.sets(st.sampled_from(TIMESTAMP_FIELDS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, max_size=12))
def test_state_never_regresses_and_paths_use_only_allowed_edges(
    observed: list[BatchSnapshot],
) -> None:
    book, g = rulebook(), graph()
    record = BatchRecord(batch_id="b")
    terminal_effects = 0
    for line, snapshot in enumerate(observed, start=1):
        before = record.state
        applied = book.apply(record, snapshot, line=line)
        record = applied.record
        after = record.state
        assert after == before or after in g.reachable[before]
        if before in TERMINAL:
            assert after == before
        chain = [before] + [h.dest for h in applied.hops]
        for hop in applied.hops:
            assert (hop.source, hop.dest) in EDGE_SET
            assert hop.line == line
        assert chain[-1] == after
        assert all(h.implied for h in applied.hops[:-1])
        if applied.hops:
            assert not applied.hops[-1].implied
            assert applied.hops[-1].dest.value == snapshot.status
        terminal_effects += sum(e.state in TERMINAL for e in applied.effects)
    keys = [e.key for e in record.outbox]
    assert len(keys) == len(set(keys))
    assert terminal_effects == (1 if record.state in TERMINAL else 0)


lifecycles = st.sampled_from(
    [p for (src, _), ps in graph().paths.items() if src == INITIAL for p in ps if p[-1] in TERMINAL]
)


@settings(max_examples=200, deadline=None)
@given(lifecycles, st.data())
def test_any_forward_subsequence_ends_in_its_last_observed_status(
    lifecycle: tuple[BatchStatus, ...],
    data: st.DataObject,
) -> None:
    picks = data.draw(st.lists(st.sampled_from(range(len(lifecycle))), min_size=1))
    observed = [lifecycle[i] for i in sorted(picks)]
    book = rulebook()
    record = BatchRecord(batch_id="b")
    for line, status in enumerate(observed, start=1):
        applied = book.apply(record, BatchSnapshot(status=status.value), line=line)
        assert applied.outcome != "rejected"
        record = applied.record
    assert record.state == observed[-1]


@settings(max_examples=200, deadline=None)
@given(lifecycles, st.data())
def test_observations_earlier_than_the_current_state_are_rejected(
    lifecycle: tuple[BatchStatus, ...],
    data: st.DataObject,
) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=len(lifecycle) - 1))
    book = rulebook()
    record = BatchRecord(batch_id="b", state=lifecycle[cut])
    earlier = data.draw(st.sampled_from(lifecycle[:cut]))
    applied = book.apply(record, BatchSnapshot(status=earlier.value))
    assert applied.outcome == "rejected"
    assert applied.rejection is not None
    expected = "terminal" if lifecycle[cut] in TERMINAL else "stale"
    assert applied.rejection.reason == expected
    assert applied.record.state == lifecycle[cut]


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, max_size=16))
def test_what_a_poller_writes_never_repeats_a_rejection_and_loses_none(
    observed: list[BatchSnapshot],
) -> None:
    """Every unknown status is rejected (never guessed); a poller writes only changed
    results, and those never hold the same rejection twice in a row."""
    book = rulebook()
    record = BatchRecord(batch_id="b")
    last_written: str | None = None
    for line, snapshot in enumerate(observed, start=1):
        applied = book.apply(record, snapshot, line=line)
        if snapshot.status not in {s.value for s in BatchStatus}:
            assert applied.outcome == "rejected"
            assert applied.rejection is not None and applied.rejection.reason == "unknown"
        if applied.changed:
            written = (
                f"{applied.rejection.reason}:{applied.rejection.status}"
                if applied.rejection is not None
                else None
            )
            assert written is None or written != last_written
            last_written = written
        else:
            assert applied.record is record
        record = applied.record
