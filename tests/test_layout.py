"""The package layout, guarded: a small package root, short modules and functions, and
imports that only go down the layer table.

Every module under ``batchfsm/`` is parsed with :mod:`ast`; nothing from the package is
imported. ``python tests/test_layout.py`` prints the figures (longest internal import
chain, lower→higher imports) for before/after comparisons.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "batchfsm"

MAX_ROOT_MODULES = 10  # ``batchfsm/*.py``, ``__init__.py`` included
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from ``def`` to its last line, minus its docstring

LONG_FUNCTIONS_ALLOWED: dict[str, str] = {
    "batchfsm/aws/stepfunctions.py:definition": (
        "declarative data: builds the ASL state-machine dict, one literal per state"
    ),
}
"""Functions allowed over :data:`MAX_FUNCTION_LINES`: declarative data only, each with
its reason (``path:qualified.name``)."""

LAYERS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("batchfsm.errors",)),
    (1, ("batchfsm.fsm",)),
    (2, ("batchfsm.ledger",)),
    (3, ("batchfsm.config", "batchfsm.ports")),
    (4, ("batchfsm.persistence", "batchfsm.gateway", "batchfsm.providers", "batchfsm.sandbox")),
    (5, ("batchfsm.handlers",)),
    (6, ("batchfsm.tracker",)),
    (7, ("batchfsm.jobs",)),
    (8, ("batchfsm.poller", "batchfsm.webhooks")),
    (9, ("batchfsm.wiring", "batchfsm.pytest_plugin", "batchfsm.observability")),
    (10, ("batchfsm.aws",)),
    (11, ("batchfsm.cli", "batchfsm.demo")),
    (12, ("batchfsm", "batchfsm.__main__")),
)
"""The layers, lowest first; a module may import its own layer and lower ones, and a
module belongs to the layer of its longest matching prefix.

0. ``errors``: the exception types every layer raises; they depend on nothing.
1. ``fsm``: the pure lifecycle (spec, records, rulebook, replay, diagrams): no I/O, so
   everything above can use it and it can use nothing but the errors.
2. ``ledger``: per-request accounting of results, stated in the lifecycle's terms.
3. ``config``, ``ports``: the settings and the protocols (store, sink, clock, gateway)
   the core consumes; they name lifecycle and ledger types but no implementation.
4. ``persistence``, ``gateway``, ``providers``, ``sandbox``: the adapters that implement
   the ports (stores and sinks, the OpenAI client and the provider profiles it applies,
   the local fake API).
5. ``handlers``: what each state owes, written against the ports only.
6. ``tracker``: one poll, the rulebook applied and the owed handlers run.
7. ``jobs``: submit, retry, cancel and claims, built on the tracker.
8. ``poller``: the loop that keeps running the tracker and the jobs; ``webhooks``:
   the other way an observation is triggered (an event, verified and deduplicated),
   and the stretched schedule that makes polling the fallback.
9. ``wiring``, ``pytest_plugin``: concrete adapters assembled from the settings, and
   the fixtures that hand them to users' tests; ``observability``: log lines and
   metrics for operators, read from the store through its port.
10. ``aws``: the Lambda and Step Functions deployment, built on the wiring.
11. ``cli``, ``demo``: entry points for people, on top of everything below.
12. ``batchfsm`` (the package face) and ``batchfsm.__main__``: they re-export or start
    anything, so nothing inside the package may import them.
"""


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. ``batchfsm.fsm.spec``; a package is its ``__init__``
    path: str  # relative to the repository, e.g. ``batchfsm/fsm/spec.py``
    tree: ast.Module
    lines: int


@dataclass(frozen=True)
class Import:
    path: str
    line: int
    source: str
    target: str
    text: str

    def describe(self) -> str:
        return (
            f"{self.path}:{self.line}: `{self.text}` ({self.source}, layer "
            f"{layer_of(self.source)}, imports {self.target}, layer {layer_of(self.target)})"
        )


@cache
def modules() -> tuple[Module, ...]:
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        text = file.read_text()
        found.append(
            Module(
                name=".".join(parts),
                path=file.relative_to(ROOT).as_posix(),
                tree=ast.parse(text, filename=str(file)),
                lines=len(text.splitlines()),
            )
        )
    return tuple(found)


def _matching_prefix(name: str) -> tuple[int, str] | None:
    """The (layer, prefix) of the longest prefix ``name`` falls under."""
    best: tuple[int, str] | None = None
    for level, prefixes in LAYERS:
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (level, prefix)
    return best


def layer_of(name: str) -> int:
    match = _matching_prefix(name)
    assert match is not None, f"{name} is outside the package"
    return match[0]


def _is_internal(name: str) -> bool:
    return name == "batchfsm" or name.startswith("batchfsm.")


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".")
    if not module.path.endswith("/__init__.py"):
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    known = {m.name for m in modules()}
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _resolve_from(module, node)
        # ``from batchfsm.fsm import spec`` imports the module ``batchfsm.fsm.spec``.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return sorted({name for name in names if _is_internal(name)})


def imports() -> list[Import]:
    """Every internal import, wherever it sits: module level, inside functions, under
    ``if TYPE_CHECKING:``."""
    found: list[Import] = []
    for module in modules():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.extend(
                    Import(module.path, node.lineno, module.name, target, ast.unparse(node))
                    for target in _targets(module, node)
                    if target != module.name
                )
    return sorted(found, key=lambda i: (i.path, i.line, i.target))


def upward_imports() -> list[Import]:
    return [i for i in imports() if layer_of(i.source) < layer_of(i.target)]


def _functions(
    body: list[ast.stmt], prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for block in ("body", "orelse", "finalbody", "handlers"):
                yield from _functions(getattr(node, block, []), prefix)
        elif isinstance(node, ast.ExceptHandler):
            yield from _functions(node.body, prefix)


def function_length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` (decorators excluded) to the last line, minus the docstring."""
    assert node.end_lineno is not None
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        assert first.end_lineno is not None
        length -= first.end_lineno - first.lineno + 1
    return length


