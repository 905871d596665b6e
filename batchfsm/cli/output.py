"""Terminal output: rich tables for people, JSON for scripts.

Composition roots decide which; command bodies build plain data and hand it here.
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


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], file: TextIO | None = None
) -> None:
    out = console(file)
    out.print(title, style="bold", highlight=False, markup=False)
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)
