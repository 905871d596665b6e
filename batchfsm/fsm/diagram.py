"""Lifecycle diagrams, drawn by ``transitions``' own diagram support from the spec.

The picture is built from the same tables as the rulebook (:mod:`batchfsm.fsm.spec`), so
it cannot describe a different machine than the one that checks every hop. A
``GraphMachine`` is built on demand, only here, with ``graph_engine="mermaid"`` for
Mermaid text or ``"graphviz"`` for DOT, SVG and PNG (see
https://github.com/pytransitions/transitions#diagrams).

What the picture says:

* documented edges are solid and labelled with their trigger; tolerated ones (races
  OpenAI never described) are dashed and grey in DOT and labelled "(undocumented)" in
  both, since Mermaid state diagrams cannot style a single arrow;
* terminal states have a double border and a grey fill, and Mermaid marks them final
  (``state --> [*]``);
* with a highlight, edges taken are blue and labelled "(taken)", states passed through
  are blue and the current state(s) red.

Mermaid and DOT are plain text and need no system package; SVG and PNG run the Graphviz
``dot`` program. Every output is byte-identical across runs (for SVG/PNG: with the same
Graphviz), which is what lets ``batchfsm diagram --check`` catch a stale file.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload
from xml.etree import ElementTree

from batchfsm.errors import GraphvizNotFoundError
from batchfsm.fsm.spec import EDGES, INITIAL, TERMINAL, TRIGGERS, BatchStatus, Edge

if TYPE_CHECKING:
    from batchfsm.fsm.models import Hop

__all__ = [
    "FORMATS",
    "TITLE",
    "DiagramFormat",
    "EdgeKey",
    "Highlight",
    "mermaid_markdown",
    "render",
    "svg_fingerprint",
]

DiagramFormat = Literal["mermaid", "dot", "svg", "png"]
FORMATS: tuple[DiagramFormat, ...] = ("mermaid", "dot", "svg", "png")
TITLE = "Batch lifecycle"
EdgeKey = tuple[BatchStatus, BatchStatus]

_DOT_HINT = (
    "install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; macOS: "
    "`brew install graphviz`; others: https://graphviz.org/download/), "
    "or ask for --format mermaid or --format dot, which need nothing"
)
_PACKAGE_HINT = "install the Python package: pip install 'batchfsm[diagrams]'"

# Style names are keys into GraphMachine.style_attributes. Only attributes both engines
# understand (or that transitions' Mermaid writer drops: style, shape, peripheries) are
# used for nodes, because the same table feeds Mermaid's classDefs.
_STYLES: dict[str, Any] = {
    "node": {
        "default": {
            "style": "rounded,filled",
            "shape": "rectangle",
            "fillcolor": "white",
            "color": "black",
            "peripheries": "1",
        },
        "terminal": {"fillcolor": "lightgrey", "color": "black", "peripheries": "2"},
        "visited": {"fillcolor": "azure", "color": "blue", "peripheries": "1"},
        "visited_terminal": {"fillcolor": "azure", "color": "blue", "peripheries": "2"},
        "current": {"fillcolor": "darksalmon", "color": "red", "peripheries": "1"},
        "current_terminal": {"fillcolor": "darksalmon", "color": "red", "peripheries": "2"},
    },
    "edge": {
        "default": {"color": "black"},
        "tolerated": {"style": "dashed", "color": "gray40", "fontcolor": "gray40"},
        "taken": {"color": "blue", "fontcolor": "blue", "penwidth": "2"},
        "taken_tolerated": {
            "style": "dashed",
            "color": "blue",
            "fontcolor": "blue",
            "penwidth": "2",
        },
    },
    "graph": {"default": {"color": "black", "fillcolor": "white", "style": "solid"}},
}
_GRAPH_ATTRIBUTES = {"directed": "true", "strict": "false", "rankdir": "LR"}


@dataclass(frozen=True)
class Highlight:
    """What to mark on the picture: edges taken and the state(s) batches are in now.

    One batch gives a path and one current state; several batches give the union of
    their edges and all their current states. Every other state an edge touches counts
    as passed through.
    """

    edges: frozenset[EdgeKey] = frozenset()
    current: frozenset[BatchStatus] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        path: Sequence[Hop] | None = None,
        current: BatchStatus | None = None,
        highlight_edges: Iterable[EdgeKey] = (),
        current_states: Iterable[BatchStatus] = (),
    ) -> Highlight:
        """Merge one batch's hops (its last destination is current unless ``current``
        says otherwise) with the edges and states of others; unknown edges are refused."""
        hops = tuple(path or ())
        edges = {(BatchStatus(a), BatchStatus(b)) for a, b in highlight_edges}
        edges |= {(hop.source, hop.dest) for hop in hops}
        states = {BatchStatus(s) for s in current_states}
        if current is not None:
            states.add(BatchStatus(current))
        elif hops:
            states.add(hops[-1].dest)
        known = {(e.source, e.dest) for e in EDGES}
        unknown = sorted(edges - known)
        if unknown:
            listed = ", ".join(f"{a} -> {b}" for a, b in unknown)
            raise ValueError(f"not edges of the batch lifecycle: {listed}")
        return cls(frozenset(edges), frozenset(states))

    @property
    def visited(self) -> frozenset[BatchStatus]:
        ends = {state for edge in self.edges for state in edge}
        return frozenset(ends - self.current)

    def node_style(self, state: BatchStatus) -> str:
        if state in self.current:
            base = "current"
        elif state in self.visited:
            base = "visited"
        else:
            return "terminal" if state in TERMINAL else ""
        return f"{base}_terminal" if state in TERMINAL else base

    def edge_style(self, edge: Edge) -> str:
        taken = (edge.source, edge.dest) in self.edges
        if taken:
            return "taken_tolerated" if edge.undocumented else "taken"
        return "tolerated" if edge.undocumented else ""

    def edge_label(self, edge: Edge) -> str:
        tags = [
            tag
            for tag, applies in (
                ("undocumented", edge.undocumented),
                ("taken", (edge.source, edge.dest) in self.edges),
            )
            if applies
        ]
        trigger = TRIGGERS[edge.dest]
        return f"{trigger} ({', '.join(tags)})" if tags else trigger


@overload
def render(
    fmt: Literal["png"],
    *,
    path: Sequence[Hop] | None = ...,
    current: BatchStatus | None = ...,
    highlight_edges: Iterable[EdgeKey] = ...,
    current_states: Iterable[BatchStatus] = ...,
    title: str = ...,
) -> bytes: ...
@overload
def render(
    fmt: Literal["mermaid", "dot", "svg"],
    *,
    path: Sequence[Hop] | None = ...,
    current: BatchStatus | None = ...,
    highlight_edges: Iterable[EdgeKey] = ...,
    current_states: Iterable[BatchStatus] = ...,
    title: str = ...,
) -> str: ...
@overload
def render(
    fmt: DiagramFormat,
    *,
    path: Sequence[Hop] | None = ...,
    current: BatchStatus | None = ...,
    highlight_edges: Iterable[EdgeKey] = ...,
    current_states: Iterable[BatchStatus] = ...,
    title: str = ...,
) -> str | bytes: ...
def render(
    fmt: DiagramFormat,
    *,
    path: Sequence[Hop] | None = None,
    current: BatchStatus | None = None,
    highlight_edges: Iterable[EdgeKey] = (),
    current_states: Iterable[BatchStatus] = (),
    title: str = TITLE,
) -> str | bytes:
    """The lifecycle diagram in ``fmt``; text for every format but PNG.

    :param path: one batch's hops (``TransitionEntry.hop`` from its history), oldest
        first; they are drawn as taken and the last destination as current.
    :param current: the batch's current state (needed when it has no hops yet).
    :param highlight_edges: more edges to draw as taken, e.g. those of many batches.
    :param current_states: more states to mark as current.
    :raises ValueError: an unknown format, a title with control characters, or an edge
        the lifecycle does not have.
    :raises GraphvizNotFoundError: SVG/PNG without the ``dot`` program, or DOT/SVG/PNG
        without the ``graphviz`` Python package.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format {fmt!r}; expected one of {FORMATS}")
    if not title.isprintable():
        raise ValueError(f"diagram title must be one printable line, got {title!r}")
    highlight = Highlight.of(
        path=path,
        current=current,
        highlight_edges=highlight_edges,
        current_states=current_states,
    )
    if fmt == "mermaid":
        return _mermaid(highlight, title)
    graph = _graph("graphviz", highlight, title)
    if fmt == "dot":
        source: str = graph.source
        return source
    return _run_dot(graph, fmt)


