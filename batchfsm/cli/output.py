"""Terminal output: rich tables for people, JSON for scripts.

Composition roots decide which; command bodies build plain data and hand it here.

What people read must not depend on where they run it: a title or status line is
never wrapped (it may hold a long path, and a line broken mid-phrase cannot be
searched or grepped), and when the output is not a terminal (a pipe, a file, a test's
capture) no width is imposed on tables either, so a long id or path is never folded
across lines. On a terminal, tables fit the screen as rich lays them out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table


def console(file: TextIO | None = None) -> Console:
    return Console(file=file or sys.stdout, soft_wrap=False, width=None)


def print_json(data: Any, file: TextIO | None = None) -> None:
    out = file or sys.stdout
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    out.write("\n")


def print_line(text: str, file: TextIO | None = None, *, style: str | None = None) -> None:
    """One line for people, never wrapped, with no markup or highlighting read into it."""
    console(file).print(text, style=style, highlight=False, markup=False, soft_wrap=True)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], file: TextIO | None = None
) -> None:
    out = console(file)
    out.print(title, style="bold", highlight=False, markup=False, soft_wrap=True)
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    if not out.is_terminal:  # no screen to fit: the table's natural width, nothing folded
        natural = out.measure(table, options=out.options.update_width(1_000_000)).maximum
        out.width = max(out.width, natural)
    out.print(table)
