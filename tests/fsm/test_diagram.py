"""The lifecycle diagram: it draws exactly the spec, marks what it says it marks, and is
the same bytes every time."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.errors import GraphvizNotFoundError
from batchfsm.fsm.diagram import TITLE, mermaid_markdown, render, svg_fingerprint
from batchfsm.fsm.models import Hop
from batchfsm.fsm.spec import EDGES, INITIAL, TERMINAL, TRIGGERS, BatchStatus

S = BatchStatus
EdgeKey = tuple[BatchStatus, BatchStatus]
DOCUMENTED = {(e.source, e.dest) for e in EDGES if not e.undocumented}
TOLERATED = {(e.source, e.dest) for e in EDGES if e.undocumented}
SUCCESSORS = {s: [e.dest for e in EDGES if e.source == s] for s in BatchStatus}

_MERMAID_EDGE = re.compile(r"^\s*(\w+) --> (\w+): (.*)$", re.MULTILINE)
_MERMAID_CLASS = re.compile(r"^\s*Class (\w+) s_(\w+)$", re.MULTILINE)
_DOT_EDGE = re.compile(r"^\t(\w+) -> (\w+) \[(.*)\]$", re.MULTILINE)
_DOT_NODE = re.compile(r"^\t(\w+) \[(.*)\]$", re.MULTILINE)
_DOT_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def mermaid_edges(text: str) -> dict[EdgeKey, list[str]]:
    found: dict[EdgeKey, list[str]] = {}
    for source, dest, label in _MERMAID_EDGE.findall(text):
        found.setdefault((S(source), S(dest)), []).append(label)
    return found


def mermaid_classes(text: str) -> dict[BatchStatus, str]:
    return {S(name): style for name, style in _MERMAID_CLASS.findall(text)}


def dot_attrs(raw: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _DOT_ATTR.findall(raw)}


def dot_edges(text: str) -> dict[EdgeKey, list[dict[str, str]]]:
    found: dict[EdgeKey, list[dict[str, str]]] = {}
    for source, dest, raw in _DOT_EDGE.findall(text):
        found.setdefault((S(source), S(dest)), []).append(dot_attrs(raw))
    return found


def dot_attrs_all(text: str) -> list[dict[str, str]]:
    return [a for drawn in dot_edges(text).values() for a in drawn]


def dot_nodes(text: str) -> dict[BatchStatus, dict[str, str]]:
    return {S(n): dot_attrs(raw) for n, raw in _DOT_NODE.findall(text) if n in set(S)}


def hops_along(states: list[BatchStatus]) -> list[Hop]:
    undocumented = {(e.source, e.dest): e.undocumented for e in EDGES}
    return [
        Hop.model_validate(
            {"from": a, "to": b, "implied": False, "undocumented": undocumented[(a, b)], "line": i}
        )
        for i, (a, b) in enumerate(itertools.pairwise(states), start=1)
    ]


@st.composite
def walks(draw: st.DrawFn) -> list[BatchStatus]:
    """A path a batch can take: from the initial state along spec edges, any length."""
    states = [INITIAL]
    while SUCCESSORS[states[-1]]:
        go_on: bool = draw(st.booleans())
        if not go_on:
            break
        states.append(draw(st.sampled_from(SUCCESSORS[states[-1]])))
    return states


# -- the plain lifecycle ---------------------------------------------------------------------
def test_mermaid_draws_every_spec_edge_once_labelled_by_kind() -> None:
    edges = mermaid_edges(render("mermaid"))

    assert set(edges) == DOCUMENTED | TOLERATED
    for (source, dest), labels in edges.items():
        assert len(labels) == 1, f"{source} -> {dest} drawn {len(labels)} times"
        expected = TRIGGERS[dest]
        if (source, dest) in TOLERATED:
            expected += " (undocumented)"
        assert labels == [expected]


def test_mermaid_has_a_real_title_and_marks_terminal_states_final() -> None:
    text = render("mermaid")
    lines = text.splitlines()

    assert lines[:4] == ["---", f'title: "{TITLE}"', "---", "stateDiagram-v2"]
    assert f"[*] --> {INITIAL.value}" in lines[-len(TERMINAL) - 1]
    finals = {line.split()[0] for line in lines if line.rstrip().endswith("--> [*]")}
    assert finals == {s.value for s in TERMINAL}
    classes = mermaid_classes(text)
    assert {s for s, style in classes.items() if style == "terminal"} == TERMINAL
    assert {s for s, style in classes.items() if style == "default"} == set(S) - TERMINAL
    assert text.endswith("\n")
    assert not any(line != line.rstrip() for line in lines)


def test_titles_are_quoted_and_must_be_one_line() -> None:
    assert 'title: "Batch: b_1 \\"x\\""' in render("mermaid", title='Batch: b_1 "x"')
    with pytest.raises(ValueError, match="one printable line"):
        render("mermaid", title="two\nlines")


def test_dot_draws_documented_solid_tolerated_dashed_terminal_doubled() -> None:
    text = render("dot")
    edges = dot_edges(text)

    assert set(edges) == DOCUMENTED | TOLERATED
    for (source, dest), drawn in edges.items():
        assert len(drawn) == 1, f"{source} -> {dest} drawn {len(drawn)} times"
        attrs = drawn[0]
        dashed = attrs.get("style") == "dashed"
        assert dashed == ((source, dest) in TOLERATED), (source, dest, attrs)
        assert ("undocumented" in attrs["label"]) == dashed
    nodes = dot_nodes(text)
    assert set(nodes) == set(S)
    assert {s for s, a in nodes.items() if a.get("peripheries") == "2"} == TERMINAL
    assert f'label="{TITLE}"' in text


def test_the_plain_diagram_highlights_nothing() -> None:
    # GraphMachine paints its own (initial) state "active" unless told otherwise.
    dot = render("dot")
    colours = {a.get("color") for a in [*dot_nodes(dot).values(), *dot_attrs_all(dot)]}
    assert colours <= {None, "black", "gray40"}
    assert "penwidth" not in dot
    assert "taken" not in render("mermaid")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown diagram format 'jpeg'"):
        render("jpeg")  # type: ignore[call-overload]


def test_mermaid_markdown_is_one_fenced_block_of_the_diagram() -> None:
    block = mermaid_markdown()
    assert block == f"```mermaid\n{render('mermaid')}```\n"
    assert block.count("```") == 2


def test_output_is_identical_in_a_fresh_process_with_other_hash_seeds() -> None:
    # Sets of edges and states feed the highlight; hash order must never leak out.
    many = [
        (S.VALIDATING, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.CANCELLING),
        (S.CANCELLING, S.EXPIRED),
        (S.VALIDATING, S.FAILED),
    ]
    code = (
        "import sys\n"
        "from batchfsm.fsm.diagram import render\n"
        "from batchfsm.fsm.spec import BatchStatus as S\n"
        f"edges = [(S(a), S(b)) for a, b in {[(a.value, b.value) for a, b in many]!r}]\n"
        "for fmt in ('mermaid', 'dot', 'svg'):\n"
        "    sys.stdout.write(render(fmt) + '\\0')\n"
        "    sys.stdout.write(render(fmt, highlight_edges=edges,"
        " current_states=[S.EXPIRED, S.FAILED]) + '\\0')\n"
    )
    expected = "".join(
        render(fmt)
        + "\0"
        + render(fmt, highlight_edges=many, current_states=[S.EXPIRED, S.FAILED])
        + "\0"
        for fmt in ("mermaid", "dot", "svg")
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert out == expected


def test_importing_the_module_loads_no_diagram_backend() -> None:
    code = (
        "import sys, batchfsm.fsm.diagram\n"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('graphviz', 'transitions.extensions'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- Graphviz renders ------------------------------------------------------------------------
def test_svg_shows_every_state_and_every_edge_with_its_dashes() -> None:
    svg = render("svg")
    fingerprint = svg_fingerprint(svg)

    nodes = {title for kind, title, _, _ in fingerprint if kind == "node"}
    assert nodes == {s.value for s in S}
    edges = {title: paint for kind, title, _, paint in fingerprint if kind == "edge"}
    assert set(edges) == {f"{a.value}->{b.value}" for a, b in DOCUMENTED | TOLERATED}
    dashed = {t for t, paint in edges.items() if any(p.endswith("|5,2") for p in paint)}
    assert dashed == {f"{a.value}->{b.value}" for a, b in TOLERATED}


def test_png_renders() -> None:
    png = render("png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000


def test_svg_fingerprint_ignores_layout_but_not_content() -> None:
    svg = render("svg")
    moved = re.sub(r' (points|d|x|y|width|height|viewBox)="[^"]*"', r' \1="0"', svg)
    moved = moved.replace("Generated by graphviz version", "Generated by graphviz version 99 ")
    assert svg_fingerprint(moved) == svg_fingerprint(svg)

    undashed = svg.replace('stroke-dasharray="5,2"', "", 1)
    relabelled = svg.replace(">finalize<", ">finalise<", 1)
    assert svg_fingerprint(undashed) != svg_fingerprint(svg)
    assert svg_fingerprint(relabelled) != svg_fingerprint(svg)


def test_without_dot_on_path_svg_and_png_say_to_install_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` anywhere
    for fmt in ("svg", "png"):
        with pytest.raises(GraphvizNotFoundError) as caught:
            render(fmt)
        assert caught.value.missing == "dot"
        assert "Graphviz" in str(caught.value)
        assert "apt-get install graphviz" in str(caught.value)
    # Text formats need no system package.
    assert render("dot").startswith('digraph "Batch lifecycle"')
    assert render("mermaid").startswith("---")


def test_without_the_graphviz_package_dot_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # transitions alone would silently fall back to Mermaid text.
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(GraphvizNotFoundError, match=r"pip install 'batchfsm\[diagrams\]'"):
        render("dot")
    assert "stateDiagram-v2" in render("mermaid")


# -- highlighting ----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(walk=walks())
def test_highlight_marks_exactly_the_path_taken(walk: list[BatchStatus]) -> None:
    path = hops_along(walk)
    taken = {(h.source, h.dest) for h in path}
    current = walk[-1]
    passed = set(walk) - {current}

    dot = render("dot", path=path, current=current)
    edges = dot_edges(dot)
    assert {e for e, [a] in edges.items() if a.get("penwidth") == "2"} == taken
    assert {e for e, [a] in edges.items() if a.get("color") == "blue"} == taken
    assert {e for e, [a] in edges.items() if "taken" in a["label"]} == taken
    # Taken tolerated edges stay dashed.
    assert {e for e, [a] in edges.items() if a.get("style") == "dashed"} == TOLERATED
    nodes = dot_nodes(dot)
    assert {s for s, a in nodes.items() if a.get("color") == "red"} == {current}
    assert {s for s, a in nodes.items() if a.get("color") == "blue"} == passed

    mermaid = render("mermaid", path=path, current=current)
    labelled = {e for e, [label] in mermaid_edges(mermaid).items() if "taken" in label}
    assert labelled == taken
    classes = mermaid_classes(mermaid)
    assert {s for s, c in classes.items() if c.startswith("current")} == {current}
    assert {s for s, c in classes.items() if c.startswith("visited")} == passed
    assert all(
        c.endswith("terminal") == (s in TERMINAL) for s, c in classes.items() if c != "default"
    )


def test_the_last_hop_is_current_when_none_is_given() -> None:
    path = hops_along([S.VALIDATING, S.IN_PROGRESS, S.FINALIZING])
    assert render("dot", path=path) == render("dot", path=path, current=S.FINALIZING)


def test_a_batch_with_no_hops_yet_marks_only_its_state() -> None:
    classes = mermaid_classes(render("mermaid", path=[], current=S.VALIDATING))
    assert classes[S.VALIDATING] == "current"
    assert "visited" not in set(classes.values())


def test_many_batches_highlight_the_union_of_their_paths() -> None:
    first = hops_along([S.VALIDATING, S.IN_PROGRESS, S.FINALIZING, S.COMPLETED])
    second = hops_along([S.VALIDATING, S.IN_PROGRESS, S.CANCELLING, S.CANCELLED])
    edges = {(h.source, h.dest) for h in [*first, *second]}

    dot = render("dot", highlight_edges=edges, current_states={S.COMPLETED, S.CANCELLED})

    assert {e for e, [a] in dot_edges(dot).items() if a.get("penwidth") == "2"} == edges
    nodes = dot_nodes(dot)
    assert {s for s, a in nodes.items() if a.get("color") == "red"} == {S.COMPLETED, S.CANCELLED}
    assert {s for s, a in nodes.items() if a.get("color") == "blue"} == {
        S.VALIDATING,
        S.IN_PROGRESS,
        S.FINALIZING,
        S.CANCELLING,
    }


def test_an_edge_the_lifecycle_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="completed -> in_progress"):
        render("mermaid", highlight_edges=[(S.COMPLETED, S.IN_PROGRESS)])
