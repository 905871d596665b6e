"""Property: a terminal batch's output and error lines account for each request once."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, SandboxApp, Scenario, World
from batchfsm.sandbox.testing import batch_input, openai_client

custom_ids = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
            max_size=12),
    min_size=1, max_size=25, unique=True,
)  # fmt: skip
fates = st.builds(
    Fate,
    kind=st.sampled_from(["complete", "all_fail", "expire", "stuck_finalizing"]),
    failure_rate=st.floats(0, 1),
    failure_codes=st.lists(st.sampled_from([400, 429, 500, "request_timeout"]), min_size=1)
    .map(tuple),
    expire_fraction=st.floats(0, 1),
    phases=st.builds(Phases, in_progress_s=st.floats(0, 100), cancelling_s=st.floats(0, 50)),
)  # fmt: skip


def _lines(client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [orjson.loads(x) for x in client.files.content(file_id).content.splitlines()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=custom_ids,
    fate=fates,
    seed=st.integers(0, 2**32),
    cancel_after=st.one_of(st.none(), st.floats(0, 120)),
)
def test_terminal_lines_cover_each_request_once(
    ids: list[str], fate: Fate, seed: int, cancel_after: float | None
) -> None:
    clock = FrozenClock()
    app = SandboxApp(World(Scenario(seed=seed, default=fate), clock=clock))
    with openai_client(app) as client:
        file_id = client.files.create(file=("in.jsonl", batch_input(ids)), purpose="batch").id
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
        if cancel_after is not None:
            clock.advance(cancel_after)
            if client.batches.retrieve(batch.id).status in {"validating", "in_progress",
                                                             "finalizing"}:  # fmt: skip
                client.batches.cancel(batch.id)
        clock.advance(3 * 86400)
        done = client.batches.retrieve(batch.id)
        assert done.status in {"completed", "expired", "cancelled"}
        output = _lines(client, done.output_file_id)
        errors = _lines(client, done.error_file_id)

    seen = [line["custom_id"] for line in output + errors]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(ids)
    assert all(line["response"]["status_code"] == 200 for line in output)
    assert all(
        (line["error"] is None) != (line["response"] is None) for line in errors
    )  # exactly one of the two failure shapes
    counts = done.request_counts
    assert counts is not None
    assert counts.total == len(ids)
    assert counts.completed == len(output)
    never_ran = sum(
        1 for line in errors if line["error"] and line["error"]["code"] != "request_timeout"
    )
    assert counts.failed == len(errors) - never_ran
    assert (done.output_file_id is None) == (not output)
