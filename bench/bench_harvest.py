"""Benchmark: harvesting a 20,000-line embeddings batch end to end, against a bare script.

Target (issue 12): the whole harvest (``Poller.cycle()``, what ``batchfsm poll --once``
runs: retrieve the completed batch, download its output file with the official client,
parse and classify every line, deliver the succeeded ones to the results directory,
settle the ledger in a SQLite store) at >= 0.7x the throughput of a bare script that
downloads the same file with the official client, parses it with orjson and writes and
fsyncs the succeeded lines.

The sandbox serves over HTTP on loopback in a child process (as the API is elsewhere),
with ``--dims`` floats per embedding. Each round submits a fresh job (not timed), lets
it complete, then times the bare script on its output file and our harvest of it,
alternating; best of ``--repeat``.

Usage::

    .venv/bin/python bench/bench_harvest.py [--lines 20000] [--dims 1536] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from batchfsm.config import Settings
from batchfsm.gateway import OpenAIGateway
from batchfsm.jobs.submit import submit_job
from batchfsm.persistence.sqlite import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.sandbox import Scenario
from batchfsm.sandbox.server import running_sandbox
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.wiring import build_runtime


def serve(dims: int) -> None:
    with running_sandbox(Scenario(embedding_dim=dims), time_scale=20_000.0) as sandbox:
        print(sandbox.base_url, flush=True)
        while True:
            time.sleep(3600)


def bare(base_url: str, file_id: str, dest: Path) -> float:
    start = time.perf_counter()
    client = openai_client(base_url=base_url, max_retries=2)
    with dest.open("wb") as out:
        for text in client.files.content(file_id).iter_lines():
            line = text.encode() if isinstance(text, str) else text
            obj = orjson.loads(line)
            response = obj.get("response") or {}
            if 200 <= (response.get("status_code") or 0) < 300:
                out.write(line + b"\n")  # the succeeded line, as downloaded
        out.flush()
        os.fsync(out.fileno())
    return time.perf_counter() - start


def one_round(base_url: str, work: Path, lines: int, n: int) -> tuple[float, float, int]:
    os.environ.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="test")
    store = SQLiteJobStore(work / f"store-{n}.db")
    store.init()
    settings = Settings(results_dir=work / f"results-{n}", provider="openai")
    client = openai_client(base_url=base_url, max_retries=2)
    with build_runtime(settings, store=store, gateway=OpenAIGateway(client), workdir=work) as rt:
        path = work / "in.jsonl"
        path.write_bytes(batch_input([f"doc-{i}" for i in range(lines)]))
        result = submit_job(rt.tracker, path, "/v1/embeddings", job_id=f"job-{n}")
        (batch_id,) = result.launched
        time.sleep(0.5)  # 14 sandbox seconds: the batch has completed; files last 130 s
        output = client.batches.retrieve(batch_id).output_file_id
        assert output
        took_bare = bare(base_url, output, work / f"bare-{n}.jsonl")
        start = time.perf_counter()
        Poller(rt.tracker, concurrency=1).cycle()
        took_ours = time.perf_counter() - start
        succeeded = sum(1 for _ in rt.store.iter_ledger(f"job-{n}"))
    return took_bare, took_ours, succeeded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.dims)
        return
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--dims", str(args.dims)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        base_url = child.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            rounds = [one_round(base_url, Path(tmp), args.lines, n) for n in range(args.repeat)]
    finally:
        child.terminate()  # our own child, by its handle
        child.wait(timeout=10)
    best_bare = min(r[0] for r in rounds)
    best_ours = min(r[1] for r in rounds)
    print(
        f"harvest {args.lines:,} embeddings lines ({args.dims} floats): ours {best_ours:.2f} s, "
        f"bare {best_bare:.2f} s, throughput {best_bare / best_ours:.2f}x the bare script "
        f"(target >= 0.7x); rounds {[(round(b, 2), round(o, 2)) for b, o, _ in rounds]}"
    )


if __name__ == "__main__":
    main()
