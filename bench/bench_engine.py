"""Engine cost, as ratios against baselines measured in the same run.

Targets (core issue): applying a changing observation within 1.5x of the raw
``transitions`` triggers it fires; an unchanged observation under 0.2x of one raw
trigger; under 2 KB per tracked batch (history excluded).

Baselines, all timed in alternating rounds with what they are compared to (so load from
other processes hits both sides alike; the median of the per-round ratios is printed):

* "raw, same machine": ``machine.events[trigger].trigger(model)`` on the rulebook's own
  machine, firing the very hops the observation fires (its entry callback included);
* "raw, bare machine": the same triggers on a plain ``Machine`` whose entry callback
  only counts (the reference's baseline; stricter, shown for transparency);
* a plain dict-lookup floor.

Run: .venv/bin/python bench/bench_engine.py
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transitions import Machine

from batchfsm.fsm.engine import _Cursor, rulebook
from batchfsm.fsm.models import BatchRecord, BatchSnapshot
from batchfsm.fsm.spec import EDGES, INITIAL, TRIGGERS, BatchStatus

logging.getLogger("transitions").setLevel(logging.WARNING)
C = 1_774_437_191
S = BatchStatus
ROUNDS = 21


def paired(
    fn: Callable[[], object], base: Callable[[], object], number: int
) -> tuple[float, float, float]:
    """(median ratio fn/base, median fn seconds, median base seconds) over rounds."""
    ratios, a_times, b_times = [], [], []
    for _ in range(ROUNDS):
        a = timeit.timeit(fn, number=number) / number
        b = timeit.timeit(base, number=number) / number
        ratios.append(a / b)
        a_times.append(a)
        b_times.append(b)
    return statistics.median(ratios), statistics.median(a_times), statistics.median(b_times)


def snapshot(status: str, **extra: object) -> BatchSnapshot:
    return BatchSnapshot.model_validate(
        {
            "id": "batch_69c3a1f0e4d08190b1e7",
            "status": status,
            "endpoint": "/v1/embeddings",
            "input_file_id": "file-7Qm2KxVb1cT9pLwR4sN8aE",
            "created_at": C,
            "expires_at": C + 86400,
            "in_progress_at": C + 3,
            "request_counts": {"total": 50000, "completed": 1200, "failed": 3},
            "metadata": {"job": "receipts-2026-03", "batchfsm_intent": "int_0123456789abcdef"},
            "model": "text-embedding-3-small",
            **extra,
        }
    )


def same_machine(path: list[BatchStatus]) -> Callable[[], None]:
    """Fire ``path``'s triggers on the rulebook's own machine, nothing else."""
    events = [rulebook().machine.events[TRIGGERS[s]] for s in path]

    def fire() -> None:
        cursor = _Cursor(S.VALIDATING)
        for event in events:
            event.trigger(cursor, implied=False, line=2, at=None, entered_at=None)

    return fire


class Counter:
    __slots__ = ("entered", "state")

    def __init__(self) -> None:
        self.entered = 0
        self.state = INITIAL.value

    def on_enter(self) -> None:
        self.entered += 1


def bare_machine(path: list[BatchStatus]) -> Callable[[], None]:
    """Fire ``path``'s triggers on a plain Machine whose callback only counts."""
    model = Counter()
    machine = Machine(
        model=None,
        states=[{"name": s.value, "on_enter": [model.on_enter]} for s in BatchStatus],
        transitions=[
            {"trigger": TRIGGERS[e.dest], "source": e.source.value, "dest": e.dest.value}
            for e in EDGES
        ],
        initial=INITIAL.value,
        auto_transitions=False,
    )
    events = [machine.events[TRIGGERS[s]] for s in path]

    def fire() -> None:
        model.state = INITIAL.value
        for event in events:
            event.trigger(model)

    return fire


def dict_floor() -> Callable[[], None]:
    table = {(e.source.value, TRIGGERS[e.dest]): e.dest.value for e in EDGES}
    state = {"s": "validating"}

    def step() -> None:
        state["s"] = table[("validating", "start")]

    return step


def memory_per_record(stored: list[str]) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    records = [BatchRecord.model_validate_json(item) for item in stored]
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / len(records)


def main() -> None:
    book = rulebook()
    start = BatchRecord(batch_id="batch_69c3a1f0e4d08190b1e7", snapshot=snapshot("validating"))
    one = snapshot("in_progress")
    three = snapshot("completed", finalizing_at=C + 40, completed_at=C + 43)
    one_path = [S.IN_PROGRESS]
    three_path = [S.IN_PROGRESS, S.FINALIZING, S.COMPLETED]
    steady = book.apply(start, one, line=2).record
    same = snapshot("in_progress")

    def apply_one() -> None:
        book.apply(start, one, line=2)

    def apply_three() -> None:
        book.apply(start, three, line=2)

    def apply_same() -> None:
        book.apply(steady, same, line=3)

    rows = []
    r, a, _ = paired(apply_one, same_machine(one_path), 2000)
    rb, _, bb = paired(apply_one, bare_machine(one_path), 2000)
    rows.append(("changing observation, 1 hop", a, r, rb, "target <= 1.5x same machine"))
    r, a, _ = paired(apply_three, same_machine(three_path), 1000)
    rb, _, _ = paired(apply_three, bare_machine(three_path), 1000)
    rows.append(("changing observation, 3 hops", a, r, rb, "target <= 1.5x same machine"))
    r, a, _ = paired(apply_same, same_machine(one_path), 3000)
    rb, _, _ = paired(apply_same, bare_machine(one_path), 3000)
    rows.append(("unchanged observation (heartbeat)", a, r, rb, "target < 0.2x one trigger"))
    floor_ratio, _, floor_time = paired(apply_same, dict_floor(), 20_000)

    stored = [steady.model_dump_json() for _ in range(10_000)]

    def rehydrate_all() -> None:
        for item in stored:
            record = BatchRecord.model_validate_json(item)
            book.rehydrate(record.state.value, batch_id=record.batch_id)

    rehydrate = min(timeit.repeat(rehydrate_all, number=1, repeat=5)) / len(stored)
    per_batch = memory_per_record(stored)

    print(f"{'apply():':36} {'us/op':>8} {'x raw same':>11} {'x raw bare':>11}  note")
    for name, seconds, vs_same, vs_bare, note in rows:
        print(f"{name:36} {seconds * 1e6:8.2f} {vs_same:11.2f} {vs_bare:11.2f}  {note}")
    print(
        f"raw bare-machine trigger: {bb * 1e6:.2f} us; dict-lookup floor: "
        f"{floor_time * 1e6:.3f} us (a heartbeat is {floor_ratio:.0f}x the floor)"
    )
    print(
        f"rehydrate one of 10,000 stored batches: {rehydrate * 1e6:.2f} us "
        f"({rehydrate / bb:.2f}x one bare trigger)"
    )
    print(
        f"memory per tracked batch (10,000 records, history excluded): {per_batch:,.0f} "
        f"bytes (target < 2048)"
    )


if __name__ == "__main__":
    main()
