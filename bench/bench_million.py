"""Benchmark: memory flat in the number of requests, for submit, a poll cycle and ``items``.

Target (issue 12): a 1,000,000-request job (20 batches of 50,000) submits, splits,
queues and polls with memory flat in the number of requests, and ``items`` pages
through it. Flat means the peak of a phase at 1,000,000 lines is within 1.3x of its peak
at 100,000 (the work per batch is the same; only the ledger grows).

Each phase runs in a fresh child process against the real sandbox (over HTTP, the
official ``openai`` client) and a SQLite store, and reports its peak resident set
(``VmHWM``, what users see) and, with ``--tracemalloc``, the peak of Python's own
allocations (which slows the phase down and adds its own bookkeeping to the RSS):

* ``baseline``: a bare Python process importing what the phases import;
* ``submit``: :func:`batchfsm.jobs.submit.submit_job` with a queue limit for the model
  that fits one batch, so one batch of 50,000 is sent and the rest waits ``queued`` in
  the store (validate, split, count tokens, write the ledger, admit);
* ``poll``: one :meth:`batchfsm.poller.Poller.cycle` once the first batch completed:
  retrieve it, harvest its 50,000 results, release its tokens, admit the next batch;
* ``items-tsv``, ``items-json``, ``items-export``: ``batchfsm items --job J`` of the
  whole ledger to a file (tab-separated rows, ``--json``, ``--export``);
* ``items-page``: ``batchfsm items --job J --limit 1000 --after ID``, a page near the
  end of the ledger;
* ``drain`` (only when ``--phases`` names it: minutes at 1,000,000 lines):
  :meth:`~batchfsm.poller.Poller.run` until the job is done, one batch admitted as the
  one before it ends, so its peak is also that of the job's last cycles, when it has the
  most batches and intents behind it. Its ratio is taken against the larger of the
  small job's drain and poll peaks: after the poll phase a 100,000-line job has only a
  remainder left to drain.

Usage::

    .venv/bin/python bench/bench_million.py [--lines 100000,1000000] [--tracemalloc]
        [--phases submit,poll,items-tsv,items-json,items-export,items-page,drain]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Final

import orjson

ENDPOINT: Final = "/v1/chat/completions"
MODEL: Final = "gpt-4o-mini"
BATCH: Final = 50_000
JOB: Final = "job-million"
TIME_SCALE: Final = 200.0
"""Sandbox seconds per second: a batch completes in 0.07 s, its files last 3.6 hours."""
PHASES: Final = ("submit", "poll", "items-tsv", "items-json", "items-export", "items-page")
ALL_PHASES: Final = (*PHASES, "drain")


def write_input(path: Path, n: int) -> None:
    with path.open("wb", buffering=1024 * 1024) as fh:
        for i in range(n):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"summarise document number {i}"}],
            }
            line = {"custom_id": f"req-{i:07d}", "method": "POST", "url": ENDPOINT, "body": body}
            fh.write(orjson.dumps(line) + b"\n")


def queue_limit(path: Path) -> int:
    """Room for exactly the first batch of 50,000 requests: the rest waits ``queued``."""
    from batchfsm.ledger.tokens import count_line

    with path.open("rb") as fh:
        first = sum(count_line(raw, ENDPOINT) for _, raw in zip(range(BATCH), fh, strict=False))
    return first


# -- the phases, each in its own child process ---------------------------------------------
def _runtime(work: Path) -> Any:
    from batchfsm.config import Settings
    from batchfsm.persistence.sqlite import SQLiteJobStore
    from batchfsm.wiring import build_runtime

    settings = Settings.from_env(provider="openai", results_dir=work / "results")
    store = SQLiteJobStore(work / "store.db")
    store.init()
    return build_runtime(settings, store=store, workdir=work)


def phase_submit(work: Path, limit: int) -> str:
    from batchfsm.jobs.submit import submit_job

    with _runtime(work) as runtime:
        result = submit_job(
            runtime.tracker, work / "in.jsonl", ENDPOINT, job_id=JOB, queue_limits={MODEL: limit}
        )
    return f"{len(result.launched)} batch sent, {len(result.batches)} tracked"


def phase_poll(work: Path, limit: int) -> str:
    from batchfsm.poller import Poller

    with _runtime(work) as runtime:
        report = Poller(runtime.tracker, queue_limits={MODEL: limit}).cycle()
    states = [r.record.state.value for r in report.reports if r.record is not None]
    return f"polled {states}, admitted {len(report.admitted)}, {report.queued:,} queued"


def phase_drain(work: Path, limit: int) -> str:
    from batchfsm.poller import Poller

    with _runtime(work) as runtime:
        poller = Poller(runtime.tracker, queue_limits={MODEL: limit})
        summary = poller.run(until_done=True, interval=0.25, timeout=3600)
        counts = runtime.tracker.store.count_ledger(JOB)
    done = {state.value: n for state, n in counts.items() if n}
    return f"{summary.cycles} cycles, {len(summary.batches)} batches, done={summary.done}: {done}"


def phase_items(work: Path, argv: list[str]) -> str:
    from batchfsm.cli.main import main

    out = work / "items.out"
    with out.open("w") as sink, contextlib.redirect_stdout(sink):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = main(["items", "--store", f"sqlite:///{work / 'store.db'}", *argv])
    if code != 0:
        raise SystemExit(f"items {argv} exited {code}: {stderr.getvalue()}")
    return f"{out.stat().st_size:,} bytes out; {stderr.getvalue().strip()[:80]}"


def peak_rss() -> int:
    """This process's peak resident set, in bytes: ``VmHWM``, the high-water mark of its
    own memory map. Not ``ru_maxrss``: Linux carries into it the RSS the parent had when
    it spawned this process (the map exec replaced), which would floor every figure at
    the parent's size."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB elsewhere


