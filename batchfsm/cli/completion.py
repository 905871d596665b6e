"""``batchfsm completion bash|zsh|tcsh|fish``: a shell completion script.

Generated from the same argparse parser the command runs on, by ``shtab``, as a static
script: pressing Tab never starts Python (a completion that ran ``batchfsm`` on every
key would pay for importing it each time). Install it once::

    batchfsm completion bash > ~/.local/share/bash-completion/completions/batchfsm
    batchfsm completion zsh > "${fpath[1]}/_batchfsm"
    batchfsm completion fish > ~/.config/fish/completions/batchfsm.fish

Paths complete as files; commands, options and their choices from the parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["SHELLS", "add_parser", "run"]

SHELLS = ("bash", "zsh", "tcsh", "fish")
_FILE_OPTIONS = frozenset({"file", "--output", "-o", "--scenario", "--export", "--secret-file"})
_DIR_OPTIONS = frozenset({"--results-dir", "--out", "--dir"})


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh or fish)",
        description="Print a static completion script for SHELL, generated from this "
        "command's own parser. bash: batchfsm completion bash > "
        "~/.local/share/bash-completion/completions/batchfsm ; zsh: batchfsm completion "
        'zsh > "${fpath[1]}/_batchfsm" ; fish: batchfsm completion fish > '
        "~/.config/fish/completions/batchfsm.fish",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=run)


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    """Options that take a path complete as files or directories (shtab's markers)."""
    import shtab

    for action in parser._actions:
        names = {action.dest, *action.option_strings}
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub)
        elif names & _DIR_OPTIONS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif names & _FILE_OPTIONS or action.type is Path:
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    import shtab

    from batchfsm.cli.main import main_parser

    parser = main_parser()
    _mark_paths(parser)
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return 0
