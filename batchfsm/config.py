"""Settings: every variable batchfsm takes from the environment, parsed in one place.

The composition roots (the CLI through :mod:`batchfsm.wiring`, the Lambda through
:class:`~batchfsm.aws.app.LambdaApp`) call :meth:`Settings.from_env` once and hand the
frozen result down. Nothing else in batchfsm reads the environment, so a variable means
the same to every command and to the Lambda, and a bad value is refused once, with a
message that names the variable. (For the CLI, the ``openai`` client still reads
``OPENAI_API_KEY``/``OPENAI_BASE_URL`` itself, by its own conventions.)

Config files, read here too and parsed by pydantic-settings' own sources, in the working
directory (or ``config_dir``): ``batchfsm.toml`` and the ``[tool.batchfsm]`` table of
``pyproject.toml`` (keys: the field names, e.g. ``store_url``, ``max_attempts``), and
``.env`` (the variables of :data:`ENV_VARS`, e.g. ``BATCHFSM_STORE=...``). Precedence,
highest first: overrides (command-line options), the environment, ``.env``,
``batchfsm.toml``, ``[tool.batchfsm]``. A secret is never read from a TOML file (those
are often committed): the environment or ``.env`` only. pydantic-settings is imported
only when one of these files exists, so a Lambda cold start never pays for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails

from batchfsm.errors import ConfigError

__all__ = [
    "DEFAULT_OUTPUT_EXPIRES_AFTER",
    "DEFAULT_RESULTS_DIR",
    "DEFAULT_STORE_URL",
    "ENV_ALIASES",
    "ENV_VARS",
    "PROVIDER_NAMES",
    "ConfigError",
    "ProviderName",
    "Settings",
]

DEFAULT_STORE_URL = "sqlite:///batchfsm.db"
"""A file in the working directory: commands run from one directory share their store."""
DEFAULT_RESULTS_DIR = Path("batchfsm-results")
DEFAULT_OUTPUT_EXPIRES_AFTER = 30 * 24 * 3600
"""Result files live 30 days, the longest the API allows: their end is then known (the
API states no default) and as late as it can be. Azure also allows 10,000 batch files
per resource instead of 500 once an expiry is set."""

ProviderName = Literal[
    "openai", "azure", "groq", "together", "openrouter", "compatible", "anthropic"
]
"""The provider profiles (:mod:`batchfsm.providers`): named here so that a bad
``BATCHFSM_PROVIDER`` is refused with the other settings, naming the variable."""
PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)

ENV_VARS: Mapping[str, str] = MappingProxyType(
    {
        "store_url": "BATCHFSM_STORE",
        "results_dir": "BATCHFSM_RESULTS_DIR",
        "max_attempts": "BATCHFSM_MAX_ATTEMPTS",
        "warn_after_hours": "BATCHFSM_WARN_AFTER_HOURS",
        "finalizing_alert_minutes": "BATCHFSM_FINALIZING_ALERT_MINUTES",
        "cancelling_alert_minutes": "BATCHFSM_CANCELLING_ALERT_MINUTES",
        "lease_seconds": "BATCHFSM_LEASE_SECONDS",
        "poll_interval": "BATCHFSM_POLL_INTERVAL",
        "output_expires_after": "BATCHFSM_OUTPUT_EXPIRES_AFTER",
        "backoff_base": "BATCHFSM_RETRY_BACKOFF_BASE",
        "backoff_cap": "BATCHFSM_RETRY_BACKOFF_CAP",
        "table": "BATCHFSM_TABLE",
        "results_location": "BATCHFSM_RESULTS",
        "workdir": "BATCHFSM_WORKDIR",
        "provider": "BATCHFSM_PROVIDER",
        "openai_api_key": "OPENAI_API_KEY",
        "openai_key_secret_arn": "BATCHFSM_OPENAI_KEY_SECRET_ARN",
        "openai_base_url": "OPENAI_BASE_URL",
        "webhooks": "BATCHFSM_WEBHOOKS",
        "poll_ceiling": "BATCHFSM_POLL_CEILING",
        "webhook_secret": "OPENAI_WEBHOOK_SECRET",
        "webhook_secret_arn": "BATCHFSM_WEBHOOK_SECRET_ARN",
        "metrics_namespace": "POWERTOOLS_METRICS_NAMESPACE",
        "queue_limits": "BATCHFSM_QUEUE_LIMITS",
        "max_rounds": "BATCHFSM_MAX_ROUNDS",
        "prices_file": "BATCHFSM_PRICES",
        "poll_concurrency": "BATCHFSM_POLL_CONCURRENCY",
        "admin_key": "BATCHFSM_ADMIN_KEY",
        "project_id": "BATCHFSM_PROJECT_ID",
    }
)
"""The variable each :class:`Settings` field is read from (field name -> variable)."""

ENV_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"admin_key": ("OPENAI_ADMIN_KEY",), "project_id": ("OPENAI_PROJECT_ID",)}
)
"""Variables read for a field when its own (:data:`ENV_VARS`) is unset: the names
OpenAI's documentation and client use (field name -> variables, first set wins)."""

