"""Repeated custom_ids found in 8 bytes a line, exactly; a file that changes between the
checking pass and the reading pass; progress notes while a big file is checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.errors import InputFileError
from batchfsm.jobs.input_file import PROGRESS_EVERY, plan_chunks, validate_input
from batchfsm.jobs.unique_ids import IdDigests, digest, first_repeat

EMB = "/v1/embeddings"


def request(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": EMB,
            "body": {"model": "text-embedding-3-small", "input": "x"}}  # fmt: skip


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(request(i)) + b"\n" for i in ids))
    return path


def first_repeat_by_hand(ids: list[str]) -> tuple[int, str, int] | None:
    first: dict[str, int] = {}
    for number, custom_id in enumerate(ids, start=1):
        if custom_id in first:
            return number, custom_id, first[custom_id]
        first[custom_id] = number
    return None


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=40))
def test_a_repeated_id_is_refused_naming_both_lines_and_only_then(
    tmp_path: Path, ids: list[str]
) -> None:
    path = write_ids(tmp_path / "in.jsonl", ids)
    expected = first_repeat_by_hand(ids)
    if expected is None:
        assert validate_input(path, EMB).requests == len(ids)
        return
    number, custom_id, first = expected
    with pytest.raises(InputFileError) as caught:
        validate_input(path, EMB)
    assert caught.value.line == number and caught.value.field == "custom_id"
    assert f"duplicate custom_id {custom_id!r} (first on line {first})" in str(caught.value)


def test_ids_that_merely_share_a_digest_are_not_a_repeat() -> None:
    """A digest collision (too rare to provoke) is settled by comparing the ids."""
    suspects = {digest("a"), digest("b")}  # as if "a" and "b" had collided
    assert first_repeat([(1, "a"), (2, "b"), (3, "c")], suspects) is None
    assert first_repeat([(1, "a"), (2, "b"), (3, "a")], suspects) == (3, "a", 1)


def test_digests_find_repeats_in_any_bucket() -> None:
    seen = IdDigests()
    for n in range(5_000):
        seen.add(f"req-{n}")
    assert seen.repeats() == set()
    seen.add("req-4321")
    assert seen.repeats() == {digest("req-4321")}


def test_a_file_changed_between_check_and_read_sends_nothing_of_that_chunk(
    tmp_path: Path,
) -> None:
    ids = [f"r{n:05d}" for n in range(4_000)]  # far more than one read buffer
    path = write_ids(tmp_path / "in.jsonl", ids)
    chunks = plan_chunks(path, EMB, max_requests=2_000)
    assert [r.custom_id for r in next(chunks).requests] == ids[:2_000]
    write_ids(path, [*ids[:-1], "x03999"])  # same sizes, another id in the second chunk
    with pytest.raises(InputFileError, match="changed while it was being read"):
        next(chunks)


def test_a_file_cut_short_between_check_and_read_is_noticed(tmp_path: Path) -> None:
    path = write_ids(tmp_path / "in.jsonl", ["a", "b", "c"])
    chunks = plan_chunks(path, EMB)
    with path.open("r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with pytest.raises(InputFileError, match="changed while it was being read"):
        next(chunks)


def test_checking_a_big_file_reports_progress_every_so_many_lines(tmp_path: Path) -> None:
    path = write_ids(tmp_path / "big.jsonl", [f"r{n}" for n in range(2 * PROGRESS_EVERY + 5)])
    notes: list[str] = []
    validate_input(path, EMB, progress=notes.append)
    assert notes == [
        f"checking big.jsonl: {PROGRESS_EVERY:,} lines",
        f"checking big.jsonl: {2 * PROGRESS_EVERY:,} lines",
    ]
