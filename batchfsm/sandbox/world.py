"""The sandbox's state: uploaded files and batches, progressed lazily on the clock.

One lock guards everything, because the threaded HTTP server lets several pollers in at
once. Methods take and return JSON-ready dicts (the API's objects) and raise
:class:`~batchfsm.sandbox.api_errors.SandboxAPIError` for the app to render, so Python
tests may also drive a :class:`World` directly.

Every random choice is seeded by ``Scenario.seed`` (and per batch its id): same calls, same bytes.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from batchfsm.ports import Clock, SystemClock
from batchfsm.sandbox.api_errors import bad_request, not_found
from batchfsm.sandbox.clock import ScaledClock
from batchfsm.sandbox.fates import fate_of
from batchfsm.sandbox.ids import new_id
from batchfsm.sandbox.queue import EnqueuedTokens, enqueue
from batchfsm.sandbox.results import (
    Outcome,
    Usage,
    build_result_lines,
    encode_lines,
    response_body,
    scripted_outcome,
)
from batchfsm.sandbox.scenario import Fate, Scenario
from batchfsm.sandbox.timeline import CANCELLABLE, TERMINAL, Moment, Plan, moment_at
from batchfsm.sandbox.validation import ParsedInput, check_create_params, parse_input_file

__all__ = ["MAX_FILE_BYTES", "StoredFile", "World"]

MAX_FILE_BYTES = 200 * 1024 * 1024
_SNAPSHOTS_KEPT = 16


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    expires_at: int | None = None
    """From the batch's ``output_expires_after``: after it the file answers 404."""

    def as_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass(slots=True)
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict[str, str] | None
    plan: Plan
    parsed: ParsedInput
    outcomes: list[Outcome]
    order: list[int]
    empty_error_file_id: bool
    output_expires_after: int | None = None
    results: list[tuple[dict[str, Any], Usage]] | None = None
    files: tuple[str | None, str | None] | None = None
    served: list[dict[str, Any]] = field(default_factory=list)


