"""Composition: store + gateway + sink + handlers -> one :class:`Tracker`.

The CLI, the demo and the Lambda entry point build the same object graph from
:class:`~batchfsm.config.Settings`; this module is where that happens, once. Heavy
pieces load lazily: the gateway (and with it ``openai``) only when a command talks to
the API, the DynamoDB store (boto3) only for a ``dynamodb://`` URL.

For the CLI the OpenAI key is read by the ``openai`` client itself (``OPENAI_API_KEY``,
and ``OPENAI_BASE_URL`` for a compatible server or the sandbox; Azure's client reads
``AZURE_OPENAI_*``), by its own conventions, for the provider profile the settings
choose (:mod:`batchfsm.providers`); the Lambda passes the one its settings hold (see
:mod:`batchfsm.aws.secrets`). batchfsm never logs or prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from batchfsm.config import Settings
from batchfsm.persistence import open_store
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.tracker import Tracker

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from batchfsm.handlers.base import HandlerRegistry
    from batchfsm.ports import BatchGateway, Clock, JobStore, ResultSink
    from batchfsm.tracker import PollReport

__all__ = ["Runtime", "build_runtime", "openai_gateway", "runtime_from_args", "settings_from_args"]


@dataclass
class Runtime:
    """Everything a command needs, built once; closing it closes the store."""

    settings: Settings
    store: JobStore
    gateway: BatchGateway | None
    sink: ResultSink
    tracker: Tracker

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def openai_gateway(settings: Settings | None = None) -> BatchGateway:
    """:class:`~batchfsm.gateway.OpenAIGateway` for the provider ``settings`` choose
    (:func:`~batchfsm.providers.profile_for`): its client, configured by the client's
    environment, and its profile (status words, object shape, upload and list wire);
    ``settings`` also give the result files' lifetime sent with every create.

    :raises ConfigError: no API key or endpoint is configured (the message names the
        variables, never a value).
    """
    from batchfsm.gateway import OpenAIGateway
    from batchfsm.providers import make_client, profile_for

    settings = settings or Settings.from_env()
    profile = profile_for(settings)
    if profile.client == "anthropic":  # another wire: its own client and gateway
        from batchfsm.providers.anthropic import AnthropicGateway, make_anthropic_client

        return AnthropicGateway(make_anthropic_client())
    key = settings.openai_api_key  # the environment's, or one from .env the client cannot see
    api_key = key.get_secret_value() if key is not None and profile.client != "azure" else None
    client = make_client(profile, settings.openai_base_url, api_key=api_key)
    return OpenAIGateway(
        client, profile=profile, output_expires_after=settings.output_expires_after
    )


def build_runtime(
    settings: Settings | None = None,
    *,
    store: JobStore | None = None,
    gateway: BatchGateway | None = None,
    with_gateway: bool = True,
    sink: ResultSink | None = None,
    handlers: HandlerRegistry | None = None,
    clock: Clock | None = None,
    workdir: Path | None = None,
    on_event: Callable[[PollReport], None] | None = None,
) -> Runtime:
    """Build a :class:`Runtime`; every part not given comes from ``settings``.

    ``with_gateway=False`` skips the API client (read-only commands such as ``items``).
    ``handlers`` defaults to :func:`batchfsm.handlers.default_registry`. With an admin
    key and a project set, the runtime's ``settings.queue_limits`` also hold the
    project's batch queue limits (:mod:`batchfsm.providers.queue_limits`).
    """
    settings = settings or Settings.from_env()
    if settings.admin_key is not None:  # imported only then: every cold start pays it
        from batchfsm.providers.queue_limits import with_api_queue_limits

        # The project's queue limits too, read when needed.
        settings = with_api_queue_limits(settings)
    if handlers is None:
        from batchfsm.handlers import default_registry

        handlers = default_registry()
    if gateway is None and with_gateway:
        gateway = openai_gateway(settings)
    store = store or open_store(settings.store_url)
    sink = sink or DirectorySink(Path(settings.results_dir))
    tracker = Tracker(
        store,
        gateway,
        handlers,
        settings=settings,
        clock=clock,
        sink=sink,
        workdir=workdir,
        on_event=on_event,
    )
    return Runtime(settings=settings, store=store, gateway=gateway, sink=sink, tracker=tracker)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by ``--store`` / ``--results-dir`` /
    ``--max-attempts`` / ``--provider`` where the command has them."""
    return Settings.from_env(
        store_url=getattr(args, "store", None),
        results_dir=getattr(args, "results_dir", None),
        max_attempts=getattr(args, "max_attempts", None),
        provider=getattr(args, "provider", None),
        queue_limits=getattr(args, "queue_limit", None),
        max_rounds=getattr(args, "max_rounds", None),
        poll_concurrency=getattr(args, "concurrency", None),
    )


def runtime_from_args(args: argparse.Namespace, *, with_gateway: bool = True) -> Runtime:
    """The runtime a CLI command asked for."""
    return build_runtime(settings_from_args(args), with_gateway=with_gateway)
