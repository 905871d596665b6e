"""OpenAIGateway through the real openai client, served by an in-process fake API.

The server is a plain callable behind ``httpx2.MockTransport`` (as in httpx's own tests):
no patching of the client or of our code. Each scripted answer is consumed by one HTTP
request, so request counts are exact. The last test runs the whole edge (plan, upload,
create, poll, download, classify, sink) against the local sandbox.
"""

from __future__ import annotations

import logging
import os
import random
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from batchfsm.errors import (
    AuthenticationFailedError,
    BatchNotFoundError,
    GatewayError,
    GatewayUnavailableError,
    RateLimitedError,
)
from batchfsm.gateway import OpenAIGateway
from batchfsm.jobs.input_file import plan_chunks, write_chunk
from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, World
from batchfsm.sandbox.testing import batch_input, openai_client

API_KEY = "sk-proj-TESTKEY0123456789abcdefSECRET"
BASE_URL = "https://api.test/v1"

Answer = httpx2.Response | Exception | Callable[[httpx2.Request], httpx2.Response]


class FakeAPI:
    """Answers requests from a script, one entry per request, and records them."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def batch_json(batch_id: str = "batch_1", status: str = "in_progress", **extra: Any) -> Any:
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/embeddings",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "created_at": 1_774_437_191,
        "in_progress_at": 1_774_437_194,
        "expires_at": 1_774_523_591,
        "output_file_id": None,
        "error_file_id": "",
        "request_counts": {"total": 2, "completed": 1, "failed": 0},
        **extra,
    }


def ok(payload: Any) -> httpx2.Response:
    return httpx2.Response(200, json=payload)


def api_error(status: int, message: str = "boom", code: str | None = None,
              headers: dict[str, str] | None = None) -> httpx2.Response:  # fmt: skip
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}  # fmt: skip
    return httpx2.Response(status, json=body, headers=headers)


def refused() -> httpx2.ConnectError:
    return httpx2.ConnectError("connection refused")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make(sleeps: Sleeps) -> Iterator[Callable[..., OpenAIGateway]]:
    clients: list[httpx2.Client] = []

    def build(api: FakeAPI, **options: Any) -> OpenAIGateway:
        http = httpx2.Client(transport=httpx2.MockTransport(api))
        clients.append(http)
        client = openai.OpenAI(api_key=API_KEY, base_url=BASE_URL, http_client=http,
                               max_retries=options.pop("client_retries", 0))  # fmt: skip
        options.setdefault("rng", random.Random(42))
        return OpenAIGateway(client, sleep=sleeps, **options)

    yield build
    for http in clients:
        http.close()


# -- retrieve, create, cancel, list ------------------------------------------------------


def test_retrieve_is_one_request_and_keeps_unknown_status(make: Any) -> None:
    api = FakeAPI(ok(batch_json(status="some_new_status")))
    snapshot = make(api).retrieve("batch_1")
    assert snapshot.status == "some_new_status"
    assert snapshot.error_file_id is None  # "" normalised
    assert snapshot.request_counts is not None and snapshot.request_counts.completed == 1
    (request,) = api.requests
    assert (request.method, request.url.path) == ("GET", "/v1/batches/batch_1")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_retries_429_500_and_connection_errors_with_jittered_backoff(
    make: Any, sleeps: Sleeps
) -> None:
    api = FakeAPI(api_error(429), api_error(500), refused(), ok(batch_json()))
    gateway = make(api, backoff_base=0.5, backoff_cap=30, rng=random.Random(7))
    assert gateway.retrieve("batch_1").id == "batch_1"
    assert len(api.requests) == 4
    expected = random.Random(7)
    assert sleeps == [expected.uniform(0, 0.5), expected.uniform(0, 1.0), expected.uniform(0, 2.0)]


def test_backoff_is_capped_and_errors_surface_after_the_last_attempt(
    make: Any, sleeps: Sleeps
) -> None:
    api = FakeAPI(*[api_error(503, "overloaded")] * 6)
    gateway = make(api, max_attempts=6, backoff_base=1.0, backoff_cap=2.0)
    with pytest.raises(GatewayUnavailableError) as info:
        gateway.retrieve("batch_1")
    assert info.value.status_code == 503
    assert info.value.batch_id == "batch_1"
    assert "overloaded" in str(info.value)
    assert len(api.requests) == 6
    assert len(sleeps) == 5
    assert all(0 <= s <= 2.0 for s in sleeps)
    assert len(set(sleeps)) == 5  # jittered, not a fixed schedule


def test_rate_limit_after_retries(make: Any) -> None:
    api = FakeAPI(*[api_error(429, "slow down", "rate_limit_exceeded")] * 3)
    with pytest.raises(RateLimitedError) as info:
        make(api, max_attempts=3).retrieve("batch_1")
    assert info.value.status_code == 429
    assert len(api.requests) == 3


def test_connection_failure_after_retries(make: Any) -> None:
    api = FakeAPI(refused(), refused())
    with pytest.raises(GatewayUnavailableError) as info:
        make(api, max_attempts=2).retrieve("batch_1")
    assert info.value.status_code is None
    assert "ConnectError" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_authentication_failed_never_retried(
    make: Any, sleeps: Sleeps, status: int
) -> None:
    """The key, not the batch: a typed error pollers let through (issue 11)."""
    api = FakeAPI(api_error(status, f"Incorrect API key provided: {API_KEY}.", "invalid_api_key"))
    with pytest.raises(AuthenticationFailedError) as info:
        make(api).retrieve("batch_1")
    assert info.value.status_code == status and "check OPENAI_API_KEY" in str(info.value)
    assert API_KEY not in str(info.value)
    assert len(api.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [400, 409, 422])
def test_other_4xx_is_never_retried(make: Any, sleeps: Sleeps, status: int) -> None:
    api = FakeAPI(api_error(status, "Invalid 'endpoint'", "invalid_value"))
    with pytest.raises(GatewayError) as info:
        make(api).retrieve("batch_1")
    err = info.value
    assert type(err) is GatewayError
    assert err.status_code == status
    assert "Invalid 'endpoint'" in str(err) and "invalid_value" in str(err)
    assert len(api.requests) == 1
    assert sleeps == []


def test_404_is_batch_not_found_without_retry(make: Any) -> None:
    api = FakeAPI(api_error(404, "No batch found with id 'batch_gone'."))
    with pytest.raises(BatchNotFoundError) as info:
        make(api).retrieve("batch_gone")
    assert (info.value.status_code, info.value.batch_id) == (404, "batch_gone")
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"retry-after": "900"}, 60)],
)
def test_retry_after_is_honoured_and_capped(
    make: Any, sleeps: Sleeps, headers: dict[str, str], expected: float
) -> None:
    api = FakeAPI(api_error(429, headers=headers), ok(batch_json()))
    make(api, retry_after_cap=60).retrieve("batch_1")
    assert sleeps == [expected]


def test_client_retries_are_switched_off(make: Any) -> None:
    # a client built with its own retries must not multiply ours
    api = FakeAPI(api_error(500))
    with pytest.raises(GatewayUnavailableError):
        make(api, client_retries=3, max_attempts=1).retrieve("batch_1")
    assert len(api.requests) == 1


def test_create_sends_the_intent_and_does_not_retry_ambiguous_failures(
    make: Any, sleeps: Sleeps
) -> None:
    api = FakeAPI(api_error(429), refused(), ok(batch_json(status="validating")))
    snapshot = make(api).create("file-in", "/v1/embeddings", {"intent_id": "int-1"})
    assert snapshot.status == "validating"
    assert len(api.requests) == 3  # 429 and a refused connection: surely not created
    sent = orjson.loads(api.requests[-1].content)
    assert sent == {
        "input_file_id": "file-in",
        "endpoint": "/v1/embeddings",
        "completion_window": "24h",
        "metadata": {"intent_id": "int-1"},
        # the default lifetime of the result files, sent so their end is known
        "output_expires_after": {"anchor": "created_at", "seconds": 30 * 24 * 3600},
    }

    # a 500 may have created the batch: report it, let the caller reconcile by metadata
    api = FakeAPI(api_error(500))
    with pytest.raises(GatewayUnavailableError):
        make(api).create("file-in", "/v1/embeddings", {"intent_id": "int-2"})
    assert len(api.requests) == 1


def test_create_rejected_synchronously_keeps_the_api_reason(make: Any) -> None:
    api = FakeAPI(api_error(400, "Duplicate custom_id 'a' on line 2", "duplicate_custom_id"))
    with pytest.raises(GatewayError) as info:
        make(api).create("file-in", "/v1/embeddings", None)
    assert "duplicate_custom_id" in str(info.value)
    assert info.value.status_code == 400


def test_cancel(make: Any) -> None:
    api = FakeAPI(ok(batch_json(status="cancelling", cancelling_at=1_774_437_300)))
    snapshot = make(api).cancel("batch_1")
    assert snapshot.status == "cancelling"
    assert (api.requests[0].method, api.requests[0].url.path) == (
        "POST",
        "/v1/batches/batch_1/cancel",
    )


def test_iter_batches_follows_pages(make: Any) -> None:
    page1 = {"object": "list", "data": [batch_json("batch_a"), batch_json("batch_b")],
             "first_id": "batch_a", "last_id": "batch_b", "has_more": True}  # fmt: skip
    page2 = {"object": "list", "data": [batch_json("batch_c", metadata={"intent_id": "i"})],
             "first_id": "batch_c", "last_id": "batch_c", "has_more": False}  # fmt: skip
    api = FakeAPI(ok(page1), api_error(502), ok(page2))
    found = list(make(api).iter_batches(limit=2))
    assert [b.id for b in found] == ["batch_a", "batch_b", "batch_c"]
    assert found[2].metadata == {"intent_id": "i"}
    assert api.requests[0].url.params["limit"] == "2"
    assert "after" not in api.requests[0].url.params
    assert api.requests[2].url.params["after"] == "batch_b"  # the 502 page was retried


# -- files -------------------------------------------------------------------------------


def test_upload_streams_the_file_with_purpose_batch(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "chunk-0.jsonl"
    path.write_bytes(b'{"custom_id": "a"}\n')
    api = FakeAPI(api_error(500), lambda r: ok({"id": "file-abc", "object": "file", "bytes": 19,
                  "created_at": 1, "filename": "chunk-0.jsonl", "purpose": "batch"}))  # fmt: skip
    assert make(api).upload(path) == "file-abc"
    assert len(api.requests) == 2  # the file is reopened for the retry
    request = api.requests[-1]
    request.read()
    assert request.url.path == "/v1/files"
    assert b'name="purpose"\r\n\r\nbatch' in request.content
    assert b'filename="chunk-0.jsonl"' in request.content
    assert b'{"custom_id": "a"}\n' in request.content


@pytest.mark.parametrize("file_id", ["", None])
def test_download_without_a_file_makes_no_request(
    make: Any, tmp_path: Path, file_id: str | None
) -> None:
    api = FakeAPI()
    assert make(api).download(file_id, tmp_path / "out.jsonl") is None
    assert api.requests == []
    assert list(tmp_path.iterdir()) == []


def test_download_writes_the_exact_bytes(make: Any, tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    api = FakeAPI(httpx2.Response(200, content=content))
    dest = tmp_path / "files" / "output.jsonl"
    assert make(api).download("file-out", dest) == dest
    assert dest.read_bytes() == content
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left behind
    assert api.requests[0].url.path == "/v1/files/file-out/content"


class BreaksMidway(httpx2.SyncByteStream):
    """Sends some bytes, then the connection drops."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"custom_id": "a", "response": {"status_code": 200, "bo'
        raise httpx2.ReadError("connection reset by peer")


