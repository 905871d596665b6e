"""``batchfsm sandbox --dialect anthropic``: the sandbox speaking Anthropic's Message
Batches API (:mod:`batchfsm.sandbox.anthropic`), served on loopback until interrupted.

Apart from :mod:`batchfsm.cli.sandbox` only because it serves another app: the same
scenario file, seed and time scale, no webhooks (Anthropic sends none for batches).
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from batchfsm.sandbox.scenario import Scenario

__all__ = ["EXPORTS", "serve_anthropic"]

EXPORTS = (
    "export ANTHROPIC_BASE_URL={root}",
    "export ANTHROPIC_API_KEY=sandbox   # any non-empty key",
    "export BATCHFSM_PROVIDER=anthropic",
)
"""What points batchfsm (and the official ``anthropic`` client) at the sandbox."""


def serve_anthropic(
    args: argparse.Namespace,
    scenario: Scenario,
    *,
    stop: threading.Event | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Serve until ``stop`` (or Ctrl-C); 0, 1 when the port is taken, 2 for webhooks."""
    from batchfsm.sandbox.anthropic import AnthropicSandboxApp
    from batchfsm.sandbox.anthropic_world import AnthropicWorld
    from batchfsm.sandbox.server import base_url_of, make_sandbox_server

    if getattr(args, "webhook_url", None):
        print("batchfsm sandbox: Anthropic sends no batch webhooks (--webhook-url)", file=err)
        return 2
    app = AnthropicSandboxApp(AnthropicWorld(scenario, time_scale=args.time_scale))
    try:
        server = make_sandbox_server(app, host=args.host, port=args.port)
    except OSError as exc:
        print(f"batchfsm sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=err)
        return 1
    root = base_url_of(server).removesuffix("/v1")
    print(
        f"batchfsm sandbox (anthropic dialect) listening on {root} "
        f"(time scale x{args.time_scale:g})",
        file=out,
    )
    for line in EXPORTS:
        print(f"  {line.format(root=root)}", file=out)
    print(f"  call counts: {root}/sandbox/stats", file=out, flush=True)
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
