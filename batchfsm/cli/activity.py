"""What a long step is doing, while it does it: uploads, downloads and harvests.

A harvest of 50,000 lines takes tens of seconds inside one poll cycle, an upload of a
200 MB file as long; without a word the screen looks stuck. :class:`WatchedGateway` and
:class:`WatchedSink` wrap the runtime's gateway and result sink (every other call passes
straight through) and tell an :class:`Activity` what they are doing: the file and its
size, and for a harvest the lines delivered so far, every 2,000 lines. The activity
hands that to whatever shows it: the poll display (a line under the live table; a log
line for steps over a second when stdout is no terminal), or a spinner on stderr for
``submit`` and ``retry`` on a terminal. ``-q`` shows none of it.

It also refreshes ``poll --metrics-port``'s figures after every cycle.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from batchfsm.cli.output import plural

if TYPE_CHECKING:
    import argparse

    from batchfsm.cli.metrics import MetricsServer
    from batchfsm.config import Settings
    from batchfsm.ports import BatchGateway, JobStore, ResultSink
    from batchfsm.wiring import Runtime

__all__ = ["Activity", "WatchedGateway", "WatchedSink", "spinner", "watched_runtime"]

T = TypeVar("T")
_EVERY = 2_000


def _size(path: Path) -> str:
    try:
        size = float(path.stat().st_size)
    except OSError:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


class Activity:
    """Where notes go: ``show`` for the step under way, ``finished`` for one just done
    (with its seconds); both do nothing until a display sets them."""

    def __init__(self, *, metrics_port: int | None = None) -> None:
        self.show: Callable[[str | None], None] = lambda _text: None
        self.finished: Callable[[str, float], None] = lambda _text, _seconds: None
        self.metrics_port = metrics_port
        self.metrics: MetricsServer | None = None

    def attach(self, display: object) -> None:
        """Take ``display``'s ``note``/``finished`` methods, where it has them."""
        self.show = getattr(display, "note", self.show)
        self.finished = getattr(display, "finished", self.finished)

    def start(self, store: JobStore) -> None:
        if self.metrics_port is not None:
            from batchfsm.cli.metrics import MetricsServer

            self.metrics = MetricsServer(store, self.metrics_port)
            self.metrics.refresh()

    def after(self, on_cycle: Callable[[T], None]) -> Callable[[T], None]:
        """``on_cycle``, then the step note cleared and the metrics refreshed."""

        def cycle(report: T) -> None:
            on_cycle(report)
            self.show(None)
            if self.metrics is not None:
                self.metrics.refresh()

        return cycle

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()

    @contextmanager
    def step(self, doing: str, done: Callable[[], str]) -> Iterator[None]:
        started = time.monotonic()
        self.show(doing)
        yield
        self.finished(done(), time.monotonic() - started)


class WatchedGateway:
    """A gateway whose uploads and downloads are announced to an :class:`Activity`."""

    def __init__(self, inner: BatchGateway, activity: Activity) -> None:
        self._inner = inner
        self._activity = activity

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upload(self, path: Path) -> str:
        with self._activity.step(
            f"uploading {path.name} ({_size(path)})", lambda: f"uploaded {path.name}"
        ):
            return self._inner.upload(path)

    def download(self, file_id: str | None, dest: Path) -> Path | None:
        if file_id is None:
            return self._inner.download(file_id, dest)
        with self._activity.step(
            f"downloading {file_id}", lambda: f"downloaded {file_id} ({_size(dest)})"
        ):
            return self._inner.download(file_id, dest)


class WatchedSink:
    """A result sink whose deliveries (a harvest's streaming) are counted aloud."""

    def __init__(self, inner: ResultSink, activity: Activity) -> None:
        self._inner = inner
        self._activity = activity

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def has(self, job_id: str, batch_id: str) -> bool:
        return self._inner.has(job_id, batch_id)

    def quarantine(self, job_id: str, batch_id: str, lines: Iterable[Any]) -> int:
        return self._inner.quarantine(job_id, batch_id, lines)

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        count = 0

        def counted() -> Iterator[tuple[str, bytes]]:
            nonlocal count
            for item in results:
                count += 1
                if count % _EVERY == 0:
                    self._activity.show(f"harvesting {batch_id}: {count:,} result lines")
                yield item

        with self._activity.step(
            f"harvesting {batch_id}",
            lambda: f"harvested {batch_id}: {plural(count, 'result line')}",
        ):
            return self._inner.write_batch(job_id, batch_id, counted())


@contextmanager
def watched_runtime(
    settings: Settings, activity: Activity, *, with_gateway: bool = True
) -> Iterator[Runtime]:
    """:func:`batchfsm.wiring.build_runtime` with the gateway and the results directory
    announced to ``activity``, which also serves metrics for as long as it runs."""
    from batchfsm.persistence.sinks import DirectorySink
    from batchfsm.wiring import build_runtime, openai_gateway

    gateway = WatchedGateway(openai_gateway(settings), activity) if with_gateway else None
    sink = WatchedSink(DirectorySink(Path(settings.results_dir)), activity)
    with build_runtime(settings, gateway=gateway, sink=sink) as runtime:
        activity.start(runtime.store)
        try:
            yield runtime
        finally:
            activity.close()


@contextmanager
def spinner(args: argparse.Namespace, activity: Activity) -> Iterator[None]:
    """A spinner on stderr saying the step under way (a terminal only, not with -q)."""
    from rich.console import Console

    console = Console(file=sys.stderr)
    if getattr(args, "quiet", 0) or not console.is_terminal:
        yield
        return
    with console.status("") as status:
        activity.show = lambda text: status.update(text or "")
        yield