def test_download_that_breaks_midway_leaves_no_file(make: Any, tmp_path: Path) -> None:
    api = FakeAPI(*[httpx2.Response(200, stream=BreaksMidway()) for _ in range(2)])
    dest = tmp_path / "output.jsonl"
    with pytest.raises(GatewayUnavailableError, match="ReadError"):
        make(api, max_attempts=2).download("file-out", dest)
    assert len(api.requests) == 2
    assert list(tmp_path.iterdir()) == []


def test_download_retries_a_broken_stream_from_scratch(make: Any, tmp_path: Path) -> None:
    api = FakeAPI(
        httpx2.Response(200, stream=BreaksMidway()), httpx2.Response(200, content=b"ok\n")
    )
    dest = tmp_path / "output.jsonl"
    make(api).download("file-out", dest)
    assert dest.read_bytes() == b"ok\n"
    assert list(tmp_path.iterdir()) == [dest]


def test_download_of_an_expired_file_is_not_found(make: Any, tmp_path: Path) -> None:
    api = FakeAPI(api_error(404, "No such File object: file-old"))
    with pytest.raises(BatchNotFoundError, match="file-old"):
        make(api).download("file-old", tmp_path / "o.jsonl")
    assert list(tmp_path.iterdir()) == []


# -- secrets -----------------------------------------------------------------------------


