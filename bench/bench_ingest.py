"""Benchmark: ingesting an embeddings output file, against a bare orjson loop.

Targets (from the issue):

* throughput of ``iter_outcomes`` over a 50,000-line file of 1536-float embeddings at
  >= 0.7x a bare ``for line in f: orjson.loads(line)`` loop over the same file, same run;
* peak memory that does not grow with the file: a 10x larger stream adds < 50 MB.

Throughput runs on a real file in a temporary directory (page cache warmed first, then
bare and ours alternate, best of ``--repeat`` each, to damp noise from other processes).
The memory check runs ``iter_outcomes`` in fresh child processes reading a named pipe fed
by this process, so the 10x input (~11 GB) never touches the disk; each child reports
its peak RSS growth and tracemalloc peak.

Usage::

    .venv/bin/python bench/bench_ingest.py [--lines 50000] [--dims 1536] [--factor 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson

from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes
from batchfsm.persistence.sinks import DirectorySink

POOL = 64


def vectors(dims: int) -> list[bytes]:
    """A pool of embedding arrays printed like the API prints them (~10 digits)."""
    rng = random.Random(1536)
    return [
        orjson.dumps([float(f"{rng.gauss(0, 0.03):.10f}") for _ in range(dims)])
        for _ in range(POOL)
    ]


def lines(n: int, dims: int) -> Iterator[bytes]:
    pool = vectors(dims)
    for i in range(n):
        yield b"".join((
            b'{"id":"batch_req_', str(i).encode(), b'","custom_id":"doc-', str(i).encode(),
            b'","response":{"status_code":200,"request_id":"req_', str(i).encode(),
            b'","body":{"object":"list","data":[{"object":"embedding","index":0,"embedding":',
            pool[i % POOL],
            b'}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,'
            b'"total_tokens":8}}},"error":null}\n',
        ))  # fmt: skip


def write_file(path: Path, n: int, dims: int) -> None:
    with path.open("wb", buffering=1024 * 1024) as fh:
        for line in lines(n, dims):
            fh.write(line)


def bare_loop(path: Path) -> int:
    count = 0
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
            count += 1
    return count


def ours(path: Path) -> int:
    count = 0
    for outcome in iter_outcomes(path):
        if outcome.kind is OutcomeKind.SUCCEEDED and outcome.body:
            count += 1
    return count


def ours_into_sink(path: Path, root: Path) -> int:
    sink = DirectorySink(root)
    successes = (
        (o.custom_id, o.body)
        for o in iter_outcomes(path)
        if o.kind is OutcomeKind.SUCCEEDED and o.custom_id and o.body
    )
    return sink.write_batch("bench", f"batch_{time.monotonic_ns()}", successes)


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def throughput(n: int, dims: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = Path(tmp) / "output.jsonl"
        t0 = time.perf_counter()
        write_file(path, n, dims)
        size = path.stat().st_size
        print(f"generated {n} lines, {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f}s")
        assert bare_loop(path) == n  # warms the page cache
        assert ours(path) == n
        bare, mine, sink = [], [], []
        for _ in range(repeat):
            bare.append(timed(bare_loop, path))
            mine.append(timed(ours, path))
            sink_root = Path(tmp) / "results"
            sink.append(timed(ours_into_sink, path, sink_root))
            for f in sink_root.rglob("*.jsonl"):
                f.unlink()
        return {
            "mb": size / 1e6,
            "bare_s": min(bare),
            "ours_s": min(mine),
            "sink_s": min(sink),
            "ratio": min(bare) / min(mine),
            "ratio_with_sink": min(bare) / min(sink),
        }


def current_rss_kb() -> int:
    """Resident set size now (not the high-water mark), from /proc."""
    with open("/proc/self/status") as fh:
        for row in fh:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_memory(fifo: str, trace: bool) -> None:
    """Runs in a fresh process: ingest the pipe, print memory growth as JSON."""
    base_rss = current_rss_kb()
    if trace:
        tracemalloc.start()
    count = ours(Path(fifo))
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "lines": count,
        "rss_growth_kb": peak_rss - base_rss,
        "peak_rss_kb": peak_rss,
        "tracemalloc_peak": peak,
    }))  # fmt: skip


def memory(n: int, dims: int, trace: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-fifo-") as tmp:
        fifo = os.path.join(tmp, "stream")
        os.mkfifo(fifo)
        cmd = [sys.executable, __file__, "--child-memory", fifo]
        if trace:
            cmd.append("--trace")
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

        def feed() -> None:
            with open(fifo, "wb", buffering=1024 * 1024) as fh:
                for line in lines(n, dims):
                    fh.write(line)

        writer = threading.Thread(target=feed)
        start = time.perf_counter()
        writer.start()
        out, _ = child.communicate()
        writer.join()
        result = json.loads(out)
        assert result["lines"] == n, result
        result["seconds"] = time.perf_counter() - start
        return dict(result)


def describe(m: dict[str, float]) -> str:
    text = (
        f"peak RSS {m['peak_rss_kb'] / 1024:.1f} MB "
        f"({m['rss_growth_kb'] / 1024:+.1f} MB while ingesting)"
    )
    if m["tracemalloc_peak"]:
        text += f", tracemalloc peak {m['tracemalloc_peak'] / 1e6:.2f} MB"
    return text + f", {m['seconds']:.0f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument(
        "--trace", action="store_true", help="also trace allocations (about 3x slower)"
    )
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory, args.trace)
        return

    if not args.skip_throughput:
        t = throughput(args.lines, args.dims, args.repeat)
        print(
            f"bare orjson loop : {t['bare_s']:.2f}s ({t['mb'] / t['bare_s']:.0f} MB/s)\n"
            f"iter_outcomes    : {t['ours_s']:.2f}s -> ratio {t['ratio']:.2f} (target >= 0.70)\n"
            f"+ DirectorySink  : {t['sink_s']:.2f}s -> ratio {t['ratio_with_sink']:.2f} "
            "(adds writing + fsync of every body)"
        )
    if args.skip_memory:
        return
    small = memory(args.lines, args.dims, trace=args.trace)
    large = memory(args.lines * args.factor, args.dims, trace=args.trace)
    extra_mb = (large["peak_rss_kb"] - small["peak_rss_kb"]) / 1024
    print(
        f"memory 1x  ({small['lines']} lines): {describe(small)}\n"
        f"memory {args.factor}x ({large['lines']} lines): {describe(large)}\n"
        f"{args.factor}x adds {extra_mb:+.1f} MB of peak RSS over 1x (target < 50 MB)"
    )


if __name__ == "__main__":
    main()
