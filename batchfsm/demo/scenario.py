"""The demo's script: five jobs, the fate each one's batch meets, their request files
and the directory they are written to.

Fates are assigned by creation order (``Scenario.by_order``), not by the
``sandbox_fate`` metadata key: batchfsm copies a job's metadata onto its retry batches,
so a fate named there would strike the retry round too (an expired batch's retry would
expire again). By order, the five first batches meet their fates and every later one,
the retry round, gets ``Scenario.default``: it completes cleanly.

Per-request failures of the "failed lines" batch come two ways: ``#fail=400`` markers in
the custom_id (a permanent input error, so they fail for good) and a seeded share of
429 / 500 / timeout answers drawn by that batch's fate (transient: the retry batch,
which has no such fate, runs them fine).

Times are sandbox seconds; the demo runs the sandbox on a sped-up clock so the
expiring batch really uses up its 24 h window.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from batchfsm.config import ConfigError
from batchfsm.fsm.spec import BatchStatus
from batchfsm.sandbox.scenario import Fate, Phases, Scenario

__all__ = [
    "DEMO_JOBS",
    "ENDPOINT",
    "MODEL",
    "RETRY_FATE",
    "DemoJob",
    "demo_scenario",
    "prepare_out",
    "write_requests",
]

ENDPOINT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
_MIN, _HOUR = 60.0, 3600.0
_MARKER = ".batchfsm-demo"
_OWNED = ("store.db", "store.db-wal", "store.db-shm", "inputs", "results",
          "results.quarantine", "work", "lifecycle.mmd", "lifecycle.svg")  # fmt: skip
"""Everything a run writes under ``--out``; a re-run removes exactly these."""


@dataclass(frozen=True)
class DemoJob:
    """One job of the demo: a request file whose single batch meets ``fate``."""

    job_id: str
    label: str
    """What happens to it, for people (``"expires"``)."""
    fate: Fate
    expected: BatchStatus
    requests: int
    permanent_failures: int = 0
    """How many custom_ids carry a ``#fail=400`` marker."""

    def custom_ids(self) -> list[str]:
        prefix = self.job_id.removeprefix("demo-")
        ids = [f"{prefix}-{i:03d}" for i in range(1, self.requests + 1)]
        # Spread the permanent failures out (every 5th request) so they are easy to spot.
        for n in range(self.permanent_failures):
            index = 4 + 5 * n
            ids[index] += "#fail=400"
        return ids


_STEADY = Phases(validating_s=10 * _MIN, in_progress_s=3 * _HOUR, finalizing_s=20 * _MIN)

DEMO_JOBS: tuple[DemoJob, ...] = (
    DemoJob(
        job_id="demo-completes",
        label="completes",
        fate=Fate(phases=_STEADY),
        expected=BatchStatus.COMPLETED,
        requests=12,
    ),
    DemoJob(
        job_id="demo-failed-lines",
        label="completes with failed lines",
        fate=Fate(
            phases=Phases(validating_s=10 * _MIN, in_progress_s=5 * _HOUR, finalizing_s=30 * _MIN),
            failure_rate=0.3,
            failure_codes=(429, 500, "request_timeout"),
        ),
        expected=BatchStatus.COMPLETED,
        requests=16,
        permanent_failures=2,
    ),
    DemoJob(
        job_id="demo-expires",
        label="expires with partial output",
        fate=Fate(kind="expire", expire_fraction=0.5, phases=Phases(validating_s=10 * _MIN)),
        expected=BatchStatus.EXPIRED,
        requests=20,
    ),
    DemoJob(
        job_id="demo-queue-full",
        label="fails: token_limit_exceeded",
        fate=Fate(kind="token_limit_exceeded", phases=Phases(validating_s=15 * _MIN)),
        expected=BatchStatus.FAILED,
        requests=8,
    ),
    DemoJob(
        job_id="demo-cancelled",
        label="cancelled mid-run",
        # Slow enough that the demo sees it in_progress with work done, and cancels it.
        fate=Fate(
            phases=Phases(validating_s=10 * _MIN, in_progress_s=20 * _HOUR, cancelling_s=45 * _MIN)
        ),
        expected=BatchStatus.CANCELLED,
        requests=12,
    ),
)

RETRY_FATE = Fate(
    phases=Phases(validating_s=10 * _MIN, in_progress_s=_HOUR, finalizing_s=10 * _MIN)
)
"""What every batch after the first five meets: the retry round, completing cleanly."""


def demo_scenario(seed: int = 7) -> Scenario:
    """The sandbox scenario: the five fates in order, then :data:`RETRY_FATE`."""
    return Scenario(
        seed=seed,
        by_order=tuple(job.fate for job in DEMO_JOBS),
        default=RETRY_FATE,
    )


def write_requests(
    job: DemoJob,
    directory: Path,
    *,
    model: str = MODEL,
    line_id: Callable[[str], str] = str,
) -> Path:
    """Write ``job``'s request file (``<job_id>.jsonl``) into ``directory``: OpenAI chat
    lines for ``model``, each request's ``custom_id`` given by ``line_id`` (the
    Anthropic rehearsal names its failure markers another way)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for custom_id in job.custom_ids():
        ticket = custom_id.partition("#")[0]
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "Summarise the support ticket in one line."},
                {"role": "user", "content": f"Ticket {ticket}: the export button does nothing."},
            ],
            "max_tokens": 60,
        }
        lines.append(
            orjson.dumps(
                {"custom_id": line_id(custom_id), "method": "POST", "url": ENDPOINT, "body": body}
            )
        )
    path = directory / f"{job.job_id}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def prepare_out(out: Path) -> None:
    """Make ``out`` a clean demo directory: empty of everything an earlier run wrote.

    :raises ConfigError: ``out`` exists, is not empty and was not made by the demo
        (nothing is removed then).
    """
    ours = out.is_dir() and ((out / _MARKER).exists() or not any(out.iterdir()))
    if out.exists() and not ours:
        raise ConfigError(
            f"--out {out}: exists and was not made by `batchfsm demo`; "
            "choose a new or empty directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("made by `batchfsm demo`, which empties it on every run\n")
    for name in _OWNED:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
