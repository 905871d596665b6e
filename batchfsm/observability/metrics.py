"""The figures operators watch, read from the store, and two ways to export them.

:func:`collect` reads one :class:`Figures` from a store (one ``list_batches`` and one
``count_ledger``):

==============================================  =========================================
``batchfsm_items{state}``                        ledger items by state (pending, retry...)
``batchfsm_batches{state}``                      tracked batches by state
``batchfsm_oldest_open_batch_age_seconds``       since the oldest unended batch was created
``batchfsm_deadline_margin_seconds``             to the nearest deadline of an unended batch
                                                 (negative: overdue)
``batchfsm_enqueued_input_tokens{model}``        input tokens unended batches hold of their
                                                 model's queue (counted at submit)
``batchfsm_tokens{model,kind}``                  tokens the API reported (input, cached,
                                                 output, reasoning): the cost basis, as the
                                                 Batch object carries no price
==============================================  =========================================

:func:`prometheus_text` renders them in the Prometheus exposition format with
``prometheus_client`` (extra ``metrics``; ``batchfsm metrics``, ``batchfsm poll
--metrics-port``). :func:`emit_emf` prints them as CloudWatch Embedded Metric Format
lines through ``aws-lambda-powertools`` (extra ``lambda-metrics``), which the Lambda
does after an invocation when ``POWERTOOLS_METRICS_NAMESPACE`` is set. Both import their
library only when called.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from batchfsm.ports import JobStore

__all__ = ["Figures", "collect", "emit_emf", "prometheus_text", "registry"]

_USAGE_KINDS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


@dataclass
class Figures:
    """One reading of a store; see the module docstring for each figure."""

    items: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    oldest_open_age_s: float | None = None
    deadline_margin_s: float | None = None
    enqueued_tokens: dict[str, int] = field(default_factory=dict)
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)


def collect(store: JobStore, now: datetime | None = None) -> Figures:
    """Read the figures from ``store`` as of ``now`` (default: the system clock)."""
    now = now or datetime.now(UTC)
    figures = Figures(items={s.value: n for s, n in store.count_ledger().items()})
    batches: Counter[str] = Counter()
    enqueued: Counter[str] = Counter()
    tokens: Counter[tuple[str, str]] = Counter()
    ages: list[float] = []
    margins: list[float] = []
    for record in store.list_batches():
        batches[record.state.value] += 1
        snap = record.snapshot
        model = (snap.model if snap else None) or "unknown"
        if snap is not None and snap.usage is not None:
            for kind in _USAGE_KINDS:
                tokens[(model, kind.removesuffix("_tokens"))] += getattr(snap.usage, kind) or 0
        if record.terminal:
            continue
        enqueued[model] += record.input_tokens or 0
        if snap is not None and snap.created_at:
            ages.append(now.timestamp() - snap.created_at)
        if (deadline := record.deadline()) is not None:
            margins.append((deadline - now).total_seconds())
    figures.batches = dict(batches)
    figures.enqueued_tokens = dict(enqueued)
    figures.tokens = dict(tokens)
    figures.oldest_open_age_s = max(ages, default=None)
    figures.deadline_margin_s = min(margins, default=None)
    return figures


def registry(figures: Figures) -> CollectorRegistry:
    """A fresh ``prometheus_client`` registry holding ``figures`` as gauges."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    items = Gauge("batchfsm_items", "Ledger items by state", ["state"], registry=reg)
    for state, count in figures.items.items():
        items.labels(state).set(count)
    batches = Gauge("batchfsm_batches", "Tracked batches by state", ["state"], registry=reg)
    for state, count in figures.batches.items():
        batches.labels(state).set(count)
    single = (
        ("batchfsm_oldest_open_batch_age_seconds", "Age of the oldest unended batch",
         figures.oldest_open_age_s),
        ("batchfsm_deadline_margin_seconds", "Time to the nearest deadline of an unended "
         "batch (negative: overdue)", figures.deadline_margin_s),
    )  # fmt: skip
    for name, text, value in single:
        if value is not None:
            Gauge(name, text, registry=reg).set(value)
    queue = Gauge("batchfsm_enqueued_input_tokens", "Input tokens unended batches hold",
                  ["model"], registry=reg)  # fmt: skip
    for model, count in figures.enqueued_tokens.items():
        queue.labels(model).set(count)
    used = Gauge("batchfsm_tokens", "Tokens the API reported", ["model", "kind"], registry=reg)
    for (model, kind), count in figures.tokens.items():
        used.labels(model, kind).set(count)
    return reg


def prometheus_text(figures: Figures) -> bytes:
    """``figures`` in the Prometheus text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(registry(figures))


def emit_emf(figures: Figures, namespace: str, *, service: str = "batchfsm") -> None:
    """Print ``figures`` as one CloudWatch EMF document on stdout (CloudWatch turns the
    Lambda's log line into metrics), through powertools' ``Metrics``."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace=namespace, service=service)
    for state, count in figures.items.items():
        metrics.add_metric(name=f"Items_{state}", unit=MetricUnit.Count, value=count)
    for state, count in figures.batches.items():
        metrics.add_metric(name=f"Batches_{state}", unit=MetricUnit.Count, value=count)
    if figures.oldest_open_age_s is not None:
        metrics.add_metric(name="OldestOpenBatchAge", unit=MetricUnit.Seconds,
                           value=figures.oldest_open_age_s)  # fmt: skip
    if figures.deadline_margin_s is not None:
        metrics.add_metric(name="DeadlineMargin", unit=MetricUnit.Seconds,
                           value=figures.deadline_margin_s)  # fmt: skip
    metrics.add_metric(name="EnqueuedInputTokens", unit=MetricUnit.Count,
                       value=sum(figures.enqueued_tokens.values()))  # fmt: skip
    for kind in ("input", "output"):
        total = sum(n for (_model, k), n in figures.tokens.items() if k == kind)
        metrics.add_metric(name=f"Tokens_{kind}", unit=MetricUnit.Count, value=total)
    metrics.flush_metrics()
