"""What ``batchfsm poll`` shows while it runs.

On a terminal: a live table (rich ``Live``) with one row per batch seen this run: its
state, request counts, time left before the 24 h deadline and the effects it still owes,
under a line of totals. Anywhere else (a log file, CI, a pipe): plain lines, one per
batch whose state or counts changed, and one per cycle, so a log reads as a history.

Both are driven by :class:`~batchfsm.poller.Poller`'s ``on_cycle`` callback and never
call the API or the store themselves.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, Self, TextIO

from batchfsm.ports import Clock, SystemClock

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from batchfsm.fsm.models import BatchRecord
    from batchfsm.poller import CycleReport

__all__ = [
    "LiveProgress",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "format_remaining",
    "make_progress",
]


class Progress(Protocol):
    """A display fed once per cycle; used as a context manager around the run."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def on_cycle(self, report: CycleReport) -> None: ...


def format_remaining(deadline: datetime | None, now: datetime) -> str:
    """``"23h59m"``, ``"4m"``, ``"overdue 12m"``, or ``""`` without a deadline."""
    if deadline is None:
        return ""
    left = deadline - now
    sign = ""
    if left < timedelta(0):
        sign, left = "overdue ", -left
    minutes = int(left.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours}h{minutes:02d}m" if hours else f"{sign}{minutes}m"


def _counts(record: BatchRecord) -> str:
    counts = record.snapshot.request_counts if record.snapshot else None
    if counts is None:
        return "-"
    return f"{counts.completed}/{counts.failed}/{counts.total}"


def _state(record: BatchRecord) -> str:
    flags = [
        f for f, on in (("lost", record.lost), ("cancel asked", record.cancel_requested)) if on
    ]
    return record.state.value + (f" ({', '.join(flags)})" if flags else "")


def _totals(report: CycleReport) -> str:
    parts = [
        f"cycle {report.number}",
        f"{report.attention} need attention",
        f"{report.retry_items} items in retry",
    ]
    if report.open_intents:
        parts.append(f"{report.open_intents} open intents")
    if report.retried:
        parts.append(f"{len(report.retried)} retry batches sent")
    if report.waiting:
        ready = min(w.ready_at for w in report.waiting)
        parts.append(f"queue-full items wait until {ready:%H:%M:%S}")
    if report.errors:
        parts.append(f"{len(report.errors)} API errors survived")
    return ", ".join(parts)


class PlainProgress:
    """Log lines: a batch's line only when its state or counts changed."""

    def __init__(self, stream: TextIO | None = None, *, clock: Clock | None = None) -> None:
        self.stream = stream or sys.stdout
        self.clock = clock or SystemClock()
        self._seen: dict[str, tuple[str, str]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.flush()

    def finished(self, text: str, seconds: float) -> None:
        """A long step (an upload, a download, a harvest) just ended: one line, if it
        took a second or more."""
        if seconds >= 1.0:
            self.stream.write(f"{self.clock.now():%Y-%m-%dT%H:%M:%S} {text} in {seconds:.1f} s\n")
            self.stream.flush()

    def on_cycle(self, report: CycleReport) -> None:
        now = self.clock.now()
        for record in _records(report):
            key = (_state(record), _counts(record))
            if self._seen.get(record.batch_id) == key:
                continue
            self._seen[record.batch_id] = key
            owed = ", ".join(e.key for e in record.pending_effects)
            left = format_remaining(record.deadline(), now) if not record.terminal else ""
            self.stream.write(
                f"{now:%Y-%m-%dT%H:%M:%S} {record.batch_id} {key[0]} "
                f"done/failed/total={key[1]}"
                + (f" deadline in {left}" if left else "")
                + (f" owes {owed}" if owed else "")
                + "\n"
            )
        self.stream.write(f"{now:%Y-%m-%dT%H:%M:%S} {_totals(report)}\n")
        self.stream.flush()


class QuietProgress:
    """Shows nothing (``-q``)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def on_cycle(self, report: CycleReport) -> None:
        pass


class LiveProgress:
    """A rich ``Live`` table redrawn after every cycle (terminals only)."""

    def __init__(
        self, stream: TextIO | None = None, *, clock: Clock | None = None, width: int | None = None
    ) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stdout, width=width)
        self.clock = clock or SystemClock()
        self._rows: dict[str, BatchRecord] = {}
        self._live: Live | None = None
        self._report: CycleReport | None = None
        self._note: str | None = None

    def __enter__(self) -> Self:
        from rich.live import Live

        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def on_cycle(self, report: CycleReport) -> None:
        for record in _records(report):
            self._rows[record.batch_id] = record
        self._report = report
        self._redraw()

    def note(self, text: str | None) -> None:
        """The step under way (a download, a harvest...), shown under the table."""
        self._note = text
        self._redraw()

    def finished(self, text: str, seconds: float) -> None:
        self.note(f"{text} in {seconds:.1f} s")

    def _redraw(self) -> None:
        from rich.text import Text

        if self._live is None:
            return
        if self._report is None:
            self._live.update(Text(self._note or ""), refresh=True)
            return
        table = self.table(self._report)
        table.caption, table.caption_justify = self._note, "left"
        self._live.update(table, refresh=True)

    def table(self, report: CycleReport) -> Table:
        from batchfsm.cli.output import rich_table

        now = self.clock.now()
        rows = [
            (
                record.batch_id,
                record.job_id or "",
                _state(record),
                _counts(record),
                "" if record.terminal else format_remaining(record.deadline(), now),
                ", ".join(e.handler for e in record.pending_effects),
            )
            for record in self._rows.values()
        ]
        columns = ("batch", "job", "state", "done/failed/total", "deadline in", "owes")
        table, _needed = rich_table(columns, rows, title=_totals(report))  # ids never cut
        return table


def _records(report: CycleReport) -> list[BatchRecord]:
    records = [r.record for r in report.reports if r.record is not None]
    return records + list(report.retried)


def make_progress(
    stream: TextIO | None = None, *, live: bool | None = None, clock: Clock | None = None
) -> Progress:
    """A :class:`LiveProgress` on a terminal, else :class:`PlainProgress`."""
    stream = stream or sys.stdout
    if live is None:  # as rich decides it, like the tables (FORCE_COLOR counts)
        from batchfsm.cli.output import is_terminal

        live = is_terminal(stream)
    return LiveProgress(stream, clock=clock) if live else PlainProgress(stream, clock=clock)
