"""What a job costs: the tokens the API reported, priced from one data file
(:mod:`batchfsm.jobs.prices`), plus an estimate for the work still queued or running.

* **cost so far**, per batch, from one of two sources, the first that has figures:

  1. ``lines``: the ``usage`` each succeeded result line reported, kept on its ledger
     entry by the harvest (:mod:`batchfsm.ledger.usage`), priced by the model that
     served it. They exist for every batch that was harvested, including one that
     expired or was cancelled part-way, whose Batch object may carry no ``usage``, or
     zero (and Anthropic's never does);
  2. ``batch``: the Batch object's ``usage`` (input, of which cached, and output
     tokens), for a batch still running or not harvested yet;

  summed per job and model (the model the batch names, else the job's). A batch with
  neither is counted in ``unreported_batches``; succeeded lines that reported no
  usable count in ``lines_without_usage``: their cost is not in the sum.
* **estimate** of the rest: the input tokens counted at submit
  (:mod:`batchfsm.ledger.tokens`) of the job's ``queued`` requests and of its running
  batches (less what their ``usage`` already reports), priced as input, plus output
  tokens at the ratio of output to input the job's batches reported so far (none yet:
  input only, and ``output_estimated`` is false).

The ledger is streamed (``store.iter_ledger`` pages), never held whole: what is kept is
one sum per batch and model. ``batchfsm cost --json`` prints the shape in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchfsm.jobs.prices import PER, Price, PriceTable, load_prices
from batchfsm.ledger.records import ItemState, JobRecord
from batchfsm.ledger.usage import UsageTotals

if TYPE_CHECKING:
    from batchfsm.fsm.models import BatchRecord
    from batchfsm.ports import JobStore

__all__ = [
    "PER",
    "BatchCost",
    "FileEstimate",
    "JobCost",
    "ModelCost",
    "Price",
    "PriceTable",
    "check_max_cost",
    "estimate_file",
    "job_costs",
    "load_prices",
]

Served = dict[str | None, UsageTotals]
"""Line usage of one batch, by the model that served the lines."""


@dataclass
class Reported:
    """Figures from the Batch objects' ``usage``."""

    batches: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def merge(self, other: Reported) -> None:
        self.batches += other.batches
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens

    def as_json(self) -> dict[str, Any]:
        return {"batches": self.batches, "input_tokens": self.input_tokens,
                "cached_tokens": self.cached_tokens, "output_tokens": self.output_tokens,
                "reasoning_tokens": self.reasoning_tokens}  # fmt: skip


def _price_lines(served: Served, model: str | None, prices: PriceTable) -> float | None:
    """Line usage priced by the model that served it (else ``model``); None: unpriced."""
    total = 0.0
    for name, sums in served.items():
        usd = prices.cost(name or model, input_tokens=sums.input_tokens,
                          cached=sums.cached_tokens, cache_write=sums.cache_write_tokens,
                          output=sums.output_tokens)  # fmt: skip
        if usd is None:
            return None
        total += usd
    return total


@dataclass
class BatchCost:
    """One batch: which source its figures came from, and what they come to."""

    batch_id: str
    state: str
    model: str | None
    source: str | None = None
    """``lines``, ``batch``, or None (nothing reported yet)."""
    lines: UsageTotals = field(default_factory=UsageTotals)
    reported: Reported = field(default_factory=Reported)
    cost_usd: float | None = None

    def figures(self) -> Reported | UsageTotals:
        return self.lines if self.source == "lines" else self.reported

    def as_json(self) -> dict[str, Any]:
        used = self.figures()
        return {"batch_id": self.batch_id, "state": self.state, "model": self.model,
                "source": self.source, "input_tokens": used.input_tokens,
                "cached_tokens": used.cached_tokens, "output_tokens": used.output_tokens,
                "reasoning_tokens": used.reasoning_tokens, "lines": self.lines.lines,
                "lines_without_usage": self.lines.lines_without_usage,
                "cost_usd": self.cost_usd}  # fmt: skip


