"""The sandbox takes ``output_expires_after``, expires result files on its clock, takes
every batch endpoint the API takes (and refuses the retired ``/v1/videos`` the way the
API does), and bills ``usage`` on batch objects and in response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai
import orjson
import pytest

from batchfsm.sandbox.testing import batch_input
from tests.sandbox.conftest import Harness

BASE = {"endpoint": "/v1/embeddings", "completion_window": "24h"}


def create(harness: Harness, **params: Any) -> dict[str, Any]:
    file_id = harness.upload(batch_input(["a", "b#fail=400"]))
    answer = harness.client.post(
        "/batches", body={"input_file_id": file_id, **BASE, **params}, cast_to=object
    )
    assert isinstance(answer, dict)
    return answer


def test_result_files_expire_after_the_asked_lifetime_from_their_creation(
    harness: Harness,
) -> None:
    batch = create(harness, output_expires_after={"anchor": "created_at", "seconds": 3600})
    done = harness.at(batch["id"], 120)
    assert done.status == "completed"
    for file_id in (done.output_file_id, done.error_file_id):
        assert file_id
        info = harness.client.files.retrieve(file_id)
        assert info.created_at == done.completed_at
        assert info.expires_at == info.created_at + 3600
    harness.clock.set(datetime.fromtimestamp((done.completed_at or 0) + 3599, UTC))
    assert harness.lines(done.output_file_id)  # the last second of their life
    harness.clock.advance(1)
    for file_id in (done.output_file_id, done.error_file_id):
        with pytest.raises(openai.NotFoundError):
            harness.client.files.content(file_id or "")
        with pytest.raises(openai.NotFoundError):
            harness.client.files.retrieve(file_id or "")
    assert harness.client.batches.retrieve(batch["id"]).output_file_id == done.output_file_id


def test_without_a_lifetime_result_files_are_kept(harness: Harness) -> None:
    batch = create(harness)
    done = harness.at(batch["id"], 120)
    assert harness.client.files.retrieve(done.output_file_id or "").expires_at is None
    harness.clock.advance(90 * 86_400)
    assert harness.lines(done.output_file_id)


@pytest.mark.parametrize(
    ("expiry", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "output_expires_after.seconds"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "output_expires_after.seconds"),
        ({"anchor": "created_at", "seconds": "3600"}, "output_expires_after.seconds"),
        ({"anchor": "completed_at", "seconds": 3600}, "output_expires_after"),
        (3600, "output_expires_after"),
    ],
)
def test_a_bad_lifetime_is_refused_at_create(harness: Harness, expiry: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        create(harness, output_expires_after=expiry)
    assert info.value.param == param
    assert harness.app.world.batch_ids() == []


def test_the_retired_videos_endpoint_is_refused_saying_why(harness: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        create(harness, endpoint="/v1/videos")
    assert info.value.param == "endpoint"
    assert "Videos API shut down on September 24, 2026" in str(info.value)


ENDPOINT_BODIES: dict[str, dict[str, Any]] = {
    "/v1/moderations": {"input": "is this fine"},
    "/v1/images/generations": {"model": "gpt-image-1", "prompt": "a red fox", "n": 2},
    "/v1/images/edits": {"model": "gpt-image-1", "prompt": "add a hat", "image": "file-img"},
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_BODIES))
def test_the_newer_endpoints_complete_and_bill_usage(harness: Harness, endpoint: str) -> None:
    line = {"custom_id": "r1", "method": "POST", "url": endpoint, "body": ENDPOINT_BODIES[endpoint]}
    batch = harness.create(harness.upload(orjson.dumps(line) + b"\n"), endpoint=endpoint)
    done = harness.at(batch.id, 120)
    assert done.status == "completed" and done.usage is not None
    (result,) = harness.lines(done.output_file_id)
    body = result["response"]["body"]
    if endpoint.startswith("/v1/images/"):
        assert len(body["data"]) == ENDPOINT_BODIES[endpoint].get("n", 1)
        assert body["usage"]["input_tokens"] == done.usage.input_tokens > 0
        assert body["usage"]["total_tokens"] == done.usage.total_tokens
    else:
        assert done.usage.input_tokens > 0 and done.usage.output_tokens == 0


def test_batch_usage_is_the_sum_of_its_successful_bodies(harness: Harness) -> None:
    batch = harness.submit(["a", "b", "c#fail=500"], endpoint="/v1/chat/completions",
                           model="gpt-4o-mini")  # fmt: skip
    done = harness.at(batch.id, 120)
    assert done.usage is not None
    bodies = [line["response"]["body"] for line in harness.lines(done.output_file_id)]
    assert len(bodies) == 2
    assert done.usage.input_tokens == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert done.usage.output_tokens == sum(b["usage"]["completion_tokens"] for b in bodies)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
