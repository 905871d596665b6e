"""Anthropic's Message Batches end to end, on SQLite and on DynamoDB (the moto server):
the official ``anthropic`` client over HTTP to the sandbox's Anthropic dialect, the
real tracker, poller, handlers and stores.

Three jobs meet three fates: one batch ends with mixed results (a request refused as
``invalid_request_error``, others ``api_error`` / ``overloaded_error`` /
``rate_limit_error``), one expires half done, one is cancelled mid-run. One retry round
sends what can be sent again. What must hold: every result delivered exactly once,
attempts accounted as for OpenAI (an invalid request fails for good after one, a
transient error spends one, a request the batch never ran spends none), the path
through the eight states read from Anthropic's timestamps, and one create per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchfsm.fsm.models import RejectionEntry, TransitionEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.cancel import cancel_batch
from batchfsm.jobs.endpoints import MESSAGES
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ErrorCategory, ItemState
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, Phases, Scenario
from batchfsm.sandbox.anthropic import RunningAnthropic, running_anthropic
from batchfsm.tracker import Tracker
from tests.providers.anthropic.support import (
    CREATE,
    Place,
    anthropic_line,
    delivered,
    openai_line,
    place,
    tracker_on,
    write_lines,
)

HOUR = 3600.0
PHASES = Phases(validating_s=60, in_progress_s=HOUR, finalizing_s=60, cancelling_s=120)
SLOW = Phases(validating_s=60, in_progress_s=4 * HOUR, finalizing_s=60, cancelling_s=120)
SCENARIO = Scenario(
    seed=11,
    by_order=(
        Fate(phases=PHASES, failure_rate=0.3, failure_codes=(500, "request_timeout", 429)),
        Fate(kind="expire", phases=PHASES, expire_fraction=0.5),
        Fate(phases=SLOW),
    ),
    default=Fate(phases=PHASES),
)
"""Batch 1 loses some lines to transient errors (seeded), batch 2 expires with half its
requests run, batch 3 runs four hours (and is cancelled after two); retries are clean."""
MIXED = [f"mixed-{i:02d}" for i in range(12)] + ["mixed-12-fail-400", "mixed-13-fail-400"]
EXPIRING = [f"expiring-{i:02d}" for i in range(10)]
CANCELLED = [f"cancelled-{i:02d}" for i in range(10)]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sandbox(clock: FrozenClock) -> Iterator[RunningAnthropic]:
    with running_anthropic(SCENARIO, clock=clock) as running:
        yield running


@pytest.fixture(params=["sqlite", "dynamodb"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    with place(request.param, tmp_path) as made:
        yield made


def _submit_three(tracker: Tracker, tmp_path: Path) -> dict[str, str]:
    """The three jobs; the mixed one written as OpenAI chat lines (converted)."""
    files = {
        "mixed": write_lines(tmp_path / "mixed.jsonl", [openai_line(c) for c in MIXED]),
        "expiring": write_lines(tmp_path / "exp.jsonl", [anthropic_line(c) for c in EXPIRING]),
        "cancelled": write_lines(tmp_path / "can.jsonl", [anthropic_line(c) for c in CANCELLED]),
    }
    first = {}
    for name, path in files.items():
        submitted = submit_job(tracker, path, MESSAGES, job_id=f"job-{name}")
        (first[name],) = submitted.launched
    return first


def test_mixed_expired_and_cancelled_batches_with_a_retry_round(
    tmp_path: Path, clock: FrozenClock, sandbox: RunningAnthropic, where: Place
) -> None:
    tracker = tracker_on(tmp_path, sandbox, clock, where.store)
    first = _submit_three(tracker, tmp_path)
    clock.advance(60 + 2 * HOUR)  # the slow batch is half done
    assert cancel_batch(tracker, first["cancelled"]).cancel_requested

    poller = Poller(tracker, sleep=clock.advance)
    summary = poller.run(until_done=True, interval=1800, timeout=3 * 24 * HOUR, auto_retry=True)
    assert summary.done and not summary.timed_out

    store = tracker.store
    ends = {name: store.load(batch_id).state for name, batch_id in first.items()}
    assert ends == {
        "mixed": BatchStatus.COMPLETED,
        "expiring": BatchStatus.EXPIRED,
        "cancelled": BatchStatus.CANCELLED,
    }
    retries = [b for b in store.list_batches() if b.parent_batch_id is not None]
    parents = sorted(str(b.parent_batch_id) for b in retries)
    assert parents == sorted(first.values())  # one round
    assert {b.state for b in retries} == {BatchStatus.COMPLETED}
    assert sandbox.stats.count(CREATE) == 6, "one create per batch, no duplicate"

    entries = {e.custom_id: e for e in store.iter_ledger()}
    failed = {c for c, e in entries.items() if e.state is ItemState.FAILED}
    assert failed == {"mixed-12-fail-400", "mixed-13-fail-400"}
    for custom_id in failed:  # refused as an invalid request: failed for good, one attempt
        error = entries[custom_id].last_error
        assert error is not None and entries[custom_id].attempts == 1
        assert (error.code, error.category) == ("invalid_request_error", ErrorCategory.PERMANENT)
    succeeded = {c for c, e in entries.items() if e.state is ItemState.SUCCEEDED}
    assert succeeded == set(MIXED + EXPIRING + CANCELLED) - failed

    # Attempts as for OpenAI: a transient error spent one, a request never run none.
    mixed_retried = {c for c in MIXED if c not in failed and len(entries[c].batches) == 2}
    assert mixed_retried, "the seeded transient errors struck some requests"
    assert all(entries[c].attempts == 2 for c in mixed_retried)
    for names in (EXPIRING, CANCELLED):
        resent = [c for c in names if len(entries[c].batches) == 2]
        assert 0 < len(resent) < len(names), "part ran before the end, part did not"
        assert all(entries[c].attempts == 1 for c in names)

    lines = delivered(tmp_path / "results")
    assert Counter(str(line["custom_id"]) for line in lines) == Counter(succeeded)
    assert {line["response"]["type"] for line in lines} == {"message"}

    poller.cycle(auto_retry=True)  # a later cycle delivers nothing again
    assert len(delivered(tmp_path / "results")) == len(lines)
    _check_paths(tracker, first)


def _check_paths(tracker: Tracker, first: dict[str, str]) -> None:
    """The paths read from Anthropic's stamps; every word known, nothing rejected."""
    expected = {
        "mixed": [("validating", "in_progress", False), ("in_progress", "finalizing", True),
                  ("finalizing", "completed", False)],
        "expiring": [("validating", "in_progress", False), ("in_progress", "expired", False)],
        "cancelled": [("validating", "in_progress", False), ("in_progress", "cancelling", False),
                      ("cancelling", "cancelled", False)],
    }  # fmt: skip
    for name, batch_id in first.items():
        history = tracker.store.history(batch_id)
        assert [e for e in history if isinstance(e, RejectionEntry)] == []
        hops = [
            (e.hop.source.value, e.hop.dest.value, e.hop.implied)
            for e in history
            if isinstance(e, TransitionEntry)
        ]
        assert hops == expected[name], name
