"""Benchmark the DynamoDB store against the local moto server (a script, not a test).

    . scripts/ddb-server.sh && ddb_start && trap ddb_stop EXIT
    .venv/bin/python bench/bench_dynamodb.py [--entries 2000]

Prints, from one run:

* ledger write throughput of ``save_ledger`` as a ratio to a bare boto3 ``batch_writer``
  loop writing the same items to the same server (target >= 0.8x);
* DynamoDB requests per poll cycle of the real :class:`~batchfsm.tracker.Tracker` with
  the default handlers (list_attention, apply, commit if changed, owed effects) for an
  unchanged batch (target: zero writes) and for one that moved to ``finalizing`` and so
  owes its ``watch`` effect (target: one write).

Requests are counted with a botocore event hook on the store's own client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config

from batchfsm.fsm.models import BatchSnapshot
from batchfsm.handlers import default_registry
from batchfsm.ledger.records import LedgerEntry
from batchfsm.persistence.dynamodb.items import ledger_to_item
from batchfsm.persistence.dynamodb.store import DynamoDBJobStore
from batchfsm.persistence.items import LedgerItem
from batchfsm.tracker import Tracker

WRITES = {"PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem"}


def endpoint() -> tuple[str, str]:
    url = os.environ.get("BATCHFSM_TEST_DYNAMODB_URL", "")
    params = dict(parse_qsl(urlsplit(url).query))
    found = params.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", "")
    if not found.startswith(("http://127.0.0.1:", "http://localhost:")):
        sys.exit("no local DynamoDB server: run `. scripts/ddb-server.sh && ddb_start` first")
    return found, params.get("region") or "us-east-1"


def make_client() -> Any:
    url, region = endpoint()
    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=region
    ).client("dynamodb", endpoint_url=url, config=Config(retries={"total_max_attempts": 1}))


def fresh_store(client: Any) -> DynamoDBJobStore:
    store = DynamoDBJobStore(client, f"bench-{uuid.uuid4().hex[:10]}")
    store.init()
    return store


def count_requests(client: Any) -> Counter[str]:
    seen: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    client.meta.events.register("before-call.dynamodb", record)
    return seen


def ledger_entries(n: int) -> list[LedgerEntry]:
    line = '{"custom_id": "%s", "method": "POST", "url": "/v1/chat/completions", "body": {}}'
    return [
        LedgerEntry(job_id="bench-job", custom_id=f"req-{i:06d}", line=line % i, batches=("b1",))
        for i in range(n)
    ]


def _bare_table(name: str) -> Any:
    return (
        boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=endpoint()[1]
        )
        .resource("dynamodb", endpoint_url=endpoint()[0])
        .Table(name)
    )


def bench_ledger(n: int, updates: int, rounds: int) -> tuple[float, float, float, list[float]]:
    """Alternating rounds of (ours, bare batch_writer), each on fresh tables, so load from
    other processes hits both alike. Returns median rates, the update rate and the
    per-round ratios."""
    entries = ledger_entries(n)
    client = make_client()
    plain = TypeDeserializer()
    items = [
        {k: plain.deserialize(v) for k, v in ledger_to_item(as_item(e)).items()}  # type: ignore[arg-type]
        for e in entries
    ]
    ours_rates, bare_rates, ratios = [], [], []
    for _ in range(rounds):
        store = fresh_store(client)
        started = time.perf_counter()
        store.save_ledger(entries)
        ours = n / (time.perf_counter() - started)

        # The same items, as a bare boto3 loop would write them (unconditionally, 25 a call).
        bare = fresh_store(client)
        table = _bare_table(bare.table)
        started = time.perf_counter()
        with table.batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)
        baseline = n / (time.perf_counter() - started)
        ours_rates.append(ours)
        bare_rates.append(baseline)
        ratios.append(ours / baseline)
        client.delete_table(TableName=bare.table)
        last = store
    # Updates go through version-conditioned transactions of 100 (moto deep-copies the
    # whole table per transaction action, so this says more about moto than about AWS).
    saved = [e.model_copy(update={"version": 1, "attempts": 1}) for e in entries[:updates]]
    started = time.perf_counter()
    last.save_ledger(saved)
    updated = len(saved) / (time.perf_counter() - started)
    client.delete_table(TableName=last.table)
    return statistics.median(ours_rates), statistics.median(bare_rates), updated, ratios


def as_item(entry: LedgerEntry) -> LedgerItem:
    stored = entry.model_copy(update={"version": 1})
    return LedgerItem(
        entry.job_id, entry.custom_id, entry.state.value, 1, entry.batches, stored.model_dump_json()
    )


class OneSnapshot:
    """The retrieve half of the gateway port: answers with whatever ``snapshot`` is now
    (this benchmark counts DynamoDB requests, not API calls)."""

    def __init__(self, snapshot: BatchSnapshot) -> None:
        self.snapshot = snapshot

    def retrieve(self, batch_id: str) -> BatchSnapshot:
        return self.snapshot


def bench_poll() -> tuple[Counter[str], Counter[str]]:
    client = make_client()
    store = fresh_store(client)
    created = int(time.time()) - 600
    snapshot = BatchSnapshot(
        id="batch_1", status="in_progress", created_at=created, in_progress_at=created + 100
    )
    gateway = OneSnapshot(snapshot)
    tracker = Tracker(store, gateway, default_registry())  # type: ignore[arg-type]
    tracker.track(snapshot, items=20)

    def poll_cycle(observed: BatchSnapshot) -> Counter[str]:
        gateway.snapshot = observed
        seen = count_requests(client)
        tracker.poll_once()
        client.meta.events.unregister("before-call.dynamodb")
        return Counter(dict(seen))

    unchanged = poll_cycle(snapshot)
    finalizing = snapshot.model_copy(
        update={"status": "finalizing", "finalizing_at": created + 200}
    )
    changed = poll_cycle(finalizing)
    assert store.load("batch_1").pending_effects == (), "the watch effect is still owed"
    client.delete_table(TableName=store.table)
    return unchanged, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    ours, baseline, updated, ratios = bench_ledger(args.entries, args.updates, args.rounds)
    print(f"ledger write, {args.entries} entries, {args.rounds} alternating rounds (moto server):")
    print(f"  DynamoDBJobStore.save_ledger  {ours:8.0f} entries/s (median)")
    print(f"  boto3 batch_writer baseline   {baseline:8.0f} entries/s (median)")
    print(
        f"  ratio                         {statistics.median(ratios):8.2f}x   (target >= 0.8x; "
        f"rounds: {' '.join(f'{r:.2f}' for r in sorted(ratios))})"
    )
    print(
        f"  conditional updates ({args.updates}, transactions of 100 on that table): "
        f"{updated:.0f} entries/s"
    )

    unchanged, changed = bench_poll()
    for name, seen in (("unchanged batch", unchanged), ("changed batch", changed)):
        writes = sum(n for op, n in seen.items() if op in WRITES)
        detail = ", ".join(f"{op} x{n}" for op, n in sorted(seen.items()))
        print(f"poll cycle, {name}: {sum(seen.values())} requests ({detail}); {writes} writes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
