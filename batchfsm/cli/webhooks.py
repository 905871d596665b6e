"""``batchfsm webhooks serve | register | test``: receive OpenAI's batch events.

``serve`` runs the intake (:mod:`batchfsm.webhooks`) on loopback by default: it verifies
each delivery with ``OPENAI_WEBHOOK_SECRET``, deduplicates it in the store and has the
batch observed through the normal path. ``register`` and ``test`` use the API's webhook
endpoint management through the official client (``client.webhooks.create``, ``list``,
``test``); where an API has none (a compatible server answering 404), they say how to
do the same in the dashboard.

The signing secret is read from the environment (``serve``) or written once to a file
of mode 0600 (``register``: the API shows it only when the endpoint is created); it is
never printed or logged. Exit codes: 0 ok; 1 the API, the store or the test delivery
failed; 2 bad input (no secret, an existing secret file, no such endpoint).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

from batchfsm.cli.output import print_json
from batchfsm.cli.store import add_store_option
from batchfsm.config import ENV_VARS, Settings
from batchfsm.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    import openai

__all__ = ["add_parser", "run_register", "run_test", "serve_command"]

EXIT_FAILURE, EXIT_USAGE = 1, 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PATH = "/webhooks/openai"
BatchEvent = Literal["batch.completed", "batch.failed", "batch.expired", "batch.cancelled"]
BATCH_EVENTS: tuple[BatchEvent, ...] = get_args(BatchEvent)
DASHBOARD_STEPS = (
    "this API offers no webhook endpoint management; in the OpenAI dashboard, open "
    "Settings > Project > Webhooks, create an endpoint for {url} with the events "
    "batch.completed, batch.failed, batch.expired and batch.cancelled, store its signing "
    "secret in OPENAI_WEBHOOK_SECRET, and use its 'Send test event'. "
    "See https://platform.openai.com/docs/guides/webhooks"
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "webhooks",
        help="receive OpenAI's batch webhooks (serve, register, test)",
        description="Receive batch.completed/failed/expired/cancelled events: each one "
        "makes batchfsm observe that batch now, instead of at the next poll.",
    )
    sub = parser.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")

    serve = sub.add_parser("serve", help="run the webhook intake (secret: $OPENAI_WEBHOOK_SECRET)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="bind address (default %(default)s)")
    serve.add_argument("--port", type=int, default=8787, help="port (default %(default)s; 0: any)")
    serve.add_argument("--path", default=DEFAULT_PATH, help="URL path (default %(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="background observers (default 1)")
    serve.add_argument("--results-dir", type=Path, default=None, help="where results go")
    add_store_option(serve)
    serve.set_defaults(func=run_serve)

    register = sub.add_parser("register", help="create a webhook endpoint for the batch events")
    register.add_argument("--url", required=True, help="the public HTTPS URL of the intake")
    register.add_argument(
        "--secret-file",
        type=Path,
        required=True,
        help="write the endpoint's signing secret here (mode 0600; never printed)",
    )
    register.add_argument("--name", default="batchfsm", help="endpoint name (default %(default)s)")
    register.add_argument("--json", action="store_true", help="print the endpoint as JSON")
    register.set_defaults(func=run_register)

    test = sub.add_parser("test", help="have the API send a sample event to an endpoint")
    which = test.add_mutually_exclusive_group(required=True)
    which.add_argument("--endpoint-id", help="the endpoint (we_...)")
    which.add_argument("--url", help="the endpoint registered for this URL")
    test.add_argument("--event", choices=BATCH_EVENTS, default="batch.completed",
                      help="the event type to send (default %(default)s)")  # fmt: skip
    test.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    test.set_defaults(func=run_test)


# -- serve --------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    return serve_command(args)


def serve_command(
    args: argparse.Namespace,
    *,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Serve until Ctrl-C (or ``stop``); what a test drives."""
    from batchfsm.webhooks.server import build_intake, make_intake_server, url_of
    from batchfsm.wiring import build_runtime

    out, err = out or sys.stdout, err or sys.stderr
    settings = Settings.from_env(environ, store_url=args.store, results_dir=args.results_dir)
    if settings.webhook_secret is None:
        print(
            f"batchfsm webhooks: set {ENV_VARS['webhook_secret']} (the endpoint's "
            "whsec_... signing secret)",
            file=err,
        )
        return EXIT_USAGE
    if args.workers < 1:
        print("batchfsm webhooks: --workers must be at least 1", file=err)
        return EXIT_USAGE
    with build_runtime(settings) as runtime:
        intake = build_intake(runtime.tracker, settings.webhook_secret, workers=args.workers)
        try:
            server = make_intake_server(intake, host=args.host, port=args.port, path=args.path)
        except OSError as exc:
            print(f"batchfsm webhooks: cannot listen on {args.host}:{args.port}: {exc}", file=err)
            return EXIT_FAILURE
        url = url_of(server, args.path)
        print(f"batchfsm webhooks listening on {url} (store {runtime.store.url})", file=out)
        print(
            "  OpenAI delivers to public HTTPS URLs only: put a TLS proxy or a tunnel in "
            "front, and register its URL (batchfsm webhooks register)",
            file=out,
            flush=True,
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
        thread.start()
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            print("batchfsm webhooks: stopped", file=out)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            intake.close()
    return 0


# -- register and test ---------------------------------------------------------------------


def _client() -> openai.OpenAI:
    import openai

    try:
        return openai.OpenAI(max_retries=2)
    except openai.OpenAIError as exc:
        raise ConfigError(
            "cannot build the OpenAI client: set OPENAI_API_KEY (and OPENAI_BASE_URL for a "
            "compatible server)"
        ) from exc


def _unsupported(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.NotFoundError)


def _endpoints(client: openai.OpenAI) -> list[Any]:
    return list(client.webhooks.list(limit=100))


def _write_secret(path: Path, secret: str) -> None:
    """Create ``path`` readable by its owner only; never overwrite (an old secret may
    still be in use)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputFileError("exists already; choose a new file", path=str(path)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")


def run_register(args: argparse.Namespace) -> int:
    import openai

    client = _client()
    if args.secret_file.exists():
        raise InputFileError("exists already; choose a new file", path=str(args.secret_file))
    try:
        existing = [e for e in _endpoints(client) if e.url == args.url]
        if existing:
            endpoint, created = existing[0], False
        else:
            endpoint = client.webhooks.create(
                url=args.url, name=args.name, event_types=list(BATCH_EVENTS)
            )
            created = True
            _write_secret(args.secret_file, endpoint.signing_secret)
    except openai.APIError as exc:
        if _unsupported(exc):
            print(f"batchfsm webhooks: {DASHBOARD_STEPS.format(url=args.url)}", file=sys.stderr)
        else:
            print(f"batchfsm webhooks: the API refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    view = _endpoint_json(endpoint, created=created, secret_file=args.secret_file)
    if args.json:
        print_json(view)
    elif created:
        print(f"registered {endpoint.id} for {endpoint.url}: {', '.join(endpoint.event_types)}")
        print(
            f"signing secret written to {args.secret_file} (mode 0600); the intake reads it "
            f"from {ENV_VARS['webhook_secret']}"
        )
    else:
        print(
            f"already registered: {endpoint.id} for {endpoint.url} "
            f"({', '.join(endpoint.event_types)}); its secret was shown only when it was "
            "created (rotate it in the dashboard if it is lost)"
        )
    return 0


def _endpoint_json(endpoint: Any, *, created: bool, secret_file: Path | None) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "name": endpoint.name,
        "event_types": list(endpoint.event_types),
        "created": created,
        "secret_file": str(secret_file) if created and secret_file else None,
    }


def run_test(args: argparse.Namespace) -> int:
    import openai

    client = _client()
    try:
        endpoint_id = args.endpoint_id
        if endpoint_id is None:
            found = [e.id for e in _endpoints(client) if e.url == args.url]
            if not found:
                raise InputFileError(
                    "no webhook endpoint is registered for this URL", path=args.url
                )
            endpoint_id = found[0]
        result = client.webhooks.test(endpoint_id, event_type=args.event)
    except openai.APIError as exc:
        if _unsupported(exc) and args.endpoint_id is None:
            print(f"batchfsm webhooks: {DASHBOARD_STEPS.format(url=args.url)}", file=sys.stderr)
        else:
            print(f"batchfsm webhooks: the API refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    ok = 200 <= result.status_code < 300
    if args.json:
        print_json(
            {
                "endpoint_id": endpoint_id,
                "event_type": args.event,
                "status_code": result.status_code,
                "ok": ok,
            }
        )
    else:
        verdict = "accepted" if ok else "REFUSED"
        print(f"sent a sample {args.event} to {endpoint_id}: HTTP {result.status_code}, {verdict}")
    return 0 if ok else EXIT_FAILURE