ITEMS_ARGS: Final = {
    "items-tsv": ["--job", JOB],
    "items-json": ["--job", JOB, "--json"],
    "items-export": ["--job", JOB, "--export", "{work}/export.jsonl"],
    "items-page": ["--job", JOB, "--limit", "1000", "--after", "{late}"],
}


def child(phase: str, work: Path, lines: int, limit: int, traced: bool) -> None:
    """Run one phase and print its figures as one JSON line."""
    import batchfsm.cli.main
    import batchfsm.jobs.submit
    import batchfsm.poller
    import batchfsm.wiring  # noqa: F401  (the baseline imports what every phase imports)

    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    note = ""
    if phase == "submit":
        note = phase_submit(work, limit)
    elif phase == "poll":
        note = phase_poll(work, limit)
    elif phase == "drain":
        note = phase_drain(work, limit)
    elif phase in ITEMS_ARGS:
        late = f"req-{max(0, lines - 1500):07d}"
        note = phase_items(work, [a.format(work=work, late=late) for a in ITEMS_ARGS[phase]])
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    rss = peak_rss()
    print(orjson.dumps({"rss": rss, "traced": peak, "seconds": seconds, "note": note}).decode())


def measure(phase: str, work: Path, lines: int, limit: int, base_url: str, traced: bool) -> Any:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test"}
    argv = [sys.executable, __file__, "--child", phase, "--work", str(work),
            "--lines", str(lines), "--limit", str(limit)]  # fmt: skip
    if traced:
        argv.append("--tracemalloc")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} at {lines:,} lines failed:\n{done.stderr}")
    return orjson.loads(done.stdout.splitlines()[-1])


def _mb(n: float | None) -> str:
    return "      -" if n is None else f"{n / 2**20:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", default="100000,1000000")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.work, int(args.lines), args.limit, args.tracemalloc)
        return
    from batchfsm.sandbox.server import running_sandbox

    sizes = [int(x) for x in args.lines.split(",")]
    phases = [p for p in args.phases.split(",") if p]
    if unknown := set(phases) - set(ALL_PHASES):
        parser.error(f"--phases: no phase {', '.join(sorted(unknown))}; phases: {ALL_PHASES}")
    figures: dict[str, dict[int, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, running_sandbox(time_scale=TIME_SCALE) as sandbox:
        base = measure("baseline", Path(tmp), 0, 0, sandbox.base_url, args.tracemalloc)
        print(f"baseline (python importing batchfsm): {_mb(base['rss'])} MB RSS", flush=True)
        for n in sizes:
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            write_input(work / "in.jsonl", n)
            limit = queue_limit(work / "in.jsonl")
            for phase in phases:
                if phase == "poll":
                    time.sleep(1.0)  # 200 sandbox seconds: the first batch has completed
                got = measure(phase, work, n, limit, sandbox.base_url, args.tracemalloc)
                figures.setdefault(phase, {})[n] = got
                print(f"{phase:>12} {n:>9,} lines: {_mb(got['rss'])} MB RSS, traced "
                      f"{_mb(got['traced'])} MB, {got['seconds']:7.1f} s  ({got['note']})",
                      flush=True)  # fmt: skip
    if len(sizes) < 2:
        return
    small, large = min(sizes), max(sizes)
    print(f"\npeak at {large:,} / peak at {small:,} lines (flat: 1.0x, target <= 1.3x)")
    for phase, by_size in figures.items():
        a, b = by_size[small], by_size[large]
        if phase == "drain" and "poll" in figures:
            # After the poll phase a small job has only its remainder left to drain; its
            # full cycle (harvest one batch, admit the next) is the poll phase.
            a = max(a, figures["poll"][small], key=lambda f: f["rss"])
        above = (b["rss"] - base["rss"]) / max(1, a["rss"] - base["rss"])
        print(f"{phase:>12}: RSS {b['rss'] / a['rss']:5.2f}x (above the baseline {above:5.2f}x), "
              f"time {b['seconds'] / a['seconds']:5.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
