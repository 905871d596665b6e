"""Settings, read from the environment in one place (the composition roots call it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchfsm.errors import ConfigError

__all__ = ["DEFAULT_RESULTS_DIR", "DEFAULT_STORE_URL", "ConfigError", "Settings"]

DEFAULT_STORE_URL = "sqlite:///batchfsm.db"
DEFAULT_RESULTS_DIR = Path("batchfsm-results")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    store_url: str = DEFAULT_STORE_URL
    results_dir: Path = DEFAULT_RESULTS_DIR
    max_attempts: int = Field(default=3, ge=1)
    warn_after_hours: tuple[float, ...] = (20.0,)
    """Deadline warnings, in hours elapsed since creation (20 h = 4 h left)."""
    finalizing_alert_minutes: float = 30.0
    cancelling_alert_minutes: float = 10.0
    lease_seconds: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=30.0, gt=0)
    backoff_base: float = Field(default=60.0, ge=0)
    """Seconds queue-full items wait before auto-retry resends them (first failure)..."""
    backoff_cap: float = Field(default=1800.0, ge=0)
    """...doubling with each further queue-full failure, up to this many seconds."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        mapping = {
            "BATCHFSM_STORE": "store_url",
            "BATCHFSM_RESULTS_DIR": "results_dir",
            "BATCHFSM_MAX_ATTEMPTS": "max_attempts",
            "BATCHFSM_FINALIZING_ALERT_MINUTES": "finalizing_alert_minutes",
            "BATCHFSM_CANCELLING_ALERT_MINUTES": "cancelling_alert_minutes",
            "BATCHFSM_LEASE_SECONDS": "lease_seconds",
            "BATCHFSM_POLL_INTERVAL": "poll_interval",
            "BATCHFSM_RETRY_BACKOFF_BASE": "backoff_base",
            "BATCHFSM_RETRY_BACKOFF_CAP": "backoff_cap",
        }
        for var, name in mapping.items():
            if env.get(var):
                values[name] = env[var]
        if env.get("BATCHFSM_WARN_AFTER_HOURS"):
            values["warn_after_hours"] = tuple(
                part for part in env["BATCHFSM_WARN_AFTER_HOURS"].split(",") if part.strip()
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"setting {first['loc'][0]}: {first['msg']}") from exc
