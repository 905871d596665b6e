"""Every endpoint through the official client: objects, auth, errors, pagination, stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import orjson
import pytest
from werkzeug.test import EnvironBuilder

from batchfsm.sandbox.app import CHUNK_BYTES
from batchfsm.sandbox.testing import batch_input, openai_client

from .conftest import Harness


def _raw(harness: Harness, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    """A plain HTTP call to the app, for what the official client cannot express."""
    with httpx2.Client(
        transport=httpx2.WSGITransport(app=harness.app), base_url="http://sandbox.invalid"
    ) as http:
        return http.request(method, path, **kwargs)


AUTH = {"Authorization": "Bearer test"}


# -- files ---------------------------------------------------------------------------


def test_upload_and_retrieve_file_object(harness: Harness) -> None:
    content = batch_input(["a", "b"])
    created = harness.client.files.create(file=("in.jsonl", content), purpose="batch")
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.bytes == len(content)
    assert created.filename == "in.jsonl"
    assert created.purpose == "batch"
    assert created.status == "processed"
    assert created.created_at == int(harness.clock.now().timestamp())
    assert harness.client.files.retrieve(created.id) == created
    assert harness.client.files.content(created.id).content == content


def test_upload_rejects_other_purposes_and_missing_file(harness: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        harness.client.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    assert info.value.param == "purpose"
    response = _raw(harness, "POST", "/v1/files", data={"purpose": "batch"}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_file_content_is_streamed_in_chunks(harness: Harness) -> None:
    big = b"x" * (CHUNK_BYTES * 2 + 10)
    file_id = harness.upload(big)
    environ = EnvironBuilder(
        path=f"/v1/files/{file_id}/content", headers=list(AUTH.items())
    ).get_environ()
    seen: list[str] = []
    body = harness.app(environ, lambda status, headers, exc_info=None: seen.append(status))  # type: ignore[arg-type]
    chunks = list(body)
    assert seen == ["200 OK"]
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 10]
    assert b"".join(chunks) == big


def test_unknown_file_is_not_found(harness: Harness) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        harness.client.files.retrieve("file-nope")
    assert info.value.body == {
        "message": "No such File object: file-nope",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        harness.client.files.content("file-nope")


# -- auth and routing ----------------------------------------------------------------


def test_missing_or_empty_key_is_401_in_api_shape(harness: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        response = _raw(harness, "GET", "/v1/batches", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert "API key" in error["message"]


def test_the_client_raises_authentication_error(harness: Harness) -> None:
    # The official client refuses an empty key itself, so send one it allows but the
    # server cannot accept: whitespace.
    with (
        openai_client(harness.app, api_key=" ") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.batches.list()


def test_unknown_route_is_404_in_api_shape(harness: Harness) -> None:
    response = _raw(harness, "GET", "/v1/nothing/here", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (GET /v1/nothing/here)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    wrong_method = _raw(harness, "DELETE", "/v1/batches", headers=AUTH)
    assert wrong_method.status_code == 404


# -- batches -------------------------------------------------------------------------


def test_create_returns_a_validating_batch_with_every_field(harness: Harness) -> None:
    file_id = harness.upload(batch_input(["a", "b"]))
    now = int(harness.clock.now().timestamp())
    batch = harness.create(file_id, metadata={"job": "j1"})
    raw = _raw(harness, "GET", f"/v1/batches/{batch.id}", headers=AUTH).json()
    assert set(raw) == {
        "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
        "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
        "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
        "cancelled_at", "request_counts", "metadata", "model", "usage",
    }  # fmt: skip
    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.status == "validating"
    assert batch.endpoint == "/v1/embeddings"
    assert batch.input_file_id == file_id
    assert batch.completion_window == "24h"
    assert batch.created_at == now
    assert batch.expires_at == now + 86400
    assert batch.metadata == {"job": "j1"}
    assert batch.model == "text-embedding-3-small"
    assert batch.errors is None
    assert batch.output_file_id is None
    assert batch.error_file_id is None
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                 "expired_at", "cancelling_at", "cancelled_at"):  # fmt: skip
        assert getattr(batch, name) is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"endpoint": "/v1/embeddings", "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "F", "endpoint": "/v1/nope", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": "F", "endpoint": "/v1/embeddings", "completion_window": "1h"},
         "completion_window"),
        ({"input_file_id": "file-missing", "endpoint": "/v1/embeddings",
          "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "F", "endpoint": "/v1/embeddings", "completion_window": "24h",
          "metadata": {"k": "v" * 513}}, "metadata"),
        ({"input_file_id": "F", "endpoint": "/v1/embeddings", "completion_window": "24h",
          "metadata": {"sandbox_fate": "no-such-fate"}}, "metadata"),
    ],
)  # fmt: skip
def test_bad_create_is_400(harness: Harness, params: dict[str, Any], param: str) -> None:
    file_id = harness.upload(batch_input(["a"]))
    body = {k: (file_id if v == "F" else v) for k, v in params.items()}
    with pytest.raises(openai.BadRequestError) as info:
        harness.client.post("/batches", body=body, cast_to=object)
    assert info.value.status_code == 400
    assert info.value.param == param
    assert harness.app.world.batch_ids() == []


def test_create_with_an_unparseable_body_is_400(harness: Harness) -> None:
    response = _raw(harness, "POST", "/v1/batches", content=b"[1,", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_batch_is_not_found(harness: Harness) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        harness.client.batches.retrieve("batch_nope")
    assert info.value.body == {
        "message": "No batch found with id 'batch_nope'.",
        "type": "invalid_request_error",
        "param": "batch_id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        harness.client.batches.cancel("batch_nope")


def test_list_pages_newest_first(harness: Harness) -> None:
    file_id = harness.upload(batch_input(["a"]))
    ids = [harness.create(file_id).id for _ in range(5)]
    newest_first = ids[::-1]

    page = harness.client.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more is True
    raw = _raw(harness, "GET", "/v1/batches?limit=2", headers=AUTH).json()
    assert raw["object"] == "list"
    assert raw["first_id"] == newest_first[0]
    assert raw["last_id"] == newest_first[1]

    second = harness.client.batches.list(limit=2, after=newest_first[1])
    assert [b.id for b in second.data] == newest_first[2:4]
    last = harness.client.batches.list(limit=2, after=newest_first[3])
    assert [b.id for b in last.data] == newest_first[4:]
    assert last.has_more is False

    # The client's auto-pagination follows after=last_id to the end.
    assert [b.id for b in harness.client.batches.list(limit=2)] == newest_first
    assert [b.id for b in harness.client.batches.list()] == newest_first  # default 20


def test_list_of_nothing(harness: Harness) -> None:
    raw = _raw(harness, "GET", "/v1/batches", headers=AUTH).json()
    assert raw == {"object": "list", "data": [], "first_id": None, "last_id": None,
                   "has_more": False}  # fmt: skip


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_list_limit_out_of_range_is_400(harness: Harness, limit: str) -> None:
    response = _raw(harness, "GET", f"/v1/batches?limit={limit}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_list_default_limit_is_20(harness: Harness) -> None:
    file_id = harness.upload(batch_input(["a"]))
    for _ in range(21):
        harness.create(file_id)
    raw = _raw(harness, "GET", "/v1/batches", headers=AUTH).json()
    assert len(raw["data"]) == 20
    assert raw["has_more"] is True


def test_cancel_of_terminal_batch_is_400(harness: Harness) -> None:
    batch = harness.submit(["a"])
    assert harness.at(batch.id, 3600).status == "completed"
    with pytest.raises(openai.BadRequestError):
        harness.client.batches.cancel(batch.id)


# -- bodies per endpoint ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "model", "object_name"),
    [
        ("/v1/embeddings", "text-embedding-3-small", "list"),
        ("/v1/chat/completions", "gpt-4o-mini", "chat.completion"),
        ("/v1/responses", "gpt-4o-mini", "response"),
        ("/v1/completions", "gpt-3.5-turbo-instruct", "text_completion"),
    ],
)
def test_deterministic_bodies_per_endpoint(
    make_harness: Callable[..., Harness], endpoint: str, model: str, object_name: str
) -> None:
    outputs = []
    for _ in range(2):
        h = make_harness()
        batch = h.submit(["a", "b"], endpoint=endpoint, model=model)
        done = h.at(batch.id, 3600)
        assert done.status == "completed"
        lines = h.lines(done.output_file_id)
        outputs.append(h.client.files.content(done.output_file_id or "").content)
        for line in lines:
            assert set(line) == {"id", "custom_id", "response", "error"}
            assert line["id"].startswith("batch_req_")
            assert line["error"] is None
            assert line["response"]["status_code"] == 200
            assert line["response"]["request_id"].startswith("req_")
            assert line["response"]["body"]["object"] == object_name
            assert line["response"]["body"]["model"] == model
    assert outputs[0] == outputs[1]


def test_embedding_vectors_follow_the_text(harness: Harness) -> None:
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "m", "input": text}}
        for cid, text in (("a", "same"), ("b", "same"), ("c", "other"))
    ]  # fmt: skip
    content = b"\n".join(orjson.dumps(line) for line in lines)
    batch = harness.create(harness.upload(content))
    done = harness.at(batch.id, 3600)
    by_id = {ln["custom_id"]: ln["response"]["body"] for ln in harness.lines(done.output_file_id)}
    vectors = {cid: body["data"][0]["embedding"] for cid, body in by_id.items()}
    assert len(vectors["a"]) == 8
    assert vectors["a"] == vectors["b"] != vectors["c"]
    assert abs(sum(x * x for x in vectors["a"]) - 1.0) < 1e-4
    assert by_id["a"]["data"][0] == {"object": "embedding", "index": 0, "embedding": vectors["a"]}
    assert by_id["a"]["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


# -- stats and the sandbox helpers -----------------------------------------------------


def test_stats_count_calls_per_route(harness: Harness) -> None:
    batch = harness.submit(["a"])
    for _ in range(3):
        harness.client.batches.retrieve(batch.id)
    stats = harness.app.stats
    assert stats.count("GET /v1/batches/{batch_id}") == 3
    assert stats.count("POST /v1/files") == 1
    assert stats.count("POST /v1/batches") == 1
    assert stats.count() == 5
    body = _raw(harness, "GET", "/sandbox/stats").json()
    assert body == {
        "total": 5,
        "by_endpoint": {
            "GET /v1/batches/{batch_id}": 3,
            "POST /v1/batches": 1,
            "POST /v1/files": 1,
        },
        "by_status": {"200": 5},
        "faults": 0,
        "queue": {"limits": {}, "peak": {}},
    }
    assert [entry.route for entry in stats.log][:2] == ["POST /v1/files", "POST /v1/batches"]
    stats.reset()
    assert stats.count() == 0


def test_advance_endpoint_moves_sandbox_time(harness: Harness) -> None:
    batch = harness.submit(["a"])
    response = _raw(harness, "POST", "/sandbox/advance", json={"seconds": 3600})
    assert response.status_code == 200
    assert response.json()["now"] == harness.clock.now().timestamp() + 3600
    assert harness.client.batches.retrieve(batch.id).status == "completed"
    assert _raw(harness, "POST", "/sandbox/advance", json={"seconds": -1}).status_code == 400
    assert _raw(harness, "POST", "/sandbox/advance", content=b"nope").status_code == 400


def test_deleting_a_file_makes_it_404_like_an_expired_result_file(
    sandbox_client: openai.OpenAI,
) -> None:
    uploaded = sandbox_client.files.create(file=("in.jsonl", batch_input(["a"])), purpose="batch")
    deleted = sandbox_client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    with pytest.raises(openai.NotFoundError):
        sandbox_client.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        sandbox_client.files.delete(uploaded.id)
