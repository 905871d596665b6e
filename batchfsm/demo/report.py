"""What ``batchfsm demo`` found, and how it is shown: outcomes, diagram, summary.

:mod:`batchfsm.demo.run` runs the scenario (sandbox, submit, poll, cancel, retry); this
module only reads its results back: what became of every batch and request, from the
store's ledger and history (:func:`collect_outcomes`), the lifecycle diagram with the
paths taken (:func:`write_diagrams`), and the closing summary for people
(:func:`print_summary`); ``--json`` prints :func:`batchfsm.cli.views.demo_json` of the
:class:`DemoReport` instead. Kept apart so that the claims the demo makes can be read
and checked without running it.

rich and the diagram renderer are imported inside the functions that need them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from batchfsm.ports import JobStore

__all__ = ["BatchOutcome", "DemoReport", "collect_outcomes", "print_summary", "write_diagrams"]


@dataclass(frozen=True)
class BatchOutcome:
    """One batch at the end of the demo."""

    batch_id: str
    job_id: str
    fate: str
    expected_state: str
    state: str
    path: tuple[str, ...]
    succeeded: int
    retry: int
    failed: int
    results: Path | None
    parent_batch_id: str | None


@dataclass
class DemoReport:
    out: Path
    done: bool
    cycles: int
    batches: list[BatchOutcome]
    cancelled: list[str]
    waiting_for_retry: int
    diagrams: dict[str, Path | None] = field(default_factory=dict)
    provider: str = "openai"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.out / 'store.db'}"

    @property
    def surprises(self) -> list[BatchOutcome]:
        """Batches that did not end as their fate says (the demo then exits 1)."""
        return [b for b in self.batches if b.expected_state != b.state]


def collect_outcomes(
    store: JobStore, results: Path, labels: dict[str, tuple[str, str]]
) -> list[BatchOutcome]:
    """Per batch: its path and what became of each request it ran, from the ledger.

    An item's last batch decides its state; every earlier batch handed it to retry."""
    from batchfsm.fsm.models import TransitionEntry

    tally: dict[str, dict[str, int]] = {}
    for entry in store.iter_ledger():
        *earlier, last = entry.batches or ("",)
        for batch_id in earlier:
            counts = tally.setdefault(batch_id, {})
            counts["retry"] = counts.get("retry", 0) + 1
        counts = tally.setdefault(last, {})
        counts[entry.state.value] = counts.get(entry.state.value, 0) + 1
    rows = []
    for job_id, (label, expected) in labels.items():
        for record in store.list_batches(job_id):
            hops = [h.hop for h in store.history(record.batch_id) if isinstance(h, TransitionEntry)]
            path = (hops[0].source.value, *(h.dest.value for h in hops)) if hops else ()
            counts = tally.get(record.batch_id, {})
            result_file = results / job_id / f"{record.batch_id}.jsonl"
            rows.append(
                BatchOutcome(
                    batch_id=record.batch_id,
                    job_id=job_id,
                    fate="retry round" if record.parent_batch_id else label,
                    expected_state="completed" if record.parent_batch_id else expected,
                    state=record.state.value,
                    path=path or (record.state.value,),
                    succeeded=counts.get("succeeded", 0),
                    retry=counts.get("retry", 0),
                    failed=counts.get("failed", 0),
                    results=result_file if result_file.exists() else None,
                    parent_batch_id=record.parent_batch_id,
                )
            )
    return rows


def write_diagrams(out: Path, outcomes: list[BatchOutcome]) -> dict[str, Path | None]:
    """The lifecycle with every edge these batches took, and their final states."""
    from batchfsm.errors import GraphvizNotFoundError
    from batchfsm.fsm.diagram import render
    from batchfsm.fsm.spec import BatchStatus

    edges = {
        (BatchStatus(a), BatchStatus(b))
        for o in outcomes
        for a, b in zip(o.path, o.path[1:], strict=False)
    }
    finals = {BatchStatus(o.state) for o in outcomes}
    title = "Batch lifecycle: the paths the demo's batches took"
    mermaid = out / "lifecycle.mmd"
    mermaid.write_text(render("mermaid", highlight_edges=edges, current_states=finals, title=title))
    try:
        text = render("svg", highlight_edges=edges, current_states=finals, title=title)
    except GraphvizNotFoundError:
        return {"mermaid": mermaid, "svg": None}  # Graphviz is optional; Mermaid is not
    svg = out / "lifecycle.svg"
    svg.write_text(text)
    return {"mermaid": mermaid, "svg": svg}


def print_summary(report: DemoReport, file: TextIO | None = None) -> None:
    """The closing table, the paths taken, and the way on from here, for people."""
    from rich.console import Console

    from batchfsm.cli.output import rich_table

    stream = file or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 100, soft_wrap=False)
    table, needed = rich_table(  # ids whole, whatever the width
        ("job", "batch", "final state", "succeeded", "retry", "failed"),
        [("  ↳ retry round" if b.parent_batch_id else b.job_id, b.batch_id, b.state,
          b.succeeded, b.retry, b.failed) for b in report.batches],
    )  # fmt: skip
    for column in table.columns[3:]:
        column.justify = "right"
    console.width = max(console.width, needed)
    console.print("what became of every request", style="bold", highlight=False)
    console.print(table)
    lines = [
        "retry: handed to the retry round, which sent them again as a new batch; "
        f"{report.waiting_for_retry} requests still wait for retry.",
        "",
        "results (successes only, one JSONL file per batch):",
        *(f"  {b.results}" for b in report.batches if b.results),
        "",
        "paths taken:",
    ]
    for path in dict.fromkeys(b.path for b in report.batches):
        fates = ", ".join(dict.fromkeys(b.fate for b in report.batches if b.path == path))
        lines.append(f"  {' -> '.join(path)}  ({fates})")
    diagrams = " and ".join(str(p) for p in report.diagrams.values() if p)
    store = report.store_url
    example = report.cancelled[0] if report.cancelled else report.batches[0].batch_id
    lines += [
        f"lifecycle diagram with these paths: {diagrams}",
        "",
        "Look around:",
        f"  batchfsm status --store {store}",
        f"  batchfsm items --store {store} --state failed",
        f"  batchfsm history {example} --store {store}",
        f"  batchfsm results --job {report.batches[0].job_id} --store {store} "
        f"--results-dir {report.out / 'results'}",
        "",
        "The same commands against the real API:",
        *_real_api_commands(report.provider),
    ]
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


def _real_api_commands(provider: str) -> list[str]:
    """The closing hint, for the API the demo rehearsed."""
    if provider == "anthropic":
        return [
            "  unset ANTHROPIC_BASE_URL",
            "  export ANTHROPIC_API_KEY=sk-ant-...",
            "  batchfsm submit requests.jsonl --provider anthropic",
            "  batchfsm poll --provider anthropic --until-done --auto-retry",
        ]
    return [
        "  unset OPENAI_BASE_URL",
        "  export OPENAI_API_KEY=sk-...",
        "  batchfsm submit requests.jsonl --endpoint /v1/chat/completions",
        "  batchfsm poll --until-done --auto-retry",
    ]
