"""The ``batchfsm`` command: the parser, error handling and logging set-up only.

``cli/`` is the top layer: its modules may import anything in ``batchfsm`` (the library,
``aws``, ``demo``), and nothing in the library imports them, so a command's options and
printing can change without the library noticing (only the demo, a top layer too,
borrows :mod:`~batchfsm.cli.progress`).

Each command group has its own module here (``jobs``, ``store``, ``replay``,
``diagram``, ``sandbox``, ``demo``, ``stepfunctions``) holding its sub-parsers and its
``run`` functions; every ``--json`` shape is in :mod:`~batchfsm.cli.views`. This module
wires the groups up, turns library errors into a message and an exit code (0 ok, 1 an
API or store failure, 2 bad input), and is the only place (with the other composition
roots) that configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from batchfsm.errors import (
    BatchFSMError,
    InputFileError,
    StoreNotInitialisedError,
    StoreURLError,
    TransitionError,
    UnknownStatusError,
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_USAGE_ERRORS = (
    InputFileError,
    StoreURLError,
    UnknownStatusError,
    TransitionError,
    StoreNotInitialisedError,
)


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
        "batchfsm.cli.demo",
        "batchfsm.cli.stepfunctions",
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
    except FileNotFoundError as exc:
        print(f"batchfsm: error: {exc.filename}: no such file", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so log lines go through the live
    progress display (rich redirects stderr while it draws) instead of tearing it."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
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
    except SystemExit as exc:
        return int(exc.code or 0)
    return code


def entrypoint() -> None:
    """The console script."""
    raise SystemExit(main())
