"""Log lines as JSON objects, with the batch and job they are about.

:class:`JsonFormatter` turns a :class:`logging.LogRecord` into one line of JSON:
``time``, ``level``, ``logger``, ``message``, ``batch_id`` and ``job_id`` (when known),
the record's own ``extra`` fields, and ``exception`` (the traceback text) when there is
one. The ids come, first match wins, from the record (``extra={"batch_id": ...}``),
from :func:`log_context` (the Lambda sets it for the batch an invocation is about), or,
for ``batch_id``, from the message itself (the library names a batch as ``batch_...`` in
its messages). Lambda's own JSON log format and CloudWatch Logs Insights read these
fields as they are (``filter batch_id = "batch_..."``).

Only stdlib and ``orjson``: importing it costs a Lambda cold start nothing measurable.
Nothing here reads a secret; the library's messages never carry one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

__all__ = ["JsonFormatter", "console_logging", "current_context", "lambda_json_logs", "log_context"]

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("batchfsm_log_context", default={})  # noqa: B039
_BATCH_ID = re.compile(r"\bbatch_[A-Za-z0-9]{6,}\b")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_QUIET = ("httpx", "httpx2", "httpcore", "openai", "botocore", "urllib3")


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Within the block, records without their own ``batch_id``/``job_id`` carry these."""
    given = {k: v for k, v in ids.items() if v}
    token = _CONTEXT.set({**_CONTEXT.get(), **given})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, str]:
    """The ids :func:`log_context` set in this context."""
    return dict(_CONTEXT.get())


def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring for its fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        context = _CONTEXT.get()
        batch_id = getattr(record, "batch_id", None) or context.get("batch_id")
        if batch_id is None and (found := _BATCH_ID.search(message)) is not None:
            batch_id = found.group(0)
        job_id = getattr(record, "job_id", None) or context.get("job_id")
        data.update({k: v for k, v in (("batch_id", batch_id), ("job_id", job_id)) if v})
        extras: dict[str, Any] = {
            k: _plain(v) for k, v in record.__dict__.items() if k not in _STANDARD
        }
        data.update({k: v for k, v in extras.items() if k not in data})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def console_logging(
    level: int | str = "INFO", *, json: bool = False, stream: IO[str] | None = None
) -> logging.Handler:
    """One handler on the ``batchfsm`` logger (replacing one this function added
    before): plain ``LEVEL logger: message`` lines or :class:`JsonFormatter` lines on
    ``stream`` (default stderr). The HTTP and AWS clients' loggers are set to WARNING."""
    logger = logging.getLogger("batchfsm")
    for old in [h for h in logger.handlers if getattr(h, "_batchfsm_console", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._batchfsm_console = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def lambda_json_logs(root: logging.Logger | None = None) -> int:
    """Give the Lambda runtime's own log handler (``LambdaLoggerHandler``, on the root
    logger) a :class:`JsonFormatter`: every line of the function is then one JSON object
    with ``batch_id``/``job_id``. Other handlers (a local run's, pytest's) are left
    alone. Returns how many handlers were changed."""
    changed = 0
    for handler in (root or logging.getLogger()).handlers:
        if type(handler).__name__ == "LambdaLoggerHandler":
            handler.setFormatter(JsonFormatter())
            changed += 1
    return changed
