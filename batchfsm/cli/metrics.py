"""``batchfsm metrics [--json]``: what operators watch, read from the store once.

Prints :mod:`batchfsm.observability.metrics`' figures in the Prometheus text exposition
format (``prometheus_client``, extra ``metrics``): point node_exporter's textfile
collector at ``batchfsm metrics > /var/lib/node_exporter/batchfsm.prom`` from cron, or
run ``batchfsm poll --metrics-port 9464`` to serve them, refreshed after every cycle.
``--json`` prints the same figures as JSON and needs no extra.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from batchfsm.cli.output import print_json
from batchfsm.cli.store import add_store_option, open_existing

if TYPE_CHECKING:
    from batchfsm.observability.metrics import Figures
    from batchfsm.ports import JobStore

__all__ = ["MetricsServer", "add_metrics_port", "add_parser", "figures_json", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="items by state, batch age, deadline margin, queue and used tokens, "
        "in the Prometheus text format",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON (needs no extra)"
    )
    add_store_option(parser)
    parser.set_defaults(func=run)


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    """``poll --metrics-port``."""
    parser.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (pip install "
        "'batchfsm[metrics]'), refreshed after every cycle; see `batchfsm metrics`",
    )  # fmt: skip


def figures_json(figures: Figures) -> dict[str, Any]:
    return {
        "items": figures.items,
        "batches": figures.batches,
        "oldest_open_batch_age_seconds": figures.oldest_open_age_s,
        "deadline_margin_seconds": figures.deadline_margin_s,
        "enqueued_input_tokens": figures.enqueued_tokens,
        "tokens": [
            {"model": model, "kind": kind, "tokens": n}
            for (model, kind), n in sorted(figures.tokens.items())
        ],
    }


def run(args: argparse.Namespace) -> int:
    from batchfsm.observability.metrics import collect, prometheus_text

    store = open_existing(args.store)
    try:
        figures = collect(store)
    finally:
        store.close()
    if args.json:
        print_json(figures_json(figures))
        return 0
    sys.stdout.write(prometheus_text(figures).decode())
    return 0


class MetricsServer:
    """``poll --metrics-port``: Prometheus' ``/metrics`` on 127.0.0.1, refreshed by
    :meth:`refresh` (after every poll cycle) from the store."""

    def __init__(self, store: JobStore, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server
        from prometheus_client.registry import Collector

        from batchfsm.observability.metrics import Figures, collect, registry

        self._store = store
        self._collect = collect
        self._registry = registry
        self._figures = Figures()
        owner = self

        class Current(Collector):
            def collect(self):  # type: ignore[no-untyped-def]  # prometheus' protocol
                yield from owner._registry(owner._figures).collect()

        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.registry.register(Current())
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self.server.server_port

    def refresh(self) -> None:
        self._figures = self._collect(self._store)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
