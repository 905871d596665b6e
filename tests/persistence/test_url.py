"""Choosing a store from a URL."""

from __future__ import annotations

import os
import pathlib

import pytest

from batchfsm.config import Settings
from batchfsm.errors import StoreURLError
from batchfsm.persistence import JobStore, MemoryJobStore, SQLiteJobStore, open_store
from batchfsm.persistence.url import redact_url, sqlite_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///batchfsm.db", "batchfsm.db"),
        ("sqlite:///state/jobs.db", "state/jobs.db"),
        ("sqlite:////var/lib/batchfsm/jobs.db", "/var/lib/batchfsm/jobs.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_sqlite_urls_name_their_file(url: str, path: str) -> None:
    assert sqlite_path(url) == path
    store = open_store(url)
    assert isinstance(store, SQLiteJobStore)
    assert store.path == path
    store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db"])
def test_malformed_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreURLError, match="sqlite"):
        open_store(url)


def test_a_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///sub/jobs.db")
    store.init()
    store.close()
    assert (tmp_path / "sub" / "jobs.db").exists()


def test_memory_url_gives_a_fresh_memory_store() -> None:
    one, two = open_store("memory://"), open_store("memory://")
    assert isinstance(one, MemoryJobStore)
    assert isinstance(one, JobStore)
    assert one is not two
    assert one.url == "memory://"


def test_unknown_scheme_names_the_url_without_its_password() -> None:
    with pytest.raises(StoreURLError) as caught:
        open_store("postgres://admin:hunter2@db.example:5432/batches")
    message = str(caught.value)
    assert "postgres://admin:***@db.example:5432/batches" in message
    assert "hunter2" not in message
    assert "sqlite://" in message  # says what would work


@pytest.mark.parametrize("url", ["", "batchfsm.db", "/tmp/x.db"])
def test_a_url_without_a_scheme_is_refused(url: str) -> None:
    with pytest.raises(StoreURLError):
        open_store(url)


def test_redact_url_keeps_passwordless_urls_as_they_are() -> None:
    assert redact_url("dynamodb://table?region=eu-west-1") == "dynamodb://table?region=eu-west-1"
    assert redact_url("x://u:p@h:bad/") == "x://u:***@h:bad/"
    assert redact_url("x://u:p@ss@h/db?q=a@b") == "x://u:***@h/db?q=a@b"
    assert redact_url("x://token@h/") == "x://token@h/"


def test_default_store_url_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def default_store_url() -> str:
        return Settings.from_env().store_url

    monkeypatch.delenv("BATCHFSM_STORE", raising=False)
    assert default_store_url() == "sqlite:///batchfsm.db"
    monkeypatch.setenv("BATCHFSM_STORE", "   ")
    assert default_store_url() == "sqlite:///batchfsm.db"
    monkeypatch.setenv("BATCHFSM_STORE", "memory://")
    assert default_store_url() == "memory://"
    assert isinstance(open_store(default_store_url()), MemoryJobStore)
    assert os.environ["BATCHFSM_STORE"] == "memory://"


def test_the_parser_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHFSM_STORE", "memory://")
    store = open_store("sqlite://:memory:")
    assert isinstance(store, SQLiteJobStore)
    store.close()
    with pytest.raises(TypeError):
        open_store()  # type: ignore[call-arg]  # no URL is no store, not $BATCHFSM_STORE


def test_memory_url_takes_no_path() -> None:
    with pytest.raises(StoreURLError, match="memory"):
        open_store("memory://shared")


def test_dynamodb_url_opens_the_dynamodb_store_without_io() -> None:
    from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

    # Port 9 (discard) on loopback: nothing listens, and nothing should be contacted yet.
    store = open_store("dynamodb://jobs?region=eu-west-1&endpoint_url=http://127.0.0.1:9")
    try:
        assert isinstance(store, DynamoDBJobStore)
        assert isinstance(store, JobStore)
        assert store.url.startswith("dynamodb://jobs")
    finally:
        store.close()
