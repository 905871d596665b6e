"""The sandbox's provider dialects, on the wire: each answers what its provider's
published reference shows, and refuses what that provider would (a plain OpenAI client
cannot pass for Azure's, an OpenAI upload form cannot pass for Together's)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Final

import httpx2
import openai
import orjson
import pytest

from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, Scenario, World
from batchfsm.sandbox.dialects import AZURE_API_VERSION, DialectApp, dialect_base_url
from batchfsm.sandbox.testing import batch_input

ROOT = "http://sandbox.invalid"
CHAT: Final = "/v1/chat/completions"
SCENARIO = Scenario(
    named={
        "fails": Fate(kind="token_limit_exceeded"),
        "slow_finalizing": Fate(phases=Phases(finalizing_s=100.0)),
    }
)


class Rig:
    def __init__(self, dialect: str) -> None:
        self.clock = FrozenClock()
        self.app = DialectApp(World(SCENARIO, clock=self.clock), dialect)
        self.http = httpx2.Client(transport=httpx2.WSGITransport(app=self.app), base_url=ROOT)

    def client(self, **options: Any) -> openai.OpenAI:
        base = dialect_base_url(ROOT, self.app.dialect)
        return openai.OpenAI(api_key="k", base_url=base, http_client=self.http, **options)

    def azure(self) -> openai.AzureOpenAI:
        return openai.AzureOpenAI(
            api_key="k", api_version=AZURE_API_VERSION, azure_endpoint=ROOT, http_client=self.http
        )


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = Rig(request.param)
    yield made
    made.http.close()


def _create(client: openai.OpenAI, ids: list[str], fate: str | None = None) -> str:
    file_id = client.files.create(
        file=("in.jsonl", batch_input(ids, endpoint=CHAT)), purpose="batch"
    ).id
    metadata = {"sandbox_fate": fate} if fate else None
    return client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata=metadata
    ).id


@pytest.mark.parametrize("rig", ["azure"], indirect=True)
def test_azure_serves_azure_openai_under_openai_with_api_version_and_an_api_key(rig: Rig) -> None:
    client = rig.azure()
    batch_id = _create(client, ["a", "b"])
    rig.clock.advance(60)
    done = client.batches.retrieve(batch_id)
    assert done.status == "completed"
    # A batch that ended with no failed line still names an error file: empty (Azure).
    assert done.error_file_id
    assert client.files.content(done.error_file_id).content == b""
    assert client.files.retrieve(done.error_file_id).bytes == 0
    assert rig.app.stats.count("POST /v1/batches") == 1

    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(api_key="k", base_url=f"{ROOT}/v1", http_client=rig.http).batches.list()
    missing_version = rig.http.get("/openai/batches", headers={"api-key": "k"})
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["param"] == "api-version"
    no_key = rig.http.get("/openai/batches", params={"api-version": AZURE_API_VERSION})
    assert no_key.status_code == 401
    # Azure's v1 API takes the plain client with a bearer key.
    v1 = openai.OpenAI(api_key="k", base_url=f"{ROOT}/openai/v1", http_client=rig.http)
    assert [b.id for b in v1.batches.list().data] == [batch_id]


@pytest.mark.parametrize("rig", ["azure"], indirect=True)
def test_azure_sends_null_counts_on_a_failed_batch(rig: Rig) -> None:
    client = rig.azure()
    batch_id = _create(client, ["a", "b"], fate="fails")
    rig.clock.advance(60)
    raw = rig.http.get(
        f"/openai/batches/{batch_id}", params={"api-version": "x"}, headers={"api-key": "k"}
    ).json()
    assert raw["status"] == "failed"
    assert raw["request_counts"]["completed"] is None
    assert raw["request_counts"]["failed"] is None


def _together_upload(rig: Rig, **form: str) -> httpx2.Response:
    return rig.http.post(
        "/v1/files/upload",
        headers={"Authorization": "Bearer k"},
        data=form,
        files={"file": ("in.jsonl", io.BytesIO(batch_input(["a", "b"], endpoint=CHAT)))},
    )


@pytest.mark.parametrize("rig", ["together"], indirect=True)
def test_together_speaks_upper_case_and_its_own_objects(rig: Rig) -> None:
    upload = _together_upload(rig, purpose="batch-api", file_name="in.jsonl")
    assert upload.status_code == 200 and upload.json()["purpose"] == "batch-api"
    created = rig.http.post(
        "/v1/batches",
        headers={"Authorization": "Bearer k"},
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": CHAT,
            "metadata": {"sandbox_fate": "slow_finalizing"},
        },
    ).json()
    assert set(created) == {"job"}
    job = created["job"]
    assert job["status"] == "VALIDATING"
    assert job["model_id"] == "text-embedding-3-small"
    assert job["job_deadline"].endswith("Z") and job["created_at"].endswith("Z")
    assert "metadata" not in job and "request_counts" not in job

    rig.clock.advance(30)  # finalizing in the sandbox: Together has no word for it
    got = rig.http.get(f"/v1/batches/{job['id']}", headers={"Authorization": "Bearer k"}).json()
    assert (got["status"], got["progress"], got["completed_at"]) == ("IN_PROGRESS", 100.0, None)
    rig.clock.advance(100)
    listed = rig.http.get("/v1/batches", headers={"Authorization": "Bearer k"}).json()
    assert isinstance(listed, list)
    assert [(j["id"], j["status"]) for j in listed] == [(job["id"], "COMPLETED")]
    assert listed[0]["completed_at"].endswith("Z")


@pytest.mark.parametrize("rig", ["together"], indirect=True)
def test_together_refuses_openai_s_upload_form(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError, match="purpose 'batch-api'"):
        rig.client().files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    no_name = _together_upload(rig, purpose="batch-api")
    assert no_name.status_code == 400
    assert no_name.json()["error"]["param"] == "file_name"
    assert rig.app.stats.count("POST /v1/files") == 0


@pytest.mark.parametrize("rig", ["groq"], indirect=True)
def test_groq_serves_under_openai_v1_and_takes_chat_completions_only(rig: Rig) -> None:
    client = rig.client()
    assert str(client.base_url) == f"{ROOT}/openai/v1/"
    _create(client, ["a"])
    file_id = client.files.create(file=("e.jsonl", batch_input(["a"])), purpose="batch").id
    with pytest.raises(openai.BadRequestError, match="'/v1/embeddings' is not supported"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
    assert rig.http.get("/v1/batches", headers={"Authorization": "Bearer k"}).status_code == 404


@pytest.mark.parametrize("rig", ["openrouter"], indirect=True)
def test_openrouter_lists_finalizing_as_in_progress_but_retrieves_it_as_it_is(rig: Rig) -> None:
    client = rig.client()
    batch_id = _create(client, ["a"], fate="slow_finalizing")
    rig.clock.advance(30)
    assert client.batches.retrieve(batch_id).status == "finalizing"
    assert [b.status for b in client.batches.list().data] == ["in_progress"]


@pytest.mark.parametrize("rig", ["openai", "compatible"], indirect=True)
def test_the_openai_and_compatible_dialects_are_the_plain_wire(rig: Rig) -> None:
    client = rig.client()
    batch_id = _create(client, ["a"])
    rig.clock.advance(60)
    raw = orjson.loads(
        rig.http.get(f"/v1/batches/{batch_id}", headers={"Authorization": "Bearer k"}).content
    )
    assert raw["status"] == "completed" and raw["object"] == "batch"
    assert rig.app.dialect.plain
