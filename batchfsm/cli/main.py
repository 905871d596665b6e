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
and where, never a traceback (``-vv`` keeps the log's detail), also when Ctrl-C lands
while the command is still starting. ``-v``/``-q`` are taken before or after the
command's name; every command's ``--help`` has a description and every option a help
text (a test reads them all).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO, TypeVar

from batchfsm.errors import (
    BatchFSMError,
    ConfigError,
    InputFileError,
    JobNotFoundError,
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
    ConfigError,  # a missing key, a bad variable or option: the user's to fix
    JobNotFoundError,  # a batch or job id the store does not know
    InputFileError,
    StoreURLError,
    UnknownStatusError,
    TransitionError,
    StoreNotInitialisedError,
    MissingDependencyError,
)
EXTRAS = {
    "botocore": "aws", "boto3": "aws", "graphviz": "diagrams", "anthropic": "anthropic",
    "prometheus_client": "metrics", "prometheus-client": "metrics",
    "aws_lambda_powertools": "lambda-metrics", "aws-lambda-powertools": "lambda-metrics",
}  # fmt: skip
"""The importable module (and its distribution's name) each optional extra of
pyproject.toml brings (checked by a test), so a missing one is named with the ``pip
install`` that fixes it."""
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
    _verbosity_options(parser, default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay_command.add_parser(sub)
    diagram_command.add_parser(sub)
    store_commands.add_parsers(sub)
    for module_name in (
        "batchfsm.cli.sandbox",
        "batchfsm.cli.jobs",
        "batchfsm.cli.items",
        "batchfsm.cli.cost",
        "batchfsm.cli.provider",
        "batchfsm.cli.results",
        "batchfsm.cli.metrics",
        "batchfsm.cli.demo",
        "batchfsm.cli.stepfunctions",
        "batchfsm.cli.webhooks",
        "batchfsm.cli.completion",
    ):
        _add_optional(sub, module_name)
    _finish_subcommands(sub)
    return parser


def _verbosity_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """``-v``/``-q`` on the main parser (``default`` 0) and on every command (``default``
    SUPPRESS, so the value given before the command's name is kept unless repeated after)."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default,
        help="more log output (-vv for debug); before or after the command",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="count", default=default,
        help="only errors: no warnings, no progress display (-qq: not even errors' log lines)",
    )  # fmt: skip


def _finish_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every command (and sub-command) takes ``-v``/``-q`` and, where its module gave
    none, has its one-line help as the description its ``--help`` shows."""
    for action in sub._choices_actions:
        parser = sub.choices[action.dest]
        if not parser.description and action.help:
            parser.description = action.help[0].upper() + action.help[1:] + "."
        _verbosity_options(parser, default=argparse.SUPPRESS)
        for nested in parser._subparsers._group_actions if parser._subparsers else ():
            if isinstance(nested, argparse._SubParsersAction):
                _finish_subcommands(nested)


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
        print(f"batchfsm: error: {exc}{_store_hint(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except tuple(_PATH_ERRORS) as exc:  # a path the user gave cannot be used as one
        what = next(text for kind, text in _PATH_ERRORS.items() if isinstance(exc, kind))
        print(f"batchfsm: error: {exc.filename or exc}: {what}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except OSError as exc:  # a read-only file system, a full disk...: say where
        if exc.filename is None:
            raise
        print(f"batchfsm: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
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


def _store_hint(exc: BatchFSMError) -> str:
    """For a SQLite store that cannot be opened: the file it means, and how to name
    another (SQLite's own message names neither)."""
    from batchfsm.errors import StoreUnavailableError

    text = str(exc)
    found = re.match(r"sqlite:///(.+?): could not", text)
    if not isinstance(exc, StoreUnavailableError) or found is None:
        return ""
    if "unable to open database" not in text:
        return ""
    path = os.path.abspath(found.group(1))
    return (
        f" (the file {path}: its folder must exist and be writable; choose another store "
        "with --store URL or BATCHFSM_STORE)"
    )


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


def log_level(verbose: int, quiet: int = 0) -> int:
    """WARNING by default; each ``-v`` one level more (INFO, DEBUG), each ``-q`` one
    less (ERROR, CRITICAL)."""
    return min(max(logging.WARNING - 10 * verbose + 10 * quiet, logging.DEBUG), logging.CRITICAL)


def configure_logging(verbosity: int, quiet: int = 0) -> None:
    level = log_level(verbosity, quiet)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ONCE_PER_CYCLE)
    new_log_cycle()
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("transitions").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; argparse's own exits (``--help``, bad usage: 2) raise
    SystemExit as usual, everything else is an exit code."""
    try:
        parser = main_parser()  # imports the commands: Ctrl-C often lands here
    except KeyboardInterrupt:
        print("batchfsm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
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
    """The console script (and ``python -m batchfsm``)."""
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C between two handlers: still no traceback
        print("batchfsm: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    raise SystemExit(code)
