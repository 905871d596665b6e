"""The AWS Lambda entry point: ``batchfsm.aws.lambda_handler`` (``lambda`` is a keyword).

It does what ``batchfsm poll --once`` does (retrieve, apply, commit, run the owed
effects) and answers in the action contract of :mod:`batchfsm.aws.contract`, which the
state machine of :mod:`batchfsm.aws.stepfunctions` routes on. Events:

==========================================  ===========================================
``{"batch_id": "batch_..."}``               poll that batch; the response is one batch
``{"job_id": "job-..."}``                   poll every batch of the job needing
                                            attention; an aggregate response
``{}``                                      one ``poll --once`` cycle over the store;
                                            an aggregate response
``{"action": "retry", "job_ids": [...]}``   send the ledger's ``retry`` items again
                                            (``job_id`` for one job; neither: all jobs)
==========================================  ===========================================

One batch::

    {"batch_id", "job_id", "status", "action", "request_counts": {"total", "completed",
     "failed"}, "succeeded", "retry", "failed", "pending", "next_poll_seconds",
     "poll_at", "deadline", "deadline_near", "retry_job_ids", "lost", "cancel_requested",
     "error"}

Several (``{}``, ``{"job_id"}``)::

    {"job_id", "action", "batches": [<one batch>, ...], "batches_total", "succeeded",
     "retry", "failed", "next_poll_seconds", "poll_at", "deadline_near", "retry_job_ids"}

Retry::

    {"action": "retry", "job_ids", "submitted", "batch_ids", "waiting",
     "next_retry_seconds", "next_scope"}

Configuration, read once per container by :meth:`Settings.from_env
<batchfsm.config.Settings.from_env>` (the variables are listed in
:data:`batchfsm.config.ENV_VARS`): ``BATCHFSM_STORE`` (a store URL) or ``BATCHFSM_TABLE``
(a DynamoDB table name); ``BATCHFSM_RESULTS`` (``s3://bucket/prefix`` or a directory;
default ``BATCHFSM_RESULTS_DIR``); the key from ``OPENAI_API_KEY`` or the secret named by
``BATCHFSM_OPENAI_KEY_SECRET_ARN``; the thresholds the CLI takes too
(``BATCHFSM_MAX_ATTEMPTS``...); ``BATCHFSM_RETRY_BACKOFF_BASE``/``_CAP`` (queue-full
backoff, seconds); ``BATCHFSM_WORKDIR`` (scratch space, default ``/tmp/batchfsm``);
``OPENAI_BASE_URL``.

Nothing is built at import: the first invocation builds the container's
:class:`~batchfsm.aws.app.LambdaApp` (store, clients, rulebook, key), with the garbage
collector paused (:func:`collector_paused`), and later invocations of the same container
reuse it. Clients are botocore's (:mod:`batchfsm.persistence.botocore_clients`); boto3 is
never imported.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from batchfsm.aws.app import LambdaApp

__all__ = ["collector_paused", "lambda_handler", "reset_container"]

# -- the container's singleton ---------------------------------------------------------------

_CONTAINER: dict[str, LambdaApp] = {}
"""The container's one app (a dict, so no ``global`` statement is needed)."""
_CONTAINER_LOCK = threading.Lock()


def lambda_handler(event: Mapping[str, Any] | None, context: object) -> dict[str, Any]:
    """The function's handler (``batchfsm.aws.lambda_handler``)."""
    from batchfsm.observability.logs import lambda_json_logs, log_context

    with _CONTAINER_LOCK:
        app = _CONTAINER.get("app")
        if app is None:
            app = _CONTAINER["app"] = LambdaApp()
            lambda_json_logs()  # one JSON object per log line, with batch_id and job_id
        if not app.built:  # a cold start, or the one after a build that failed
            with collector_paused():
                app.runtime  # noqa: B018 - the imports and clients, once per container
    ids = event if isinstance(event, Mapping) else {}
    with log_context(batch_id=ids.get("batch_id"), job_id=ids.get("job_id")):
        answer = app.handle(event, context)
    app.emit_metrics()  # EMF lines, when POWERTOOLS_METRICS_NAMESPACE is set
    return answer


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a cold start's build with the cyclic garbage collector paused, then freeze
    what it built.

    The build imports the SDKs and makes their clients: about a million objects that
    live as long as the container. With the collector running, it walks all of them in
    two or three full collections during the build (measured: 110 ms of a 670 ms cold
    start); frozen, they are also skipped by every later collection. Only the Lambda
    entry point does this, because there the process is the function's; the little
    cyclic garbage a build leaves is kept, not leaked per invocation.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def reset_container() -> None:
    """Forget the container's app, as a new cold start would (tests, benchmarks)."""
    with _CONTAINER_LOCK:
        app = _CONTAINER.pop("app", None)
    if app is not None:
        app.close()
