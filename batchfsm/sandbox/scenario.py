"""Scenarios: which fate each sandbox batch meets, and which faults the API injects.

A scenario is plain data (pydantic, loaded from JSON) so a rehearsal can be written down,
shared and replayed exactly: together with ``seed`` it fixes every id, every per-request
outcome, every output-line order and every injected fault.

How a batch gets its fate, first match wins:

1. ``metadata["sandbox_fate"]`` names an entry of ``Scenario.named`` or, failing that, a
   fate kind (``"expire"``, ``"all_fail"`` ...) with default settings; a retry round
   resending an earlier batch's requests under the same name is fated as if it named
   none (``Scenario.fate_on_resend``, :mod:`batchfsm.sandbox.fates`);
2. ``Scenario.by_order[i]`` for the i-th batch created (0-based);
3. ``Scenario.default``.

Per-request outcomes can also be forced from the ``custom_id``: a ``#fail=400``,
``#fail=429``, ``#fail=500`` or ``#fail=timeout`` marker makes that request fail that way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchfsm.errors import InputFileError

__all__ = [
    "FATE_METADATA_KEY",
    "Fate",
    "FateKind",
    "Faults",
    "Phases",
    "RequestFailure",
    "Scenario",
    "ScriptedFault",
    "load_scenario",
]

FATE_METADATA_KEY = "sandbox_fate"

FateKind = Literal["complete", "all_fail", "expire", "token_limit_exceeded", "stuck_finalizing"]
"""What happens to a batch: ``complete`` (requests may still fail, see ``failure_rate``),
``all_fail`` (``completed`` with every request failed, so no output file), ``expire``
(the 24 h window runs out with ``expire_fraction`` done), ``token_limit_exceeded``
(``failed`` at validation) and ``stuck_finalizing`` (finalizing for ``stuck_finalizing_s``)."""

RequestFailure = Literal[400, 429, 500, "request_timeout"]
"""How one request fails: an HTTP status inside ``response``, or the never-ran shape."""

FaultKind = Literal[
    "rate_limit", "server_error", "stale_read", "truncate", "queue_full", "queue_full_429"
]
"""``queue_full`` / ``queue_full_429``: batch create refused with ``token_limit_exceeded``
(HTTP 400, as Azure answers in regions that fail fast, or 429); scripted only."""


class _Model(BaseModel):
    # Typos in a scenario file must fail loudly, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Phases(_Model):
    """How long each phase lasts, in sandbox seconds (see ``time_scale``)."""

    validating_s: float = Field(default=2.0, ge=0)
    in_progress_s: float = Field(default=10.0, ge=0)
    finalizing_s: float = Field(default=2.0, ge=0)
    cancelling_s: float = Field(default=5.0, ge=0)


class Fate(_Model):
    """The scripted life of one batch."""

    kind: FateKind = "complete"
    phases: Phases = Phases()
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of requests that fail (seeded), on top of ``#fail=`` markers."""
    failure_codes: tuple[RequestFailure, ...] = Field(default=(400,), min_length=1)
    """Failures are drawn from these (seeded)."""
    expire_fraction: float = Field(default=0.5, ge=0, le=1)
    """For ``expire``: share of requests that ran before the window closed."""
    stuck_finalizing_s: float = Field(default=30 * 3600.0, ge=0)
    """For ``stuck_finalizing``: how long finalizing lasts."""
    disappear_after_s: float | None = Field(default=None, ge=0)
    """After this many seconds the batch answers 404 (it vanished, as observed in reality)."""
    disappear_from: Literal["terminal", "created"] = "terminal"
    batch_usage: Literal["reported", "missing", "zero"] = "reported"
    """What the Batch object's ``usage`` says: the sum of its succeeded lines
    (``reported``), nothing (``missing``: as on batches created before 2025-09-07, or
    from servers that never fill it) or zeros. The result lines carry theirs either way."""
    clean_error_file_id: Literal["empty", "null"] | None = None
    """``error_file_id`` of a batch with no failed line: ``""`` or null. None: drawn with
    ``Scenario.empty_error_file_id_rate``."""


class ScriptedFault(_Model):
    """One fault at an exact call: the ``call``-th request (1-based) to ``route``."""

    route: str
    """A route name, e.g. ``"GET /v1/batches/{batch_id}"`` (as in the request stats)."""
    call: int = Field(ge=1)
    kind: FaultKind


class Faults(_Model):
    """Random faults on ``/v1`` routes, drawn from a seeded generator so runs repeat."""

    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    server_error_rate: float = Field(default=0.0, ge=0, le=1)
    stale_read_rate: float = Field(default=0.0, ge=0, le=1)
    """Only on batch retrieve and list: an earlier snapshot of the batch is served again."""
    truncate_rate: float = Field(default=0.0, ge=0, le=1)
    """Only on file content downloads: the body is cut in the middle of a line."""
    routes: tuple[str, ...] | None = None
    """Restrict random faults to these route names; None means every ``/v1`` route."""
    script: tuple[ScriptedFault, ...] = ()


class Scenario(_Model):
    """Everything that makes a sandbox run repeatable."""

    seed: int = 0
    default: Fate = Fate()
    by_order: tuple[Fate, ...] = ()
    named: dict[str, Fate] = Field(default_factory=dict)
    faults: Faults = Faults()
    embedding_dim: int = Field(default=8, ge=1, le=4096)
    empty_error_file_id_rate: float = Field(default=1.0, ge=0, le=1)
    """Probability that a clean batch reports ``error_file_id: ""`` rather than null."""
    max_requests: int = Field(default=50_000, ge=1)
    """Lines per input file before ``too_many_tasks`` (the API's limit)."""
    fate_on_resend: Literal["default", "same"] = "default"
    """A batch resending requests of an earlier one under the same ``sandbox_fate`` (a
    retry round) meets the fate an unnamed batch would (``default``) or the same again
    (``same``); see :mod:`batchfsm.sandbox.fates`."""
    queue_limits: dict[str, int] = Field(default_factory=dict)
    """Enqueued-token limit per model (``*``: any other model); see
    :mod:`batchfsm.sandbox.queue`. Empty: no limit."""

    def fate_for(self, *, index: int, metadata: dict[str, str] | None) -> Fate | None:
        """The fate of the ``index``-th batch; None when ``sandbox_fate`` names nothing."""
        name = (metadata or {}).get(FATE_METADATA_KEY)
        if name is not None:
            if name in self.named:
                return self.named[name]
            if name in get_args(FateKind):
                return Fate.model_validate({"kind": name})
            return None
        if index < len(self.by_order):
            return self.by_order[index]
        return self.default


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario JSON file.

    :raises InputFileError: naming the file and, for a schema error, the field.
    """
    where = str(path)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot read scenario: {exc.strerror}", path=where) from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"not JSON: {exc.msg}", path=where, line=exc.lineno) from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputFileError(first["msg"], path=where, field=field) from exc
