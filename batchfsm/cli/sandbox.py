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
from typing import TYPE_CHECKING, TextIO

from batchfsm.config import PROVIDER_NAMES
from batchfsm.errors import InputFileError

if TYPE_CHECKING:
    from batchfsm.sandbox.app import SandboxApp
    from batchfsm.sandbox.webhook_endpoints import SandboxWithWebhooks
    from batchfsm.sandbox.webhooks import WebhookSender

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


def _port(text: str) -> int:
    """A TCP port, 0 to 65535. Checked here: the socket layer would silently take a
    larger number modulo 65536 and listen on some other port."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, not {text!r}")
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
        "--port", type=_port, default=0, help="port (default: 0, a free port is chosen)"
    )
    parser.add_argument("--scenario", type=Path, help="scenario JSON file (fates, faults, seed)")
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="sandbox seconds per real second, e.g. 3600 (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument(
        "--dialect",
        choices=PROVIDER_NAMES,
        default="openai",
        help="speak this provider's version of the Batch API (URL shape, auth, status "
        "words, object shapes), to rehearse its profile (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        metavar="URL",
        help="send signed batch webhooks to URL when batches end, signed with "
        "$OPENAI_WEBHOOK_SECRET (repeatable); endpoints may also be registered through "
        "/v1/webhook_endpoints (batchfsm webhooks register)",
    )
    parser.set_defaults(func=run)


def exports(root: str, dialect: str) -> list[str]:
    """The shell lines that point batchfsm (and the official client) at a sandbox
    speaking ``dialect`` on ``root`` (``http://host:port``)."""
    from batchfsm.sandbox.dialects import AZURE_API_VERSION, dialect_base_url

    if dialect == "azure":  # AzureOpenAI adds /openai/ and ?api-version itself
        return [
            "unset OPENAI_BASE_URL",
            f"export AZURE_OPENAI_ENDPOINT={root}",
            "export AZURE_OPENAI_API_KEY=sandbox   # any non-empty key",
            f"export OPENAI_API_VERSION={AZURE_API_VERSION}",
            "export BATCHFSM_PROVIDER=azure",
        ]
    lines = [
        f"export OPENAI_BASE_URL={dialect_base_url(root, dialect)}",
        "export OPENAI_API_KEY=sandbox   # any non-empty key",
    ]
    if dialect != "openai":  # a loopback URL names no provider: say which
        lines.append(f"export BATCHFSM_PROVIDER={dialect}")
    return lines


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
    from batchfsm.sandbox.dialects import DialectApp
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
    dialect = getattr(args, "dialect", "openai")
    app = DialectApp(World(scenario, time_scale=args.time_scale), dialect)
    webhooks = _webhooks(app, getattr(args, "webhook_url", []), err)
    if webhooks is None:
        return EXIT_USAGE
    served, sender = webhooks
    try:
        server = make_sandbox_server(served, host=args.host, port=args.port)
    except OSError as exc:
        print(f"batchfsm sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=err)
        return EXIT_UNAVAILABLE
    root = base_url_of(server).removesuffix("/v1")
    print(
        f"batchfsm sandbox ({dialect} dialect) listening on {root} "
        f"(time scale x{args.time_scale:g})",
        file=out,
    )
    for line in exports(root, dialect):
        print(f"  {line}", file=out)
    print(f"  call counts: {root}/sandbox/stats", file=out)
    for endpoint in sender.endpoints():
        print(f"  sending signed batch webhooks to {endpoint.url}", file=out)
    print(f"  webhook endpoints: {root}/v1/webhook_endpoints", file=out, flush=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    sender.start()
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("batchfsm sandbox: stopped", file=out)
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0


def _webhooks(
    app: SandboxApp, urls: list[str], err: TextIO
) -> tuple[SandboxWithWebhooks, WebhookSender] | None:
    """The app with webhook endpoint management, and its sender with ``urls`` registered
    under ``OPENAI_WEBHOOK_SECRET``; None (after saying why) if a URL has no secret."""
    from batchfsm.config import Settings
    from batchfsm.sandbox.webhook_endpoints import with_webhooks

    secret = Settings.from_env().webhook_secret
    if urls and secret is None:
        print("batchfsm sandbox: --webhook-url needs OPENAI_WEBHOOK_SECRET", file=err)
        return None
    return with_webhooks(app, urls=urls, secret=secret.get_secret_value() if secret else None)
