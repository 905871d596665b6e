"""``batchfsm diagram``: draw the lifecycle, one batch's path, or check the committed files.

::

    batchfsm diagram                          Mermaid text of the lifecycle on stdout
    batchfsm diagram -o x.svg                 an SVG file (needs Graphviz's `dot`); the
                                              format follows the suffix (.svg .png .dot
                                              .gv .mmd) unless --format names one
    batchfsm diagram --batch batch_abc        the path batch_abc took, and where it is
    batchfsm diagram --check                  exit 1 if diagrams/ is stale
    batchfsm diagram --update                 rewrite diagrams/ from the spec

``--check``/``--update`` (and ``--dir``) are for batchfsm's own maintainers and are
left out of ``--help``. The committed files are ``batch_lifecycle.mmd`` and
``batch_lifecycle.dot``, compared byte for byte, and ``batch_lifecycle.svg``, rendered
from the same DOT and compared by :func:`~batchfsm.fsm.diagram.svg_fingerprint` (what it
shows, not the coordinates or the version banner, which change between Graphviz
releases). Without ``dot`` the SVG is
not checked and the command says so.

Exit codes: 0 done, 1 stale files, 2 an error (missing Graphviz, unknown batch, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from batchfsm.errors import BatchFSMError
from batchfsm.fsm.diagram import FORMATS, TITLE, DiagramFormat, render, svg_fingerprint
from batchfsm.fsm.models import TransitionEntry

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord, HistoryEntry, Hop
    from batchfsm.fsm.spec import BatchStatus

__all__ = ["BASENAME", "Staleness", "add_parser", "check", "run", "write_committed"]

BASENAME = "batch_lifecycle"
DEFAULT_DIR = Path("diagrams")


class PathSource(Protocol):
    """The two store reads the command needs (a :class:`~batchfsm.persistence.JobStore`
    has both)."""

    def history(self, batch_id: str) -> list[HistoryEntry]: ...

    def load(self, batch_id: str) -> BatchRecord: ...


@dataclass(frozen=True)
class Staleness:
    """One committed file that no longer matches the spec (or is missing)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``diagram`` and its options on the CLI's subcommands."""
    parser = subparsers.add_parser(
        "diagram",
        help="draw the batch lifecycle (or one batch's path through it)",
        description=(
            "Draw the batch lifecycle from the spec. Dashed/undocumented edges are races "
            "OpenAI does not document but batchfsm tolerates. svg and png need Graphviz."
        ),
    )
    parser.add_argument(
        "--format", choices=FORMATS, default=None,
        help="output format (default: from the -o suffix .svg/.png/.dot/.gv/.mmd, else mermaid)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="write here instead of stdout"
    )
    parser.add_argument(
        "--batch",
        action="append",
        default=[],
        metavar="ID",
        help="highlight the path this batch took and its current state (repeatable)",
    )
    parser.add_argument(
        "--store", default=None, help="store URL to read batches from (default: the default store)"
    )
    # For batchfsm's maintainers (the committed diagrams/): working, but not in --help.
    # (Not a mutually exclusive group: argparse 3.11 cannot format one that is hidden.)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--update", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, *, store: PathSource | None = None) -> int:
    """Run the command; ``store`` replaces the one ``--store`` names (tests, the demo)."""
    if args.check and args.update:
        print("batchfsm diagram: error: --check and --update exclude each other", file=sys.stderr)
        return 2
    try:
        if args.check:
            stale = check(args.dir)
            for problem in stale:
                print(f"stale: {problem}", file=sys.stderr)
            if stale:
                print("run `batchfsm diagram --update` to regenerate", file=sys.stderr)
                return 1
            print(f"{args.dir}: diagrams match the lifecycle spec")
            return 0
        if args.update:
            for written in write_committed(args.dir):
                print(f"wrote {written}")
            return 0
        return _draw(args, store)
    except BatchFSMError as exc:
        print(f"batchfsm diagram: error: {exc}", file=sys.stderr)
        return 2


_SUFFIXES: dict[str, DiagramFormat] = {
    ".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid",
    ".mermaid": "mermaid",
}  # fmt: skip


