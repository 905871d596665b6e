"""What a job costs: tokens the API reported, priced from one data file, plus an estimate
for the work still queued or running.

Prices live in ``batchfsm/jobs/prices.json`` (or the file ``BATCHFSM_PRICES`` names):
USD per 1,000,000 tokens per model (``input``, ``cached_input``, ``output``) and the
Batch API's ``batch_discount``. A model is priced by the longest listed name that
prefixes it; one that matches none is reported unpriced (cost ``null``), never as free.

* **cost so far**: per batch, the ``usage`` the API reported on the Batch object
  (input, of which cached, and output tokens), summed per job and model;
* **estimate** of the rest: the input tokens counted at submit
  (:mod:`batchfsm.ledger.tokens`) of the job's ``queued`` requests and of its running
  batches (less what their ``usage`` already reports), priced as input, plus output
  tokens at the ratio of output to input the job's batches reported so far (none yet:
  input only, and ``output_estimated`` is false).

``batchfsm cost --json`` prints :func:`cost_json`'s shape (see the README).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchfsm.errors import ConfigError
from batchfsm.ledger.records import ItemState, JobRecord

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = [
    "ModelCost",
    "Price",
    "PriceTable",
    "check_max_cost",
    "estimate_file",
    "job_costs",
    "load_prices",
]

PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, Price]
    batch_discount: float
    source: str
    as_of: str | None = None

    def price_of(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.rsplit("/", 1)[-1]
        matches = [m for m in self.models if name == m or name.startswith(m + "-")]
        return self.models[max(matches, key=len)] if matches else None

    def cost(
        self, model: str | None, *, input_tokens: int, cached: int = 0, output: int = 0
    ) -> float | None:
        """USD at batch prices; None when the model has no price."""
        price = self.price_of(model)
        if price is None:
            return None
        cached_rate = price.input if price.cached_input is None else price.cached_input
        full = (input_tokens - cached) * price.input + cached * cached_rate + output * price.output
        return full / PER * (1 - self.batch_discount)


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table (the shipped file unless ``path``). :raises ConfigError: unreadable."""
    return _load(str(path) if path is not None else None)


@functools.cache
def _load(path: str | None) -> PriceTable:
    try:
        if path is None:
            raw = resources.files("batchfsm.jobs").joinpath("prices.json").read_bytes()
        else:
            raw = Path(path).read_bytes()
        data = orjson.loads(raw)
        models = {
            name: Price(
                input=float(p["input"]),
                output=float(p.get("output", 0.0)),
                cached_input=float(p["cached_input"]) if "cached_input" in p else None,
            )
            for name, p in data["models"].items()
        }
        discount = float(data.get("batch_discount", 0.5))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"price table {path or 'prices.json'} is unreadable: {exc}") from exc
    if not 0 <= discount < 1:
        raise ConfigError(f"price table {path}: batch_discount must be in [0, 1)")
    return PriceTable(models, discount, path or "batchfsm/jobs/prices.json", data.get("as_of"))


@dataclass
class ModelCost:
    """One job's tokens and money for one model."""

    model: str | None
    batches: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    unreported_batches: int = 0
    """Ended batches whose ``usage`` the API did not report (cost unknown for them)."""
    queued_input_tokens: int = 0
    running_input_tokens: int = 0
    cost_usd: float | None = None
    estimate_usd: float | None = None
    output_estimated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batches": self.batches,
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "unreported_batches": self.unreported_batches,
            "queued_input_tokens": self.queued_input_tokens,
            "running_input_tokens": self.running_input_tokens,
            "cost_usd": self.cost_usd,
            "estimate_usd": self.estimate_usd,
            "output_estimated": self.output_estimated,
        }


def job_costs(store: JobStore, job: JobRecord, prices: PriceTable) -> list[ModelCost]:
    """Per model: reported usage and its cost, and the estimate for the rest."""
    from batchfsm.jobs.admission import job_model

    by_model: dict[str | None, ModelCost] = {}
    fallback = job_model(store, job)
    for record in store.list_batches(job.job_id):
        snap = record.snapshot
        model = (snap.model if snap else None) or fallback
        cost = by_model.setdefault(model, ModelCost(model))
        cost.batches += 1
        usage = snap.usage if snap else None
        reported = usage.input_tokens if usage is not None else None
        if usage is not None and reported is not None:
            cost.input_tokens += reported
            cost.cached_tokens += usage.cached_tokens or 0
            cost.output_tokens += usage.output_tokens or 0
        if not record.terminal and not record.lost:  # the part not billed yet
            cost.running_input_tokens += max(0, (record.input_tokens or 0) - (reported or 0))
        elif reported is None:
            cost.unreported_batches += 1
    queued = sum(e.input_tokens or 0 for e in store.iter_ledger(job.job_id, state=ItemState.QUEUED))
    if queued:
        by_model.setdefault(fallback, ModelCost(fallback)).queued_input_tokens += queued
    for cost in by_model.values():
        _price(cost, prices)
    return list(by_model.values())


def _price(cost: ModelCost, prices: PriceTable) -> None:
    cost.cost_usd = prices.cost(
        cost.model,
        input_tokens=cost.input_tokens,
        cached=cost.cached_tokens,
        output=cost.output_tokens,
    )
    rest = cost.queued_input_tokens + cost.running_input_tokens
    ratio = cost.output_tokens / cost.input_tokens if cost.input_tokens else 0.0
    cost.output_estimated = bool(cost.input_tokens)
    cost.estimate_usd = prices.cost(cost.model, input_tokens=rest, output=round(rest * ratio))


_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def estimate_file(
    path: Path, endpoint: str, prices: PriceTable
) -> tuple[str | None, int, float | None]:
    """(model, input tokens, USD) of a request file before it is sent, streamed: input
    tokens counted as at submit, output tokens only where a request caps them
    (``max_completion_tokens``, ``max_tokens``, ``max_output_tokens``): the most it can
    cost, where every request is capped. USD None: the model has no price."""
    from batchfsm.ledger.tokens import count_request

    model: str | None = None
    tokens = output = 0
    with Path(path).open("rb") as fh:
        for raw in fh:
            body = orjson.loads(raw).get("body") or {}
            if model is None and isinstance(body.get("model"), str):
                model = body["model"]
            tokens += count_request(body, endpoint)
            output += next((int(body[k]) for k in _OUTPUT_CAPS if isinstance(body.get(k), int)), 0)
    return model, tokens, prices.cost(model, input_tokens=tokens, output=output)


def check_max_cost(path: Path, endpoint: str, max_cost: float, prices: PriceTable) -> None:
    """:raises InputFileError: the file's estimate exceeds ``max_cost`` USD, or its model
    has no price (then nothing can be promised)."""
    from batchfsm.errors import InputFileError

    model, tokens, usd = estimate_file(path, endpoint, prices)
    if usd is None:
        raise InputFileError(
            f"no price for model {model!r} in {prices.source}: cannot hold --max-cost",
            path=str(path),
        )
    if usd > max_cost:
        raise InputFileError(
            f"estimated cost ${usd:,.4f} ({tokens:,} input tokens of {model} at batch "
            f"prices) exceeds --max-cost ${max_cost:,.4f}; nothing was sent",
            path=str(path),
        )
