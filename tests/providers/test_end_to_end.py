"""Every provider profile end to end: the official client (``AzureOpenAI`` for Azure) over
HTTP to a sandbox speaking that provider's dialect, built only from the variables
``batchfsm sandbox --dialect NAME`` prints, a SQLite store: submit, poll to the end,
a retry round for the lines that failed with 500, and every result delivered once.

The sandbox and the poller share one FrozenClock, so polls move both at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.sandbox import exports
from batchfsm.config import PROVIDER_NAMES, Settings
from batchfsm.errors import StoreUnavailableError
from batchfsm.fsm.models import BatchRecord, HistoryEntry, RejectionEntry, TransitionEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.jobs.intents import Intents
from batchfsm.jobs.reconcile import reconcile_intents
from batchfsm.jobs.submit import submit_job
from batchfsm.ledger.records import ItemState
from batchfsm.poller import Poller
from batchfsm.ports import FrozenClock
from batchfsm.sandbox import Fate, RunningSandbox, Scenario, World, running_sandbox
from batchfsm.sandbox.dialects import DialectApp
from batchfsm.sandbox.testing import batch_input
from batchfsm.wiring import Runtime, build_runtime
from tests.e2e.support import result_lines

CHAT = "/v1/chat/completions"
IDS = [f"req-{i:02d}" for i in range(12)]
SCENARIO = Scenario(seed=3, by_order=(Fate(failure_rate=0.4, failure_codes=(500,)),))
"""The first batch loses some lines to HTTP 500 (seeded); the retry round is clean."""
CLIENT_VARS = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_API_VERSION",
    "BATCHFSM_PROVIDER",
)


def point_at(monkeypatch: pytest.MonkeyPatch, sandbox: RunningSandbox, dialect: str) -> None:
    """Set exactly what ``batchfsm sandbox --dialect`` tells a user to set."""
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    for line in exports(sandbox.base_url.removesuffix("/v1"), dialect):
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("#")[0].strip().split("=", 1)
            monkeypatch.setenv(name, value)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=[n for n in PROVIDER_NAMES if n != "anthropic"])  # own wire: anthropic/
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def sandbox(clock: FrozenClock, dialect: str) -> Iterator[RunningSandbox]:
    with running_sandbox(app=DialectApp(World(SCENARIO, clock=clock), dialect)) as running:
        yield running


@pytest.fixture
def runtime(
    tmp_path: Path,
    clock: FrozenClock,
    sandbox: RunningSandbox,
    dialect: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Runtime]:
    point_at(monkeypatch, sandbox, dialect)
    settings = Settings.from_env(
        store_url=f"sqlite:///{tmp_path / 'store.db'}", results_dir=tmp_path / "results"
    )
    with build_runtime(settings, clock=clock, workdir=tmp_path) as built:
        yield built


def test_submit_poll_retry_and_results_exactly_once(
    tmp_path: Path, clock: FrozenClock, runtime: Runtime, sandbox: RunningSandbox, dialect: str
) -> None:
    assert runtime.settings.provider == (None if dialect == "openai" else dialect)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input(IDS, endpoint=CHAT, model="deployment-or-model"))
    tracker = runtime.tracker

    submitted = submit_job(tracker, path, CHAT)
    poller = Poller(tracker, sleep=clock.advance)
    summary = poller.run(until_done=True, interval=5, timeout=6 * 3600, auto_retry=True)

    assert summary.done and not summary.timed_out
    first, *retries = tracker.store.list_batches(submitted.job.job_id)
    assert first.state is BatchStatus.COMPLETED
    assert len(retries) == 1, "the lines that failed with 500 went out once more"
    assert retries[0].parent_batch_id == first.batch_id
    assert retries[0].state is BatchStatus.COMPLETED
    entries = {e.custom_id: e for e in tracker.store.iter_ledger(submitted.job.job_id)}
    assert {e.state for e in entries.values()} == {ItemState.SUCCEEDED}
    resent = {i for i, e in entries.items() if e.attempts == 2}
    assert resent and resent < set(IDS)
    assert retries[0].items == len(resent)

    poller.cycle(auto_retry=True)  # nothing left: a later cycle delivers nothing again
    delivered = Counter(
        orjson.loads(line)["custom_id"] for line in result_lines(tmp_path / "results")
    )
    assert delivered == Counter(IDS)

    assert sandbox.stats.count("POST /v1/files") == 2
    assert sandbox.stats.count("POST /v1/batches") == 2
    snapshot = first.snapshot
    assert snapshot is not None
    assert snapshot.model == "deployment-or-model"  # Together's model_id included
    assert snapshot.expires_at is not None  # Together's job_deadline included
    assert first.alerts == ()
    # Every word the provider sent was one the profile knows: nothing was rejected, and
    # the running state was seen, not only implied by the end.
    for record in (first, *retries):
        history = tracker.store.history(record.batch_id)
        assert [e for e in history if isinstance(e, RejectionEntry)] == []
        seen = [e.hop.dest for e in history if isinstance(e, TransitionEntry) and not e.hop.implied]
        assert seen[0] is BatchStatus.IN_PROGRESS and seen[-1] is BatchStatus.COMPLETED


def test_a_crash_between_create_and_the_store_write_is_adopted_on_every_provider(
    tmp_path: Path, clock: FrozenClock, runtime: Runtime, sandbox: RunningSandbox, dialect: str
) -> None:
    """Crash recovery finds the created batch by the intent tag in its metadata, or, on a
    provider that drops metadata (Together), by the file the intent uploaded: never a
    second, paid-for batch."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_input(IDS[:3], endpoint=CHAT, model="deployment-or-model"))
    store = runtime.store
    create = store.create
    crashes = [StoreUnavailableError("disk gone (simulated crash)")]

    def crash_once(record: BatchRecord, history: Sequence[HistoryEntry] = ()) -> BatchRecord:
        if crashes:
            raise crashes.pop()
        return create(record, history)

    store.create = crash_once  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        submit_job(runtime.tracker, path, CHAT)
    clock.advance(301)  # the crashed submit's lease runs out

    report = reconcile_intents(Intents.of(runtime.tracker))

    assert len(report.adopted) == 1, report
    assert sandbox.stats.count("POST /v1/batches") == 1
    (record,) = store.list_batches()
    assert all(e.batches == (record.batch_id,) for e in store.iter_ledger())
