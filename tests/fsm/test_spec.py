"""The lifecycle definition itself: the rulebook must match the spec, and the spec must
be a sane lifecycle (everything reachable, terminals absorbing, no traps)."""

from __future__ import annotations

import pytest

from batchfsm.errors import SpecError
from batchfsm.fsm.engine import rulebook
from batchfsm.fsm.paths import build_graph, graph
from batchfsm.fsm.spec import (
    EDGES,
    INITIAL,
    TERMINAL,
    TRIGGERS,
    BatchStatus,
    Edge,
    EdgeKind,
    parse_status,
)


def test_eight_statuses_with_the_api_spelling() -> None:
    assert {s.value for s in BatchStatus} == {
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    }
    assert INITIAL is BatchStatus.VALIDATING
    assert {s.value for s in TERMINAL} == {"completed", "failed", "expired", "cancelled"}


def test_documented_and_tolerated_edges_exactly_as_specified() -> None:
    documented = {(e.source.value, e.dest.value) for e in EDGES if e.kind is EdgeKind.DOCUMENTED}
    tolerated = {(e.source.value, e.dest.value) for e in EDGES if e.kind is EdgeKind.TOLERATED}
    assert documented == {
        ("validating", "in_progress"),
        ("validating", "failed"),
        ("in_progress", "finalizing"),
        ("finalizing", "completed"),
        ("in_progress", "expired"),
        ("in_progress", "cancelling"),
        ("cancelling", "cancelled"),
    }
    assert tolerated == {
        ("validating", "cancelling"),
        ("validating", "expired"),
        ("in_progress", "failed"),
        ("finalizing", "cancelling"),
        ("finalizing", "expired"),
        ("cancelling", "completed"),
        ("cancelling", "expired"),
        ("cancelling", "failed"),
    }


def test_machine_transitions_equal_the_spec() -> None:
    machine = rulebook().machine
    fired = {
        (t.source, t.dest)
        for event in machine.events.values()
        for transitions in event.transitions.values()
        for t in transitions
    }
    assert fired == {(e.source.value, e.dest.value) for e in EDGES}
    assert not any(name.startswith("to_") for name in machine.events)
    assert set(machine.events) == set(TRIGGERS.values())


def test_every_state_reachable_from_validating() -> None:
    assert graph().reachable[INITIAL] | {INITIAL} == set(BatchStatus)


def test_terminal_states_have_no_way_out_and_no_state_is_a_trap() -> None:
    g = graph()
    for state in BatchStatus:
        if state in TERMINAL:
            assert g.successors[state] == ()
        else:
            assert g.reachable[state] & TERMINAL, f"{state} can never finish"


def test_spec_errors_are_caught_when_building() -> None:
    s = BatchStatus
    with pytest.raises(SpecError, match="terminal"):
        build_graph([*EDGES, Edge(s.COMPLETED, s.IN_PROGRESS, EdgeKind.TOLERATED)])
    with pytest.raises(SpecError, match="twice"):
        build_graph([*EDGES, EDGES[0]])
    with pytest.raises(SpecError, match="cycle"):
        build_graph([*EDGES, Edge(s.FINALIZING, s.IN_PROGRESS, EdgeKind.TOLERATED)])
    with pytest.raises(SpecError, match="unreachable"):
        build_graph([e for e in EDGES if e.dest is not s.FINALIZING])


@pytest.mark.parametrize("raw", ["canceling", "canceled", "CANCELLED", "done", "", None, 3])
def test_foreign_spellings_are_not_guessed(raw: object) -> None:
    assert parse_status(raw) is None
