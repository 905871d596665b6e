"""The project's batch queue limits from the Administration API: the page parser (any
shape), the reader over HTTP (the sandbox, and a hostile server), the live merge with
the explicit limits, and the settings that turn it on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from batchfsm.config import Settings
from batchfsm.errors import AuthenticationFailedError, GatewayError, GatewayUnavailableError
from batchfsm.ledger.budget import limit_for
from batchfsm.providers.queue_limits import (
    REFRESH_SECONDS,
    RETRY_SECONDS,
    LiveQueueLimits,
    with_api_queue_limits,
)
from batchfsm.providers.rate_limits import BATCH_QUEUE_FIELD, AdminApi, parse_page
from batchfsm.sandbox import Faults, Scenario, ScriptedFault, running_sandbox
from batchfsm.sandbox.server import base_url_of, make_sandbox_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ADMIN_KEY = "sk-admin-unit-0123456789abcdef"
ROUTE = "GET /v1/organization/projects/{project_id}/rate_limits"

# -- the parser ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
MODELS = st.sampled_from(["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "o3", "*", ""])
GOOD = st.builds(
    lambda model, tokens: {"object": "project.rate_limit", "id": f"rl-{model}", "model": model,
                           BATCH_QUEUE_FIELD: tokens},
    st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3"]), st.integers(1, 10**12),
)  # fmt: skip
ROWS = st.one_of(
    GOOD,
    st.builds(lambda m: {"model": m, "max_requests_per_1_minute": 500}, MODELS),
    st.builds(lambda m, v: {"model": m, BATCH_QUEUE_FIELD: v}, MODELS | JSON, JSON),
    JSON,
)
PAGES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"object": st.just("list"), "data": st.lists(ROWS, max_size=8)},
        optional={"has_more": JSON, "last_id": JSON | st.text(max_size=8)},
    ),
)


def _usable(row: object) -> bool:
    """The documented rule: an object naming a model (not blank, not ``*``) whose batch
    limit is absent, null or a positive whole number."""
    if not isinstance(row, dict):
        return False
    model, tokens = row.get("model"), row.get(BATCH_QUEUE_FIELD)
    if not isinstance(model, str) or model.strip() in ("", "*"):
        return False
    return tokens is None or (type(tokens) is int and tokens >= 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAGES)
def test_any_page_shape_never_crashes_and_every_row_is_accounted_for(body: Any) -> None:
    if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
        with pytest.raises(GatewayError, match="not a list page"):
            parse_page(body)
        return
    page = parse_page(body)
    rows = body["data"]
    assert len(page.skipped) == sum(not _usable(r) for r in rows)  # every bad row said
    limited = [r for r in rows if _usable(r) and r.get(BATCH_QUEUE_FIELD) is not None]
    assert page.limits == {
        m: min(r[BATCH_QUEUE_FIELD] for r in limited if r["model"] == m)  # the smaller
        for m in {r["model"] for r in limited}
    }
    assert set(page.unknown) == {
        r["model"] for r in rows if _usable(r) and r.get(BATCH_QUEUE_FIELD) is None
    }
    assert page.has_more is (body.get("has_more") is True)


@pytest.mark.parametrize("value", [0, -5, "2000000", True, 1.5, [1], {"n": 1}])
def test_a_bad_batch_limit_is_skipped_and_said_never_taken_as_a_limit(value: object) -> None:
    page = parse_page({"data": [{"model": "gpt-4o", BATCH_QUEUE_FIELD: value}]})
    assert page.limits == {} and page.unknown == ()
    assert len(page.skipped) == 1 and "gpt-4o" in page.skipped[0]
    assert BATCH_QUEUE_FIELD in page.skipped[0]


def test_a_row_without_the_batch_limit_means_unknown_not_zero() -> None:
    page = parse_page(
        {"data": [{"model": "dall-e-3", "max_images_per_1_minute": 5},
                  {"model": "gpt-4o", BATCH_QUEUE_FIELD: None}]}
    )  # fmt: skip
    assert page.limits == {} and page.unknown == ("dall-e-3", "gpt-4o") and page.skipped == ()


# -- reading over HTTP: the sandbox ---------------------------------------------------------


def _api(base_url: str, key: str = ADMIN_KEY) -> AdminApi:
    return AdminApi(SecretStr(key), "proj_unit", base_url)


def test_every_page_is_read_and_the_wildcard_is_not_a_model() -> None:
    limits = {f"model-{i:03d}": 1_000 + i for i in range(230)} | {"*": 5}
    with running_sandbox(Scenario(queue_limits=limits)) as sandbox:
        read = _api(sandbox.base_url).read()
        calls = sandbox.stats.count(ROUTE, status=200)
    assert read.limits == {m: t for m, t in limits.items() if m != "*"}
    assert calls == 3  # pages of 100, 100 and 30


def test_an_ordinary_key_is_refused_and_never_repeated() -> None:
    key = "sk-proj-OrdinaryKeyNotAdmin-4242"
    scenario = Scenario(queue_limits={"gpt-4o": 90_000})
    with running_sandbox(scenario) as sandbox, pytest.raises(AuthenticationFailedError) as caught:
        _api(sandbox.base_url, key).read()
    message = str(caught.value)
    assert "HTTP 401" in message and key not in message and key[-8:] not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_nothing_listening_is_unavailable() -> None:
    with running_sandbox() as sandbox:
        url = sandbox.base_url
    with pytest.raises(GatewayUnavailableError, match="cannot reach the API"):
        _api(url).read()


# -- reading over HTTP: a hostile server ----------------------------------------------------


@contextmanager
def _serving(answer: Any) -> Iterator[str]:
    """A server on loopback answering every request with ``answer(environ)``: (status,
    body bytes)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        status, body = answer(environ)
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    import threading

    server = make_sandbox_server(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield base_url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_answer_echoing_the_key_is_scrubbed() -> None:
    def echo(environ: WSGIEnvironment) -> tuple[str, bytes]:
        key = environ["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
        return "403 Forbidden", orjson.dumps({"error": {"message": f"key {key} lacks scope"}})

    with _serving(echo) as url, pytest.raises(AuthenticationFailedError) as caught:
        _api(url).read()
    assert ADMIN_KEY not in str(caught.value) and "HTTP 403" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "said"),
    [(b"<html>proxy</html>", "not JSON"), (b'{"data": "none"}', "not a list page")],
)
def test_an_answer_that_is_not_the_list_fails_the_read(body: bytes, said: str) -> None:
    with _serving(lambda _env: ("200 OK", body)) as url, pytest.raises(GatewayError, match=said):
        _api(url).read()


