"""batchfsm: run OpenAI Batch API jobs without losing work.

The public API, all typed::

    import batchfsm

    batchfsm.configure_logging()                       # optional: INFO lines on stderr
    job = batchfsm.submit("requests.jsonl", "/v1/embeddings")
    summary = batchfsm.poll(until_done=True, auto_retry=True)
    for result in batchfsm.results(job.job.job_id):    # merged, in custom_id order
        ...

Each call builds what it needs from :class:`Settings` (the environment and config
files, read once per call) unless ``settings`` is given; :func:`build_runtime` gives the
object graph itself (store, gateway, sink, tracker) for anything else. The other names
are the building blocks (records, the rulebook, replay, stores).

Nothing happens at import: the names are loaded on first use, so ``import batchfsm``
pulls in neither ``openai`` nor ``boto3``. batchfsm logs through :mod:`logging` under
the ``batchfsm`` logger and prints nothing unless the host configures logging (a
``NullHandler`` keeps Python's last-resort handler quiet);
:func:`configure_logging` is the one-call console setup.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Literal

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS: dict[str, str] = {
    "BatchFSMError": "batchfsm.errors",
    "BatchRecord": "batchfsm.fsm.models",
    "BatchSnapshot": "batchfsm.fsm.models",
    "BatchStatus": "batchfsm.fsm.spec",
    "FrozenClock": "batchfsm.ports",
    "JobStore": "batchfsm.persistence.base",
    "OpenAIGateway": "batchfsm.gateway",
    "PollReport": "batchfsm.tracker",
    "PollSummary": "batchfsm.poller",
    "ReplayResult": "batchfsm.fsm.replay",
    "Rulebook": "batchfsm.fsm.engine",
    "Runtime": "batchfsm.wiring",
    "Settings": "batchfsm.config",
    "SubmitResult": "batchfsm.jobs.submit",
    "Tracker": "batchfsm.tracker",
    "build_runtime": "batchfsm.wiring",
    "open_store": "batchfsm.persistence.url",
    "replay": "batchfsm.fsm.replay",
    "rulebook": "batchfsm.fsm.engine",
}

__all__ = [
    "BatchFSMError",
    "BatchRecord",
    "BatchSnapshot",
    "BatchStatus",
    "FrozenClock",
    "JobStore",
    "OpenAIGateway",
    "PollReport",
    "PollSummary",
    "ReplayResult",
    "Rulebook",
    "Runtime",
    "Settings",
    "SubmitResult",
    "Tracker",
    "build_runtime",
    "configure_logging",
    "open_store",
    "poll",
    "replay",
    "results",
    "rulebook",
    "submit",
]

if TYPE_CHECKING:
    from pathlib import Path

    from batchfsm.config import Settings
    from batchfsm.errors import BatchFSMError
    from batchfsm.fsm.engine import Rulebook, rulebook
    from batchfsm.fsm.models import BatchRecord, BatchSnapshot
    from batchfsm.fsm.replay import ReplayResult, replay
    from batchfsm.fsm.spec import BatchStatus
    from batchfsm.gateway import OpenAIGateway
    from batchfsm.jobs.submit import SubmitResult
    from batchfsm.persistence.url import open_store
    from batchfsm.poller import CycleReport, PollSummary
    from batchfsm.ports import FrozenClock, JobStore
    from batchfsm.tracker import PollReport, Tracker
    from batchfsm.wiring import Runtime, build_runtime


def submit(
    path: str | Path,
    endpoint: str,
    *,
    metadata: Mapping[str, str] | None = None,
    max_attempts: int | None = None,
    job_id: str | None = None,
    max_requests: int | None = None,
    settings: Settings | None = None,
) -> SubmitResult:
    """Validate a JSONL request file and send it as one job (``batchfsm submit``).

    Intents a crashed run left open are closed first; submitting the same file again
    resumes its job instead of paying twice. Returns the job, its batches, the ones sent
    by this call and any intent still held elsewhere.

    :raises InputFileError: a bad line (nothing is sent then).
    :raises ConfigError: no API key, a bad setting.
    """
    from pathlib import Path

    from batchfsm.jobs.intents import Intents
    from batchfsm.jobs.provider_limits import limits_for
    from batchfsm.jobs.reconcile import reconcile_intents
    from batchfsm.jobs.submit import check_job_id, submit_job
    from batchfsm.wiring import build_runtime

    check_job_id(job_id)
    with build_runtime(settings) as runtime:
        reconcile_intents(Intents.of(runtime.tracker))
        return submit_job(
            runtime.tracker,
            Path(path),
            endpoint,
            metadata=metadata,
            max_attempts=max_attempts,
            job_id=job_id,
            limits=limits_for(runtime.settings, max_requests),
        )


def poll(
    *,
    until_done: bool = True,
    auto_retry: bool = True,
    interval: float | None = None,
    timeout: float | None = None,
    max_cycles: int | None = None,
    on_cycle: Callable[[CycleReport], None] | None = None,
    settings: Settings | None = None,
) -> PollSummary:
    """Poll every tracked batch and run what it owes (``batchfsm poll``): by default
    until nothing is left to do, sending ``retry`` requests as new batches on the way.

    ``interval`` defaults to ``Settings.poll_interval``; ``timeout`` (seconds) stops
    early with ``timed_out`` set; ``on_cycle`` sees each cycle's report.
    """
    from batchfsm.jobs.provider_limits import limits_for
    from batchfsm.poller import Poller
    from batchfsm.wiring import build_runtime

    with build_runtime(settings) as runtime:
        poller = Poller(runtime.tracker, limits=limits_for(runtime.settings), on_cycle=on_cycle)
        return poller.run(
            until_done=until_done,
            max_cycles=max_cycles,
            interval=interval,
            timeout=timeout,
            auto_retry=auto_retry,
        )


def results(
    job_id: str,
    *,
    order: Literal["custom_id", "input"] = "custom_id",
    settings: Settings | None = None,
) -> Iterator[dict[str, Any]]:
    """Every result delivered for ``job_id``, over all its batches and retry rounds,
    each request once: ``{"custom_id", "batch_id", "response"}`` dicts in ``custom_id``
    order or the input file's (``batchfsm results``). Reads the results directory
    (``Settings.results_dir``) lazily, one line at a time.

    :raises JobNotFoundError: the store has no such job.
    """
    from batchfsm.config import Settings
    from batchfsm.jobs.export import iter_results
    from batchfsm.persistence.url import open_store

    settings = settings or Settings.from_env()
    store = open_store(settings.store_url, create=False)
    try:
        for result in iter_results(store, settings.results_dir, job_id, order=order):
            yield result.json()
    finally:
        store.close()


def configure_logging(
    level: int | str = "INFO", *, json: bool = False, stream: IO[str] | None = None
) -> None:
    """A sensible console setup in one call: batchfsm's records at ``level`` (and the
    HTTP clients' at WARNING) on stderr, as ``LEVEL logger: message`` lines, or with
    ``json=True`` one JSON object per line carrying ``batch_id``/``job_id``. Only the
    ``batchfsm`` logger is touched; calling it again replaces its handler."""
    from batchfsm.observability.logs import console_logging

    console_logging(level, json=json, stream=stream)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batchfsm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
