"""The sandbox's one Administration API route: a project's rate limits, holding its
queue limits as ``batch_1_day_max_input_tokens``, for an admin key only, paginated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, Scenario, World
from batchfsm.sandbox.dialects import DialectApp

ROOT = "http://sandbox.invalid"
PATH = "/v1/organization/projects/proj_1/rate_limits"
ADMIN = {"Authorization": "Bearer sk-admin-0123456789abcdef"}
LIMITS = {"gpt-4o": 90_000, "gpt-4o-mini": 2_000_000, "o3": 250_000, "*": 7}


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    app = SandboxApp(World(Scenario(queue_limits=LIMITS), clock=FrozenClock()))
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url=ROOT) as client:
        yield client


def _page(http: httpx2.Client, **params: Any) -> dict[str, Any]:
    answer = http.get(PATH, params=params, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def test_each_model_with_a_limit_is_a_rate_limit_row(http: httpx2.Client) -> None:
    page = _page(http)
    assert page["object"] == "list" and page["has_more"] is False
    assert [row["model"] for row in page["data"]] == ["gpt-4o", "gpt-4o-mini", "o3"]
    row = page["data"][0]
    assert row["object"] == "project.rate_limit" and row["id"] == "rl-gpt-4o"
    assert row["batch_1_day_max_input_tokens"] == 90_000
    assert {"max_requests_per_1_minute", "max_tokens_per_1_minute"} <= set(row)
    assert (page["first_id"], page["last_id"]) == ("rl-gpt-4o", "rl-o3")


def test_pages_follow_limit_and_after(http: httpx2.Client) -> None:
    first = _page(http, limit=2)
    assert [r["model"] for r in first["data"]] == ["gpt-4o", "gpt-4o-mini"]
    assert first["has_more"] is True and first["last_id"] == "rl-gpt-4o-mini"
    second = _page(http, limit=2, after=first["last_id"])
    assert [r["model"] for r in second["data"]] == ["o3"] and second["has_more"] is False
    assert _page(http, after="rl-o3") == {
        "object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False
    }  # fmt: skip


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_a_bad_limit_is_refused(http: httpx2.Client, limit: str) -> None:
    answer = http.get(PATH, params={"limit": limit}, headers=ADMIN)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "limit"


@pytest.mark.parametrize("header", [None, "Bearer sk-proj-ordinary-key-0123456789", "Bearer x"])
def test_only_an_admin_key_is_taken(http: httpx2.Client, header: str | None) -> None:
    answer = http.get(PATH, headers={"Authorization": header} if header else {})
    assert answer.status_code == 401
    assert "ordinary-key-0123456789" not in answer.text  # shown masked, as OpenAI does


def test_other_providers_dialects_have_no_such_route() -> None:
    app = DialectApp(World(Scenario(queue_limits=LIMITS), clock=FrozenClock()), "azure")
    with httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url=ROOT) as http:
        answer = http.get(
            "/openai/v1/organization/projects/proj_1/rate_limits",
            headers={"api-key": "sk-admin-0123456789abcdef"},
        )
    assert answer.status_code == 404