class World:
    """Files and batches of one sandbox; see the module docstring."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        clock: Clock | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.clock = ScaledClock(clock or SystemClock(), time_scale=time_scale)
        self._lock = threading.RLock()
        self._ids = random.Random(f"{self.scenario.seed}:ids")
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, _Batch] = {}
        self.queue = EnqueuedTokens(self.scenario.queue_limits)

    # -- files -------------------------------------------------------------------------

    def upload_file(self, *, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        if purpose != "batch":
            raise bad_request(
                f"Invalid purpose {purpose!r}: the sandbox only accepts 'batch'.", param="purpose"
            )
        if len(content) > MAX_FILE_BYTES:
            raise bad_request("File is larger than the 200 MB batch input limit.", param="file")
        with self._lock:
            stored = StoredFile(
                id=new_id(self._ids, "file-"),
                filename=filename or "upload.jsonl",
                purpose=purpose,
                created_at=math.floor(self.clock.timestamp()),
                content=content,
            )
            self._files[stored.id] = stored
            return stored.as_object()

    def get_file(self, file_id: str) -> StoredFile:
        """A stored file; 404 once it is deleted or past its ``expires_at`` (a result
        file of a batch created with ``output_expires_after``), as on OpenAI."""
        with self._lock:
            found = self._files.get(file_id)
            now = self.clock.timestamp()
        if found is None or (found.expires_at is not None and now >= found.expires_at):
            raise not_found(f"No such File object: {file_id}", param="id")
        return found

    def delete_file(self, file_id: str) -> None:
        """``DELETE /v1/files/{id}``; a batch keeps pointing at the id, as on OpenAI."""
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise not_found(f"No such File object: {file_id}", param="id")

    # -- batches -----------------------------------------------------------------------

    def create_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/batches``: synchronous checks here, input validation later."""
        file_id, endpoint, metadata, output_expires_after = check_create_params(params)
        with self._lock:
            source = self._files.get(file_id)
            if source is None or source.purpose != "batch":
                raise bad_request(
                    f"Invalid 'input_file_id': no file {file_id!r} with purpose 'batch'.",
                    param="input_file_id",
                )
            fate = fate_of(self.scenario, self._batches, source, metadata)  # resends: fates.py
            if fate is None:
                known = ", ".join(sorted(self.scenario.named)) or "none"
                raise bad_request(
                    f"Unknown sandbox_fate in metadata (named fates: {known}).",
                    param="metadata",
                )
            batch = self._plan_batch(
                batch_id=new_id(self._ids, "batch_"),
                endpoint=endpoint,
                source=source,
                metadata=metadata,
                fate=fate,
            )
            batch.output_expires_after = output_expires_after
            enqueue(self.queue, batch, self.clock.timestamp())
            self._batches[batch.id] = batch
            return self._serve(batch, self.clock.timestamp(), stale=False)

    def retrieve_batch(self, batch_id: str, *, stale: bool = False) -> dict[str, Any]:
        """``GET /v1/batches/{id}``; ``stale`` serves an earlier snapshot (a fault)."""
        with self._lock:
            now = self.clock.timestamp()
            batch = self._visible(batch_id, now)
            return self._serve(batch, now, stale=stale)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            now = self.clock.timestamp()
            batch = self._visible(batch_id, now)
            status = moment_at(batch.plan, now).status
            if status in CANCELLABLE:
                batch.plan = replace(batch.plan, cancel_at=now)
            elif status != "cancelling":
                # Compatible gateways answer 400 here; OpenAI documents no code for it.
                raise bad_request(f"Cannot cancel a batch with status '{status}'.")
            return self._serve(batch, now, stale=False)

    def list_batches(
        self, *, after: str | None = None, limit: int = 20, stale: bool = False
    ) -> dict[str, Any]:
        """Newest first, ``after`` a batch id cursor, as the API pages."""
        with self._lock:
            now = self.clock.timestamp()
            ids = list(reversed(self._batches))
            if after is not None:
                if after not in self._batches:
                    raise bad_request(f"No batch found with id {after!r}.", param="after")
                ids = ids[ids.index(after) + 1 :]
            live = [b for b in (self._batches[i] for i in ids) if not self._gone(b, now)]
            page = [self._serve(b, now, stale=stale) for b in live[:limit]]
            return {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(live) > limit,
            }

    def batch_ids(self) -> list[str]:
        """Every batch id ever created, oldest first (vanished ones included)."""
        with self._lock:
            return list(self._batches)

    def advance(self, seconds: float) -> float:
        """Fast-forward sandbox time; returns the new sandbox time (Unix seconds)."""
        return self.clock.advance(seconds).timestamp()

    # -- internals ---------------------------------------------------------------------

    def _plan_batch(
        self,
        *,
        batch_id: str,
        endpoint: str,
        source: StoredFile,
        metadata: dict[str, str] | None,
        fate: Fate,
    ) -> _Batch:
        parsed = parse_input_file(
            source.content, endpoint=endpoint, max_requests=self.scenario.max_requests
        )
        if fate.kind == "token_limit_exceeded" and not parsed.errors:
            model = parsed.model or "the model"
            parsed.errors.append(
                {
                    "code": "token_limit_exceeded",
                    "message": f"Enqueued token limit reached for {model} in organization "
                    "org-sandbox. Limit: 2,000,000 enqueued tokens. Please try submitting "
                    "fewer tasks at a time or wait for in-progress batches to finish.",
                    "param": None,
                    "line": None,
                }
            )
        rng = random.Random(f"{self.scenario.seed}:{batch_id}:plan")
        outcomes = [scripted_outcome(r.custom_id, fate, rng) for r in parsed.requests]
        order = list(range(len(parsed.requests)))
        rng.shuffle(order)
        if fate.clean_error_file_id is not None:
            empty = fate.clean_error_file_id == "empty"
        else:
            empty = rng.random() < self.scenario.empty_error_file_id_rate
        plan = Plan(
            created=self.clock.timestamp(),
            fate=fate,
            total=len(parsed.requests),
            valid=not parsed.errors,
        )
        return _Batch(
            id=batch_id,
            endpoint=endpoint,
            input_file_id=source.id,
            metadata=metadata,
            plan=plan,
            parsed=parsed,
            outcomes=outcomes,
            order=order,
            empty_error_file_id=empty,
        )

    def _gone(self, batch: _Batch, now: float) -> bool:
        fate = batch.plan.fate
        if fate.disappear_after_s is None:
            return False
        if fate.disappear_from == "created":
            anchor: float | None = batch.plan.created
        else:
            anchor = moment_at(batch.plan, now).terminal_at
        return anchor is not None and now >= anchor + fate.disappear_after_s

    def _visible(self, batch_id: str, now: float) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None or self._gone(batch, now):
            raise not_found(f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def _serve(self, batch: _Batch, now: float, *, stale: bool) -> dict[str, Any]:
        current = self._render(batch, now)
        if stale:
            earlier: list[dict[str, Any]] = [old for old in batch.served if old != current]
            return earlier[-1] if earlier else current
        if not batch.served or batch.served[-1] != current:
            batch.served.append(current)
            del batch.served[:-_SNAPSHOTS_KEPT]
        return current

    def _results(self, batch: _Batch) -> list[tuple[dict[str, Any], Usage]]:
        """Every request's response body and usage, computed once on first need."""
        if batch.results is None:
            rng = random.Random(f"{self.scenario.seed}:{batch.id}:bodies")
            created = math.floor(batch.plan.created + batch.plan.fate.phases.validating_s)
            batch.results = [
                response_body(
                    batch.endpoint,
                    r.body,
                    custom_id=r.custom_id,
                    created=created,
                    rng=rng,
                    embedding_dim=self.scenario.embedding_dim,
                )
                for r in batch.parsed.requests
            ]
        return batch.results

    def _render(self, batch: _Batch, now: float) -> dict[str, Any]:
        moment = moment_at(batch.plan, now)
        done = batch.order[: moment.done]
        ok = [i for i in done if batch.outcomes[i] is None]
        usage = Usage()
        if ok:
            results = self._results(batch)
            for i in ok:
                usage += results[i][1]
        running = moment.status != "validating" and batch.plan.valid
        output_id: str | None = None
        error_id: str | None = None
        if moment.status in TERMINAL and moment.status != "failed":
            output_id, error_id = self._materialise(batch, moment)
        stamps = {name: math.floor(when) for name, when in moment.entered.items()}
        errors = batch.parsed.errors
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": list(errors)} if errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": moment.status,
            "output_file_id": output_id,
            "error_file_id": error_id,
            "created_at": math.floor(batch.plan.created),
            "in_progress_at": stamps.get("in_progress"),
            "expires_at": math.floor(batch.plan.expires),
            "finalizing_at": stamps.get("finalizing"),
            "completed_at": stamps.get("completed"),
            "failed_at": stamps.get("failed"),
            "expired_at": stamps.get("expired"),
            "cancelling_at": stamps.get("cancelling"),
            "cancelled_at": stamps.get("cancelled"),
            "request_counts": {
                "total": batch.plan.total if running else 0,
                "completed": len(ok),
                "failed": len(done) - len(ok),
            },
            "metadata": batch.metadata,
            "model": batch.parsed.model,
            "usage": usage.as_batch_usage(batch.plan.fate.batch_usage),
        }

    def _materialise(self, batch: _Batch, moment: Moment) -> tuple[str | None, str | None]:
        """Write the output and error files once, when the batch is first seen terminal."""
        if batch.files is not None:
            return batch.files
        rng = random.Random(f"{self.scenario.seed}:{batch.id}:files")
        results = self._results(batch)
        done = set(batch.order[: moment.done])
        output, failed = build_result_lines(
            batch.parsed.requests,
            batch.outcomes,
            [body for body, _ in results],
            done=done,
            never_ran_code="batch_cancelled" if moment.status == "cancelled" else "batch_expired",
            rng=rng,
        )
        created = math.floor(moment.entered[moment.status])
        output_id = self._store_result(batch, rng, "output", output, created) if output else None
        if failed:
            error_id: str | None = self._store_result(batch, rng, "error", failed, created)
        else:
            error_id = "" if batch.empty_error_file_id else None
        batch.files = (output_id, error_id)
        return batch.files

    def _store_result(
        self,
        batch: _Batch,
        rng: random.Random,
        kind: str,
        lines: list[dict[str, Any]],
        created: int,
    ) -> str:
        lifetime = batch.output_expires_after  # anchored at the file's own creation
        stored = StoredFile(
            id=new_id(rng, "file-"),
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            created_at=created,
            content=encode_lines(lines),
            expires_at=None if lifetime is None else created + lifetime,
        )
        self._files[stored.id] = stored
        return stored.id
