"""Checks of one input-file line, each naming the path, the 1-based line and the field.

Split from :mod:`batchfsm.jobs.input_file` (which walks the file and cuts it into
batches) so each reads in one sitting. The rules mirror what the API refuses after an
upload (https://platform.openai.com/docs/guides/batch): a line is a JSON object with a
non-empty ``custom_id``, ``method`` ``POST``, the batch's endpoint as ``url`` and an
object ``body`` naming a model; embeddings count their inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from batchfsm.errors import InputFileError

__all__ = [
    "check_fits_alone",
    "check_request",
    "custom_id_of",
    "embedding_inputs",
    "line_error",
    "model_of",
    "named_model",
    "parse_line",
    "strip_newline",
]


def strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    return raw


def line_error(message: str, path: Path, line: int | None, field: str | None) -> InputFileError:
    return InputFileError(message, path=str(path), line=line, field=field)


def parse_line(raw: bytes, path: Path, number: int) -> dict[str, Any]:
    if raw.isspace() or not raw:
        raise line_error(
            "blank line: the API rejects blank lines in a batch file (remove it)",
            path,
            number,
            None,
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode()
        except UnicodeDecodeError as undecodable:
            message = f"not UTF-8 (byte {undecodable.start})"
            raise line_error(message, path, number, None) from undecodable
        raise line_error(f"invalid_json_line: {exc}", path, number, None) from exc
    if not isinstance(obj, dict):
        raise line_error(
            f"a line must be a JSON object, not {type(obj).__name__}", path, number, None
        )
    return obj


def custom_id_of(obj: dict[str, Any], path: Path, number: int) -> str:
    if "custom_id" not in obj:
        raise line_error("custom_id is missing", path, number, "custom_id")
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        raise line_error(
            f"custom_id must be a non-empty string, not {custom_id!r}", path, number, "custom_id"
        )
    return custom_id


def model_of(body: dict[str, Any], path: Path, number: int, *, optional: bool) -> str | None:
    model = body.get("model")
    if model is None and optional:
        return None
    if not isinstance(model, str) or not model:
        raise line_error("body.model must be a non-empty string", path, number, "body.model")
    return model


def named_model(model: str | None) -> str:
    return repr(model) if model is not None else "no model (the endpoint's default)"


def check_request(obj: dict[str, Any], endpoint: str, path: Path, number: int) -> None:
    method = obj.get("method")
    if method != "POST":
        raise line_error(f"method must be 'POST', not {method!r}", path, number, "method")
    url = obj.get("url")
    if url != endpoint:
        raise line_error(
            f"url_mismatch: {url!r} is not the batch endpoint {endpoint!r}", path, number, "url"
        )
    if not isinstance(obj.get("body"), dict):
        raise line_error("body must be a JSON object", path, number, "body")


def embedding_inputs(body: dict[str, Any], path: Path, number: int) -> int:
    value = body.get("input")
    if isinstance(value, str):
        return 1
    if isinstance(value, list) and value:
        if all(type(item) is int for item in value):
            return 1  # one pre-tokenised input
        return len(value)
    raise line_error(
        "embeddings need body.input: a string or a non-empty array", path, number, "body.input"
    )


def check_fits_alone(
    size: int, inputs: int, *, max_bytes: int, max_inputs: int, path: Path, number: int
) -> None:
    if size > max_bytes:
        raise line_error(
            f"this request alone is {size} bytes, over the {max_bytes}-byte batch limit",
            path,
            number,
            None,
        )
    if inputs > max_inputs:
        raise line_error(
            f"this request alone has {inputs} embedding inputs, over the limit of "
            f"{max_inputs} per batch",
            path,
            number,
            "body.input",
        )
