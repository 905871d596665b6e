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
    from batchfsm.sandbox.scenario import Scenario
    from batchfsm.sandbox.webhook_endpoints import SandboxWithWebhooks
    from batchfsm.sandbox.webhooks import WebhookSender

__all__ = ["SANDBOX_EPILOG", "add_parser", "run", "serve_command"]

SANDBOX_EPILOG = """\
per request, from its custom_id (any batch, any fate):
  ...#fail=400      fails for good: HTTP 400 in the error file (invalid_request_error)
  ...#fail=429      fails, retryable: HTTP 429 (rate_limit_exceeded)
  ...#fail=500      fails, retryable: HTTP 500 (server_error)
  ...#fail=timeout  never answered: error.code request_timeout, retryable

per batch, its fate: metadata sandbox_fate=NAME (batchfsm submit --metadata
sandbox_fate=expire) names a fate of the scenario's "named", or one of the kinds:
  complete             runs and completes (failure_rate: a seeded share of lines fail)
  all_fail             completes with every line failed (no output file)
  expire               the 24 h window runs out with expire_fraction done
  token_limit_exceeded fails at validation: the queue is full
  stuck_finalizing     sits in finalizing for stuck_finalizing_s
A batch that names no fate meets by_order[i] (the i-th batch created), else "default"
(a clean completion). A retry round resending requests of an earlier batch with the
same sandbox_fate and job meets the fate of a batch that names none, not the named one
again ("fate_on_resend": "same" in the scenario keeps it).

a scenario file (JSON; unknown keys are refused):
  {"seed": 7,
   "default": {"kind": "complete", "phases": {"validating_s": 60, "in_progress_s": 3600}},
   "by_order": [{"kind": "expire", "expire_fraction": 0.5}],
   "named": {"slow": {"phases": {"in_progress_s": 72000}}},
   "faults": {"rate_limit_rate": 0.05, "server_error_rate": 0.02, "stale_read_rate": 0.1,
              "truncate_rate": 0.01,
              "script": [{"route": "POST /v1/batches", "call": 1, "kind": "queue_full"}]}}
  phases (sandbox seconds): validating_s, in_progress_s, finalizing_s, cancelling_s;
  a fate may also set failure_rate, failure_codes, disappear_after_s (answers 404).
"""

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
        epilog=SANDBOX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=0, help="port (default: 0, a free port is chosen)"
    )
    parser.add_argument(
        "--scenario", type=Path, metavar="FILE",
        help="a scenario JSON file: fates by name, by order and by default, faults, seed "
        "(see below and the README's Sandbox section)",
    )  # fmt: skip
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
    parser.add_argument(
        "--queue-limit",
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="enforce an enqueued-token limit per model, as the API does (repeatable; "
        "MODEL '*' for every other model): a batch that does not fit fails with "
        "token_limit_exceeded",
    )
    parser.set_defaults(func=run)


def exports(root: str, dialect: str) -> list[str]:
    """The shell lines that point batchfsm (and the official client) at a sandbox
    speaking ``dialect`` on ``root`` (``http://host:port``)."""
    from batchfsm.sandbox.dialects import AZURE_API_VERSION, dialect_base_url

    if dialect == "anthropic":  # another client, another wire
        from batchfsm.cli.sandbox_anthropic import EXPORTS

        return [line.format(root=root) for line in EXPORTS]
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
    if (limited := _with_queue_limits(scenario, args, err)) is None:
        return EXIT_USAGE
    scenario = limited
    dialect = getattr(args, "dialect", "openai")
    if dialect == "anthropic":
        from batchfsm.cli.sandbox_anthropic import serve_anthropic

        return serve_anthropic(args, scenario, stop=stop, out=out, err=err)
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
    _announce(base_url_of(server).removesuffix("/v1"), dialect, args, sender, out)
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


def _announce(
    root: str, dialect: str, args: argparse.Namespace, sender: WebhookSender, out: TextIO
) -> None:
    """Where the sandbox listens, what to export to use it, and its side doors."""
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


def _with_queue_limits(
    scenario: Scenario, args: argparse.Namespace, err: TextIO
) -> Scenario | None:
    """``scenario`` with ``--queue-limit``s applied; None (said on ``err``) if bad."""
    limits = getattr(args, "queue_limit", [])
    if not limits:
        return scenario
    from batchfsm.ledger.budget import parse_queue_limits

    try:
        return scenario.model_copy(update={"queue_limits": parse_queue_limits(limits)})
    except ValueError as exc:
        print(f"batchfsm sandbox: --queue-limit: {exc}", file=err)
        return None