@dataclass
class ModelCost:
    """One job's tokens and money for one model: each figure is the sum of
    ``from_lines`` and ``from_batch``, which say where it came from."""

    model: str | None
    batches: int = 0
    unreported_batches: int = 0
    """Ended batches with neither line usage nor the Batch object's (cost unknown)."""
    queued_input_tokens: int = 0
    running_input_tokens: int = 0
    cost_usd: float | None = 0.0
    estimate_usd: float | None = None
    output_estimated: bool = False
    from_lines: UsageTotals = field(default_factory=UsageTotals)
    line_batches: int = 0
    from_batch: Reported = field(default_factory=Reported)

    @property
    def input_tokens(self) -> int:
        return self.from_lines.input_tokens + self.from_batch.input_tokens

    @property
    def cached_tokens(self) -> int:
        return self.from_lines.cached_tokens + self.from_batch.cached_tokens

    @property
    def output_tokens(self) -> int:
        return self.from_lines.output_tokens + self.from_batch.output_tokens

    @property
    def source(self) -> str | None:
        """Where the figures came from: ``lines``, ``batch``, both, or None (nowhere yet)."""
        counts = {"lines": self.line_batches, "batch": self.from_batch.batches}
        return "+".join(name for name, batches in counts.items() if batches) or None

    def add(self, batch: BatchCost) -> None:
        if self.cost_usd is not None:  # one unpriced part leaves the sum unknown
            self.cost_usd = None if batch.cost_usd is None else self.cost_usd + batch.cost_usd
        if batch.source == "lines":
            self.line_batches += 1
            self.from_lines.merge(batch.lines)
        elif batch.source == "batch":
            self.from_batch.merge(batch.reported)

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
            "reasoning_tokens": self.from_lines.reasoning_tokens + self.from_batch.reasoning_tokens,
            "cache_write_tokens": self.from_lines.cache_write_tokens,
            "lines_without_usage": self.from_lines.lines_without_usage,
            "source": self.source,
            "from_lines": {"batches": self.line_batches, **self.from_lines.as_json()},
            "from_batch": self.from_batch.as_json(),
        }


@dataclass
class JobCost:
    job_id: str
    models: list[ModelCost]
    batches: list[BatchCost]


def line_usage(store: JobStore, job_id: str) -> dict[str | None, Served]:
    """The job's line usage summed by batch and serving model, streaming its
    ``succeeded`` entries (every one counts: without usage, as a line without it)."""
    out: dict[str | None, Served] = {}
    for entry in store.iter_ledger(job_id, state=ItemState.SUCCEEDED):
        usage = entry.usage
        served = out.setdefault(entry.result_batch_id, {})
        served.setdefault(usage.model if usage else None, UsageTotals()).add(usage)
    return out


def batch_cost(
    record: BatchRecord | None,
    batch_id: str,
    model: str | None,
    served: Served,
    prices: PriceTable,
) -> BatchCost:
    """One batch's figures: its lines' usage when any reported some, else its
    Batch object's ``usage``."""
    state = record.state.value if record is not None else "unknown"
    cost = BatchCost(batch_id, state, model)
    for sums in served.values():
        cost.lines.merge(sums)
    usage = record.snapshot.usage if record is not None and record.snapshot else None
    if cost.lines.reported:
        cost.source = "lines"
        cost.cost_usd = _price_lines(served, model, prices)
    elif usage is not None and usage.input_tokens is not None:
        cost.source = "batch"
        cost.reported = Reported(1, usage.input_tokens, usage.cached_tokens or 0,
                                 usage.output_tokens or 0, usage.reasoning_tokens or 0)  # fmt: skip
        cost.cost_usd = prices.cost(model, input_tokens=usage.input_tokens,
                                    cached=cost.reported.cached_tokens,
                                    output=cost.reported.output_tokens)  # fmt: skip
    else:  # nothing reported: nothing to add, but an unpriced model stays unpriced
        cost.cost_usd = prices.cost(model, input_tokens=0)
    return cost


def job_costs(store: JobStore, job: JobRecord, prices: PriceTable) -> JobCost:
    """Per model: reported usage and its cost, and the estimate for the rest; per batch:
    where its figures came from."""
    from batchfsm.jobs.admission import job_model

    by_model: dict[str | None, ModelCost] = {}
    batches: list[BatchCost] = []
    fallback = job_model(store, job)
    lines = line_usage(store, job.job_id)
    for record in store.list_batches(job.job_id):
        snap = record.snapshot
        model = (snap.model if snap else None) or fallback
        row = by_model.setdefault(model, ModelCost(model))
        row.batches += 1
        cost = batch_cost(record, record.batch_id, model, lines.pop(record.batch_id, {}), prices)
        row.add(cost)
        batches.append(cost)
        if not record.terminal and not record.lost:  # the part not billed yet
            billed = cost.figures().input_tokens
            row.running_input_tokens += max(0, (record.input_tokens or 0) - billed)
        elif cost.source is None:
            row.unreported_batches += 1
    for batch_id, served in lines.items():  # lines of a batch the store does not list
        row = by_model.setdefault(fallback, ModelCost(fallback))
        cost = batch_cost(None, batch_id or "unknown", fallback, served, prices)
        row.add(cost)
        batches.append(cost)
    queued = sum(e.input_tokens or 0 for e in store.iter_ledger(job.job_id, state=ItemState.QUEUED))
    if queued:
        by_model.setdefault(fallback, ModelCost(fallback)).queued_input_tokens += queued
    for row in by_model.values():
        _estimate(row, prices)
    return JobCost(job.job_id, list(by_model.values()), batches)


