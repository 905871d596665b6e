"""The demo's script for Anthropic's Message Batches (``batchfsm demo --provider
anthropic``): the same rehearsal, on the sandbox's Anthropic dialect and the official
``anthropic`` client.

The jobs are the OpenAI script's (:mod:`batchfsm.demo.scenario`) but one: Anthropic has
no ``failed`` batch (a full queue refuses the create instead), so the queue-full job is
left out. Their request files are the same OpenAI chat lines, converted by batchfsm
into Message Batch requests (one input file for either vendor); the permanent failures
are marked ``-fail-400`` in the custom_id, which Anthropic's ids allow where ``#`` is
not. The sandbox answers them ``invalid_request_error`` (failed for good), and the
seeded 429 / 500 / timeout failures ``rate_limit_error`` / ``api_error`` /
``overloaded_error`` (retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from batchfsm.demo import scenario as openai_script
from batchfsm.demo.scenario import RETRY_FATE, DemoJob, prepare_out
from batchfsm.fsm.spec import BatchStatus
from batchfsm.sandbox.scenario import Scenario

if TYPE_CHECKING:
    from batchfsm.ports import Clock
    from batchfsm.tracker import Tracker

__all__ = [
    "DEMO_JOBS",
    "ENDPOINT",
    "MODEL",
    "demo_scenario",
    "prepare_out",
    "sandbox_tracker",
    "write_requests",
]

ENDPOINT = "/v1/messages"
MODEL = "claude-haiku-4-5"
_KEY = "sk-ant-sandbox-demo"  # only ever sent to the in-process sandbox

DEMO_JOBS: tuple[DemoJob, ...] = tuple(
    job for job in openai_script.DEMO_JOBS if job.expected is not BatchStatus.FAILED
)
"""The OpenAI demo's jobs without the queue-full one (Anthropic has no failed batch)."""


def demo_scenario(seed: int = 7) -> Scenario:
    """The sandbox scenario: the four fates in order, then the clean retry round."""
    return Scenario(seed=seed, by_order=tuple(job.fate for job in DEMO_JOBS), default=RETRY_FATE)


def write_requests(job: DemoJob, directory: Path) -> Path:
    """``job``'s request file: OpenAI chat lines (batchfsm converts them), the failure
    marker spelled ``-fail-400`` (Anthropic's ``custom_id`` takes no ``#`` or ``=``)."""
    return openai_script.write_requests(
        job, directory, model=MODEL, line_id=lambda c: c.replace("#fail=400", "-fail-400")
    )


@contextmanager
def sandbox_tracker(
    out: Path, time_scale: float, *, lease_seconds: float, poll_interval: float
) -> Iterator[tuple[str, Clock, Tracker]]:
    """The Anthropic-dialect sandbox on a free loopback port and a tracker on
    ``out/store.db`` whose client can only reach it: (its URL, the shared clock, the
    tracker). ``ANTHROPIC_*`` variables play no part."""
    import anthropic

    from batchfsm.config import Settings
    from batchfsm.persistence.sqlite.store import SQLiteJobStore
    from batchfsm.providers.anthropic import AnthropicGateway
    from batchfsm.sandbox.anthropic import AnthropicSandboxApp, running_anthropic
    from batchfsm.sandbox.anthropic_world import AnthropicWorld
    from batchfsm.wiring import build_runtime

    app = AnthropicSandboxApp(AnthropicWorld(demo_scenario(), time_scale=time_scale))
    with running_anthropic(app=app) as sandbox:
        client = anthropic.Anthropic(
            api_key=_KEY,
            base_url=sandbox.base_url,
            max_retries=0,
            http_client=anthropic.DefaultHttpxClient(trust_env=False),
        )
        settings = Settings(
            provider="anthropic",
            store_url=f"sqlite:///{out / 'store.db'}",
            results_dir=out / "results",
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
        )
        (out / "work").mkdir()
        runtime = build_runtime(
            settings,
            store=SQLiteJobStore(out / "store.db"),
            gateway=AnthropicGateway(client),
            clock=app.world.clock,
            workdir=out / "work",
        )
        try:
            yield sandbox.base_url, app.world.clock, runtime.tracker
        finally:
            runtime.close()
            client.close()