_LISTS = frozenset({"warn_after_hours"})
"""Fields whose variable holds a comma-separated list."""
_SECRETS = frozenset({"openai_api_key", "webhook_secret", "admin_key"})
"""Fields whose value an error message must never repeat."""


class Settings(BaseModel):
    """What batchfsm can be configured with; see :data:`ENV_VARS` for the variables.

    The fields after ``backoff_cap`` are the Lambda's: the CLI takes its store and results
    directory as options and leaves the key to the ``openai`` client.
    """

    model_config = ConfigDict(frozen=True)

    store_url: str = DEFAULT_STORE_URL
    results_dir: Path = DEFAULT_RESULTS_DIR
    max_attempts: int = Field(default=3, ge=1)
    poll_concurrency: int = Field(default=8, ge=1, le=256)
    """Retrieves in flight at once in a poll cycle (``poll --concurrency``); each obeys a
    429's ``Retry-After``. 8 keeps a 1,000-batch cycle near 125 round trips, far below
    the API's request rate limits."""
    prices_file: Path | None = None
    """A price table to use instead of the shipped ``batchfsm/jobs/prices.json``
    (:mod:`batchfsm.jobs.cost`): same shape, your prices."""
    max_rounds: int = Field(default=10, ge=1)
    """Batches a request may be sent in (first submit and retry rounds, whatever became
    of them) before it is failed with ``max_rounds``: requests that never ran spend no
    attempt, so without this a job whose batches keep expiring is resent for ever."""
    warn_after_hours: tuple[float, ...] = (20.0,)
    """Deadline warnings, in hours elapsed since creation (20 h = 4 h left)."""
    finalizing_alert_minutes: float = 30.0
    cancelling_alert_minutes: float = 10.0
    lease_seconds: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=30.0, gt=0)
    output_expires_after: int | None = Field(
        default=DEFAULT_OUTPUT_EXPIRES_AFTER, ge=3600, le=30 * 24 * 3600
    )
    """Seconds the output and error files of every batch we create stay downloadable,
    from their creation (the API's ``output_expires_after``: 3600 to 2592000); ``off``
    sends nothing, for servers that refuse the parameter (their lifetime is then
    unknown). Known, it lets a harvest warn before and name a 404 after it."""
    provider: ProviderName | None = None
    """Whose Batch API this is (:mod:`batchfsm.providers`); unset: detected from
    ``OPENAI_BASE_URL`` where the host is unambiguous, else ``openai``."""
    backoff_base: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    """Seconds queue-full items wait before auto-retry resends them (first failure)..."""
    backoff_cap: float = Field(default=1800.0, ge=0, allow_inf_nan=False)
    """...doubling with each further queue-full failure, up to this many seconds."""

    table: str | None = None
    """A DynamoDB table name: a shorter ``dynamodb://TABLE``, which the function's clients
    then share one botocore session with (set it or ``store_url``, not both)."""
    results_location: str | None = None
    """``s3://bucket/prefix`` or a directory; unset: :attr:`results_dir`."""
    workdir: Path | None = None
    """Scratch space for downloads; unset: ``batchfsm`` in the system's temporary directory."""
    openai_api_key: SecretStr | None = None
    """Wins over the secret, so a local run needs no AWS; ``SecretStr`` keeps it out of
    ``repr()`` and so out of any log that prints the settings."""
    openai_key_secret_arn: str | None = None
    """A Secrets Manager secret holding the key, fetched once per container."""
    openai_base_url: str | None = None
    """An OpenAI-compatible server (or ``batchfsm sandbox``); unset: the client's default."""

    webhooks: bool = False
    """Webhooks are configured (also implied by either webhook secret): pollers then
    stretch their interval for batches that have not moved, up to :attr:`poll_ceiling`,
    because a webhook, not the poll, is expected to notice the end."""
    poll_ceiling: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    """Seconds a poll of an unmoving batch may be stretched to when webhooks are on."""
    webhook_secret: SecretStr | None = None
    """The endpoint's ``whsec_...`` signing secret (``batchfsm webhooks serve``); a
    ``SecretStr`` so that no repr, log or error message ever shows it."""
    webhook_secret_arn: str | None = None
    """Lambda: a Secrets Manager secret holding the signing secret, fetched once per
    container (``OPENAI_WEBHOOK_SECRET`` wins, for local runs)."""
    metrics_namespace: str | None = None
    """Lambda: the CloudWatch namespace of the figures printed as EMF after every
    invocation (:func:`batchfsm.observability.metrics.emit_emf`, extra
    ``lambda-metrics``); unset: none. Powertools' own variable."""

    queue_limits: dict[str, int] = Field(default_factory=dict)
    """Enqueued-token budget per model (``MODEL=TOKENS,...``, ``*`` for any other
    model; on Azure per deployment): :mod:`batchfsm.jobs.admission`. Empty: none."""

    admin_key: SecretStr | None = None
    """An OpenAI *admin* key (``sk-admin-...``): with :attr:`project_id`, the project's
    batch queue limits are read from the Administration API for every model without a
    ``queue_limits`` entry (:mod:`batchfsm.providers.rate_limits`). A secret: never
    logged, stored or repeated in a message."""
    project_id: str | None = None
    """The project (``proj_...``) whose rate limits :attr:`admin_key` reads."""

    @field_validator("queue_limits", mode="before")
    @classmethod
    def _queue_limits(cls, value: object) -> object:
        from batchfsm.ledger.budget import parse_queue_limits

        if isinstance(value, str | list | tuple):
            return parse_queue_limits(value)  # a ValueError names the bad part
        return value

    @property
    def webhooks_enabled(self) -> bool:
        """Whether webhooks are configured: said outright, or implied by a secret."""
        return self.webhooks or bool(self.webhook_secret or self.webhook_secret_arn)

    @field_validator("output_expires_after", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("off", "none"):
            return None
        return value

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config_dir: Path | None = None,
        **overrides: object,
    ) -> Settings:
        """Settings from the config files, ``environ`` (default ``os.environ``), then
        ``overrides``; see the module docstring for the files and their precedence.

        Config files are read from ``config_dir``, or from the working directory when
        ``environ`` is the process's own; an explicit ``environ`` alone reads none (a
        test's settings do not depend on where it runs). A variable that is unset or
        blank leaves its default; surrounding spaces are dropped. An override of None
        (an option not given) leaves the value from below.

        :raises ConfigError: naming each variable, file key (or override) whose value
            is unusable; a secret's value is never repeated.
        """
        env = os.environ if environ is None else environ
        if config_dir is None and environ is None:
            config_dir = Path.cwd()
        raw: dict[str, object] = {}
        labels: dict[str, str] = {}
        if config_dir is not None:
            for name, (value, label) in config_files(config_dir).items():
                raw[name], labels[name] = value, label
        for name, var in ENV_VARS.items():
            for each in (var, *ENV_ALIASES.get(name, ())):
                text = env.get(each, "").strip()
                if text:
                    raw[name], labels[name] = text, each
                    break
        values: dict[str, object] = {name: _listed(name, v) for name, v in raw.items()}
        given = {name: value for name, value in overrides.items() if value is not None}
        values.update(given)
        labels.update({name: f"setting {name}" for name in given})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            # Not chained: pydantic's message repeats every input, the key's included.
            sources = {**raw, **given}
            problems = [_problem(error, sources, labels) for error in exc.errors()]
            raise ConfigError("; ".join(problems)) from None


