"""``batchfsm sandbox``: serve the sandbox on loopback until interrupted.

A thin shell in the pypa/build manner: argv is parsed by the caller's parser (this module
only adds its sub-parser), :func:`run` turns the namespace into an exit code, and the
scenario file's problems become one clear line naming the file and the field (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TextIO

from batchfsm.errors import InputFileError

__all__ = ["add_parser", "run", "serve_command"]

DEFAULT_HOST = "127.0.0.1"
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sandbox`` to the ``batchfsm`` command's sub-parsers."""
    parser = subparsers.add_parser(
        "sandbox",
        help="serve a local OpenAI Batch API with scripted fates",
        description="Serve a local OpenAI Batch API (files + batches) with scripted fates "
        "and fault injection. Point OPENAI_BASE_URL at the printed URL.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="port (default: 0, a free port is chosen)"
    )
    parser.add_argument("--scenario", type=Path, help="scenario JSON file (fates, faults, seed)")
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="sandbox seconds per real second, e.g. 3600 (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; the exit code is 0, or 2 for a bad scenario."""
    return serve_command(args)


def serve_command(
    args: argparse.Namespace,
    *,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """:func:`run` with the parts a test needs: a ``stop`` event and the output streams."""
    # Imported here so that building the ``batchfsm`` parser never needs werkzeug.
    from batchfsm.sandbox.app import SandboxApp
    from batchfsm.sandbox.scenario import Scenario, load_scenario
    from batchfsm.sandbox.server import base_url_of, make_sandbox_server
    from batchfsm.sandbox.world import World

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario()
    except InputFileError as exc:
        print(f"batchfsm sandbox: bad scenario: {exc}", file=err)
        return EXIT_USAGE
    if args.seed is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    app = SandboxApp(World(scenario, time_scale=args.time_scale))
    try:
        server = make_sandbox_server(app, host=args.host, port=args.port)
    except OSError as exc:
        print(f"batchfsm sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=err)
        return EXIT_UNAVAILABLE
    url = base_url_of(server)
    print(f"batchfsm sandbox listening on {url} (time scale x{args.time_scale:g})", file=out)
    print(f"  export OPENAI_BASE_URL={url}", file=out)
    print("  export OPENAI_API_KEY=sandbox   # any non-empty key", file=out)
    print(f"  call counts: {url.removesuffix('/v1')}/sandbox/stats", file=out, flush=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("batchfsm sandbox: stopped", file=out)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0
