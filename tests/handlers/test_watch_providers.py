"""watch, per provider: Azure's global batch is not expired when it runs past
``expires_at``, so neither deadline alert may fire for it; the slow-state alerts still do.
The same stuck batch alerts as usual under OpenAI's profile and an unset provider
detected from the base URL."""

from __future__ import annotations

import pytest

from batchfsm.config import Settings
from tests.handlers.conftest import Rig

HOUR = 3600.0


@pytest.mark.parametrize(
    ("settings", "deadline_alerts"),
    [
        (Settings(provider="azure"), []),
        (Settings(openai_base_url="https://res.openai.azure.com/openai/v1/"), []),
        (Settings(provider="openai"), ["deadline_20h", "past_deadline"]),
        (Settings(provider="together"), ["deadline_20h", "past_deadline"]),
    ],
)
def test_deadline_alerts_follow_the_provider_s_expiry(
    rig: Rig, settings: Settings, deadline_alerts: list[str]
) -> None:
    rig.settings = settings
    batch = rig.submit(["a"], fate="stuck")  # finalizing for 30 h
    for _ in range(27):
        rig.run(batch, HOUR)

    assert rig.store.load(batch).state.value == "finalizing"
    assert rig.alerts(batch) == ["finalizing_slow", *deadline_alerts]