def long_functions() -> list[tuple[str, int]]:
    return [
        (f"{module.path}:{name}", length)
        for module in modules()
        for name, node in _functions(module.tree.body)
        if (length := function_length(node)) > MAX_FUNCTION_LINES
    ]


def _graph() -> dict[str, set[str]]:
    known = {m.name for m in modules()}
    graph: dict[str, set[str]] = {name: set() for name in known}
    for i in imports():
        if i.target in known:
            graph[i.source].add(i.target)
    return graph


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted; import cycles are the ones
    with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def longest_chain() -> list[str]:
    """The longest chain of internal imports (every import counted, as for the layers);
    an import cycle counts as one step, shown as ``{a | b}``."""
    graph = _graph()
    components = _components(graph)
    owner = {name: n for n, component in enumerate(components) for name in component}
    best: dict[int, list[int]] = {}

    def chain_from(c: int) -> list[int]:
        if c not in best:
            nexts = {owner[t] for name in components[c] for t in graph[name]} - {c}
            tails = [chain_from(n) for n in sorted(nexts)]
            best[c] = [c, *max(tails, key=len, default=[])]
        return best[c]

    chain = max((chain_from(c) for c in range(len(components))), key=len)
    return [
        components[c][0] if len(components[c]) == 1 else "{" + " | ".join(components[c]) + "}"
        for c in chain
    ]


def report() -> str:
    """The figures to compare before and after a change to the layout."""
    chain = longest_chain()
    upward = upward_imports()
    cycles = [c for c in _components(_graph()) if len(c) > 1]
    lines = [
        f"modules: {len(modules())}, internal imports: {len(imports())}",
        f"longest internal import chain: {len(chain)} modules",
        *(f"  {'-> ' if n else ''}{name}" for n, name in enumerate(chain)),
        f"lower->higher imports: {len(upward)}",
        *(f"  {i.describe()}" for i in upward),
        f"import cycles: {len(cycles)}",
        *(f"  {' | '.join(c)}" for c in cycles),
    ]
    return "\n".join(lines)


def test_the_package_root_is_small() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, (
        f"batchfsm/ holds {len(root)} modules (at most {MAX_ROOT_MODULES}): {root}"
    )


def test_no_module_is_too_long() -> None:
    long = [f"{m.path}: {m.lines} lines" for m in modules() if m.lines > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_is_too_long() -> None:
    long = [
        f"{where}: {length} lines"
        for where, length in long_functions()
        if where not in LONG_FUNCTIONS_ALLOWED
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_long_function_allowlist_is_current() -> None:
    long = {where for where, _ in long_functions()}
    stale = sorted(set(LONG_FUNCTIONS_ALLOWED) - long)
    assert not stale, f"allowed but no longer long (drop them): {stale}"
    assert all(reason.strip() for reason in LONG_FUNCTIONS_ALLOWED.values())


def test_every_module_has_a_layer() -> None:
    face = {"batchfsm", "batchfsm.__main__"}
    unplaced = [
        m.path
        for m in modules()
        if m.name not in face and _matching_prefix(m.name) == (12, "batchfsm")
    ]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_imports_only_go_down_the_layers() -> None:
    upward = [i.describe() for i in upward_imports()]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_checks_see_what_they_should() -> None:
    """The parser finds imports in functions and under TYPE_CHECKING, resolves relative
    imports, and measures functions as documented."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from batchfsm.tracker import Tracker\n"
        "def f():\n"
        '    """Doc\n'
        '    string."""\n'
        "    from . import watch\n"
        "    from ..fsm import spec\n"
        "    return 1\n"
    )
    module = Module("batchfsm.handlers.x", "batchfsm/handlers/x.py", tree, 9)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    found = {target for node in nodes for target in _targets(module, node)}
    assert found == {"batchfsm.tracker", "batchfsm.handlers.watch", "batchfsm.fsm.spec"}
    assert [(name, function_length(node)) for name, node in _functions(tree.body)] == [("f", 4)]
    assert layer_of("batchfsm.fsm.spec") == 1
    assert layer_of("batchfsm") == 12
    assert layer_of("batchfsm.persistence.dynamodb.store") == 4


if __name__ == "__main__":
    print(report())