def _listed(name: str, value: object) -> object:
    """A list field's comma-separated text as a tuple (a TOML list passes as it is)."""
    if name in _LISTS and isinstance(value, str):
        return tuple(p for p in value.split(",") if p.strip())
    return value


def _problem(error: ErrorDetails, sources: Mapping[str, object], labels: Mapping[str, str]) -> str:
    """One validation error, named as the user wrote it: the variable, file key (or the
    override's name) and the value as given, not the field name and the half-parsed
    value."""
    name = str(error["loc"][0]) if error["loc"] else ""
    label = labels.get(name, f"setting {name}")
    if name in _SECRETS or name not in sources:
        return f"{label}: {error['msg']}"
    return f"{label}={sources[name]!r}: {error['msg']}"


CONFIG_FILES = ("batchfsm.toml", "pyproject.toml", ".env")
"""The config files :meth:`Settings.from_env` reads, in a directory."""


def config_files(directory: Path) -> dict[str, tuple[object, str]]:
    """Settings from the config files in ``directory``: field name -> (value, where it
    came from), the higher-precedence file winning. Parsed by pydantic-settings' TOML,
    pyproject and dotenv sources; imported only when one of the files exists.

    :raises ConfigError: an unreadable file, an unknown key in a TOML file (a typo must
        not pass silently), a secret in a TOML file.
    """
    toml, pyproject, dotenv = (directory / name for name in CONFIG_FILES)
    try:
        has_table = pyproject.is_file() and b"[tool.batchfsm" in pyproject.read_bytes()
        present = toml.is_file() or has_table or dotenv.is_file()
    except OSError:
        return {}
    if not present:
        return {}
    found: dict[str, tuple[object, str]] = {}
    for label, values in _read_files(toml, pyproject if has_table else None, dotenv):
        unknown = sorted(set(values) - set(ENV_VARS))
        if unknown:
            raise ConfigError(f"{label}: unknown setting {', '.join(map(repr, unknown))}")
        secrets = sorted(set(values) & _SECRETS)
        if secrets and label != ".env":
            raise ConfigError(
                f"{label}: {', '.join(secrets)} is a secret and is not read from a TOML "
                "file (such files are often committed): use the environment or .env"
            )
        for name, value in values.items():
            where = f".env: {ENV_VARS[name]}" if label == ".env" else f"{label}: {name}"
            found[name] = (value, where)
    return found


