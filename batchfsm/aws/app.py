""":class:`LambdaApp`: what one Lambda container builds once, and the actions it answers.

Everything it needs is in one :class:`~batchfsm.config.Settings`, parsed on first use
(from the function's environment, or from a mapping a test or benchmark passes), so the
Lambda and the CLI read the same variables the same way. The heavy parts (the SDKs, the
store, the clients, the key) are built by the first invocation, not at import or in the
constructor: importing the handler stays cheap, and a build that fails (a secret not yet
readable) is tried again by the container's next invocation.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchfsm.aws.contract import aggregate
from batchfsm.aws.events import batch_answer, job_answer, parse_event, retry_answer
from batchfsm.config import ENV_VARS, ConfigError, Settings
from batchfsm.persistence.botocore_clients import make_client

if TYPE_CHECKING:
    from botocore.session import Session as BotocoreSession

    from batchfsm.jobs.retry import Backoff, Waiting
    from batchfsm.ports import BatchGateway, Clock, JobStore, ResultSink
    from batchfsm.wiring import Runtime

__all__ = ["GATEWAY_ATTEMPTS", "GATEWAY_BACKOFF_CAP", "LambdaApp"]

GATEWAY_ATTEMPTS = 3
"""Tries per API call inside one invocation: Step Functions retries the rest."""
GATEWAY_BACKOFF_CAP = 5.0


class LambdaApp:
    """What one Lambda container builds once: settings, store, gateway, sink, tracker.

    ``settings`` wins; else they are read from ``environ`` (default ``os.environ``) on
    first use. ``clock`` defaults to the system clock (tests pass the sandbox's
    :class:`~batchfsm.ports.FrozenClock`); ``gateway``/``sink`` replace the ones the
    settings describe.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        gateway: BatchGateway | None = None,
        sink: ResultSink | None = None,
    ) -> None:
        self._environ = environ
        self._given = settings
        self._settings: Settings | None = None
        self._clock = clock
        self._gateway = gateway
        self._sink = sink
        self._runtime: Runtime | None = None
        self._session: BotocoreSession | None = None
        self._lock = threading.Lock()

    # -- composition ---------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        """Parsed once, on first use rather than in the constructor: the container keeps
        its app, so a bad variable fails each invocation with a message naming it
        instead of failing the container's start. Parsing twice in a race is harmless."""
        if self._settings is None:
            self._settings = _one_store(self._given or Settings.from_env(self._environ))
        return self._settings

    @property
    def built(self) -> bool:
        """Whether :attr:`runtime` has been built (it is on first use)."""
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                self._runtime = self._build()
            return self._runtime

    def _build(self) -> Runtime:
        from batchfsm.wiring import build_runtime

        _quiet_sdk_loggers()
        settings = self.settings
        workdir = settings.workdir or Path(tempfile.gettempdir(), "batchfsm")
        workdir.mkdir(parents=True, exist_ok=True)
        return build_runtime(
            settings,
            store=self._table_store(settings),
            gateway=self._gateway or self._openai_gateway(settings),
            sink=self._sink or self._results_sink(settings),
            clock=self._clock,
            workdir=workdir,
        )

    def _aws(self) -> BotocoreSession:
        """One botocore session for every client: it then loads its endpoint and
        partition data once per container instead of once per client (cold start)."""
        if self._session is None:
            from batchfsm.persistence.botocore_clients import new_session

            self._session = new_session()
        return self._session

    def _table_store(self, settings: Settings) -> JobStore | None:
        """``BATCHFSM_TABLE``: the DynamoDB store on the shared session (None: the store
        URL decides, through :func:`~batchfsm.persistence.open_store`)."""
        if not settings.table:
            return None
        from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

        return DynamoDBJobStore.from_url(settings.store_url, session=self._aws())

    def _results_sink(self, settings: Settings) -> ResultSink:
        location = settings.results_location or ""
        if location.startswith("s3://"):
            from batchfsm.persistence.s3_sink import S3Sink

            # Built on first write only: S3's is the largest model botocore loads.
            return S3Sink.from_url(location, client_factory=lambda: make_client("s3", self._aws()))
        from batchfsm.persistence.sinks import DirectorySink

        return DirectorySink(Path(location) if location else Path(settings.results_dir))

    def _openai_gateway(self, settings: Settings) -> BatchGateway:
        from batchfsm.aws.secrets import resolve_api_key
        from batchfsm.gateway import OpenAIGateway
        from batchfsm.providers import make_client as make_openai_client
        from batchfsm.providers import profile_for

        needs_aws = settings.openai_api_key is None and settings.openai_key_secret_arn
        secrets = make_client("secretsmanager", self._aws()) if needs_aws else None
        key = resolve_api_key(settings, client=secrets)
        profile = profile_for(settings)
        if profile.client == "anthropic":  # the secret holds the Anthropic key then
            from batchfsm.providers.anthropic import AnthropicGateway, make_anthropic_client

            made = make_anthropic_client(api_key=key)
            return AnthropicGateway(
                made, max_attempts=GATEWAY_ATTEMPTS, backoff_cap=GATEWAY_BACKOFF_CAP
            )
        client = make_openai_client(profile, settings.openai_base_url, api_key=key)
        return OpenAIGateway(
            client,
            profile=profile,
            max_attempts=GATEWAY_ATTEMPTS,
            backoff_cap=GATEWAY_BACKOFF_CAP,
            output_expires_after=settings.output_expires_after,
        )

    def emit_metrics(self) -> None:
        """Print the store's figures as CloudWatch EMF (items by state, oldest batch age,
        deadline margin, enqueued and used tokens) when ``POWERTOOLS_METRICS_NAMESPACE``
        is set; powertools is imported only then."""
        namespace = self.settings.metrics_namespace
        if namespace and self._runtime is not None:
            from batchfsm.observability.metrics import collect, emit_emf

            emit_emf(collect(self._runtime.store), namespace)

    def close(self) -> None:
        """Close the store (a no-op if nothing was built)."""
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None

    def backoff(self) -> Backoff:
        from batchfsm.jobs.retry import Backoff

        return Backoff(base=self.settings.backoff_base, cap=self.settings.backoff_cap)

    # -- events --------------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any] | None, context: object = None) -> dict[str, Any]:
        """Answer one event (see :mod:`batchfsm.aws.lambda_app` for the shapes)."""
        request = parse_event(event)
        if request.action == "retry":
            return self.retry(request.job_ids)
        if request.batch_id is not None:
            return self.poll_batch(request.batch_id, via=request.via)
        return self.poll_many(request.job_id, via=request.via)

    def poll_batch(self, batch_id: str, *, via: str | None = None) -> dict[str, Any]:
        """One batch, as ``poll --once`` treats it: drain if terminal or lost, else observe
        (``via``: the path that asked, recorded with a transition; see Tracker.observe)."""
        tracker = self.runtime.tracker
        record = tracker.store.load(batch_id)  # JobNotFoundError: a wrong id fails loudly
        if record.terminal or record.lost:
            report = tracker.drain(batch_id)
        else:
            report = tracker.observe(batch_id, known=record, via=via)
        return batch_answer(tracker, report)

    def poll_many(self, job_id: str | None, *, via: str | None = None) -> dict[str, Any]:
        """Every batch needing attention (of one job): one ``poll --once`` cycle."""
        tracker = self.runtime.tracker
        if job_id is None:
            from batchfsm.poller import Poller

            reports = Poller(tracker).cycle(auto_retry=False).reports
        else:
            tracker.store.load_job(job_id)  # JobNotFoundError for a wrong id
            reports = [
                tracker.drain(r.batch_id)
                if r.terminal or r.lost
                else tracker.observe(r.batch_id, known=r, via=via)
                for r in tracker.store.list_attention()
                if r.job_id == job_id
            ]
        results = [batch_answer(tracker, report) for report in reports]
        if job_id is None:
            return aggregate(results, tracker.clock.now())
        return job_answer(tracker, job_id, results)

    def retry(self, job_ids: list[str] | None) -> dict[str, Any]:
        """Send the ``retry`` items of these jobs (None: every job) as new batches."""
        from batchfsm.jobs.provider_limits import limits_for
        from batchfsm.jobs.retry import retry_items

        tracker = self.runtime.tracker
        limits = limits_for(self.runtime.settings)
        backoff = self.backoff()
        batch_ids: list[str] = []
        waiting: list[Waiting] = []
        for job_id in job_ids if job_ids is not None else [None]:
            result = retry_items(tracker, job_id=job_id, backoff=backoff, limits=limits)
            batch_ids.extend(b.batch_id for b in result.batches)
            waiting.extend(result.waiting)
        return retry_answer(job_ids, batch_ids, waiting, tracker.clock.now())


def _one_store(settings: Settings) -> Settings:
    """The settings with ``BATCHFSM_TABLE`` spelled as the store URL it stands for.

    Checked here, not in :class:`Settings`: the CLI has always ignored the table (it
    takes ``--store``/``BATCHFSM_STORE``), and a leftover variable must not break it.
    """
    if not settings.table:
        return settings
    if "store_url" in settings.model_fields_set:
        raise ConfigError(f"set {ENV_VARS['store_url']} or {ENV_VARS['table']}, not both")
    return settings.model_copy(update={"store_url": f"dynamodb://{settings.table}"})


def _quiet_sdk_loggers() -> None:
    """Keep SDK loggers at WARNING whatever the function's log level: at DEBUG, botocore
    logs whole response bodies, the Secrets Manager answer (the API key) included."""
    for name in _SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_SDK_LOGGERS = (
    "boto3",
    "botocore",
    "urllib3",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "transitions",
)
