"""What the gateway makes of answers that are not the Batch object it asked for.

The official client validates nothing it parses: a Batch with wrong-typed fields comes
back as it was sent, and a 200 whose body is not JSON comes back as a plain string.
Served here by ``httpx2.MockTransport`` (a plain callable, as in httpx's own tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from batchfsm.errors import GatewayError, UndecodableSnapshotError
from batchfsm.gateway import OpenAIGateway

API_KEY = "sk-proj-TESTKEY0123456789abcdefSECRET"
OBJECT = {"id": "batch_1", "object": "batch", "endpoint": "/v1/embeddings",
          "status": "in_progress", "created_at": 1_774_437_191}  # fmt: skip


@pytest.fixture
def gateway_answering() -> Iterator[Callable[[httpx2.Response], OpenAIGateway]]:
    clients: list[httpx2.Client] = []

    def build(answer: httpx2.Response) -> OpenAIGateway:
        http = httpx2.Client(transport=httpx2.MockTransport(lambda _request: answer))
        clients.append(http)
        client = openai.OpenAI(api_key=API_KEY, base_url="https://api.test/v1",
                               http_client=http, max_retries=0)  # fmt: skip
        return OpenAIGateway(client, sleep=lambda _s: None)

    yield build
    for http in clients:
        http.close()


def test_wrong_typed_fields_raise_a_typed_error_with_the_raw_object(
    gateway_answering: Callable[[httpx2.Response], OpenAIGateway],
) -> None:
    sent: dict[str, Any] = {**OBJECT, "request_counts": "lots", "created_at": "yesterday"}
    gateway = gateway_answering(httpx2.Response(200, json=sent))
    with pytest.raises(UndecodableSnapshotError) as info:
        gateway.retrieve("batch_1")
    err = info.value
    assert isinstance(err, GatewayError) and err.batch_id == "batch_1"
    assert err.raw == sent and err.status == "in_progress"
    assert [p.split(":")[0] for p in err.problems] == ["created_at", "request_counts"]


def test_an_html_200_raises_a_typed_error_with_the_page_and_no_key(
    gateway_answering: Callable[[httpx2.Response], OpenAIGateway],
) -> None:
    page = f"<html><body>upstream error; request had Authorization: Bearer {API_KEY}</body></html>"
    gateway = gateway_answering(
        httpx2.Response(200, text=page, headers={"content-type": "text/html"})
    )
    with pytest.raises(UndecodableSnapshotError) as info:
        gateway.retrieve("batch_1")
    err = info.value
    assert API_KEY not in f"{err} {err.raw} {err.problems}"
    assert err.raw == {"body": page.replace(API_KEY, "***")}
    assert "not a JSON object" in str(err)


def test_nulls_and_extra_fields_are_taken(
    gateway_answering: Callable[[httpx2.Response], OpenAIGateway],
) -> None:
    counts = {"total": 4, "completed": None, "failed": None}
    sent = {**OBJECT, "endpoint": None, "output_blob": "https://blob/x", "in_progress_at": None,
            "request_counts": counts, "usage": None}  # fmt: skip
    snapshot = gateway_answering(httpx2.Response(200, json=sent)).retrieve("batch_1")
    assert snapshot.request_counts is not None
    assert (snapshot.request_counts.total, snapshot.request_counts.completed) == (4, None)
    assert (snapshot.endpoint, snapshot.usage, snapshot.in_progress_at) == (None, None, None)