def output_format(given: str | None, output: Path | None) -> DiagramFormat:
    """``--format`` if given, else the one ``-o``'s suffix names, else mermaid."""
    if given is not None:
        return cast(DiagramFormat, given)
    suffix = output.suffix.lower() if output is not None else ""
    return _SUFFIXES.get(suffix, "mermaid")


def _draw(args: argparse.Namespace, store: PathSource | None) -> int:
    fmt = output_format(args.format, args.output)
    if fmt == "png" and args.output is None:
        print("batchfsm diagram: error: png is binary; pass -o FILE", file=sys.stderr)
        return 2
    batch_ids: list[str] = args.batch
    if batch_ids:
        hops, current = _batch_paths(batch_ids, store, args.store)
        title = f"{TITLE}: {', '.join(batch_ids)}"
        diagram = render(fmt, highlight_edges=hops, current_states=current, title=title)
    else:
        diagram = render(fmt)
    if args.output is None:
        sys.stdout.write(cast(str, diagram))
        return 0
    try:
        _write_atomically(args.output, diagram)
    except OSError as exc:
        print(f"batchfsm diagram: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    return 0


def _batch_paths(
    batch_ids: Sequence[str], store: PathSource | None, url: str | None
) -> tuple[set[tuple[BatchStatus, BatchStatus]], set[BatchStatus]]:
    """The edges every batch took and the state each is in, read from the store."""
    opened = None
    if store is None:
        # Imported here: drawing the plain lifecycle must not need any store code.
        from batchfsm.config import Settings
        from batchfsm.persistence import open_store

        opened = store = open_store(Settings.from_env(store_url=url).store_url, create=False)
    try:
        edges: set[tuple[BatchStatus, BatchStatus]] = set()
        current: set[BatchStatus] = set()
        for batch_id in batch_ids:
            current.add(store.load(batch_id).state)
            hops: list[Hop] = [
                e.hop for e in store.history(batch_id) if isinstance(e, TransitionEntry)
            ]
            edges.update((hop.source, hop.dest) for hop in hops)
        return edges, current
    finally:
        if opened is not None:
            opened.close()


# -- committed files -----------------------------------------------------------------------
def committed_files(directory: Path) -> dict[Path, str | None]:
    """The committed diagram paths and their fresh text; the SVG's is None when
    Graphviz's ``dot`` is missing (it cannot be regenerated here)."""
    return {
        directory / f"{BASENAME}.mmd": render("mermaid"),
        directory / f"{BASENAME}.dot": render("dot"),
        directory / f"{BASENAME}.svg": render("svg") if shutil.which("dot") else None,
    }


def check(directory: Path) -> list[Staleness]:
    """Regenerate in memory and compare; the files that differ or are missing.

    Prints (to stderr) a note when the SVG cannot be checked for lack of Graphviz.
    """
    stale = []
    for path, fresh in committed_files(directory).items():
        if not path.is_file():
            stale.append(Staleness(path, "missing"))
            continue
        committed = path.read_text(encoding="utf-8")
        if fresh is None:
            print(f"note: {path} not checked: Graphviz `dot` is not on PATH", file=sys.stderr)
        elif path.suffix == ".svg":
            if _svg_differs(committed, fresh):
                stale.append(Staleness(path, "shows a different diagram than the spec"))
        elif committed != fresh:
            stale.append(Staleness(path, "differs from the spec"))
    return stale


def write_committed(directory: Path) -> list[Path]:
    """Write every committed diagram (the SVG needs Graphviz: raises if it is missing)."""
    files = committed_files(directory)
    svg = directory / f"{BASENAME}.svg"
    if files[svg] is None:
        files[svg] = render("svg")  # raises GraphvizNotFoundError with install advice
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        _write_atomically(path, cast(str, text))
    return list(files)


def _svg_differs(committed: str, fresh: str) -> bool:
    try:
        return svg_fingerprint(committed) != svg_fingerprint(fresh)
    except SyntaxError:  # ElementTree.ParseError: a damaged file is a stale one
        return True


def _write_atomically(path: Path, content: str | bytes) -> None:
    """All or nothing: a temporary file beside ``path``, then one rename."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private; a diagram is as readable as any other file.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
