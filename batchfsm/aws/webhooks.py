"""The webhook Lambda: ``batchfsm.aws.webhooks.webhook_handler``, behind a function URL
(or API Gateway), and the other half of the state machine's callback wait.

Two kinds of invocation:

* **An HTTP delivery** (function URL / API Gateway HTTP API payload 2.0, or a REST API
  proxy event): the signature is verified with the official client (the secret from
  Secrets Manager, ``BATCHFSM_WEBHOOK_SECRET_ARN``, or ``OPENAI_WEBHOOK_SECRET`` for
  local runs); a bad or stale one is answered 400 and changes nothing. The
  ``webhook-id`` is recorded in the DynamoDB table with one conditional put, so a
  redelivery is answered 200 and does nothing more. A first ``batch.*`` event for a
  tracked batch then resumes the Step Functions execution waiting on that batch (or its
  job): the task token stored for it is taken (atomically) and ``SendTaskSuccess`` is
  called with ``{"via": "webhook", ...}``. The execution then polls the batch through
  the normal path; the event itself never moves a state. Nothing waiting (a sweep, an
  execution between its poll and its wait, a batch the store does not know): the
  event is recorded and acknowledged, and the execution's timed-out wait polls anyway.
* **``{"action": "await_webhook", "scope": {"batch_id"|"job_id"}, "task_token"}``**,
  from the state machine's ``.waitForTaskToken`` task: the token is stored for the scope
  and the invocation returns; the execution waits for the webhook or its timeout.

The function needs no OpenAI key and no S3: only the table (Get, Put, Update), its
webhook secret, and ``states:SendTaskSuccess`` on its state machine.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from batchfsm.config import ENV_VARS, ConfigError, Settings
from batchfsm.errors import JobNotFoundError, StoreError
from batchfsm.ports import WebhookReceipt
from batchfsm.webhooks.verify import (
    MAX_BODY_BYTES,
    InvalidWebhookError,
    Verified,
    WebhookVerifier,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from batchfsm.ports import Clock, JobStore

__all__ = ["WebhookFunction", "scope_of", "webhook_handler"]

logger = logging.getLogger(__name__)

_SECRET_FIELDS = ("OPENAI_WEBHOOK_SECRET", "webhook_secret")
SECRET_REREAD_SECONDS = 60.0
"""A refused signature re-reads a secret older than this, once (rotation, first set-up)."""
_GONE = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
"""SendTaskSuccess errors meaning the execution stopped waiting: its timeout won."""


def scope_of(scope: Mapping[str, Any]) -> str:
    """The wait-token key of an execution's scope: ``batch:<id>`` or ``job:<id>``."""
    for kind in ("batch_id", "job_id"):
        value = scope.get(kind)
        if isinstance(value, str) and value:
            return f"{kind.removesuffix('_id')}:{value}"
    raise ValueError(f"an await_webhook scope names no batch_id or job_id: {dict(scope)!r}")


