"""Fault injection: seeded 429/500 answers, stale reads, truncated downloads, scripts."""

from __future__ import annotations

from collections.abc import Callable

import openai
import orjson
import pytest

from batchfsm.sandbox import Faults, Scenario, ScriptedFault

from .conftest import Harness

RETRIEVE = "GET /v1/batches/{batch_id}"
CONTENT = "GET /v1/files/{file_id}/content"


def _statuses(h: Harness, batch_id: str, calls: int) -> list[int]:
    seen = []
    for _ in range(calls):
        try:
            h.client.batches.retrieve(batch_id)
            seen.append(200)
        except openai.APIStatusError as exc:
            seen.append(exc.status_code)
    return seen


def _flaky(seed: int) -> Scenario:
    faults = Faults(rate_limit_rate=0.3, server_error_rate=0.2, routes=(RETRIEVE,))
    return Scenario(seed=seed, faults=faults)


def test_same_seed_same_faults(make_harness: Callable[..., Harness]) -> None:
    runs = []
    for seed in (11, 11, 12):
        h = make_harness(_flaky(seed))
        runs.append(_statuses(h, h.submit(["a"]).id, 40))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {200, 429, 500}
    assert 5 < runs[0].count(429) < 20


def test_fault_answers_use_the_api_error_shape(make_harness: Callable[..., Harness]) -> None:
    script = (
        ScriptedFault(route=RETRIEVE, call=1, kind="rate_limit"),
        ScriptedFault(route=RETRIEVE, call=2, kind="server_error"),
    )
    h = make_harness(Scenario(faults=Faults(script=script)))
    batch = h.submit(["a"])
    with pytest.raises(openai.RateLimitError) as limited:
        h.client.batches.retrieve(batch.id)
    assert limited.value.body == {
        "message": "Rate limit reached for requests (sandbox fault injection).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    with pytest.raises(openai.InternalServerError) as broken:
        h.client.batches.retrieve(batch.id)
    assert isinstance(broken.value.body, dict)
    assert broken.value.body["type"] == "server_error"
    assert h.client.batches.retrieve(batch.id).id == batch.id
    assert h.app.stats.count(RETRIEVE) == 3
    assert h.app.stats.count(RETRIEVE, status=429) == 1
    assert h.app.stats.count(RETRIEVE, status=500) == 1
    assert h.app.stats.snapshot()["faults"] == 2
    assert h.app.faults.injected == [(RETRIEVE, "rate_limit"), (RETRIEVE, "server_error")]


def test_a_faulted_create_creates_nothing(make_harness: Callable[..., Harness]) -> None:
    script = (ScriptedFault(route="POST /v1/batches", call=1, kind="server_error"),)
    h = make_harness(Scenario(faults=Faults(script=script)))
    with pytest.raises(openai.InternalServerError):
        h.submit(["a"])
    assert h.app.world.batch_ids() == []


def test_stale_read_serves_an_earlier_snapshot(make_harness: Callable[..., Harness]) -> None:
    script = (ScriptedFault(route=RETRIEVE, call=3, kind="stale_read"),)
    h = make_harness(Scenario(faults=Faults(script=script)))
    batch = h.submit(["a", "b"])
    running = h.at(batch.id, 3)  # call 1
    assert running.status == "in_progress"
    done = h.at(batch.id, 60)  # call 2
    assert done.status == "completed"
    stale = h.client.batches.retrieve(batch.id)  # call 3: stale
    assert stale == running
    assert h.client.batches.retrieve(batch.id) == done  # call 4: fresh again


def test_stale_read_with_no_earlier_snapshot_is_current(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(Scenario(faults=Faults(stale_read_rate=1.0)))
    batch = h.submit(["a"])
    # The only snapshot served so far is the create answer: nothing older to show.
    assert h.client.batches.retrieve(batch.id) == batch
    h.clock.advance(60)
    assert h.client.batches.retrieve(batch.id).status == "validating"
    assert [b.status for b in h.client.batches.list().data] == ["validating"]


def test_truncated_download_is_cut_mid_line(make_harness: Callable[..., Harness]) -> None:
    script = (ScriptedFault(route=CONTENT, call=1, kind="truncate"),)
    h = make_harness(Scenario(faults=Faults(script=script)))
    done = h.at(h.submit([f"r{i}" for i in range(20)]).id, 60)
    cut = h.client.files.content(done.output_file_id or "").content
    full = h.client.files.content(done.output_file_id or "").content
    assert len(cut) < len(full)
    assert full.startswith(cut)
    assert not cut.endswith(b"\n")
    *whole, partial = cut.split(b"\n")
    for line in whole:
        orjson.loads(line)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(partial)


def test_random_truncation_is_seeded(make_harness: Callable[..., Harness]) -> None:
    sizes = []
    for _ in range(2):
        h = make_harness(Scenario(seed=5, faults=Faults(truncate_rate=1.0)))
        done = h.at(h.submit([f"r{i}" for i in range(20)]).id, 60)
        sizes.append([len(h.client.files.content(done.output_file_id or "").content)
                      for _ in range(5)])  # fmt: skip
    assert sizes[0] == sizes[1]
    assert len(set(sizes[0])) > 1


def test_truncation_and_staleness_stay_on_their_routes(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(Scenario(faults=Faults(truncate_rate=1.0, stale_read_rate=1.0)))
    content = b'{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}\n'
    file_id = h.upload(content)
    # Rate 1.0 for both, yet file metadata and uploads are never faulted.
    assert h.client.files.retrieve(file_id).bytes == len(content)
    assert h.app.faults.injected == []
    assert len(h.client.files.content(file_id).content) < len(content)