def mermaid_markdown(title: str = TITLE) -> str:
    """The plain lifecycle as a fenced Mermaid block, ready to paste into Markdown."""
    return f"```mermaid\n{render('mermaid', title=title)}```\n"


def svg_fingerprint(svg: str) -> tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]:
    """What an SVG from Graphviz shows, without where it shows it.

    One entry per node and edge: its class, its title (``a->b`` for an edge), its text
    and the sorted paint of its shapes (fill, stroke, width, dashes). Coordinates,
    comments and version banners are left out, because they change between Graphviz
    releases while the diagram does not; a missing edge, a changed label or a lost
    dash does change it.
    """
    # Our own generated file, parsed only to compare it; the DTD is never fetched.
    root = ElementTree.fromstring(svg)  # noqa: S314
    ns = "{http://www.w3.org/2000/svg}"
    entries = []
    for group in root.iter(f"{ns}g"):
        kind = group.get("class", "")
        if kind not in {"node", "edge"}:
            continue
        title = group.findtext(f"{ns}title", default="")
        texts = tuple((t.text or "").strip() for t in group.iter(f"{ns}text"))
        paint = sorted(
            "|".join(
                shape.get(attr, "")
                for attr in ("fill", "stroke", "stroke-width", "stroke-dasharray")
            )
            for shape in group
            if shape.tag in {f"{ns}path", f"{ns}polygon", f"{ns}ellipse"}
        )
        entries.append((kind, title, texts, tuple(paint)))
    return tuple(sorted(entries))


