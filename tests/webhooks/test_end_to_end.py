"""Webhooks end to end, over loopback: the sandbox sends signed events when batches end,
the intake verifies them with the official client, deduplicates in the store and has
the batch observed through the normal path; the poller, on an hour's interval, is only
the fallback.

Figures printed by these tests (``-s``) are the webhook-to-ingest latencies: from the
sandbox's delivery being answered to the batch being terminal with its results
delivered (harvest done).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import orjson
import pytest

from batchfsm.ledger.records import ItemState
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox.webhooks import WebhookFaults, new_secret, sign
from tests.webhooks.conftest import Rig, wait_until

HOUR = 3600.0


@contextmanager
def poller_in_background(rig: Rig, interval: float) -> Iterator[Poller]:
    """A poller with webhooks on, sleeping ``interval`` real seconds between cycles (an
    hour: within a test it cycles once at the start, and once more when told to stop)."""
    stop, cycled = threading.Event(), threading.Event()
    poller = Poller(
        rig.trackers[0], webhooks=True, sleep=stop.wait, on_cycle=lambda _r: cycled.set()
    )
    thread = threading.Thread(
        target=poller.run, kwargs={"interval": interval, "max_cycles": 2}, name="poller"
    )
    thread.start()
    try:
        assert cycled.wait(10)
        yield poller
    finally:
        stop.set()
        thread.join(10)


def latency(rig: Rig, batch_id: str) -> float:
    """Seconds from the first answered genuine delivery to the batch being settled."""
    sent = min(s.at for s in rig.sandbox.sender.sent if s.batch_id == batch_id and s.status == 200)
    wait_until(lambda: rig.settled(batch_id))
    return time.monotonic() - sent


def test_batches_that_end_are_ingested_within_seconds_of_their_webhook(rig: Rig) -> None:
    batches = {fate: rig.submit(fate) for fate in ("fails_lines", "expires", "queue_full")}
    with poller_in_background(rig, HOUR):
        before = {b: rig.retrieves(b) for b in batches.values()}
        rig.clock.advance(25 * HOUR)  # every batch ends in the sandbox now
        wait_until(lambda: all(rig.settled(b) for b in batches.values()), timeout=15)
        figures = {fate: latency(rig, b) for fate, b in batches.items()}
    print(f"webhook -> settled latency (s): { {k: round(v, 3) for k, v in figures.items()} }")
    assert max(figures.values()) < 3.0
    states = {fate: rig.store.load(b).state.value for fate, b in batches.items()}
    assert states == {"fails_lines": "completed", "expires": "expired", "queue_full": "failed"}
    for batch_id in batches.values():
        # The webhook noticed it, one retrieve did it; the poller never looked again.
        assert rig.noticed(batch_id) == ["webhook"]
        assert rig.retrieves(batch_id) == before[batch_id] + 1
    counts = rig.store.count_ledger()
    # Every request settled: none pending; the queue-full batch's four wait in retry.
    assert sum(counts.values()) == 12 and counts[ItemState.PENDING] == 0
    assert counts[ItemState.RETRY] >= 4
    delivered = list((rig.tmp / "results").glob("*/*.jsonl"))
    assert len(delivered) == 2  # the completed and the expired batch's salvaged lines


@pytest.mark.parametrize("faults", [WebhookFaults(duplicates=2, reorder=True)])
def test_duplicated_and_reordered_deliveries_do_exactly_one_thing(rig: Rig) -> None:
    batches = [rig.submit("fails_lines"), rig.submit("expires"), rig.submit("fails_lines")]
    rig.clock.advance(25 * HOUR)
    wait_until(lambda: all(rig.settled(b) for b in batches), timeout=15)
    wait_until(lambda: len([s for s in rig.sandbox.sender.sent if s.status == 200]) >= 9)
    sent = rig.sandbox.sender.sent
    # Three deliveries of each event, all answered 200, sent newest event first.
    assert sorted(s.kind for s in sent) == ["duplicate"] * 6 + ["event"] * 3
    assert {s.status for s in sent} == {200}
    order = list(dict.fromkeys(s.batch_id for s in sent))
    assert order == list(reversed(batches))
    for batch_id in batches:
        assert rig.terminal_transitions(batch_id) == 1
        assert rig.noticed(batch_id) == ["webhook"]
        assert rig.retrieves(batch_id) == 1  # three deliveries, one retrieve
    lines = [
        orjson.loads(line)["custom_id"]
        for path in (rig.tmp / "results").glob("*/*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == len(set(lines)) > 0  # every result delivered exactly once
    assert all(rig.store.get_event(s.webhook_id) is not None for s in sent)


@pytest.mark.parametrize("faults", [WebhookFaults(forge=True, stale=True)])
def test_forged_and_stale_deliveries_get_400_and_change_nothing(rig: Rig) -> None:
    batch_id = rig.submit("fails_lines")
    rig.sandbox.sender.lose(batch_id)  # no genuine delivery: only what the test sends
    rig.clock.advance(HOUR)
    body = orjson.dumps(
        {
            "id": "evt_x",
            "object": "event",
            "type": "batch.completed",
            "created_at": 1,
            "data": {"id": batch_id},
        }
    )
    now = int(time.time())

    def post(secret: str, timestamp: int) -> int:
        headers = {
            "webhook-id": "wh_forged_1",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, "wh_forged_1", timestamp, body),
        }
        return httpx2.post(rig.intake.url, content=body, headers=headers).status_code

    retrieves = rig.retrieves(batch_id)
    assert post(new_secret(), now) == 400  # forged
    assert post(rig.secret.get_secret_value(), now - 600) == 400  # replayed, stale
    assert post(rig.secret.get_secret_value(), now + 600) == 400  # from the future
    time.sleep(0.3)
    assert rig.store.load(batch_id).state.value == "validating"
    assert rig.store.get_event("wh_forged_1") is None  # the id was not burnt
    assert rig.retrieves(batch_id) == retrieves
    # The genuine delivery with that same id still does its one thing.
    assert post(rig.secret.get_secret_value(), now) == 200
    wait_until(lambda: rig.settled(batch_id))
    assert rig.noticed(batch_id) == ["webhook"]


@pytest.mark.parametrize("faults", [WebhookFaults(forge=True, stale=True)])
def test_sandbox_forgeries_are_refused_and_the_genuine_event_wins(rig: Rig) -> None:
    batch_id = rig.submit("fails_lines")
    rig.clock.advance(HOUR)
    wait_until(lambda: rig.settled(batch_id))
    by_kind = {s.kind: s.status for s in rig.sandbox.sender.sent}
    assert by_kind == {"forged": 400, "stale": 400, "event": 200}
    assert rig.terminal_transitions(batch_id) == 1


def test_a_lost_webhook_is_covered_by_the_fallback_poll(rig: Rig) -> None:
    batch_id = rig.submit("completes")  # validating 60 s, in progress 1 h, finalizing 60 s
    rig.sandbox.sender.lose(batch_id)
    poller = Poller(rig.trackers[0], webhooks=True)
    assert poller.schedule is not None
    poller.schedule.interval, poller.schedule.ceiling = 60.0, 600.0
    clock: FrozenClock = rig.clock
    retrieves_at_start = rig.retrieves(batch_id)
    cycles, waits = 0, []
    ended_at = None
    while not rig.settled(batch_id):
        poller.cycle()
        cycles += 1
        waits.append(poller.schedule.wait_of(batch_id))
        if ended_at is None and rig.sandbox.world.retrieve_batch(batch_id)["status"] == "completed":
            ended_at = clock.now()
        clock.advance(60)
        assert cycles < 200
    assert ended_at is not None
    noticed_after = (clock.now() - ended_at).total_seconds()
    retrieves = rig.retrieves(batch_id) - retrieves_at_start
    print(
        f"fallback poll: {cycles} cycles, {retrieves} retrieves, "
        f"noticed {noticed_after:.0f} s after the end"
    )
    assert rig.noticed(batch_id)[-1] == "poll"
    assert "webhook" not in rig.noticed(batch_id)
    assert noticed_after <= 600 + 60 + 60
    assert retrieves < cycles / 3  # stretched: far fewer retrieves than cycles
    assert max(w for w in waits if w is not None) == 600.0
    assert not [s for s in rig.sandbox.sender.sent if s.batch_id == batch_id]
