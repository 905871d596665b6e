"""Derived graph facts: reachability and every simple path, precomputed once.

The lifecycle is a small DAG (8 states), so all simple paths fit in a few dozen tuples;
looking one up is cheaper than searching on every poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

from batchfsm.errors import SpecError
from batchfsm.fsm.spec import EDGES, INITIAL, TERMINAL, BatchStatus, Edge

Path = tuple[BatchStatus, ...]


@dataclass(frozen=True)
class Graph:
    edges: dict[tuple[BatchStatus, BatchStatus], Edge]
    successors: dict[BatchStatus, tuple[BatchStatus, ...]]
    reachable: dict[BatchStatus, frozenset[BatchStatus]]
    paths: dict[tuple[BatchStatus, BatchStatus], tuple[Path, ...]]

    def undocumented_count(self, path: Path) -> int:
        return sum(self.edges[(a, b)].undocumented for a, b in pairwise(path))


def build_graph(edges: Iterable[Edge] = EDGES) -> Graph:
    table: dict[tuple[BatchStatus, BatchStatus], Edge] = {}
    for edge in edges:
        if (edge.source, edge.dest) in table:
            raise SpecError(f"edge {edge.source} -> {edge.dest} is defined twice")
        if edge.source in TERMINAL:
            raise SpecError(f"terminal state {edge.source} has an outgoing edge")
        if edge.source == edge.dest:
            raise SpecError(f"self-loop on {edge.source}")
        table[(edge.source, edge.dest)] = edge
    successors = {s: tuple(d for (src, d) in table if src == s) for s in BatchStatus}
    reachable: dict[BatchStatus, frozenset[BatchStatus]] = {}
    for start in BatchStatus:
        seen: set[BatchStatus] = set()
        stack = list(successors[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(successors[node])
        if start in seen:
            raise SpecError(f"the lifecycle has a cycle through {start}")
        reachable[start] = frozenset(seen)
    paths: dict[tuple[BatchStatus, BatchStatus], list[Path]] = {}

    def walk(path: Path) -> None:
        for nxt in successors[path[-1]]:
            longer = (*path, nxt)
            paths.setdefault((path[0], nxt), []).append(longer)
            walk(longer)

    for start in BatchStatus:
        walk((start,))
    unreachable = set(BatchStatus) - reachable[INITIAL] - {INITIAL}
    if unreachable:
        raise SpecError(f"states unreachable from {INITIAL}: {sorted(unreachable)}")
    return Graph(
        edges=table,
        successors=successors,
        reachable=reachable,
        paths={k: tuple(v) for k, v in paths.items()},
    )


@cache
def graph() -> Graph:
    """The process-wide graph of the spec, built on first use (never at import)."""
    return build_graph()