# -- building ------------------------------------------------------------------------------
def _graph(engine: Literal["mermaid", "graphviz"], highlight: Highlight, title: str) -> Any:
    """A styled graph object from transitions: ``.source`` is the text, ``.pipe`` (DOT
    only) renders it."""
    if engine == "graphviz" and importlib.util.find_spec("graphviz") is None:
        # transitions would silently fall back to Mermaid; say what is missing instead.
        raise GraphvizNotFoundError(
            f"DOT, SVG and PNG diagrams need the graphviz Python package; {_PACKAGE_HINT}",
            missing="graphviz (Python package)",
        )
    from transitions.extensions import GraphMachine

    states = [{"name": s.value, "final": s in TERMINAL} for s in BatchStatus]
    transitions = [
        {
            "trigger": TRIGGERS[edge.dest],
            "source": edge.source.value,
            "dest": edge.dest.value,
            "label": highlight.edge_label(edge),
        }
        for edge in EDGES
    ]
    machine = GraphMachine(
        states=states,
        transitions=transitions,
        initial=INITIAL.value,
        auto_transitions=False,
        graph_engine=engine,
        title=title,
    )
    # Instance attributes, so the class-level defaults other machines share stay intact.
    machine.style_attributes = _STYLES
    machine.machine_attributes = _GRAPH_ATTRIBUTES
    # A fresh graph object rather than machine.get_graph(): that one would paint the
    # machine's own state (the initial one) as "active" in every picture.
    graph: Any = machine.graph_cls(machine)
    for state in BatchStatus:
        style = highlight.node_style(state)
        if style:
            graph.set_node_style(state.value, style)
    for edge in EDGES:
        graph.custom_styles["edge"][edge.source.value][edge.dest.value] = highlight.edge_style(edge)
    return graph.get_graph(title=title)


def _mermaid(highlight: Highlight, title: str) -> str:
    """Mermaid text, with the two fixes transitions 0.9.3 needs: the front-matter title
    is a bare line that Mermaid drops (make it ``title: "..."``), and final states are
    not marked (append ``state --> [*]``)."""
    lines = [line.rstrip() for line in _graph("mermaid", highlight, title).source.splitlines()]
    if lines[:1] != ["---"] or lines[2:3] != ["---"]:
        raise RuntimeError(f"unexpected Mermaid front matter from transitions: {lines[:3]}")
    lines[1] = f"title: {json.dumps(title)}"
    lines.extend(f"  {state.value} --> [*]" for state in BatchStatus if state in TERMINAL)
    return "\n".join(lines) + "\n"


def _run_dot(graph: Any, fmt: Literal["svg", "png"]) -> str | bytes:
    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(
            f"{fmt.upper()} diagrams are drawn by Graphviz's `dot` program, which is not "
            f"on PATH; {_DOT_HINT}",
            missing="dot",
        )
    import graphviz

    try:
        if fmt == "svg":
            svg: str = graph.pipe(format="svg", encoding="utf-8")
            return svg
        png: bytes = graph.pipe(format="png")
        return png
    except graphviz.ExecutableNotFound as exc:  # removed between the check and the run
        raise GraphvizNotFoundError(
            f"Graphviz's `dot` program could not be run; {_DOT_HINT}", missing="dot"
        ) from exc
