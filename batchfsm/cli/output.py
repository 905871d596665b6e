"""Terminal output: rich tables for people, tab-separated rows for pipes, JSON for scripts.

Composition roots decide which; command bodies build plain data and hand it here.

An id (a batch, a job, a ``custom_id``) is never cut or folded: it has to be pasted
into ``history``, ``cancel`` or ``items --job``. On a terminal an id column is as wide
as its longest id and the other columns fold instead (their text wraps, nothing is
dropped); when even that does not fit, the table is drawn wider than the screen rather
than cut. When stdout is not a terminal (a pipe, a file, a test's capture), a table is
plain tab-separated rows, one per line, after a ``# title`` line and a ``# column``
header line (``grep -v '^#'`` leaves the rows alone), whatever the width. Titles and
status lines are never wrapped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

__all__ = [
    "ID_COLUMNS",
    "console",
    "is_terminal",
    "plural",
    "positive_int",
    "print_json",
    "print_json_list",
    "print_line",
    "print_long_table",
    "print_table",
    "rich_table",
]

ID_COLUMNS = frozenset({"batch", "job", "custom_id", "retry of", "batches", "parent"})
"""Column headers whose cells are ids: never cut, never folded."""
_FOLDED_MIN = 8
"""The narrowest a folding column is drawn (or its natural width, if narrower)."""


def console(file: TextIO | None = None) -> Console:
    return Console(file=file or sys.stdout, soft_wrap=False, width=None)


def is_terminal(file: TextIO | None = None) -> bool:
    """Whether ``file`` (default stdout) is a terminal, as rich decides it (so
    ``FORCE_COLOR``/``TTY_COMPATIBLE`` count, as for the tables)."""
    return console(file).is_terminal


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``"1 batch"``, ``"2 batches"``, ``"0 cycles"``."""
    if count == 1:
        return f"{count:,} {noun}"
    return f"{count:,} {many or _plural_of(noun)}"


def _plural_of(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def print_json(data: Any, file: TextIO | None = None) -> None:
    out = file or sys.stdout
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    out.write("\n")


def print_json_list(
    key: str,
    rows: Iterable[Any],
    file: TextIO | None = None,
    *,
    tail: Callable[[], Mapping[str, Any]] | None = None,
) -> int:
    """``{key: [rows...], **tail()}`` exactly as :func:`print_json` prints it, written
    row by row, so a million rows are never all in memory; returns how many.

    ``tail`` is called after the last row: keys whose values are known only then.
    """
    out = file or sys.stdout
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    out.write("{\n  " + orjson.dumps(key).decode() + ": [")
    count = 0
    for row in rows:
        # A JSON text has no raw line break inside a string: indenting every line is safe.
        out.write(("," if count else "") + "\n    ")
        out.write(orjson.dumps(row, option=option).decode().replace("\n", "\n    "))
        count += 1
    out.write("\n  ]" if count else "]")
    for name, value in (tail() if tail is not None else {}).items():
        text = orjson.dumps(value, option=option).decode().replace("\n", "\n  ")
        out.write(",\n  " + orjson.dumps(name).decode() + ": " + text)
    out.write("\n}\n")
    return count


def print_line(text: str, file: TextIO | None = None, *, style: str | None = None) -> None:
    """One line for people, never wrapped, with no markup or highlighting read into it."""
    console(file).print(text, style=style, highlight=False, markup=False, soft_wrap=True)


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in rows]


def rich_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    ids: Collection[str] = ID_COLUMNS,
    title: str | None = None,
) -> tuple[Table, int]:
    """A table whose id columns are never cut, and the narrowest width that keeps them
    whole (every other column folding down to :data:`_FOLDED_MIN`)."""
    cells = _cells(rows)
    table = Table(title=title, title_justify="left")
    needed = 1
    for index, column in enumerate(columns):
        natural = max([len(column), *(len(row[index]) for row in cells if index < len(row))])
        whole = column in ids
        least = natural if whole else min(natural, _FOLDED_MIN)
        table.add_column(column, no_wrap=whole, min_width=least, overflow="fold")
        needed += least + 3  # a cell's padding and its border
    for row in cells:
        table.add_row(*row)
    return table, needed


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    file: TextIO | None = None,
    *,
    ids: Collection[str] = ID_COLUMNS,
) -> None:
    out = console(file)
    if not out.is_terminal:
        _print_rows(title, columns, rows, file or sys.stdout)
        return
    out.print(title, style="bold", highlight=False, markup=False, soft_wrap=True)
    table, needed = rich_table(columns, rows, ids=ids)
    out.width = max(out.width, needed)  # wider than the screen rather than an id cut
    out.print(table)


STREAMED_AFTER = 1_000
"""Rows :func:`print_long_table` holds to count them for its title; past it, it streams."""


def print_long_table(
    noun: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    file: TextIO | None = None,
    *,
    ids: Collection[str] = ID_COLUMNS,
) -> int:
    """:func:`print_table` titled ``"<count> <noun>s"``, for a listing that may be long
    (a million ledger entries); returns how many rows.

    Up to :data:`STREAMED_AFTER` rows are held to count them for the title. Past that,
    in a pipe the rows stream (never all in memory): the title says so and a last
    ``# <count> <noun>s`` line counts them, both skipped by ``grep -v '^#'``. A terminal
    table holds every row to size its columns, so the caller caps what it passes.
    """
    held: list[Sequence[Any]] = []
    stream = iter(rows)
    terminal = console(file).is_terminal
    for row in stream:
        held.append(row)
        if len(held) > STREAMED_AFTER and not terminal:
            out = file or sys.stdout
            title = f"{_plural_of(noun)}, streamed: counted on the last line"
            count = _print_rows(title, columns, _chain(held, stream), out)
            out.write(f"# {plural(count, noun)}\n")
            return count
    print_table(plural(len(held), noun), columns, held, file, ids=ids)
    return len(held)


def _chain(first: list[Sequence[Any]], rest: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
    """``first`` (emptied as it goes, so rows printed are let go), then ``rest``."""
    first.reverse()
    while first:
        yield first.pop()
    yield from rest


def _print_rows(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], file: TextIO
) -> int:
    """Tab-separated rows (tabs and line breaks inside a cell become spaces), one at a
    time; returns how many."""

    def line(values: Sequence[str]) -> str:
        return "\t".join(" ".join(v.split()) if ("\t" in v or "\n" in v) else v for v in values)

    file.write(f"# {title}\n# {line(list(columns))}\n")
    count = 0
    for row in rows:
        file.write(line(["" if v is None else str(v) for v in row]) + "\n")
        count += 1
    return count


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: a whole number of at least 1 (else exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value
