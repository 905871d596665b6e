"""watch: deadline warnings from the provider's window, slow finalizing/cancelling and a
missed deadline, each alerted exactly once, measured on a FrozenClock."""

from __future__ import annotations

from batchfsm.config import Settings
from tests.handlers.conftest import Rig

HOUR = 3600.0
MINUTE = 60.0


def test_deadline_warnings_fire_once_at_each_threshold(rig: Rig) -> None:
    rig.settings = Settings(warn_after_hours=(12.0, 20.0))
    batch = rig.submit(["a"], fate="expire_half")
    rig.run(batch, 60)
    assert rig.alerts(batch) == []

    rig.run(batch, 12 * HOUR - 2 * MINUTE)  # 11 h 59 min elapsed
    assert rig.alerts(batch) == []
    rig.run(batch, 2 * MINUTE)
    assert rig.alerts(batch) == ["deadline_12h"]
    rig.run(batch, 8 * HOUR - 2 * MINUTE)  # 19 h 59 min
    assert rig.alerts(batch) == ["deadline_12h"]
    rig.run(batch, 2 * MINUTE)
    rig.run(batch, HOUR)
    rig.run(batch, HOUR)

    assert rig.alerts(batch) == ["deadline_12h", "deadline_20h"]
    assert rig.store.load(batch).alerts == ("deadline_12h", "deadline_20h")
    (warning,) = [e for e in rig.events(batch, "alert") if e.detail["key"] == "deadline_20h"]
    assert "3 h 59 min left" in warning.detail["message"]


def test_stuck_finalizing_alerts_once_then_past_deadline_once(rig: Rig) -> None:
    batch = rig.submit(["a"], fate="stuck")  # finalizing from t = 12 s, for 30 h
    assert rig.run(batch, 60).state == "finalizing"

    rig.run(batch, 28 * MINUTE)  # 28 min 48 s in finalizing
    assert rig.alerts(batch) == []
    rig.run(batch, 2 * MINUTE)
    rig.run(batch, 10 * MINUTE)
    assert rig.alerts(batch) == ["finalizing_slow"]

    rig.run(batch, 25 * HOUR)  # first seen past the deadline: no stale 20 h warning
    rig.run(batch, HOUR)

    assert rig.alerts(batch) == ["finalizing_slow", "past_deadline"]
    past = rig.events(batch, "alert")[-1]
    assert "still finalizing" in past.detail["message"]


def test_slow_cancelling_alerts_once(rig: Rig) -> None:
    batch = rig.submit(["a", "b"], fate="slow_cancel")
    assert rig.run(batch, 30).state == "in_progress"
    rig.gateway.cancel(batch)

    assert rig.run(batch, 9 * MINUTE).state == "cancelling"
    assert rig.alerts(batch) == []
    rig.run(batch, 2 * MINUTE)
    rig.run(batch, 5 * MINUTE)

    assert rig.alerts(batch) == ["cancelling_slow"]
    (event,) = rig.events(batch, "alert")
    assert "cancelling for 1" in event.detail["message"]


def test_a_terminal_batch_is_not_watched(rig: Rig) -> None:
    batch = rig.submit(["a"])
    rig.run(batch, 60)

    rig.run(batch, 30 * HOUR)  # long after its deadline, but completed

    assert rig.alerts(batch) == []
