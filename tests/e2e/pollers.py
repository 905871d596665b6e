"""Several ``batchfsm poll --auto-retry`` processes on one store: the scenario, the run
and the invariants, shared by ``test_pollers_dynamodb.py`` and ``scripts/stress_pollers.py``.

The scenario's first three batches meet three fates: completed with some requests failed
(400: permanent, 500: retried), expired half-done (the rest retried for free) and refused
at validation with ``token_limit_exceeded`` (queue full: every item retried after the
backoff). The pollers race for every effect and every retry; with ``stale`` the sandbox
also serves an earlier snapshot of a batch on that share of retrieves and lists.

What must hold, whoever won each race (:func:`problems`): every terminal effect ran
once, every result landed once, every ledger entry ended where its history says, and
the API saw one upload and one create per batch. :func:`diagnosis` dumps what it takes
to find out why when one does not.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchfsm.fsm.models import BatchRecord, EventEntry
from batchfsm.fsm.spec import BatchStatus
from batchfsm.ledger.records import IntentState, ItemState
from batchfsm.persistence.sqlite.store import SQLiteJobStore
from batchfsm.ports import JobStore
from batchfsm.sandbox import Fate, Faults, Phases, RunningSandbox, Scenario
from tests.e2e.support import BATCHES_ROUTE, EMBEDDINGS, RETRIEVE_ROUTE, UPLOAD_ROUTE, write_input

BATCHFSM = str(Path(sys.executable).parent / "batchfsm")
POLLERS = 3
# 24 sandbox hours in about 1.7 s, so the expiring batch expires while pollers watch;
# the other batches take ~0.25 s, long enough to be seen in progress.
TIME_SCALE = 50_000.0
SLOW = Phases(validating_s=2_000, in_progress_s=10_000, finalizing_s=500)
FIRST_FATES = (
    Fate(phases=SLOW, failure_rate=0.5, failure_codes=(500,)),
    Fate(kind="expire", phases=SLOW, expire_fraction=0.5),
    Fate(kind="token_limit_exceeded", phases=SLOW),
)
PERMANENT = {"q01#fail=400", "q08#fail=400"}  # one in the completed batch, one expiring
IDS = [f"q{i:02d}" if f"q{i:02d}#fail=400" not in PERMANENT else f"q{i:02d}#fail=400"
       for i in range(18)]  # fmt: skip
HARVESTED = {BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
FILE_CONTENT_ROUTE = "GET /v1/files/{file_id}/content"


def scenario(*, seed: int = 11, stale: float = 0.0) -> Scenario:
    """The three fates, then plain batches; ``stale``: share of batch retrieves and
    lists answered with an earlier snapshot."""
    return Scenario(
        seed=seed,
        by_order=FIRST_FATES,
        default=Fate(phases=SLOW),
        faults=Faults(stale_read_rate=stale),
    )


@dataclass
class Place:
    """Where the pollers keep their state: a store URL plus our own handle on it."""

    name: str
    url: str
    store: JobStore
    environ: dict[str, str]


@contextlib.contextmanager
def sqlite_place(workdir: Path) -> Iterator[Place]:
    path = workdir / "store.db"
    store = SQLiteJobStore(path)
    store.init()
    try:
        yield Place("sqlite", f"sqlite:///{path}", store, {})
    finally:
        store.close()


@contextlib.contextmanager
def dynamodb_place() -> Iterator[Place]:
    """A fresh table on the moto server of ``scripts/ddb-server.sh``, dropped afterwards."""
    from tests.persistence.dynamodb_server import fresh_store, server

    endpoint, region = server()
    with fresh_store() as ddb:
        fake_keys = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": region,
        }
        url = f"dynamodb://{ddb.table}?region={region}&endpoint_url={endpoint}"
        yield Place("dynamodb", url, ddb, fake_keys)


@dataclass
class Poller:
    returncode: int | None
    out: str
    err: str
    summary: dict[str, Any] | None = None


@dataclass
class Run:
    """One run of the scenario: what the pollers said, for the checks and a diagnosis."""

    place: Place
    sandbox: RunningSandbox
    workdir: Path
    submit: subprocess.CompletedProcess[str]
    pollers: list[Poller] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.workdir / "results"


def run_pollers(
    place: Place,
    sandbox: RunningSandbox,
    workdir: Path,
    *,
    pollers: int = POLLERS,
    verbose: bool = False,
    timeout: float = 40.0,
) -> Run:
    """Submit the 18 requests as three batches, then run ``pollers`` pollers to the end."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BATCHFSM_"))},
        **place.environ,
        "OPENAI_BASE_URL": sandbox.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "BATCHFSM_STORE": place.url,
        "BATCHFSM_RESULTS_DIR": str(workdir / "results"),
        "BATCHFSM_RETRY_BACKOFF_BASE": "0.3",  # queue-full items wait this long (from Settings)
        "BATCHFSM_RETRY_BACKOFF_CAP": "1",
    }
    path = write_input(workdir / "requests.jsonl", IDS)
    submitted = subprocess.run(
        [BATCHFSM, "submit", str(path), "--endpoint", EMBEDDINGS, "--max-requests", "6"],
        env=environ, cwd=workdir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    run = Run(place, sandbox, workdir, submitted)
    if submitted.returncode != 0:
        return run
    argv = [BATCHFSM, *(["-v"] if verbose else []), "poll", "--until-done", "--auto-retry",
            "--interval", "0.05", "--timeout", str(timeout), "--json"]  # fmt: skip
    procs = [
        subprocess.Popen(
            argv,
            env=environ,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(pollers)
    ]
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout + 20)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            out, err = proc.communicate()
            err += "\n[stress] killed: the poller outlived its --timeout by 20 s\n"
        summary = None
        with contextlib.suppress(orjson.JSONDecodeError):
            summary = orjson.loads(out) if out.strip() else None
        run.pollers.append(Poller(proc.returncode, out, err, summary))
    return run


def problems(run: Run) -> list[str]:
    """Every invariant the run broke (empty: it held)."""
    found: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            found.append(message)

    if run.submit.returncode != 0 or "3 batches" not in run.submit.stdout:
        return [f"submit failed ({run.submit.returncode}): {run.submit.stderr[-2000:]}"]
    for n, poller in enumerate(run.pollers):
        check(poller.returncode == 0, f"poller {n} exited {poller.returncode}")
        check(
            poller.summary is not None and poller.summary.get("done") is True,
            f"poller {n} did not finish (summary {poller.summary and _brief(poller.summary)})",
        )
    store = run.place.store
    records = {r.batch_id: r for r in store.list_batches()}
    entries = {e.custom_id: e for e in store.iter_ledger()}
    world = run.sandbox.app.world
    stats = run.sandbox.app.stats

    # The three fates happened, and their items were retried in new batches.
    first = [records[b].state if b in records else None for b in world.batch_ids()[:3]]
    want = [BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.FAILED]
    check(first == want, f"first three batches ended {first}, not {want}")
    check(
        len(records) == len(world.batch_ids()) > 3,
        f"{len(records)} batches tracked, {len(world.batch_ids())} created (want equal, > 3)",
    )
    for record in records.values():
        check(
            record.state in HARVESTED | {BatchStatus.FAILED},
            f"{record.batch_id} ended {record.state}",
        )

    # Every terminal effect ran once: one settlement event per batch, every effect done.
    for record in records.values():
        events = Counter(
            e.name for e in store.history(record.batch_id) if isinstance(e, EventEntry)
        )
        settled = "harvested" if record.state in HARVESTED else "failure_classified"
        check(
            events[settled] == 1,
            f"{record.batch_id} ({record.state}): {events[settled]} {settled} events",
        )
        check(
            bool(record.outbox) and all(e.done for e in record.outbox),
            f"{record.batch_id}: effects not all done: {_outbox(record)}",
        )
        harvests = {e.attempts for e in record.outbox if e.handler == "harvest"}
        check(harvests <= {1}, f"{record.batch_id}: harvest attempts {harvests}")

    # Every result landed once, and only successes landed.
    delivered = Counter(
        orjson.loads(line)["custom_id"]
        for file in run.results.glob("*/*.jsonl")
        for line in file.read_bytes().splitlines()
    )
    succeeded = {cid for cid, e in entries.items() if e.state is ItemState.SUCCEEDED}
    check(
        set(delivered) == succeeded,
        f"delivered but not succeeded {sorted(set(delivered) - succeeded)}, "
        f"succeeded but not delivered {sorted(succeeded - set(delivered))}",
    )
    twice = sorted(cid for cid, n in delivered.items() if n != 1)
    check(not twice, f"delivered more than once: {twice}")

    # Every ledger entry ended right: permanent failures failed, all else succeeded,
    # nothing stranded, and each request was sent exactly once per batch it lists.
    failed = {cid for cid, e in entries.items() if e.state is ItemState.FAILED}
    check(failed == PERMANENT, f"failed {sorted(failed)}, want {sorted(PERMANENT)}")
    check(
        succeeded == set(IDS) - PERMANENT,
        f"not succeeded: {sorted(set(IDS) - PERMANENT - succeeded)}",
    )
    sent: Counter[str] = Counter()
    carried: dict[str, list[str]] = {}
    for batch_id in world.batch_ids():
        content = world.get_file(world.retrieve_batch(batch_id)["input_file_id"]).content
        for line in content.splitlines():
            cid = orjson.loads(line)["custom_id"]
            sent[cid] += 1
            carried.setdefault(cid, []).append(batch_id)
    for cid, entry in entries.items():
        check(
            sent[cid] == len(entry.batches),
            f"{cid}: sent in {carried.get(cid)}, ledger lists {list(entry.batches)}",
        )
        last = entry.batches[-1] if entry.batches else None
        check(
            entry.result_batch_id in (last, None),
            f"{cid}: result from {entry.result_batch_id}, last batch {last}",
        )
        check(
            entry.attempts <= len(entry.batches),
            f"{cid}: {entry.attempts} attempts in {len(entry.batches)} batches",
        )
    pending = store.count_ledger()[ItemState.PENDING]
    check(pending == 0, f"{pending} entries still pending")
    intents = Counter(i.state for i in store.list_intents())
    check(set(intents) <= {"created", "abandoned"}, f"intents left open: {dict(intents)}")
    check(
        intents[IntentState.CREATED] == len(records),
        f"{intents[IntentState.CREATED]} intents created for {len(records)} batches",
    )

    # API calls: one upload and one create per batch, whichever poller sent it; at most
    # one retrieve per batch needing attention per poller cycle.
    uploads, creates = stats.count(UPLOAD_ROUTE), stats.count(BATCHES_ROUTE)
    check(
        uploads == creates == len(records),
        f"{uploads} uploads and {creates} creates for {len(records)} batches",
    )
    cycles = sum(p.summary["cycles"] for p in run.pollers if p.summary)
    retrieves = stats.count(RETRIEVE_ROUTE)
    check(
        retrieves <= cycles * len(records),
        f"{retrieves} retrieves in {cycles} cycles of {len(records)} batches",
    )
    downloads = stats.count(FILE_CONTENT_ROUTE)
    harvested = sum(1 for r in records.values() if r.state in HARVESTED)
    check(downloads <= 2 * harvested, f"{downloads} downloads for {harvested} harvested batches")
    return found


def figures(run: Run) -> str:
    """One line about a run that held."""
    store, stats = run.place.store, run.sandbox.app.stats
    batches = len(store.list_batches())
    cycles = sum(p.summary["cycles"] for p in run.pollers if p.summary)
    retrieves = stats.count(RETRIEVE_ROUTE)
    stale = sum(1 for _route, fault in run.sandbox.app.faults.injected if fault == "stale_read")
    abandoned = sum(1 for i in store.list_intents() if i.state == IntentState.ABANDONED)
    return (
        f"{run.place.name}: {batches} batches, {cycles} cycles over {len(run.pollers)} "
        f"pollers, {retrieves} retrieves ({stale} stale), "
        f"{stats.count(FILE_CONTENT_ROUTE)} file downloads, "
        f"{abandoned} intents lost every item to a rival"
    )


def diagnosis(run: Run) -> str:
    """Everything needed to find out why a run broke an invariant."""
    store, world, app = run.place.store, run.sandbox.app.world, run.sandbox.app
    lines = [f"== store {run.place.url}", f"== submit: {run.submit.stdout.strip()}"]
    lines.append("== sandbox batches (oldest first): id, true status, input lines")
    for batch_id in world.batch_ids():
        snap = world.retrieve_batch(batch_id)
        content = world.get_file(snap["input_file_id"]).content
        ids = [orjson.loads(line)["custom_id"] for line in content.splitlines()]
        lines.append(f"  {batch_id} {snap['status']} {ids} metadata={snap.get('metadata')}")
    lines.append("== records and histories")
    for record in store.list_batches():
        lines.append(
            f"  {record.batch_id} state={record.state} v{record.version} job={record.job_id} "
            f"parent={record.parent_batch_id} items={record.items} lost={record.lost}"
        )
        lines.append(f"    outbox: {_outbox(record)}")
        lines.extend(f"    {h.model_dump_json()}" for h in store.history(record.batch_id))
    lines.append("== ledger")
    for item in store.iter_ledger():
        error = item.last_error
        lines.append(
            f"  {item.custom_id} {item.state} v{item.version} attempts={item.attempts} "
            f"batches={list(item.batches)} intent={item.intent_id} "
            f"result={item.result_batch_id} "
            f"error={error.category + ':' + str(error.code) if error else None}"
        )
    lines.append("== intents")
    for intent in store.list_intents():
        lines.append(
            f"  {intent.intent_id} {intent.state} v{intent.version} batch={intent.batch_id} "
            f"ids={list(intent.custom_ids)} parents={list(intent.parent_batch_ids)} "
            f"owner={intent.lease_owner}"
        )
    lines.append("== sandbox calls: " + orjson.dumps(app.stats.snapshot()).decode())
    lines.append("== request log (route, path, status, fault)")
    lines.extend(f"  {r.route} {r.path} {r.status} {r.fault or ''}" for r in app.stats.log)
    for n, poller in enumerate(run.pollers):
        lines.append(f"== poller {n}: exit {poller.returncode}")
        lines.append(f"-- summary: {poller.summary and _brief(poller.summary)}")
        lines.append("-- stderr:")
        lines.append(poller.err)
    return "\n".join(lines)


def _outbox(record: BatchRecord) -> str:
    return ", ".join(
        f"{e.key}(done={e.done} attempts={e.attempts} owner={e.lease_owner} error={e.last_error})"
        for e in record.outbox
    )


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "batches"}
