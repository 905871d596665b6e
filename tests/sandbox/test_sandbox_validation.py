"""Input-file validation: accepted at create, ``failed`` with ``errors.data`` after validating."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from batchfsm.sandbox import Fate, Phases, Scenario

from .conftest import Harness


def _line(custom_id: str, *, url: str = "/v1/embeddings", model: str = "m") -> bytes:
    body = {"model": model, "input": custom_id}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def _fail(harness: Harness, content: bytes) -> list[dict[str, Any]]:
    """Submit ``content``; check the failed batch's shape; return its errors.data."""
    batch = harness.create(harness.upload(content))
    assert batch.status == "validating"
    assert harness.at(batch.id, 1.9).status == "validating"
    failed = harness.at(batch.id, 0.1)
    assert failed.status == "failed"
    assert failed.failed_at == batch.created_at + 2
    assert failed.in_progress_at is None
    assert failed.output_file_id is None
    assert failed.error_file_id is None
    assert failed.request_counts is not None
    assert failed.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert failed.errors is not None
    assert failed.errors.object == "list"
    assert failed.errors.data is not None
    # Failed is terminal: much later it is still failed, with the same errors.
    assert harness.at(batch.id, 86400 * 2) == failed
    return [e.model_dump() for e in failed.errors.data]


def test_invalid_json_line(harness: Harness) -> None:
    content = b"\n".join([_line("a"), b"{not json", _line("c"), b"[1, 2]"])
    assert _fail(harness, content) == [
        {"code": "invalid_json_line", "message": "Line 2 is not a valid JSON object.",
         "param": None, "line": 2},
        {"code": "invalid_json_line", "message": "Line 4 is not a valid JSON object.",
         "param": None, "line": 4},
    ]  # fmt: skip


def test_duplicate_custom_id(harness: Harness) -> None:
    errors = _fail(harness, b"\n".join([_line("a"), _line("b"), _line("a")]))
    assert [(e["code"], e["line"], e["param"]) for e in errors] == [
        ("duplicate_custom_id", 3, "custom_id")
    ]


def test_url_mismatch(harness: Harness) -> None:
    errors = _fail(harness, b"\n".join([_line("a"), _line("b", url="/v1/chat/completions")]))
    assert [(e["code"], e["line"], e["param"]) for e in errors] == [("url_mismatch", 2, "url")]


def test_model_mismatch(harness: Harness) -> None:
    errors = _fail(harness, b"\n".join([_line("a"), _line("b", model="other")]))
    assert [(e["code"], e["line"], e["param"]) for e in errors] == [
        ("model_mismatch", 2, "body.model")
    ]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \n"])
def test_empty_file(harness: Harness, content: bytes) -> None:
    errors = _fail(harness, content)
    assert [(e["code"], e["line"]) for e in errors] == [("empty_file", None)]


def test_too_many_tasks_at_the_real_limit(harness: Harness) -> None:
    content = b"\n".join(_line(f"r{i}") for i in range(50_001))
    errors = _fail(harness, content)
    assert [(e["code"], e["line"]) for e in errors] == [("too_many_tasks", None)]
    assert "50001" in errors[0]["message"]


def test_exactly_the_limit_is_accepted(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(Scenario(max_requests=3))
    batch = harness.create(harness.upload(b"\n".join(_line(f"r{i}") for i in range(3))))
    assert harness.at(batch.id, 2).status == "in_progress"
    over = harness.create(harness.upload(b"\n".join(_line(f"r{i}") for i in range(4))))
    assert harness.at(over.id, 2).status == "failed"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"method": "POST", "url": "/v1/embeddings", "body": {}}, "custom_id"),
        ({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}, "method"),
        ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings"}, "body"),
    ],
)
def test_malformed_request_fields(harness: Harness, item: dict[str, Any], param: str) -> None:
    errors = _fail(harness, orjson.dumps(item))
    assert [(e["line"], e["param"]) for e in errors] == [(1, param)]


def test_token_limit_exceeded_fate(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(
        Scenario(default=Fate(kind="token_limit_exceeded", phases=Phases(validating_s=2)))
    )
    errors = _fail(harness, b"\n".join([_line("a"), _line("b")]))
    assert len(errors) == 1
    assert errors[0]["code"] == "token_limit_exceeded"
    assert errors[0]["param"] is None
    assert errors[0]["line"] is None
    assert errors[0]["message"].startswith("Enqueued token limit reached for m ")


def test_trailing_newlines_and_crlf_are_fine(harness: Harness) -> None:
    content = _line("a") + b"\r\n" + _line("b") + b"\r\n\n"
    batch = harness.create(harness.upload(content))
    done = harness.at(batch.id, 3600)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert done.request_counts.total == 2