class WebhookFunction:
    """What one container of the webhook function builds once (lazily, like
    :class:`~batchfsm.aws.app.LambdaApp`): settings, store, verifier, Step Functions."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        settings: Settings | None = None,
        store: JobStore | None = None,
        stepfunctions: Any = None,
        clock: Clock | None = None,
    ) -> None:
        self._environ = environ
        self._settings = settings
        self._store = store
        self._sfn = stepfunctions
        self._clock = clock
        self._verifier: WebhookVerifier | None = None
        self._read_at = 0.0
        self._session: Any = None
        self._lock = threading.Lock()

    # -- composition ---------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(self._environ)
        return self._settings

    def _aws(self) -> Any:
        if self._session is None:
            from batchfsm.persistence.botocore_clients import new_session

            self._session = new_session()
        return self._session

    @property
    def store(self) -> JobStore:
        with self._lock:
            if self._store is None:
                settings = self.settings
                if settings.table:
                    from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

                    url = f"dynamodb://{settings.table}"
                    self._store = DynamoDBJobStore.from_url(url, session=self._aws())
                else:
                    from batchfsm.persistence import open_store

                    self._store = open_store(settings.store_url)
            return self._store

    @property
    def verifier(self) -> WebhookVerifier:
        with self._lock:
            if self._verifier is None:
                self._verifier = WebhookVerifier(self._secret())
                self._read_at = time.monotonic()
            return self._verifier

    def _secret(self) -> SecretStr:
        from pydantic import SecretStr

        settings = self.settings
        if settings.webhook_secret is not None:
            return settings.webhook_secret
        arn = settings.webhook_secret_arn
        if not arn:
            raise ConfigError(
                f"set {ENV_VARS['webhook_secret_arn']} (a Secrets Manager secret) or "
                f"{ENV_VARS['webhook_secret']}"
            )
        from batchfsm.persistence.botocore_clients import make_client

        return SecretStr(_read_secret(make_client("secretsmanager", self._aws()), arn))

    @property
    def stepfunctions(self) -> Any:
        with self._lock:
            if self._sfn is None:
                from batchfsm.persistence.botocore_clients import make_client

                self._sfn = make_client("stepfunctions", self._aws())
            return self._sfn

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- invocations ---------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
        """Answer one invocation (see the module docstring)."""
        if event.get("action") == "await_webhook":
            return self.await_webhook(event)
        return self.deliver(event)

    def await_webhook(self, event: Mapping[str, Any]) -> dict[str, Any]:
        token = event.get("task_token")
        if not isinstance(token, str) or not token:
            raise ValueError("an await_webhook event needs a task_token")
        scope = scope_of(event.get("scope") or {})
        self.store.save_wait_token(scope, token)
        return {"waiting": scope}

    def deliver(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """One HTTP delivery; the function URL's response."""
        method = _method(event)
        if method != "POST":
            return _http(405, {"error": "method not allowed"})
        try:
            body = _body(event)
        except ValueError:
            return _http(400, {"error": "undecodable body"})
        if len(body) > MAX_BODY_BYTES:
            return _http(413, {"error": "body too large"})
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        try:
            verified = self._verify(body, headers)
        except InvalidWebhookError as exc:
            logger.warning("webhook refused (400): %s", exc)
            return _http(400, {"error": "invalid webhook", "detail": str(exc)})
        try:
            return _http(200, self._accept(verified))
        except StoreError as exc:
            logger.error("webhook %s: store unavailable (503): %s", verified.webhook_id, exc)
            return _http(503, {"error": "store unavailable"})

    def _verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        """Verify; a signature that does not match the secret this container read more
        than a minute ago is tried once more with the secret read again, so a rotated
        (or first stored) secret is picked up without a redeploy."""
        try:
            return self.verifier.verify(body, headers)
        except InvalidWebhookError as exc:
            stale = time.monotonic() - self._read_at > SECRET_REREAD_SECONDS
            if not (str(exc).startswith("signature refused") and stale):
                raise
        with self._lock:
            self._verifier = None
        return self.verifier.verify(body, headers)

    def _accept(self, verified: Verified) -> dict[str, Any]:
        from datetime import UTC, datetime

        store = self.store
        job_id: str | None = None
        known = False
        if verified.batch_id is not None:
            try:
                job_id = store.load(verified.batch_id).job_id
                known = True
            except JobNotFoundError:
                pass
        now = self._clock.now() if self._clock is not None else datetime.now(UTC)
        receipt = WebhookReceipt(
            verified.webhook_id, verified.event_type, verified.batch_id, now, known
        )
        if not store.record_event(receipt):
            return {"received": True, "duplicate": True}
        if not known or verified.batch_id is None:
            return {"received": True, "tracked": False}
        scopes = [f"batch:{verified.batch_id}"] + ([f"job:{job_id}"] if job_id else [])
        resumed = [scope for scope in scopes if self._resume(scope, verified)]
        return {"received": True, "tracked": True, "resumed": resumed}

    def _resume(self, scope: str, verified: Verified) -> bool:
        token = self.store.pop_wait_token(scope)
        if token is None:
            return False
        output = {
            "via": "webhook",
            "event_type": verified.event_type,
            "batch_id": verified.batch_id,
            "webhook_id": verified.webhook_id,
        }
        from botocore.exceptions import ClientError

        try:
            self.stepfunctions.send_task_success(taskToken=token, output=json.dumps(output))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _GONE:
                logger.info(
                    "webhook %s: the wait on %s already ended (%s)",
                    verified.webhook_id,
                    scope,
                    code,
                )
                return False
            logger.error(
                "webhook %s: could not resume %s: %s; its timeout will poll",
                verified.webhook_id,
                scope,
                code,
            )
            return False
        return True


def _method(event: Mapping[str, Any]) -> str:
    http = (event.get("requestContext") or {}).get("http") or {}
    return str(http.get("method") or event.get("httpMethod") or "").upper()


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(raw, validate=True)
    return raw.encode() if isinstance(raw, str) else bytes(raw)


def _http(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def _read_secret(client: Any, arn: str) -> str:
    """The signing secret from Secrets Manager: the bare ``whsec_...`` value, or JSON with
    an ``OPENAI_WEBHOOK_SECRET`` (or ``webhook_secret``) field."""
    from batchfsm.aws.secrets import read_secret

    return read_secret(client, arn, _SECRET_FIELDS)


# -- the container's singleton ---------------------------------------------------------------

_CONTAINER: dict[str, WebhookFunction] = {}
_CONTAINER_LOCK = threading.Lock()


def webhook_handler(event: Mapping[str, Any] | None, context: object) -> dict[str, Any]:
    """The function's handler (``batchfsm.aws.webhooks.webhook_handler``)."""
    with _CONTAINER_LOCK:
        function = _CONTAINER.get("function")
        if function is None:
            function = _CONTAINER["function"] = WebhookFunction()
    return function.handle(event or {}, context)


def reset_container() -> None:
    """Forget the container's function, as a cold start would (tests)."""
    with _CONTAINER_LOCK:
        function = _CONTAINER.pop("function", None)
    if function is not None:
        function.close()
