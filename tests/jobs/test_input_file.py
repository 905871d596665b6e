"""Local validation and splitting of batch input files."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.errors import InputFileError
from batchfsm.jobs.input_file import Chunk, RequestLine, plan_chunks, validate_input, write_chunk

DATA = Path(__file__).parent.parent / "data"
EMB = "/v1/embeddings"
CHAT = "/v1/chat/completions"


def request(custom_id: str, *, url: str = EMB, model: str = "m", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "input": "x", **body}}  # fmt: skip


def write_lines(path: Path, lines: list[Any]) -> Path:
    with path.open("wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else orjson.dumps(line))
            fh.write(b"\n")
    return path


def test_real_embeddings_input_counts_inputs_per_element() -> None:
    summary = validate_input(DATA / "input_embeddings.jsonl", EMB)
    # a string = 1, three strings = 3, one token array = 1, two token arrays = 2
    assert summary.embedding_inputs == 1 + 3 + 1 + 2
    assert (summary.requests, summary.model) == (4, "text-embedding-3-small")
    assert summary.size == (DATA / "input_embeddings.jsonl").stat().st_size


def test_real_chat_input_is_one_chunk_with_original_text() -> None:
    (chunk,) = plan_chunks(DATA / "input_chat.jsonl", CHAT)
    original = (DATA / "input_chat.jsonl").read_text().splitlines()
    assert [r.text for r in chunk.requests] == original
    assert chunk.custom_ids == ("request-1", "request-2")
    assert [r.line for r in chunk.requests] == [1, 2]


BAD_LINES: list[tuple[str, bytes | dict[str, Any], str | None, str]] = [
    ("blank", b"   ", None, "blank line"),
    ("not json", b"{not json", None, "invalid_json_line"),
    ("array", b"[1, 2]", None, "JSON object"),
    (
        "no custom_id",
        {"method": "POST", "url": EMB, "body": {"model": "m", "input": "x"}},
        "custom_id",
        "missing",
    ),
    ("int custom_id", {**request("x"), "custom_id": 7}, "custom_id", "string"),
    ("duplicate", request("a"), "custom_id", "duplicate custom_id 'a' (first on line 1)"),
    ("GET", {**request("z"), "method": "GET"}, "method", "POST"),
    ("wrong url", request("z", url=CHAT), "url", "url_mismatch"),
    ("body not object", {**request("z"), "body": "text"}, "body", "object"),
    ("no model", {**request("z"), "body": {"input": "x"}}, "body.model", "model"),
    ("other model", request("z", model="other"), "body.model", "model_mismatch"),
    ("no input", {**request("z"), "body": {"model": "m"}}, "body.input", "input"),
]


@pytest.mark.parametrize(
    ("bad", "field", "words"), [pytest.param(b, f, w, id=i) for i, b, f, w in BAD_LINES]
)
def test_each_error_names_path_line_and_field(
    tmp_path: Path, bad: bytes | dict[str, Any], field: str | None, words: str
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request("a"), bad, request("b")])
    with pytest.raises(InputFileError) as info:
        validate_input(path, EMB)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert words in str(err)
    assert str(path) in str(err) and "line 2" in str(err)


def test_empty_file_and_unknown_endpoint(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty_file"):
        validate_input(empty, EMB)
    with pytest.raises(InputFileError, match="endpoint"):
        validate_input(DATA / "input_chat.jsonl", "/v1/moderation")


def test_trailing_blank_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(request("a")) + b"\n\n")
    with pytest.raises(InputFileError) as info:
        validate_input(path, EMB)
    assert info.value.line == 2


def test_nothing_is_yielded_when_a_late_line_is_bad(tmp_path: Path) -> None:
    lines: list[Any] = [request(f"r{i}") for i in range(10)]
    lines.append({**request("late"), "method": "PUT"})
    path = write_lines(tmp_path / "in.jsonl", lines)
    with pytest.raises(InputFileError) as info:
        plan_chunks(path, EMB, max_requests=2)  # validates the whole file before any chunk
    assert info.value.line == 11


def test_single_request_over_a_limit_is_rejected(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request("a"), request("big", input=["x"] * 5)])
    with pytest.raises(InputFileError) as info:
        list(plan_chunks(path, EMB, max_embedding_inputs=4))
    assert (info.value.line, info.value.field) == (2, "body.input")
    size = len(orjson.dumps(request("a"))) + 1
    with pytest.raises(InputFileError) as info:
        list(plan_chunks(path, EMB, max_bytes=size))
    assert info.value.line == 2


def test_limits_are_inclusive_at_the_boundary(tmp_path: Path) -> None:
    lines = [request(f"r{i}") for i in range(6)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    size = len(orjson.dumps(lines[0])) + 1
    assert [len(c.requests) for c in plan_chunks(path, EMB, max_requests=3)] == [3, 3]
    assert [len(c.requests) for c in plan_chunks(path, EMB, max_bytes=3 * size)] == [3, 3]
    assert [len(c.requests) for c in plan_chunks(path, EMB, max_bytes=3 * size - 1)] == [2] * 3
    assert [len(c.requests) for c in plan_chunks(path, EMB, max_embedding_inputs=6)] == [6]
    assert [len(c.requests) for c in plan_chunks(path, EMB, max_embedding_inputs=5)] == [5, 1]


def test_write_chunk_round_trips_and_matches_sizes(tmp_path: Path) -> None:
    lines = [request(f"r{i}", input=["a", "b"]) for i in range(5)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    chunks = list(plan_chunks(path, EMB, max_embedding_inputs=4))
    assert [c.embedding_inputs for c in chunks] == [4, 4, 2]
    for chunk in chunks:
        dest = tmp_path / "out" / f"chunk-{chunk.index}.jsonl"
        written = write_chunk(chunk.requests, dest)
        assert written == chunk.size == dest.stat().st_size
        assert next(iter(plan_chunks(dest, EMB))).custom_ids == chunk.custom_ids
    # bare texts (from the ledger) are accepted too
    write_chunk([chunks[0].requests[0].text], tmp_path / "one.jsonl")
    assert (tmp_path / "one.jsonl").read_text() == chunks[0].requests[0].text + "\n"


def test_write_chunk_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    def lines() -> Any:
        yield "{}"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_chunk(lines(), tmp_path / "c.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_validation_and_splitting_stream_the_file(tmp_path: Path) -> None:
    filler = "w" * 10_000
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        for i in range(2_000):  # ~20 MB
            fh.write(orjson.dumps(request(f"r{i}", input=filler)) + b"\n")
    tracemalloc.start()
    try:
        chunks = 0
        for chunk in plan_chunks(path, EMB, max_bytes=1_000_000):
            chunks += 1
            assert chunk.size <= 1_000_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunks > 19
    assert peak < 4 * 1024 * 1024  # one chunk of text, not the 20 MB file


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    inputs=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
    pads=st.data(),
    max_requests=st.integers(min_value=1, max_value=12),
    max_inputs=st.integers(min_value=1, max_value=20),
    byte_slack=st.integers(min_value=0, max_value=400),
)
def test_chunks_cover_every_line_once_in_order_within_limits(
    tmp_path: Path,
    inputs: list[int],
    pads: st.DataObject,
    max_requests: int,
    max_inputs: int,
    byte_slack: int,
) -> None:
    lines = [
        request(f"r{i}", input=["t"] * n, pad="p" * pads.draw(st.integers(0, 60)))
        for i, n in enumerate(inputs)
    ]
    path = write_lines(tmp_path / "prop.jsonl", lines)
    sizes = [len(orjson.dumps(line)) + 1 for line in lines]
    max_bytes = max(sizes) + byte_slack
    if max(inputs) > max_inputs:
        with pytest.raises(InputFileError):
            list(
                plan_chunks(
                    path,
                    EMB,
                    max_requests=max_requests,
                    max_bytes=max_bytes,
                    max_embedding_inputs=max_inputs,
                )
            )
        return
    chunks = list(
        plan_chunks(
            path,
            EMB,
            max_requests=max_requests,
            max_bytes=max_bytes,
            max_embedding_inputs=max_inputs,
        )
    )
    flat: list[RequestLine] = [r for c in chunks for r in c.requests]
    assert [r.custom_id for r in flat] == [f"r{i}" for i in range(len(lines))]
    assert [r.line for r in flat] == list(range(1, len(lines) + 1))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert 1 <= len(chunk.requests) <= max_requests
        assert chunk.size <= max_bytes
        assert chunk.embedding_inputs <= max_inputs
    # greedy: each chunk was closed only because the next line would not fit
    for current, following in itertools.pairwise(chunks):
        nxt = following.requests[0]
        assert (
            len(current.requests) + 1 > max_requests
            or current.size + nxt.size > max_bytes
            or current.embedding_inputs + nxt.embedding_inputs > max_inputs
        )


def test_chunk_properties() -> None:
    chunk = Chunk(0, (RequestLine("a", "{}", 1, 3, 2), RequestLine("b", "{} ", 2, 4, 1)))
    assert (chunk.size, chunk.embedding_inputs, chunk.custom_ids) == (7, 3, ("a", "b"))


# -- endpoints ----------------------------------------------------------------------------

ENDPOINT_BODIES: dict[str, dict[str, Any]] = {
    "/v1/responses": {"model": "gpt-5", "input": "hi"},
    "/v1/chat/completions": {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
    "/v1/moderations": {"model": "omni-moderation-latest", "input": "hi"},
    "/v1/images/generations": {"model": "gpt-image-1", "prompt": "a fox"},
    "/v1/images/edits": {"model": "gpt-image-1", "prompt": "add a hat", "image": "file-1"},
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_BODIES))
def test_every_endpoint_the_api_takes_is_accepted(tmp_path: Path, endpoint: str) -> None:
    line = {"custom_id": "a", "method": "POST", "url": endpoint, "body": ENDPOINT_BODIES[endpoint]}
    summary = validate_input(write_lines(tmp_path / "in.jsonl", [line]), endpoint)
    assert (summary.endpoint, summary.requests) == (endpoint, 1)
    assert summary.model == ENDPOINT_BODIES[endpoint]["model"]


def test_the_retired_videos_endpoint_is_refused_saying_why(tmp_path: Path) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/videos", "body": {"model": "sora-2"}}
    path = write_lines(tmp_path / "in.jsonl", [line])
    with pytest.raises(InputFileError) as info:
        validate_input(path, "/v1/videos")
    assert "no longer accepts /v1/videos" in str(info.value)
    assert "September 24, 2026" in str(info.value) and info.value.path == str(path)
    with pytest.raises(InputFileError, match="use one of /v1/chat/completions"):
        validate_input(path, "/v1/audio/speech")


def test_moderations_and_images_may_leave_the_model_to_the_endpoint(tmp_path: Path) -> None:
    url = "/v1/moderations"
    lines = [{"custom_id": c, "method": "POST", "url": url, "body": {"input": c}} for c in "ab"]
    summary = validate_input(write_lines(tmp_path / "in.jsonl", lines), url)
    assert (summary.requests, summary.model) == (2, None)
    body = {"model": "omni-moderation-latest", "input": "c"}
    named = {**lines[0], "custom_id": "c", "body": body}
    path = write_lines(tmp_path / "mixed.jsonl", [*lines, named])
    with pytest.raises(InputFileError) as info:
        validate_input(path, url)
    assert (info.value.line, info.value.field) == (3, "body.model")
    assert "model_mismatch" in str(info.value) and "no model" in str(info.value)
    chat = {**request("x", url=CHAT), "body": {"messages": []}}  # chat still needs a model
    with pytest.raises(InputFileError) as info:
        validate_input(write_lines(tmp_path / "chat.jsonl", [chat]), CHAT)
    assert info.value.field == "body.model"