def _estimate(cost: ModelCost, prices: PriceTable) -> None:
    rest = cost.queued_input_tokens + cost.running_input_tokens
    ratio = cost.output_tokens / cost.input_tokens if cost.input_tokens else 0.0
    cost.output_estimated = bool(cost.input_tokens)
    cost.estimate_usd = prices.cost(cost.model, input_tokens=rest, output=round(rest * ratio))
    if not cost.batches and not cost.line_batches:  # queued only: no price, no cost
        cost.cost_usd = prices.cost(cost.model, input_tokens=0)


_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass
class FileEstimate:
    """What a request file would cost, summed while it is read (no per-request list)."""

    tokens: dict[str | None, list[int]] = field(default_factory=dict)
    """Input and capped output tokens, by the model each request names."""

    @property
    def input_tokens(self) -> int:
        return sum(t[0] for t in self.tokens.values())

    def usd(self, prices: PriceTable) -> float | None:
        total = 0.0
        for model, (tokens, output) in self.tokens.items():
            usd = prices.cost(model, input_tokens=tokens, output=output)
            if usd is None:
                return None
            total += usd
        return total

    def unpriced(self, prices: PriceTable) -> list[str | None]:
        return [m for m in self.tokens if prices.price_of(m) is None]


def _request(raw: bytes, obj: object, endpoint: str) -> tuple[str | None, int, int]:
    """(model, input tokens, output cap) of one request line, counted as submit does."""
    from batchfsm.jobs.endpoints import MESSAGES
    from batchfsm.ledger.tokens import count_line, count_request

    if not isinstance(obj, dict):
        return None, 0, 0
    body = obj.get("body")
    params = obj.get("params")
    request = body if isinstance(body, dict) else params if isinstance(params, dict) else {}
    model = request.get("model") if isinstance(request.get("model"), str) else None
    cap = next((v for k in _OUTPUT_CAPS if type(v := request.get(k)) is int and v > 0), 0)
    if request is not body:  # Anthropic's shape (params), or no request at all
        return model, count_line(raw, endpoint), cap
    if endpoint == MESSAGES:  # an OpenAI chat line, sent as a Message
        return model, count_request(body, "/v1/chat/completions"), cap
    return model, count_request(body, endpoint), cap


def estimate_file(path: Path, endpoint: str, prices: PriceTable) -> FileEstimate:
    """What a request file costs at most before it is sent, read one line at a time:
    input tokens counted as at submit, output tokens only where a request caps them
    (``max_completion_tokens``, ``max_tokens``, ``max_output_tokens``), each request
    priced by the model it names (an Anthropic batch may mix models)."""
    out = FileEstimate()
    with Path(path).open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # the input check refuses it, naming the line
            model, tokens, cap = _request(raw, obj, endpoint)
            sums = out.tokens.setdefault(model, [0, 0])
            sums[0] += tokens
            sums[1] += cap
    return out


def _money(usd: float) -> str:
    """Dollars and cents, or six decimals below a dollar (a small job is cheap)."""
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.6f}"


def check_max_cost(path: Path, endpoint: str, max_cost: float, prices: PriceTable) -> None:
    """:raises InputFileError: the file's estimate exceeds ``max_cost`` USD, or a model
    it names has no price (then nothing can be promised)."""
    from batchfsm.errors import InputFileError

    estimate = estimate_file(path, endpoint, prices)
    usd = estimate.usd(prices)
    if usd is None:
        names = ", ".join(repr(m) for m in estimate.unpriced(prices))
        raise InputFileError(
            f"no price for model {names} in {prices.source}: cannot hold --max-cost",
            path=str(path),
        )
    if usd > max_cost:
        models = ", ".join(str(m) for m in estimate.tokens)
        raise InputFileError(
            f"estimated cost {_money(usd)} ({estimate.input_tokens:,} input tokens of "
            f"{models} at batch prices) exceeds --max-cost {_money(max_cost)}; nothing was sent",
            path=str(path),
        )
