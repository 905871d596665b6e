"""Which fate a new sandbox batch meets, when its metadata names one.

``metadata["sandbox_fate"]`` names the fate of the batch a user submitted. batchfsm copies
a job's metadata onto the batches it sends again (retry rounds, queue-full resends), so
without a rule a fate meant for the first batch would strike every resend too: a job
with ``sandbox_fate=expire`` would expire round after round. The rule: a batch that
carries the same ``sandbox_fate`` and the same ``batchfsm_job`` as an earlier batch and
resends at least one of its ``custom_id``\\ s is a *resend*, and is fated as if its
metadata named no fate (``Scenario.by_order``, then ``Scenario.default``: by default a
clean completion). ``Scenario.fate_on_resend = "same"`` keeps the named fate instead,
for a scenario that wants every round to meet it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchfsm.sandbox.scenario import FATE_METADATA_KEY, Fate, Scenario

__all__ = ["JOB_METADATA_KEY", "fate_of"]

JOB_METADATA_KEY = "batchfsm_job"
"""The job tag batchfsm puts on every batch (``batchfsm.jobs.metadata.JOB_KEY``)."""


def _custom_ids(content: bytes) -> set[str]:
    ids: set[str] = set()
    for raw in content.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue  # the input check reports it; a bad line resends nothing
        if isinstance(item, dict) and isinstance(item.get("custom_id"), str):
            ids.add(item["custom_id"])
    return ids


def _is_resend(batches: Mapping[str, Any], content: bytes, metadata: Mapping[str, str]) -> bool:
    name, job = metadata.get(FATE_METADATA_KEY), metadata.get(JOB_METADATA_KEY)
    earlier = [
        b
        for b in batches.values()
        if b.metadata and b.metadata.get(FATE_METADATA_KEY) == name
        and b.metadata.get(JOB_METADATA_KEY) == job
    ]  # fmt: skip
    if not earlier:
        return False
    ids = _custom_ids(content)
    return any(r.custom_id in ids for b in earlier for r in b.parsed.requests)


def fate_of(
    scenario: Scenario, batches: Mapping[str, Any], source: Any, metadata: dict[str, str] | None
) -> Fate | None:
    """The fate of the next batch (``len(batches)``-th), created from the stored file
    ``source`` with ``metadata``; None when ``sandbox_fate`` names no fate."""
    index = len(batches)
    named = (metadata or {}).get(FATE_METADATA_KEY) is not None
    resend = named and scenario.fate_on_resend == "default" and metadata is not None
    if resend and metadata is not None and _is_resend(batches, source.content, metadata):
        unnamed = {k: v for k, v in metadata.items() if k != FATE_METADATA_KEY}
        return scenario.fate_for(index=index, metadata=unnamed)
    return scenario.fate_for(index=index, metadata=metadata)