def test_api_key_never_reaches_errors_or_logs(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Incorrect API key provided: {API_KEY}. You can find your API key at ..."
    api = FakeAPI(api_error(500, echo), api_error(401, echo, "invalid_api_key"))
    with pytest.raises(GatewayError) as info:
        make(api).retrieve("batch_1")
    err = info.value
    assert err.status_code == 401
    rendered = "".join(traceback.format_exception(err)) + repr(err) + str(err)
    assert "invalid_api_key" in rendered and "Incorrect API key provided" in rendered
    assert API_KEY not in rendered
    assert "TESTKEY" not in rendered
    assert caplog.records, "expected at least the retry warning"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert "TESTKEY" not in record.getMessage()
    assert any("retry 1 of" in r.getMessage() for r in caplog.records)


def test_from_env_uses_the_client_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    gateway = OpenAIGateway.from_env(max_attempts=2, sleep=lambda _: None)
    assert gateway.max_attempts == 2
    with pytest.raises(GatewayUnavailableError):  # nothing listens on port 9
        gateway.retrieve("batch_1")


# -- end to end against the sandbox --------------------------------------------------------


def test_full_round_trip_through_the_sandbox(tmp_path: Path) -> None:
    """Plan, upload, create, poll, download and classify against the local sandbox."""
    ids = ["ok-1", "ok-2", "bad#fail=400", "busy#fail=429", "slow#fail=timeout"]
    source = tmp_path / "input.jsonl"
    source.write_bytes(batch_input(ids))
    (chunk,) = plan_chunks(source, "/v1/embeddings")
    write_chunk(chunk.requests, tmp_path / "chunk-0.jsonl")

    clock = FrozenClock()
    with openai_client(SandboxApp(World(None, clock=clock))) as client:
        gateway = OpenAIGateway(client, sleep=lambda _: None)
        file_id = gateway.upload(tmp_path / "chunk-0.jsonl")
        created = gateway.create(file_id, "/v1/embeddings", {"intent_id": "intent-1"})
        assert created.status == "validating"
        assert [
            b.id for b in gateway.iter_batches() if b.metadata == {"intent_id": "intent-1"}
        ] == [created.id]
        clock.advance(60)
        done = gateway.retrieve(created.id or "")
        assert done.status == "completed"
        output = gateway.download(done.output_file_id, tmp_path / "out.jsonl")
        errors = gateway.download(done.error_file_id, tmp_path / "err.jsonl")
    assert output is not None and errors is not None

    outcomes = [*iter_outcomes(output), *iter_outcomes(errors)]
    kinds = {o.custom_id: o.kind for o in outcomes}
    assert kinds == {
        "ok-1": OutcomeKind.SUCCEEDED,
        "ok-2": OutcomeKind.SUCCEEDED,
        "bad#fail=400": OutcomeKind.PERMANENT,
        "busy#fail=429": OutcomeKind.RETRYABLE,
        "slow#fail=timeout": OutcomeKind.RETRYABLE,
    }
    sink = DirectorySink(tmp_path / "results")
    successes = [(o.custom_id, o.body) for o in outcomes if o.custom_id and o.body]
    assert sink.write_batch("job-1", created.id or "", successes) == 2
    delivered = dict(sink.read_batch("job-1", created.id or ""))
    assert len(orjson.loads(delivered["ok-1"])["data"][0]["embedding"]) > 0


@pytest.mark.parametrize("status", [400, 429])
def test_create_refused_with_a_full_queue_keeps_the_code_and_is_not_retried(
    make: Any, sleeps: Sleeps, status: int
) -> None:
    """Azure refuses a create over the enqueued-token limit with 400 (in regions that
    fail fast), a proxy may say 429: either way only time helps, so the gateway hands
    the code up at once instead of hammering the queue."""
    message = "Enqueued token limit reached for gpt-4o-mini. Please try again later."
    api = FakeAPI(api_error(status, message, "token_limit_exceeded"))
    with pytest.raises(GatewayError) as info:
        make(api).create("file-in", "/v1/embeddings", {"intent_id": "int-1"})
    assert (info.value.status_code, info.value.code) == (status, "token_limit_exceeded")
    assert len(api.requests) == 1
    assert sleeps == []
