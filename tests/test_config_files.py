"""Config files beside the environment (``batchfsm.toml``, ``[tool.batchfsm]``,
``.env``), read by :meth:`Settings.from_env` through pydantic-settings, as a user meets
them through the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from batchfsm.config import Settings
from batchfsm.errors import ConfigError
from tests.cli.live import live, request_file
from tests.cli.subprocess_cli import run_cli

CLEAN = {"BATCHFSM_STORE": "", "BATCHFSM_MAX_ATTEMPTS": ""}
"""Blank: as if unset (a blank variable leaves the value from below)."""
NO_API = {"OPENAI_API_KEY": "sk-unused", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
"""An empty store is polled without a call: nothing needs to listen."""


def _status_store(cwd: Path, **env: str) -> str:
    done = run_cli(
        "poll", "--until-done", "--interval", "0", cwd=cwd, env={**CLEAN, **NO_API, **env}
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.split("the store ", 1)[1].split(" ", 1)[0]


def test_batchfsm_toml_sets_the_store(tmp_path: Path) -> None:
    (tmp_path / "batchfsm.toml").write_text('store_url = "sqlite:///from-toml.db"\n')
    assert _status_store(tmp_path) == "sqlite:///from-toml.db"


def test_the_pyproject_table_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "mine"\n\n[tool.batchfsm]\nstore_url = "sqlite:///from-pyproject.db"\n'
    )
    assert _status_store(tmp_path) == "sqlite:///from-pyproject.db"


def test_precedence_option_env_dotenv_toml_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.batchfsm]\nstore_url = "sqlite:///p.db"\nmax_attempts = 4\nlease_seconds = 9\n'
    )
    (tmp_path / "batchfsm.toml").write_text('store_url = "sqlite:///t.db"\nmax_attempts = 5\n')
    (tmp_path / ".env").write_text("BATCHFSM_STORE=sqlite:///e.db\n")
    assert _status_store(tmp_path) == "sqlite:///e.db"
    assert _status_store(tmp_path, BATCHFSM_STORE="sqlite:///v.db") == "sqlite:///v.db"
    settings = Settings.from_env({}, config_dir=tmp_path, max_attempts=None)
    assert (settings.store_url, settings.max_attempts, settings.lease_seconds) == (
        "sqlite:///e.db", 5, 9.0,
    )  # fmt: skip
    assert Settings.from_env({}, config_dir=tmp_path, max_attempts=2).max_attempts == 2


def test_an_unknown_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "batchfsm.toml").write_text('stor_url = "sqlite:///typo.db"\n')
    done = run_cli("status", cwd=tmp_path, env=CLEAN)
    assert done.returncode == 2
    assert done.stderr == "batchfsm: error: batchfsm.toml: unknown setting 'stor_url'\n"


def test_a_bad_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "batchfsm.toml").write_text('max_attempts = "three"\n')
    done = run_cli("status", cwd=tmp_path, env=CLEAN)
    assert done.returncode == 2
    assert done.stderr.startswith("batchfsm: error: batchfsm.toml: max_attempts='three': ")


def test_a_broken_toml_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "batchfsm.toml").write_text("store_url = [\n")
    done = run_cli("status", cwd=tmp_path, env=CLEAN)
    assert done.returncode == 2 and "batchfsm.toml: cannot be read" in done.stderr


def test_a_secret_is_never_read_from_a_toml_file(tmp_path: Path) -> None:
    (tmp_path / "batchfsm.toml").write_text('openai_api_key = "sk-committed-by-mistake"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({}, config_dir=tmp_path)
    assert "openai_api_key is a secret" in str(caught.value)
    assert "sk-committed" not in str(caught.value)


def test_the_key_in_dotenv_reaches_the_api_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with live(tmp_path, monkeypatch, capsys) as run:
        monkeypatch.delenv("OPENAI_API_KEY")
        (run.home / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nOTHER_TOOL=x\n")
        path = request_file(run.home / "in.jsonl", ["a"])
        ran = run.cli("submit", str(path), "--endpoint", "/v1/chat/completions")
    assert ran.code == 0, ran.err
    assert "sk-from-dotenv" not in ran.out + ran.err


def test_no_config_file_costs_no_import(tmp_path: Path) -> None:
    """pydantic-settings is imported only when a config file is there (Lambda cold start)."""
    code = (
        "import sys\nfrom batchfsm.config import Settings\nSettings.from_env()\n"
        "print('pydantic_settings' in sys.modules)\n"
    )
    bare = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert bare.stdout.strip() == "False"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "not-configured"\n')
    other = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert other.stdout.strip() == "False"
