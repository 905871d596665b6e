"""harvest keeps each succeeded line's ``usage`` on its ledger entry, also for a batch
that ended part-way with no ``usage`` on its Batch object, and ``cost`` prices it."""

from __future__ import annotations

import orjson

from batchfsm.jobs.cost import job_costs, load_prices
from batchfsm.ledger.records import ItemState
from batchfsm.ledger.usage import LineUsage, parse_usage
from tests.handlers.conftest import Rig
from tests.handlers.test_harvest import CrashingSink

DAY = 24 * 3600.0


def delivered_usage(rig: Rig, batch: str) -> dict[str, LineUsage | None]:
    """What each delivered body says it used, read back from the results."""
    return {
        cid: parse_usage(orjson.loads(body)) for cid, body in rig.sink.read_batch("job-1", batch)
    }


def cost_row(rig: Rig) -> dict[str, object]:
    costs = job_costs(rig.store, rig.store.load_job("job-1"), load_prices())
    (row,) = costs.models
    return row.as_json()


def test_an_expired_batch_without_batch_usage_is_costed_from_its_finished_lines(rig: Rig) -> None:
    ids = [f"item-{i}" for i in range(10)]
    batch = rig.submit(ids, fate="expire_half_unbilled")

    assert rig.run(batch, DAY).state == "expired"

    record = rig.store.load(batch)
    assert record.snapshot is not None and record.snapshot.usage is None  # nothing billed there
    ledger = rig.ledger()
    usage = delivered_usage(rig, batch)
    assert len(usage) == 5
    for cid, entry in ledger.items():
        assert entry.usage == usage.get(cid)  # the finished ones' usage, the rest none
        assert (entry.usage is not None) is (entry.state is ItemState.SUCCEEDED)
    billed = sum(u.input_tokens or 0 for u in usage.values() if u)
    (event,) = rig.events(batch, "harvested")
    line_usage = event.detail["line_usage"]
    assert isinstance(line_usage, dict)
    assert (line_usage["lines"], line_usage["input_tokens"]) == (5, billed)
    assert line_usage["models"] == ["text-embedding-3-small"]

    row = cost_row(rig)
    rate = load_prices().price_of("text-embedding-3-small")
    assert rate is not None
    assert (row["source"], row["input_tokens"], row["unreported_batches"]) == ("lines", billed, 0)
    assert row["cost_usd"] == billed * rate.input / 1_000_000 * 0.5
    assert row["from_batch"] == {"batches": 0, "input_tokens": 0, "cached_tokens": 0,
                                 "output_tokens": 0, "reasoning_tokens": 0}  # fmt: skip


def test_the_batch_usage_stands_in_until_the_lines_are_harvested_and_agrees_with_them(
    rig: Rig,
) -> None:
    batch = rig.submit(["a", "b", "c", "d"], fate="slow")  # 100 s of work
    assert rig.run(batch, 52).state == "in_progress"
    running = cost_row(rig)
    assert running["source"] == "batch"  # the Batch object's usage so far
    assert running["running_input_tokens"] == 0  # nothing counted at submit in this rig

    assert rig.run(batch, 120).state == "completed"

    done = cost_row(rig)
    record = rig.store.load(batch)
    assert record.snapshot is not None and record.snapshot.usage is not None
    assert done["source"] == "lines"
    assert done["input_tokens"] == record.snapshot.usage.input_tokens  # both sources agree
    assert done["from_lines"]["lines"] == 4  # type: ignore[index]


def test_one_line_with_odd_usage_never_stops_the_harvest_and_is_counted_as_unknown(
    rig: Rig,
) -> None:
    batch = rig.submit(["a", "b", "c"])
    output_id = rig.materialise(batch, 60)["output_file_id"]
    lines = []
    for raw in rig.file_content(output_id).splitlines():
        line = orjson.loads(raw)
        body = line["response"]["body"]
        if line["custom_id"] == "a":
            body["usage"] = {"prompt_tokens": "lots", "total_tokens": None}
        elif line["custom_id"] == "b":
            del body["usage"]
        lines.append(orjson.dumps(line) + b"\n")
    lines.append(lines[-1])  # a duplicate line of one request: counted once
    rig.set_file_content(output_id, b"".join(lines))

    rig.tracker().observe(batch)

    ledger = rig.ledger()
    assert {e.state for e in ledger.values()} == {ItemState.SUCCEEDED}
    assert ledger["a"].usage == LineUsage("text-embedding-3-small")  # every count unknown
    assert ledger["b"].usage is None
    assert ledger["c"].usage is not None and ledger["c"].usage.complete
    (event,) = rig.events(batch, "harvested")
    line_usage = event.detail["line_usage"]
    assert isinstance(line_usage, dict)
    assert (line_usage["lines"], line_usage["lines_without_usage"]) == (3, 2)
    row = cost_row(rig)
    assert (row["lines_without_usage"], row["input_tokens"]) == (2, ledger["c"].usage.input_tokens)


def test_usage_is_kept_when_a_rerun_finds_the_batch_delivered_or_its_output_gone(
    rig: Rig,
) -> None:
    first = rig.submit(["a", "b"], job_id="job-1")
    rig.run(first, tracker=rig.tracker(sink=CrashingSink(rig.tmp / "results")))
    rig.tracker().drain(first)  # delivered before the crash: the files are read again

    second = rig.submit(["c", "d"], job_id="job-1")
    rig.run(second, tracker=rig.tracker(sink=CrashingSink(rig.tmp / "results")))
    snapshot = rig.store.load(second).snapshot
    assert snapshot is not None and snapshot.output_file_id
    rig.delete_file(snapshot.output_file_id)
    rig.tracker().drain(second)  # the output file is gone: read back from the sink

    ledger = rig.ledger()
    for batch in (first, second):
        for cid, usage in delivered_usage(rig, batch).items():
            assert usage is not None and ledger[cid].usage == usage
    assert rig.events(second, "results_recovered_from_sink")[0].detail["items"] == 2