def test_has_more_without_a_new_cursor_stops_and_says_so() -> None:
    page = {"data": [{"id": "rl-a", "model": "a", BATCH_QUEUE_FIELD: 7}], "has_more": True,
            "last_id": "rl-a"}  # fmt: skip
    with _serving(lambda _env: ("200 OK", orjson.dumps(page))) as url:
        read = _api(url).read()
    assert read.limits == {"a": 7}
    assert read.skipped == ("the list said has_more without a new cursor: not read further",)


# -- the live merge -------------------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_explicit_per_model_then_the_api_then_the_explicit_wildcard() -> None:
    api_limits = {"gpt-4o": 90_000, "gpt-4o-mini": 2_000_000}
    with running_sandbox(Scenario(queue_limits=api_limits)) as sandbox:
        live = LiveQueueLimits({"gpt-4o": 50, "*": 9}, _api(sandbox.base_url))
        assert sandbox.stats.count(ROUTE) == 0  # nothing read until it is needed
        assert limit_for(live, "gpt-4o") == 50
        assert limit_for(live, "gpt-4o-mini") == 2_000_000
        assert limit_for(live, "o3") == 9
        assert live.sources() == {"gpt-4o": "explicit", "gpt-4o-mini": "api", "*": "explicit"}
        assert sandbox.stats.count(ROUTE) == 1


