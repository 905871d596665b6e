"""Reading recorded status histories (JSONL, one Batch snapshot per line)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from batchfsm.errors import InputFileError
from batchfsm.fsm.models import BatchSnapshot
from batchfsm.fsm.replay import Observation


def _observed_at(value: object, *, path: str, line: int) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InputFileError(
        "observed_at must be Unix seconds or an ISO 8601 timestamp",
        path=path,
        line=line,
        field="observed_at",
    )


def read_history(
    path: Path | str, *, read: Callable[[Mapping[str, Any]], object] | None = None
) -> Iterator[Observation]:
    """Yield one observation per non-blank line; blank lines still count as lines.

    ``read`` turns a provider's Batch object into OpenAI's shape first (a profile's
    ``read_batch``: Anthropic's ``MessageBatch`` has ``processing_status``, no
    ``status``), so a history recorded from that provider replays as it came.

    Raises :class:`InputFileError` naming the line for anything that is not a JSON
    object with a string ``status`` (after ``read``). Callers that must not act on a
    half-read file (``batchfsm replay``) materialise the whole iterator first.
    """
    name = str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InputFileError(f"not valid JSON ({exc})", path=name, line=number) from exc
            if not isinstance(data, dict):
                raise InputFileError(
                    f"expected a JSON object, got {type(data).__name__}", path=name, line=number
                )
            observed = data.pop("observed_at", None)
            if read is not None:
                mapped = read(data)
                data = dict(mapped) if isinstance(mapped, Mapping) else data
            if "status" not in data:
                raise InputFileError("missing", path=name, line=number, field="status")
            if not isinstance(data["status"], str):
                raise InputFileError(
                    f"must be a string, got {type(data['status']).__name__}",
                    path=name,
                    line=number,
                    field="status",
                )
            observed_at = _observed_at(observed, path=name, line=number)
            try:
                snapshot = BatchSnapshot.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or None
                raise InputFileError(first["msg"], path=name, line=number, field=field) from exc
            yield Observation(line=number, snapshot=snapshot, observed_at=observed_at)
