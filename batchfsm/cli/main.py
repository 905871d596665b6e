"""The ``batchfsm`` command: the parser, error handling and logging set-up only.

``cli/`` is the top layer: its modules may import anything in ``batchfsm`` (the library,
``aws``, ``demo``), and nothing in the library imports them, so a command's options and
printing can change without the library noticing (only the demo, a top layer too,
borrows :mod:`~batchfsm.cli.progress`).

Each command group has its own module here (``jobs``, ``items``, ``store``,
``replay``, ``diagram``, ``sandbox``, ``demo``, ``stepfunctions``) holding its sub-parsers and its
``run`` functions; every ``--json`` shape is in :mod:`~batchfsm.cli.views`. This module
wires the groups up, turns library errors into a message and an exit code (0 ok, 1 an
API or store failure, 2 bad input or a missing optional part, 130 interrupted, 141 the
reader of the output went away), and is the only place (with the other composition
roots) that configures logging. Whatever goes wrong, a person sees one line saying what
and where, never a traceback (``-vv`` keeps the log's detail).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO, TypeVar

from batchfsm.errors import (
    BatchFSMError,
    InputFileError,
    MissingDependencyError,
    StoreNotInitialisedError,
    StoreURLError,
    TransitionError,
    UnknownStatusError,
)

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for any tool whose reader went away."""
_USAGE_ERRORS = (
    InputFileError,
    StoreURLError,
    UnknownStatusError,
    TransitionError,
    StoreNotInitialisedError,
    MissingDependencyError,
)
EXTRAS = {"botocore": "aws", "boto3": "aws", "graphviz": "diagrams"}
"""The importable module each optional extra of pyproject.toml brings (checked by a
test), so a missing one is named with the ``pip install`` that fixes it."""
_PATH_ERRORS = {
    FileNotFoundError: "no such file",
    IsADirectoryError: "is a directory, not a file",
    NotADirectoryError: "a part of the path is not a directory",
    PermissionError: "permission denied",
}


def main_parser() -> argparse.ArgumentParser:
    from batchfsm.cli import diagram as diagram_command
    from batchfsm.cli import replay as replay_command
    from batchfsm.cli import store as store_commands

    parser = argparse.ArgumentParser(
        prog="batchfsm",
        description="Run OpenAI Batch API jobs without losing work.",
    )
    parser.add_argument("--version", action="version", version=f"batchfsm {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay_command.add_parser(sub)
    diagram_command.add_parser(sub)
    store_commands.add_parsers(sub)
    for module_name in (
        "batchfsm.cli.sandbox",
        "batchfsm.cli.jobs",
        "batchfsm.cli.items",
        "batchfsm.cli.demo",
        "batchfsm.cli.stepfunctions",
        "batchfsm.cli.webhooks",
    ):
        _add_optional(sub, module_name)
    return parser


def _version() -> str:
    """The installed version (pyproject.toml's); read from the distribution's metadata
    because the package face (``batchfsm.__version__``) sits above this layer."""
    try:
        return version("batchfsm")
    except PackageNotFoundError:  # a source tree that was never installed
        return "(not installed)"


def _add_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    """Commands whose modules may not be installed in a slim build."""
    import importlib

    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return
        raise
    adder = getattr(module, "add_parsers", None) or module.add_parser
    adder(sub)


@contextmanager
def _handle_errors() -> Iterator[None]:
    try:
        yield
    except _USAGE_ERRORS as exc:
        print(f"batchfsm: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except BatchFSMError as exc:
        print(f"batchfsm: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except tuple(_PATH_ERRORS) as exc:  # a path the user gave cannot be used as one
        what = next(text for kind, text in _PATH_ERRORS.items() if isinstance(exc, kind))
        print(f"batchfsm: error: {exc.filename or exc}: {what}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS:
            raise
        print(
            f"batchfsm: error: this needs the {missing} package, which is not installed: "
            f"pip install 'batchfsm[{EXTRAS[missing]}]'",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        print("batchfsm: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so log lines go through the live
    progress display (rich redirects stderr while it draws) instead of tearing it."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _OncePerCycle(logging.Filter):
    """Lets one record per ``cause`` through until :func:`new_log_cycle`: one cause
    (an unusable results folder) failing every batch's effect is said once per poll
    cycle, not once per batch. Records without a ``cause`` always pass."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        cause = getattr(record, "cause", None)
        if not isinstance(cause, str):
            return True
        if cause in self.said:
            return False
        self.said.add(cause)
        return True


_ONCE_PER_CYCLE = _OncePerCycle()


def new_log_cycle() -> None:
    """A poll cycle ended: causes said during it may be said again in the next."""
    _ONCE_PER_CYCLE.said.clear()


def each_cycle(show: Callable[[T], None]) -> Callable[[T], None]:
    """``show`` (a progress display's ``on_cycle``), then :func:`new_log_cycle`: a
    cause failing every batch's effect (an unusable results folder) is said once per
    cycle, and again in the next while it lasts."""

    def on_cycle(report: T) -> None:
        show(report)
        new_log_cycle()

    return on_cycle


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ONCE_PER_CYCLE)
    new_log_cycle()
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("transitions").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = main_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        with _handle_errors():
            code: int = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
    except SystemExit as exc:
        return int(exc.code or 0)
    except BrokenPipeError:  # `batchfsm ... | head`: stop quietly, as other tools do
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be
    written does not fail again with a second traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to do
        pass


def entrypoint() -> None:
    """The console script."""
    raise SystemExit(main())
