"""The intake on its own: what it accepts, refuses and records, over real HTTP (WSGI on a
loopback server) and through ASGI, signatures checked by the official client.

The store is a real SQLite file; the bridge is the real one, on a tracker whose gateway
is the sandbox in-process, so an accepted event really retrieves the batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from batchfsm.config import Settings
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.persistence.sinks import DirectorySink
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import SandboxApp, World
from batchfsm.sandbox.testing import batch_input, openai_client
from batchfsm.sandbox.webhooks import new_secret, sign
from batchfsm.tracker import Tracker
from batchfsm.webhooks.app import WebhookASGIApp
from batchfsm.webhooks.intake import WebhookIntake
from batchfsm.webhooks.server import RunningIntake, build_intake, running_intake
from batchfsm.webhooks.verify import MAX_BODY_BYTES, InvalidWebhookError, WebhookVerifier
from batchfsm.wiring import build_runtime

SECRET = new_secret()


def event(batch_id: str, kind: str = "batch.completed", event_id: str = "evt_1") -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created_at": 1,
            "data": {"id": batch_id},
        }
    )


def signed(
    body: bytes, webhook_id: str = "wh_1", secret: str = SECRET, at: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    clock = FrozenClock()
    app = SandboxApp(World(clock=clock))
    runtime = build_runtime(
        Settings(results_dir=tmp_path / "results"),
        store=SQLiteJobStore(tmp_path / "store.db"),
        gateway=OpenAIGateway(openai_client(app), sleep=lambda _s: None),
        sink=DirectorySink(tmp_path / "results"),
        handlers=default_registry(),
        clock=clock,
        workdir=tmp_path,
    )
    yield runtime.tracker
    runtime.close()


@pytest.fixture
def served(tracker: Tracker) -> Iterator[RunningIntake]:
    intake = build_intake(tracker, SecretStr(SECRET), settle_delays=())
    with running_intake(intake) as running:
        yield running


def submit(tracker: Tracker, tmp_path: Path) -> str:
    from batchfsm.jobs.submit import submit_job

    path = tmp_path / "in.jsonl"
    path.write_bytes(batch_input(["a", "b"]))
    (batch_id,) = submit_job(tracker, path, "/v1/embeddings").launched
    return batch_id


def test_the_sandbox_signs_as_the_official_client_verifies() -> None:
    body = event("batch_1")
    headers = signed(body)
    client = openai.OpenAI(api_key="unused")
    client.webhooks.verify_signature(body, headers, secret=SECRET)  # raises if not
    unwrapped = client.webhooks.unwrap(body, headers, secret=SECRET)
    assert unwrapped.type == "batch.completed" and unwrapped.data.id == "batch_1"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body + b" ", headers, secret=SECRET)


def test_an_accepted_event_is_observed_and_recorded(
    served: RunningIntake, tracker: Tracker, tmp_path: Path
) -> None:
    batch_id = submit(tracker, tmp_path)
    tracker.clock.advance(3600)  # type: ignore[attr-defined]
    body = event(batch_id)
    answer = httpx2.post(served.url, content=body, headers=signed(body))
    assert (answer.status_code, answer.json()) == (200, {"received": True, "tracked": True})
    assert served.intake.wait_idle(10)
    assert tracker.store.load(batch_id).state.value == "completed"
    receipt = tracker.store.get_event("wh_1")
    assert receipt is not None and receipt.known and receipt.batch_id == batch_id
    again = httpx2.post(served.url, content=body, headers=signed(body))
    assert again.json() == {"received": True, "duplicate": True}


def test_unknown_batches_and_other_events_are_recorded_and_acknowledged(
    served: RunningIntake, tracker: Tracker
) -> None:
    body = event("batch_nobody_tracks")
    assert httpx2.post(served.url, content=body, headers=signed(body, "wh_a")).json() == {
        "received": True,
        "tracked": False,
    }
    other = event("resp_1", kind="response.completed")
    assert httpx2.post(served.url, content=other, headers=signed(other, "wh_b")).status_code == 200
    a, b = tracker.store.get_event("wh_a"), tracker.store.get_event("wh_b")
    assert a is not None and (a.batch_id, a.known) == ("batch_nobody_tracks", False)
    assert b is not None and (b.event_type, b.batch_id) == ("response.completed", None)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing webhook-id"),
        ({"webhook-id": "wh_x"}, "not a webhook delivery"),
        (
            {"webhook-id": "wh_x", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
            "signature refused",
        ),
    ],
)
def test_deliveries_without_a_valid_signature_are_refused(
    served: RunningIntake, tracker: Tracker, headers: dict[str, str], reason: str
) -> None:
    answer = httpx2.post(served.url, content=event("batch_1"), headers=headers)
    assert answer.status_code == 400 and reason in answer.json()["detail"]
    assert tracker.store.get_event("wh_x") is None


def test_the_secret_is_never_shown(tracker: Tracker, caplog: pytest.LogCaptureFixture) -> None:
    verifier = WebhookVerifier(SecretStr(SECRET))
    assert SECRET not in repr(verifier)
    body = event("batch_1")
    with pytest.raises(InvalidWebhookError) as caught:
        verifier.verify(body, signed(body, secret=new_secret()))
    assert SECRET not in str(caught.value)
    intake = WebhookIntake(verifier, tracker.store)
    intake.receive(body, signed(body, secret=new_secret()))
    assert SECRET not in caplog.text and SECRET[6:] not in caplog.text


def test_only_post_to_the_path_small_bodies(served: RunningIntake) -> None:
    assert httpx2.get(served.url).status_code == 405
    assert httpx2.post(served.url.replace("/openai", "/other")).status_code == 404
    huge = b"x" * (MAX_BODY_BYTES + 1)
    assert httpx2.post(served.url, content=huge, headers=signed(huge)).status_code == 413


def test_a_store_that_fails_answers_503_so_the_sender_retries(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database file " * 64)
    intake = WebhookIntake(WebhookVerifier(SecretStr(SECRET)), SQLiteJobStore(broken))
    body = event("batch_1")
    assert intake.receive(body, signed(body)).status == 503


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(orjson.dumps),
        st.builds(
            lambda kind, data: orjson.dumps({"id": "evt", "type": kind, "data": data}),
            st.sampled_from(["batch.completed", "batch.failed", "x", ""]),
            st.one_of(
                st.none(),
                st.text(max_size=5),
                st.dictionaries(
                    st.sampled_from(["id", "x"]),
                    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=12)),
                ),
            ),
        ),
    )
)
def test_any_signed_body_is_answered_200_or_400_never_a_crash(
    tracker: Tracker, body: bytes
) -> None:
    intake = WebhookIntake(WebhookVerifier(SecretStr(SECRET)), tracker.store)
    answer = intake.receive(body, signed(body, webhook_id=f"wh_{hash(body)}"))
    assert answer.status in (200, 400), answer
    if answer.status == 400:
        assert tracker.store.get_event(f"wh_{hash(body)}") is None


def test_the_asgi_app_answers_like_the_wsgi_one(tracker: Tracker, tmp_path: Path) -> None:
    batch_id = submit(tracker, tmp_path)
    tracker.clock.advance(3600)  # type: ignore[attr-defined]
    intake = build_intake(tracker, SecretStr(SECRET), settle_delays=())
    app = WebhookASGIApp(intake)

    async def talk() -> list[httpx2.Response]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://intake") as client:
            body = event(batch_id)
            return [
                await client.post("/webhooks/openai", content=body, headers=signed(body, "wh_s")),
                await client.post("/webhooks/openai", content=body, headers=signed(body, "wh_s")),
                await client.post(
                    "/webhooks/openai", content=body, headers=signed(body, "wh_f", new_secret())
                ),
                await client.get("/webhooks/openai"),
            ]

    first, duplicate, forged, get = asyncio.run(talk())
    assert (first.status_code, duplicate.json()["duplicate"]) == (200, True)
    assert (forged.status_code, get.status_code) == (400, 405)
    assert intake.wait_idle(10)
    intake.close()
    assert tracker.store.load(batch_id).state.value == "completed"
