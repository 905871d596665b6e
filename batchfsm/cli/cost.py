"""``batchfsm cost [--job J] [--json]``: tokens, money so far, and the estimate for the rest.

A read command (it never creates a store). Per job and model: the tokens the API
reported (each result line's ``usage`` where the batch was harvested, else the Batch
object's ``usage``; the ``source`` column says which) and their cost at batch prices,
and an estimate for the requests still queued or running (:mod:`batchfsm.jobs.cost`).
Prices come from the shipped ``prices.json`` or ``BATCHFSM_PRICES``; an unpriced model
shows ``?``.
"""

from __future__ import annotations

import argparse
from typing import Any

from batchfsm.cli.output import print_json, print_line, print_table
from batchfsm.cli.store import add_json_option, add_store_option, open_existing

__all__ = ["add_parser", "cost_json", "run_cost"]


def add_parser(subparsers: Any) -> None:
    cost = subparsers.add_parser(
        "cost",
        help="tokens, cost so far and the estimate for queued and running work, per job",
    )
    cost.add_argument("--job", default=None, help="only this job")
    add_json_option(cost)
    add_store_option(cost)
    cost.set_defaults(func=run_cost)


def cost_json(store: Any, job_id: str | None, prices_file: Any = None) -> dict[str, Any]:
    from batchfsm.jobs.cost import job_costs, load_prices

    prices = load_prices(prices_file)
    jobs = [store.load_job(job_id)] if job_id else store.list_jobs()
    rows = []
    for job in jobs:
        costs = job_costs(store, job, prices)
        models = [m.as_json() for m in costs.models]
        rows.append(
            {
                "job_id": job.job_id,
                "models": models,
                "cost_usd": _total(m["cost_usd"] for m in models),
                "estimate_usd": _total(m["estimate_usd"] for m in models),
                "batches": [b.as_json() for b in costs.batches],
            }
        )
    return {
        "jobs": rows,
        "cost_usd": _total(r["cost_usd"] for r in rows),
        "estimate_usd": _total(r["estimate_usd"] for r in rows),
        "prices": {"source": prices.source, "as_of": prices.as_of,
                   "batch_discount": prices.batch_discount, "reference": prices.reference},
    }  # fmt: skip


def _total(values: Any) -> float | None:
    """The sum, or None if any part is unpriced (a total that hides one is wrong)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:,.4f}"


def run_cost(args: argparse.Namespace) -> int:
    from batchfsm.config import Settings

    store = open_existing(args.store)
    try:
        data = cost_json(store, args.job, Settings.from_env().prices_file)
    finally:
        store.close()
    if args.json:
        print_json(data)
        return 0
    print_table(
        "cost at batch prices",
        ["job", "model", "batches", "input", "cached", "output", "cost", "source",
         "queued+running", "estimate"],
        [(r["job_id"], m["model"] or "?", m["batches"], f"{m['input_tokens']:,}",
          f"{m['cached_tokens']:,}", f"{m['output_tokens']:,}", _usd(m["cost_usd"]),
          m["source"] or "-", f"{m['queued_input_tokens'] + m['running_input_tokens']:,}",
          _usd(m["estimate_usd"]))
         for r in data["jobs"] for m in r["models"]],
    )  # fmt: skip
    unknown = sum(m["lines_without_usage"] for r in data["jobs"] for m in r["models"])
    if unknown:
        print_line(f"{unknown:,} succeeded lines reported no usage: their cost is not counted")
    print_line(
        f"cost so far {_usd(data['cost_usd'])}, estimate for the rest "
        f"{_usd(data['estimate_usd'])} (prices: {data['prices']['source']}, "
        f"as of {data['prices']['as_of']})"
    )
    return 0