def test_read_once_then_again_only_after_the_refresh_interval() -> None:
    ticks = Ticks()
    with running_sandbox(Scenario(queue_limits={"gpt-4o": 90_000})) as sandbox:
        live = LiveQueueLimits({}, _api(sandbox.base_url), clock=ticks)
        for _ in range(5):
            assert limit_for(live, "gpt-4o") == 90_000
        ticks.now += REFRESH_SECONDS - 1
        assert len(live) == 1
        assert sandbox.stats.count(ROUTE) == 1
        ticks.now += 1
        assert "gpt-4o" in live
        assert sandbox.stats.count(ROUTE) == 2


def test_a_failure_warns_once_keeps_the_explicit_limits_and_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = Ticks()
    fail = [ScriptedFault(route=ROUTE, call=n, kind="server_error") for n in (1, 2)]
    scenario = Scenario(queue_limits={"gpt-4o": 90_000}, faults=Faults(script=tuple(fail)))
    with running_sandbox(scenario) as sandbox:
        live = LiveQueueLimits({"*": 9}, _api(sandbox.base_url), clock=ticks)
        assert limit_for(live, "gpt-4o") == 9
        ticks.now += RETRY_SECONDS
        assert limit_for(live, "gpt-4o") == 9  # the same failure again: not said again
        ticks.now += RETRY_SECONDS
        assert limit_for(live, "gpt-4o") == 90_000
        assert live.state().state == "read"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]
    assert "explicit limits only" in warnings[0] and ADMIN_KEY not in caplog.text


def test_a_copy_is_a_plain_snapshot() -> None:
    import copy
    import pickle

    with running_sandbox(Scenario(queue_limits={"gpt-4o": 90_000})) as sandbox:
        live = LiveQueueLimits({"*": 9}, _api(sandbox.base_url))
        for snapshot in (copy.copy(live), copy.deepcopy(live), pickle.loads(pickle.dumps(live))):
            assert type(snapshot) is dict and snapshot == {"gpt-4o": 90_000, "*": 9}


# -- the settings ---------------------------------------------------------------------------


def test_openais_variable_names_are_read_and_batchfsms_win() -> None:
    env = {"OPENAI_ADMIN_KEY": "sk-admin-a", "OPENAI_PROJECT_ID": "proj_a"}
    settings = Settings.from_env(env)
    assert settings.admin_key == SecretStr("sk-admin-a") and settings.project_id == "proj_a"
    both = Settings.from_env(env | {"BATCHFSM_ADMIN_KEY": "sk-admin-b",
                                    "BATCHFSM_PROJECT_ID": "proj_b"})  # fmt: skip
    assert both.admin_key == SecretStr("sk-admin-b") and both.project_id == "proj_b"
    assert "sk-admin" not in repr(both)


def test_the_admin_key_is_a_secret_never_read_from_a_toml_file(tmp_path: Any) -> None:
    from batchfsm.errors import ConfigError

    (tmp_path / "batchfsm.toml").write_text('admin_key = "sk-admin-committed"\n')
    with pytest.raises(ConfigError, match="admin_key is a secret") as caught:
        Settings.from_env({}, config_dir=tmp_path)
    assert "sk-admin-committed" not in str(caught.value)


def test_the_runtime_reads_the_api_only_for_openai_with_a_project(
    caplog: pytest.LogCaptureFixture,
) -> None:
    explicit = {"gpt-4o": 5}
    plain = Settings(queue_limits=explicit)
    assert with_api_queue_limits(plain) is plain and caplog.records == []
    key = SecretStr("sk-admin-x")
    azure = Settings(queue_limits=explicit, admin_key=key, project_id="p", provider="azure")
    assert with_api_queue_limits(azure) is azure
    no_project = Settings(queue_limits=explicit, admin_key=key)
    assert with_api_queue_limits(no_project) is no_project
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 2
    assert "Azure OpenAI has no Administration API" in said[0] and "per deployment" in said[0]
    assert "without BATCHFSM_PROJECT_ID" in said[1]
    openai = Settings(queue_limits=explicit, admin_key=key, project_id="p")
    live = with_api_queue_limits(openai).queue_limits
    assert isinstance(live, LiveQueueLimits) and live.api.base_url == "https://api.openai.com/v1"
    assert live.explicit == explicit
