"""Validation: create parameters (a 400 at once) and the input file (later, at ``validating``).

The findings are not raised at create time: like the real API, the batch is accepted, sits
in ``validating``, then turns ``failed`` with the findings in ``errors.data`` (codes
``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
``empty_file``, ``too_many_tasks``), each naming the 1-based ``line`` where it applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from batchfsm.sandbox.api_errors import bad_request

__all__ = [
    "MAX_REPORTED_ERRORS",
    "SUPPORTED_ENDPOINTS",
    "BatchRequest",
    "CreateParams",
    "ParsedInput",
    "check_create_params",
    "parse_input_file",
]

SUPPORTED_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
)
RETIRED_ENDPOINTS = {
    "/v1/videos": "The Videos API shut down on September 24, 2026. Batch creation no longer "
    "accepts this endpoint.",
}
"""What the API answers for an endpoint it took once (the client's own deprecation note)."""
OUTPUT_EXPIRY_SECONDS = (3600, 2_592_000)
"""The range ``output_expires_after.seconds`` takes: one hour to 30 days."""


class CreateParams(NamedTuple):
    """What ``POST /v1/batches`` asked for, once checked."""

    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    output_expires_after: int | None
    """Seconds the result files live from their creation; None: not asked (kept)."""


MAX_REPORTED_ERRORS = 100
"""Stop collecting findings here; a 50,000-line file of garbage needs no 50,000 entries."""


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One accepted input line."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(slots=True)
class ParsedInput:
    requests: list[BatchRequest] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None


def _error(
    code: str, message: str, *, line: int | None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _split_lines(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def parse_input_file(content: bytes, *, endpoint: str, max_requests: int) -> ParsedInput:
    """Check every line; return the requests, or the findings that make the batch fail."""
    out = ParsedInput()
    lines = _split_lines(content)
    if not lines:
        out.errors.append(_error("empty_file", "The input file is empty.", line=None))
        return out
    if len(lines) > max_requests:
        out.errors.append(
            _error(
                "too_many_tasks",
                f"The input file has {len(lines)} requests; the limit is {max_requests}.",
                line=None,
            )
        )
        return out
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if len(out.errors) >= MAX_REPORTED_ERRORS:
            break
        problem = _check_line(raw, number, endpoint=endpoint, seen=seen, out=out)
        if problem is not None:
            out.errors.append(problem)
    if out.errors:
        out.requests.clear()
    return out


def _check_line(
    raw: bytes, number: int, *, endpoint: str, seen: set[str], out: ParsedInput
) -> dict[str, Any] | None:
    """One line's finding, or ``None`` with the request appended to ``out``."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        item = None
    if not isinstance(item, dict):
        return _error(
            "invalid_json_line",
            f"Line {number} is not a valid JSON object.",
            line=number,
        )
    problem = _request_problem(item, number, endpoint=endpoint)
    if problem is not None:
        return problem
    custom_id: str = item["custom_id"]
    body: dict[str, Any] = item["body"]
    problem = _cross_line_problem(custom_id, body, number, seen=seen, out=out)
    if problem is None:
        out.requests.append(BatchRequest(line=number, custom_id=custom_id, body=body))
    return problem


def _request_problem(item: dict[str, Any], number: int, *, endpoint: str) -> dict[str, Any] | None:
    """What is wrong with the request on its own: custom_id, method, url, body."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error(
            "missing_required_parameter",
            f"Line {number} has no string custom_id.",
            line=number,
            param="custom_id",
        )
    if item.get("method") != "POST":
        return _error(
            "invalid_method",
            f"Line {number}: only POST is supported.",
            line=number,
            param="method",
        )
    if item.get("url") != endpoint:
        return _error(
            "url_mismatch",
            f"Line {number}: url {item.get('url')!r} does not match the batch endpoint "
            f"{endpoint!r}.",
            line=number,
            param="url",
        )
    if not isinstance(item.get("body"), dict):
        return _error(
            "missing_required_parameter",
            f"Line {number} has no JSON object body.",
            line=number,
            param="body",
        )
    return None


def _cross_line_problem(
    custom_id: str, body: dict[str, Any], number: int, *, seen: set[str], out: ParsedInput
) -> dict[str, Any] | None:
    """What is wrong given the lines before: a repeated custom_id or a second model."""
    if custom_id in seen:
        return _error(
            "duplicate_custom_id",
            f"Line {number}: custom_id {custom_id!r} is used more than once.",
            line=number,
            param="custom_id",
        )
    seen.add(custom_id)
    model = body.get("model")
    if isinstance(model, str):
        if out.model is None:
            out.model = model
        elif model != out.model:
            return _error(
                "model_mismatch",
                f"Line {number}: model {model!r} differs from {out.model!r}; "
                "a batch must use one model.",
                line=number,
                param="body.model",
            )
    return None


def check_create_params(params: dict[str, Any]) -> CreateParams:
    """``POST /v1/batches`` checks the API answers with 400 at once."""
    file_id = params.get("input_file_id")
    endpoint = params.get("endpoint")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request(
            "Missing required parameter: 'input_file_id'.",
            param="input_file_id",
            code="missing_required_parameter",
        )
    if isinstance(endpoint, str) and endpoint in RETIRED_ENDPOINTS:
        raise bad_request(
            f"Invalid 'endpoint': {endpoint!r}. {RETIRED_ENDPOINTS[endpoint]}",
            param="endpoint",
            code="invalid_value",
        )
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise bad_request(
            f"Invalid 'endpoint': {endpoint!r}. Expected one of {', '.join(SUPPORTED_ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    window = params.get("completion_window")
    if window != "24h":
        raise bad_request(
            f"Invalid 'completion_window': {window!r}. Only '24h' is supported.",
            param="completion_window",
            code="invalid_value",
        )
    return CreateParams(
        file_id,
        str(endpoint),
        _check_metadata(params.get("metadata")),
        _check_output_expiry(params.get("output_expires_after")),
    )


def _check_output_expiry(raw: Any) -> int | None:
    """``output_expires_after``: ``{"anchor": "created_at", "seconds": N}``, N in range."""
    if raw is None:
        return None
    param = "output_expires_after"
    if not isinstance(raw, dict) or raw.get("anchor") != "created_at":
        raise bad_request(
            f"Invalid '{param}': expected an object with anchor 'created_at' and seconds.",
            param=param,
            code="invalid_value",
        )
    seconds = raw.get("seconds")
    low, high = OUTPUT_EXPIRY_SECONDS
    if type(seconds) is not int or not low <= seconds <= high:
        raise bad_request(
            f"Invalid '{param}.seconds': expected an integer from {low} to {high}, "
            f"got {seconds!r}.",
            param=f"{param}.seconds",
            code="invalid_value",
        )
    return seconds


def _check_metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > 16:
        raise bad_request("'metadata' must be an object of at most 16 pairs.", param="metadata")
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise bad_request(
                "'metadata' keys must be at most 64 characters and values strings of at "
                "most 512 characters.",
                param="metadata",
            )
    return dict(raw)
