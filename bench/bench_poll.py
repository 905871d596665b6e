"""Benchmark: one poll cycle over many tracked batches, retrieves running concurrently.

Target (issue 12): a cycle over 1,000 tracked batches within 1.25x of the ideal
``batches x latency / workers``, with no more than one store read and zero writes per
unchanged batch.

The sandbox is served over HTTP on loopback with an injected latency on every
``GET /v1/batches/{id}`` (a WSGI wrapper that sleeps), and the official client talks to
it; the sandbox runs in a child process (its own interpreter, as the API is elsewhere)
and keeps connections alive (HTTP/1.1) as the API does. ``--batches`` batches are
created and tracked in a SQLite
store, one warm-up cycle moves them all to ``in_progress``, then the measured cycle
finds every one unchanged. Store calls are counted by wrapping the store's methods.

Usage::

    .venv/bin/python bench/bench_poll.py [--batches 1000] [--latency 0.02] [--workers 16]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from batchfsm.config import Settings
from batchfsm.fsm.snapshot import BatchSnapshot
from batchfsm.gateway import OpenAIGateway
from batchfsm.persistence.sqlite import SQLiteJobStore
from batchfsm.poller import Poller
from batchfsm.sandbox import Fate, Phases, SandboxApp, Scenario, World
from batchfsm.sandbox.server import base_url_of
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.wiring import build_runtime

READS = ("load", "list_attention", "list_batches", "history", "get_ledger", "load_job",
         "list_jobs", "list_intents", "count_ledger", "load_budget", "iter_ledger")  # fmt: skip
WRITES = ("create", "commit", "save_ledger", "save_intent", "put_job", "save_budget")


class Slow:
    """WSGI wrapper: ``latency`` seconds before every batch retrieve."""

    def __init__(self, app: SandboxApp, latency: float) -> None:
        self.app, self.latency, self.on = app, latency, True

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.on and environ.get("REQUEST_METHOD") == "GET" and path.startswith("/v1/batches/"):
            time.sleep(self.latency)
        return self.app(environ, start_response)


def count_calls(store: Any, counts: Counter[str]) -> None:
    for name in (*READS, *WRITES):
        original = getattr(store, name)

        def counted(*a: Any, _o: Any = original, _n: str = name, **k: Any) -> Any:
            counts[_n] += 1
            return _o(*a, **k)

        setattr(store, name, counted)


class KeepAlive(WSGIRequestHandler):
    """HTTP/1.1, so the client keeps its connections (as it does with the real API)."""

    protocol_version = "HTTP/1.1"

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


def serve(latency: float) -> None:
    """The child process: the sandbox, slowed, on a free port (printed), until killed."""
    slow_phases = Phases(validating_s=0.0, in_progress_s=10**7)
    app = SandboxApp(World(Scenario(default=Fate(phases=slow_phases))))
    server = make_server("127.0.0.1", 0, Slow(app, latency), threaded=True,
                         request_handler=KeepAlive)  # fmt: skip
    print(base_url_of(server), flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        run(args, child.stdout.readline().strip())
    finally:
        child.terminate()  # our own child, by its handle
        child.wait(timeout=10)


def run(args: argparse.Namespace, base_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteJobStore(Path(tmp) / "store.db")
        client = openai_client(base_url=base_url, max_retries=2)
        runtime = build_runtime(
            Settings(results_dir=Path(tmp) / "results", poll_concurrency=args.workers),
            store=store, gateway=OpenAIGateway(client), workdir=Path(tmp),
        )  # fmt: skip
        content = batch_input(["a"])
        for _ in range(args.batches):
            file = client.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
            made = client.batches.create(input_file_id=file.id, endpoint="/v1/embeddings",
                                         completion_window="24h")  # fmt: skip
            runtime.tracker.track(BatchSnapshot.model_validate(made.model_dump()))
        poller = Poller(runtime.tracker)
        poller.cycle()  # warm-up: validating -> in_progress, committed
        counts: Counter[str] = Counter()
        count_calls(store, counts)
        start = time.perf_counter()
        report = poller.cycle()
        took = time.perf_counter() - start
    ideal = args.batches * args.latency / args.workers
    unchanged = sum(1 for r in report.reports if not r.changed)
    reads = sum(counts[n] for n in READS)
    writes = sum(counts[n] for n in WRITES)
    print(
        f"poll cycle over {args.batches:,} batches ({unchanged:,} unchanged), "
        f"{args.latency * 1000:.0f} ms a retrieve, {args.workers} workers: {took:.2f} s, "
        f"ideal {ideal:.2f} s, ratio {took / ideal:.2f}x (target <= 1.25x); store: "
        f"{reads} reads ({reads / args.batches:.3f} a batch), {writes} writes "
        f"({dict(counts)})"
    )


if __name__ == "__main__":
    main()
