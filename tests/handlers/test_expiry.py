"""What the Batch object says that we used to drop: ``usage``, ``model``, and when the
result files stop being downloadable (``output_expires_after``), end to end through the
official client and the sandbox."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import openai
import pytest

from batchfsm.cli.main import main
from batchfsm.cli.views import record_json
from batchfsm.gateway import OpenAIGateway
from batchfsm.handlers import default_registry
from batchfsm.ledger.records import ItemState
from batchfsm.tracker import Tracker
from tests.handlers.conftest import Rig, error_of

HOURS_2 = 7200


def short_lived(rig: Rig, seconds: int = HOURS_2) -> None:
    """Create the rig's batches with result files living ``seconds``."""
    rig.gateway = OpenAIGateway(rig.client, sleep=lambda _s: None, output_expires_after=seconds)


def sinkless(rig: Rig) -> Tracker:
    """A poller whose harvest fails (no result sink): the harvest stays owed."""
    return Tracker(rig.store, rig.gateway, default_registry(), settings=rig.settings,
                   clock=rig.clock, workdir=rig.tmp / "w")  # fmt: skip


def test_usage_and_model_are_kept_and_shown_in_status_and_history(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = rig.submit(["a", "b", "c"])
    rig.run(batch)

    record = rig.store.load(batch)
    assert record.snapshot is not None and record.snapshot.usage is not None
    # what the sandbox billed: one token per word of "text of <id>", embeddings output none
    delivered = [json.loads(body) for _, body in rig.sink.read_batch("job-1", batch)]
    billed = sum(body["usage"]["prompt_tokens"] for body in delivered)
    assert billed == 9
    expected = {"input_tokens": billed, "cached_tokens": 0, "output_tokens": 0,
                "reasoning_tokens": 0, "total_tokens": billed}  # fmt: skip
    row = record_json(record)
    assert (row["model"], row["usage"]) == ("text-embedding-3-small", expected)
    (harvested,) = rig.events(batch, "harvested")
    assert (harvested.detail["model"], harvested.detail["usage"]) == (row["model"], expected)

    store = f"sqlite:///{rig.tmp / 'batchfsm.db'}"
    assert main(["history", batch, "--store", store, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["model"], shown["usage"]) == (row["model"], expected)
    assert main(["history", batch, "--store", store]) == 0
    assert "9 in (0 cached)" in capsys.readouterr().out


def test_the_files_lifetime_is_sent_and_the_sandbox_expires_them(rig: Rig) -> None:
    short_lived(rig)
    batch = rig.submit(["a", "b#fail=400"])
    done = rig.materialise(batch, 60)

    output = rig.client.files.retrieve(done["output_file_id"])
    assert output.expires_at == output.created_at + HOURS_2
    record = rig.store.load(batch)
    assert record.output_expires_after == HOURS_2
    rig.tracker(sink=rig.sink).observe(batch)  # harvested at once: nothing to warn about
    record = rig.store.load(batch)
    expires = record.results_expire_at()
    assert expires is not None
    assert expires <= datetime.fromtimestamp(output.expires_at or 0, UTC)  # never late
    assert record_json(record)["results_expire_at"] == expires.isoformat()
    assert "results_expiring" not in rig.alerts(batch)

    rig.clock.advance(HOURS_2)
    with pytest.raises(openai.NotFoundError):
        rig.client.files.content(done["output_file_id"])
    with pytest.raises(openai.NotFoundError):
        rig.client.files.content(done["error_file_id"])


def test_an_owed_harvest_warns_before_expiry_then_a_404_after_it_is_results_expired(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    short_lived(rig)
    batch = rig.submit(["a", "b", "c#fail=500"], attempts={"c#fail=500": 1})
    failing = sinkless(rig)
    assert rig.run(batch, tracker=failing).effects_failed == ["completed#harvest"]
    expires = rig.store.load(batch).results_expire_at()
    assert expires is not None

    rig.clock.set(expires - timedelta(minutes=40))  # before the last quarter (30 min)
    failing.drain(batch)
    assert "results_expiring" not in rig.alerts(batch)
    rig.clock.set(expires - timedelta(minutes=20))
    failing.drain(batch)
    failing.drain(batch)
    assert rig.alerts(batch).count("results_expiring") == 1
    assert set(rig.states().values()) == {ItemState.PENDING}

    rig.clock.set(expires + timedelta(minutes=1))
    caplog.set_level(logging.ERROR)
    report = rig.tracker().drain(batch)

    assert report.effects_run == ["completed#harvest"]
    ledger = rig.ledger()
    for cid, attempts in (("a", 0), ("b", 0), ("c#fail=500", 1)):
        assert (ledger[cid].state, ledger[cid].attempts) == (ItemState.RETRY, attempts)
        assert (error_of(ledger[cid]).code, error_of(ledger[cid]).category) == (
            "results_expired", "results_expired")  # fmt: skip
    assert {e.detail["file"] for e in rig.events(batch, "results_expired")} == {"output", "error"}
    assert {"output_file_expired", "error_file_expired"} <= set(rig.alerts(batch))
    (harvested,) = rig.events(batch, "harvested")
    assert harvested.detail["results_expired"] == 3 and harvested.detail["missing"] == 0
    assert any("results_expired" in r.getMessage() for r in caplog.records)
    assert not rig.store.load(batch).needs_attention  # settled: no loop of 404s


def test_a_404_before_the_files_expire_is_a_file_gone_not_results_expired(rig: Rig) -> None:
    short_lived(rig)
    batch = rig.submit(["a", "b"])
    done = rig.materialise(batch, 60)
    rig.delete_file(done["output_file_id"])

    rig.tracker().observe(batch)

    assert {error_of(e).category for e in rig.ledger().values()} == {"missing"}
    assert rig.events(batch, "results_expired") == []
    assert rig.alerts(batch) == ["output_file_gone"]
