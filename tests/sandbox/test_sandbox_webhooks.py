"""The sandbox's webhooks: endpoint management through the official client, signed
deliveries the official client verifies, retries, delays and losses, over loopback to a
small real receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from batchfsm.ports import FrozenClock
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.sandbox.webhook_endpoints import running_sandbox_with_webhooks
from batchfsm.sandbox.webhooks import WebhookFaults
from tests.webhooks.conftest import wait_until


@dataclass
class Receiver:
    """Records every delivery; answers ``statuses`` in turn, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    got: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.got.append((time.monotonic(), dict(request.headers), request.get_data()))
        status = self.statuses.pop(0) if self.statuses else 200
        return Response("{}", status=status)(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    server = make_server("127.0.0.1", 0, made, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    made.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield made
    server.shutdown()
    server.server_close()
    thread.join(5)


def create_batch(client: openai.OpenAI) -> str:
    upload = client.files.create(file=("in.jsonl", batch_input(["a", "b"])), purpose="batch")
    return client.batches.create(
        input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
    ).id


def test_endpoints_are_managed_and_deliveries_verify_with_the_official_client(
    receiver: Receiver,
) -> None:
    clock = FrozenClock()
    with running_sandbox_with_webhooks(clock=clock) as sandbox:
        client = openai_client(base_url=sandbox.base_url)
        endpoint = client.webhooks.create(
            url=receiver.url, name="test", event_types=["batch.completed", "batch.failed"]
        )
        assert endpoint.signing_secret.startswith("whsec_")
        listed = list(client.webhooks.list())
        assert [e.id for e in listed] == [endpoint.id]
        assert client.webhooks.retrieve(endpoint.id).url == receiver.url
        batch_id = create_batch(client)
        clock.advance(3600)
        wait_until(lambda: len(receiver.got) == 1)
        _, headers, body = receiver.got[0]
        event = client.webhooks.unwrap(body, headers, secret=endpoint.signing_secret)
        assert event.type == "batch.completed" and event.data.id == batch_id
        test = client.webhooks.test(endpoint.id, event_type="batch.failed")
        assert (test.status_code, test.success) == (200, True)
        assert client.webhooks.delete(endpoint.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.webhooks.retrieve(endpoint.id)


def test_a_refused_delivery_is_retried_and_a_delay_is_kept(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    clock = FrozenClock()
    faults = WebhookFaults(delay_s=0.3)
    with running_sandbox_with_webhooks(clock=clock, faults=faults) as sandbox:
        sandbox.sender.add_endpoint(receiver.url)
        create_batch(openai_client(base_url=sandbox.base_url))
        clock.advance(3600)
        ended = time.monotonic()
        wait_until(lambda: len(receiver.got) == 3)
        sent = sandbox.sender.sent
    assert [(s.attempt, s.status) for s in sent] == [(1, 503), (2, 500), (3, 200)]
    assert receiver.got[0][0] - ended >= 0.3
    assert len({headers["Webhook-Id"] for _, headers, _ in receiver.got}) == 1  # one event


def test_lost_events_are_never_sent(receiver: Receiver) -> None:
    clock = FrozenClock()
    with running_sandbox_with_webhooks(clock=clock, faults=WebhookFaults(lose_rate=1.0)) as sb:
        sb.sender.add_endpoint(receiver.url)
        create_batch(openai_client(base_url=sb.base_url))
        clock.advance(3600)
        time.sleep(0.3)
    assert receiver.got == [] and sb.sender.sent == []
