"""The sandbox's Anthropic dialect, driven by the official ``anthropic`` client over
loopback: the wire (auth, version header, error shapes), the life of a batch (counts,
stamps, ``results_url`` back to this server), cancel, list pages, results kept 29 days,
and the fates and faults shared with the OpenAI sandbox.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Faults, Phases, Scenario, ScriptedFault
from batchfsm.sandbox.anthropic import running_anthropic
from tests.providers.anthropic.support import LIST, RETRIEVE, anthropic_line, client_for, create

PHASES = Phases(validating_s=10, in_progress_s=100, finalizing_s=10, cancelling_s=30)
DAY = 24 * 3600.0


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def _results(client: anthropic.Anthropic, batch_id: str) -> dict[str, dict[str, Any]]:
    return {r.custom_id: r.result.to_dict() for r in client.messages.batches.results(batch_id)}


def test_a_batch_runs_ends_and_serves_its_results_at_its_results_url(clock: FrozenClock) -> None:
    scenario = Scenario(default=Fate(phases=PHASES))
    with running_anthropic(scenario, clock=clock) as sandbox:
        client = client_for(sandbox)
        lines = [
            anthropic_line("a-1"),
            anthropic_line("a-2-fail-400"),
            anthropic_line("a-3-fail-529"),
        ]
        broken = {"custom_id": "a-4", "params": {"model": "m", "messages": []}}  # no max_tokens
        batch = create(client, [*lines, broken])
        assert batch.processing_status == "in_progress" and batch.results_url is None
        assert batch.request_counts.processing == 4
        assert (batch.expires_at - batch.created_at).total_seconds() == DAY

        clock.advance(60)
        running = client.messages.batches.retrieve(batch.id)
        assert running.processing_status == "in_progress"
        assert running.request_counts.succeeded == 0  # zero until the whole batch ends

        clock.advance(120)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.ended_at is not None
        assert ended.results_url == f"{sandbox.base_url}/v1/messages/batches/{batch.id}/results"
        counts = ended.request_counts
        assert (counts.succeeded, counts.errored, counts.processing) == (1, 3, 0)

        results = _results(client, batch.id)
        assert results["a-1"]["type"] == "succeeded"
        message = results["a-1"]["message"]
        assert isinstance(message, dict) and message["type"] == "message"
        errors = {
            c: r["error"]["error"]["type"] for c, r in results.items() if r["type"] == "errored"
        }
        assert errors == {
            "a-2-fail-400": "invalid_request_error",
            "a-3-fail-529": "overloaded_error",
            "a-4": "invalid_request_error",
        }

        clock.advance(29 * DAY)  # results are kept 29 days after creation
        with pytest.raises(anthropic.NotFoundError):
            _results(client, batch.id)


def test_cancel_expire_and_the_queue_limit(clock: FrozenClock) -> None:
    scenario = Scenario(
        by_order=(
            Fate(phases=PHASES),
            Fate(kind="expire", phases=PHASES, expire_fraction=0.5),
            Fate(kind="token_limit_exceeded"),
        )
    )
    with running_anthropic(scenario, clock=clock) as sandbox:
        client = client_for(sandbox)
        ids = [f"r-{i}" for i in range(10)]
        first = create(client, [anthropic_line(c) for c in ids])
        second = create(client, [anthropic_line(c) for c in ids])
        with pytest.raises(anthropic.RateLimitError) as refused:
            create(client, [anthropic_line("x")])
        assert refused.value.type == "rate_limit_error"

        clock.advance(60)
        canceling = client.messages.batches.cancel(first.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        clock.advance(60)
        cancelled = client.messages.batches.retrieve(first.id)
        assert cancelled.processing_status == "ended"
        assert 0 < cancelled.request_counts.canceled < 10
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.cancel(first.id)  # ended: nothing to cancel

        clock.advance(DAY)
        expired = client.messages.batches.retrieve(second.id)
        assert expired.processing_status == "ended" and expired.request_counts.expired == 5
        kinds = sorted(str(r["type"]) for r in _results(client, second.id).values())
        assert kinds == ["expired"] * 5 + ["succeeded"] * 5


def test_the_wire_refuses_what_the_api_refuses(clock: FrozenClock) -> None:
    with running_anthropic(Scenario(), clock=clock) as sandbox:
        client = client_for(sandbox)
        for bad in ("has space", "x" * 65, ""):
            with pytest.raises(anthropic.BadRequestError) as caught:
                create(client, [{**anthropic_line("a"), "custom_id": bad}])
            assert caught.value.type == "invalid_request_error"
        with pytest.raises(anthropic.BadRequestError):
            create(client, [anthropic_line("a"), anthropic_line("a")])
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.create(requests=[])
        url = f"{sandbox.base_url}/v1/messages/batches"
        no_key = httpx2.get(url, headers={"anthropic-version": "2023-06-01"})
        assert no_key.status_code == 401
        assert orjson.loads(no_key.content)["error"]["type"] == "authentication_error"
        no_version = httpx2.get(url, headers={"x-api-key": "k"})
        assert no_version.status_code == 400
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve("msgbatch_nope")


def test_the_list_is_newest_first_in_pages(clock: FrozenClock) -> None:
    with running_anthropic(Scenario(), clock=clock) as sandbox:
        client = client_for(sandbox)
        made = [create(client, [anthropic_line(f"b{i}")]).id
                for i in range(5)]  # fmt: skip
        page = client.messages.batches.list(limit=2)
        assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
        assert [b.id for b in page] == made[::-1]  # the client pages on by after_id
        assert sandbox.stats.count(LIST) == 3


def test_stale_reads_and_a_cut_results_stream(clock: FrozenClock) -> None:
    faults = Faults(
        script=(
            ScriptedFault(route=RETRIEVE, call=3, kind="stale_read"),
            ScriptedFault(route="GET /v1/messages/batches/{batch_id}/results", call=1,
                          kind="truncate"),
        )
    )  # fmt: skip
    with running_anthropic(Scenario(default=Fate(phases=PHASES), faults=faults), clock=clock) as sb:
        client = client_for(sb)
        batch = create(client, [anthropic_line(f"c{i}") for i in range(3)])
        client.messages.batches.retrieve(batch.id)
        clock.advance(200)
        assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):  # cut short
            _results(client, batch.id)
        assert len(_results(client, batch.id)) == 3
