"""The OpenAI API key for the Lambda: from its settings or AWS Secrets Manager.

``OPENAI_API_KEY`` wins when set (local runs, tests). Otherwise
``BATCHFSM_OPENAI_KEY_SECRET_ARN`` names a Secrets Manager secret whose ``SecretString``
is either the bare key or a JSON object with an ``OPENAI_API_KEY`` (or ``api_key``)
field. The caller (:class:`batchfsm.aws.app.LambdaApp`) fetches it once per container.

The key's value never appears in a message, a log record or a chained exception: the
errors below name the secret's ARN (not secret) and the AWS error code only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from batchfsm.config import ENV_VARS, ConfigError, Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

__all__ = ["resolve_api_key"]

_JSON_FIELDS = ("OPENAI_API_KEY", "api_key")


def resolve_api_key(settings: Settings, *, client: SecretsManagerClient | Any | None = None) -> str:
    """The API key; ``client`` is a Secrets Manager client (built lazily if None).

    :raises ConfigError: neither variable is set, the secret cannot be read, or it holds
        no usable key.
    """
    if settings.openai_api_key is not None:
        return settings.openai_api_key.get_secret_value()
    arn = settings.openai_key_secret_arn
    if not arn:
        key_var, arn_var = ENV_VARS["openai_api_key"], ENV_VARS["openai_key_secret_arn"]
        raise ConfigError(f"set {key_var} or {arn_var} (a Secrets Manager secret ARN)")
    if client is None:
        from batchfsm.persistence.botocore_clients import make_client

        client = make_client("secretsmanager")
    return _from_secret(client, arn)


def _from_secret(client: Any, arn: str) -> str:
    return read_secret(client, arn, _JSON_FIELDS)


def read_secret(client: Any, arn: str, fields: tuple[str, ...]) -> str:
    """A secret's value from Secrets Manager: the bare string, or the first of ``fields``
    in a JSON object. Errors name the ARN and the AWS error code, never the value."""
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
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"secret {arn} looks like JSON but does not parse") from None
    for name in fields:
        value = data.get(name) if isinstance(data, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise ConfigError(f"secret {arn} is a JSON object without {' or '.join(fields)}")
