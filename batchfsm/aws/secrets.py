"""The OpenAI API key for the Lambda: from the environment or AWS Secrets Manager.

``OPENAI_API_KEY`` wins when set (local runs, tests). Otherwise
``BATCHFSM_OPENAI_KEY_SECRET_ARN`` names a Secrets Manager secret whose ``SecretString``
is either the bare key or a JSON object with an ``OPENAI_API_KEY`` (or ``api_key``)
field. The caller (:class:`batchfsm.aws.lambda_app.LambdaApp`) fetches it once per container.

The key's value never appears in a message, a log record or a chained exception: the
errors below name the secret's ARN (not secret) and the AWS error code only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from batchfsm.config import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

__all__ = ["KEY_ENV", "SECRET_ARN_ENV", "resolve_api_key"]

KEY_ENV = "OPENAI_API_KEY"
SECRET_ARN_ENV = "BATCHFSM_OPENAI_KEY_SECRET_ARN"  # noqa: S105 - a variable name
_JSON_FIELDS = ("OPENAI_API_KEY", "api_key")


def resolve_api_key(
    environ: Mapping[str, str], *, client: SecretsManagerClient | Any | None = None
) -> str:
    """The API key; ``client`` is a Secrets Manager client (built lazily if None).

    :raises ConfigError: neither variable is set, the secret cannot be read, or it holds
        no usable key.
    """
    key = environ.get(KEY_ENV, "").strip()
    if key:
        return key
    arn = environ.get(SECRET_ARN_ENV, "").strip()
    if not arn:
        raise ConfigError(f"set {KEY_ENV} or {SECRET_ARN_ENV} (a Secrets Manager secret ARN)")
    if client is None:
        from batchfsm.persistence.botocore_clients import make_client

        client = make_client("secretsmanager")
    return _from_secret(client, arn)


def _from_secret(client: Any, arn: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise ConfigError(f"cannot read secret {arn}: {code}") from exc
    except BotoCoreError as exc:
        raise ConfigError(f"cannot read secret {arn}: {type(exc).__name__}") from None
    text = answer.get("SecretString")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"secret {arn} has no SecretString (binary secrets are not supported)")
    text = text.strip()
    if not text.startswith("{"):
        return text
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"secret {arn} looks like JSON but does not parse") from None
    for name in _JSON_FIELDS:
        value = fields.get(name) if isinstance(fields, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise ConfigError(f"secret {arn} is a JSON object without {' or '.join(_JSON_FIELDS)}")
