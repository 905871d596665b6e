"""The one parser of batchfsm's environment: :meth:`Settings.from_env`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from batchfsm.config import DEFAULT_RESULTS_DIR, DEFAULT_STORE_URL, ENV_VARS, Settings
from batchfsm.errors import ConfigError

KEY = "sk-live-never-shown-0123456789"

# One usable value per variable, and what the field then holds.
VALUES: dict[str, tuple[str, object]] = {
    "BATCHFSM_STORE": ("memory://", "memory://"),
    "BATCHFSM_RESULTS_DIR": ("out/results", Path("out/results")),
    "BATCHFSM_MAX_ATTEMPTS": ("5", 5),
    "BATCHFSM_WARN_AFTER_HOURS": ("12,20", (12.0, 20.0)),
    "BATCHFSM_FINALIZING_ALERT_MINUTES": ("45", 45.0),
    "BATCHFSM_CANCELLING_ALERT_MINUTES": ("5.5", 5.5),
    "BATCHFSM_LEASE_SECONDS": ("120", 120.0),
    "BATCHFSM_POLL_INTERVAL": ("2.5", 2.5),
    "BATCHFSM_PROVIDER": ("together", "together"),
    "BATCHFSM_OUTPUT_EXPIRES_AFTER": ("7200", 7200),
    "BATCHFSM_RETRY_BACKOFF_BASE": ("0", 0.0),
    "BATCHFSM_RETRY_BACKOFF_CAP": ("600", 600.0),
    "BATCHFSM_TABLE": ("batchfsm-prod", "batchfsm-prod"),
    "BATCHFSM_RESULTS": ("s3://bucket/prefix", "s3://bucket/prefix"),
    "BATCHFSM_WORKDIR": ("/scratch/batchfsm", Path("/scratch/batchfsm")),
    "BATCHFSM_OPENAI_KEY_SECRET_ARN": ("arn:aws:secretsmanager:x", "arn:aws:secretsmanager:x"),
    "OPENAI_BASE_URL": ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
    "BATCHFSM_WEBHOOKS": ("true", True),
    "BATCHFSM_POLL_CEILING": ("900", 900.0),
    "BATCHFSM_MAX_ROUNDS": ("4", 4),
    "BATCHFSM_POLL_CONCURRENCY": ("16", 16),
    "BATCHFSM_PRICES": ("/tmp/prices.json", Path("/tmp/prices.json")),
    "BATCHFSM_QUEUE_LIMITS": (
        "gpt-4o-mini=2000000,*=90000",
        {"gpt-4o-mini": 2_000_000, "*": 90_000},
    ),
    "OPENAI_WEBHOOK_SECRET": ("whsec_dGVzdA==", SecretStr("whsec_dGVzdA==")),
    "BATCHFSM_ADMIN_KEY": ("sk-admin-test", SecretStr("sk-admin-test")),
    "BATCHFSM_PROJECT_ID": ("proj_test", "proj_test"),
    "BATCHFSM_WEBHOOK_SECRET_ARN": ("arn:aws:secretsmanager:w", "arn:aws:secretsmanager:w"),
    "POWERTOOLS_METRICS_NAMESPACE": ("batchfsm", "batchfsm"),
}


def test_every_field_has_one_variable_and_every_variable_one_field() -> None:
    assert set(ENV_VARS) == set(Settings.model_fields)
    assert len(set(ENV_VARS.values())) == len(ENV_VARS)
    assert set(VALUES) | {"OPENAI_API_KEY"} == set(ENV_VARS.values())


@pytest.mark.parametrize("variable", sorted(VALUES))
def test_each_variable_sets_its_field(variable: str) -> None:
    raw, expected = VALUES[variable]
    field = next(name for name, var in ENV_VARS.items() if var == variable)
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == expected
    others = {name for name in ENV_VARS if name != field}
    assert all(getattr(settings, name) == getattr(Settings(), name) for name in others)


def test_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.store_url == DEFAULT_STORE_URL == "sqlite:///batchfsm.db"
    assert settings.results_dir == DEFAULT_RESULTS_DIR == Path("batchfsm-results")
    assert (settings.max_attempts, settings.warn_after_hours) == (3, (20.0,))
    assert (settings.backoff_base, settings.backoff_cap) == (60.0, 1800.0)
    assert (settings.table, settings.openai_api_key, settings.workdir) == (None, None, None)


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHFSM_STORE", "memory://")
    monkeypatch.setenv("BATCHFSM_MAX_ATTEMPTS", "7")
    settings = Settings.from_env()
    assert (settings.store_url, settings.max_attempts) == ("memory://", 7)


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_blank_values_are_ignored(blank: str) -> None:
    environ = dict.fromkeys(ENV_VARS.values(), blank)
    assert Settings.from_env(environ) == Settings()


def test_values_lose_their_surrounding_spaces() -> None:
    settings = Settings.from_env({"BATCHFSM_STORE": "  memory:// ", "OPENAI_API_KEY": f" {KEY}\n"})
    assert settings.store_url == "memory://"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == KEY


def test_a_list_ignores_empty_entries() -> None:
    settings = Settings.from_env({"BATCHFSM_WARN_AFTER_HOURS": "4, 20,,"})
    assert settings.warn_after_hours == (4.0, 20.0)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("BATCHFSM_MAX_ATTEMPTS", "0"),
        ("BATCHFSM_MAX_ATTEMPTS", "three"),
        ("BATCHFSM_WARN_AFTER_HOURS", "20,soon"),
        ("BATCHFSM_LEASE_SECONDS", "0"),
        ("BATCHFSM_POLL_INTERVAL", "-1"),
        ("BATCHFSM_RETRY_BACKOFF_BASE", "soon"),
        ("BATCHFSM_RETRY_BACKOFF_BASE", "-5"),
        ("BATCHFSM_RETRY_BACKOFF_CAP", "inf"),
        ("BATCHFSM_RETRY_BACKOFF_CAP", "nan"),
        ("BATCHFSM_FINALIZING_ALERT_MINUTES", "half an hour"),
    ],
)
def test_a_bad_value_names_its_variable_and_value(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: raw})
    message = str(caught.value)
    assert message.startswith(f"{variable}={raw!r}: ")


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BATCHFSM_MAX_ATTEMPTS": "0", "BATCHFSM_LEASE_SECONDS": "x"})
    assert "BATCHFSM_MAX_ATTEMPTS='0'" in str(caught.value)
    assert "BATCHFSM_LEASE_SECONDS='x'" in str(caught.value)


def test_overrides_win_over_the_environment() -> None:
    environ = {"BATCHFSM_STORE": "memory://", "BATCHFSM_MAX_ATTEMPTS": "bad"}
    settings = Settings.from_env(environ, store_url="sqlite:///x.db", max_attempts=2)
    assert (settings.store_url, settings.max_attempts) == ("sqlite:///x.db", 2)


def test_an_override_of_none_leaves_the_environment() -> None:
    settings = Settings.from_env({"BATCHFSM_STORE": "memory://"}, store_url=None)
    assert settings.store_url == "memory://"


def test_a_bad_override_is_named_as_a_setting() -> None:
    with pytest.raises(ConfigError, match=r"^setting max_attempts=0: "):
        Settings.from_env({"BATCHFSM_MAX_ATTEMPTS": "4"}, max_attempts=0)


def test_the_key_is_never_shown() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": KEY})
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert KEY not in settings.model_dump_json()
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OPENAI_API_KEY": KEY, "BATCHFSM_MAX_ATTEMPTS": "x"}, openai_api_key=1)
    assert KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.store_url = "memory://"


def test_the_table_and_the_store_url_are_both_accepted_here() -> None:
    """The CLI ignores BATCHFSM_TABLE; only the Lambda refuses both (tests/aws)."""
    settings = Settings.from_env({"BATCHFSM_STORE": "memory://", "BATCHFSM_TABLE": "t"})
    assert (settings.store_url, settings.table) == ("memory://", "t")