def _read_files(
    toml: Path, pyproject: Path | None, dotenv: Path
) -> list[tuple[str, dict[str, object]]]:
    """(label, values by field name) per file present, lowest precedence first."""
    from pydantic_settings import (
        BaseSettings,
        DotEnvSettingsSource,
        PyprojectTomlConfigSettingsSource,
        SettingsConfigDict,
        TomlConfigSettingsSource,
    )

    class FileKeys(BaseSettings):  # the sources need a settings class to read for
        model_config = SettingsConfigDict(
            pyproject_toml_table_header=("tool", "batchfsm"), case_sensitive=True
        )

    read: list[tuple[str, dict[str, object]]] = []
    where = str(pyproject)
    try:
        if pyproject is not None:
            data = PyprojectTomlConfigSettingsSource(FileKeys, toml_file=pyproject)()
            read.append(("pyproject.toml [tool.batchfsm]", dict(data)))
        if toml.is_file():
            where = str(toml)
            read.append(("batchfsm.toml", dict(TomlConfigSettingsSource(FileKeys, toml)())))
        if dotenv.is_file():
            where = str(dotenv)
            env = DotEnvSettingsSource(FileKeys, env_file=dotenv, case_sensitive=True)
            values = {k: str(v).strip() for k, v in env.env_vars.items()}
            order = [(a, n) for n, aliases in ENV_ALIASES.items() for a in aliases]
            order += [(var, name) for name, var in ENV_VARS.items()]  # a field's own wins
            read.append((".env", {name: values[var] for var, name in order if values.get(var)}))
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{where}: cannot be read: {exc}") from None
    return read
