"""Result sinks: all-or-nothing, once per (job, batch), successes only under the root."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchfsm.ledger.result_lines import OutcomeKind, iter_outcomes
from batchfsm.persistence.sinks import MAX_NAME_BYTES, DirectorySink, MemorySink, unsafe_name
from batchfsm.ports import QuarantinedLine, ResultSink

DATA = Path(__file__).parent.parent / "data"

RESULTS = [
    ("a", b'{"data":[{"embedding":[0.1,0.2]}]}'),
    ("b", b'{"data":[{"embedding":[0.3,0.4]}]}'),
    ("c", b'{"data":[{"embedding":[0.5,0.6]}]}'),
]


@pytest.fixture(params=["directory", "memory"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> ResultSink:
    if request.param == "directory":
        return DirectorySink(tmp_path / "results")
    return MemorySink()


def delivered(sink: ResultSink, job: str, batch: str) -> list[tuple[str, bytes]]:
    if isinstance(sink, DirectorySink):
        return [(cid, body) for cid, body in sink.read_batch(job, batch)]
    assert isinstance(sink, MemorySink)
    return sink.results[(job, batch)]


def test_write_then_redeliver_changes_nothing(sink: ResultSink) -> None:
    assert isinstance(sink, ResultSink)
    assert not sink.has("job1", "batch_1")
    assert sink.write_batch("job1", "batch_1", iter(RESULTS)) == 3
    assert sink.has("job1", "batch_1")
    # a re-run delivering the same batch (even with different content) writes nothing
    assert sink.write_batch("job1", "batch_1", iter([("z", b"{}")])) == 0
    assert [cid for cid, _ in delivered(sink, "job1", "batch_1")] == ["a", "b", "c"]
    assert [orjson.loads(b) for _, b in delivered(sink, "job1", "batch_1")] == [
        orjson.loads(b) for _, b in RESULTS
    ]


def test_failure_midway_leaves_nothing(sink: ResultSink, tmp_path: Path) -> None:
    def broken() -> Iterator[tuple[str, bytes]]:
        yield RESULTS[0]
        raise OSError("download stream broke")

    with pytest.raises(OSError, match="broke"):
        sink.write_batch("job1", "batch_1", broken())
    assert not sink.has("job1", "batch_1")
    if isinstance(sink, DirectorySink):
        assert sink.batches("job1") == []
        leftovers = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
        assert leftovers == []
    # and a later complete delivery still works
    assert sink.write_batch("job1", "batch_1", iter(RESULTS)) == 3


def test_duplicate_custom_id_in_one_batch_is_written_once(sink: ResultSink) -> None:
    assert sink.write_batch("j", "b", iter([*RESULTS, RESULTS[0]])) == 3
    assert [cid for cid, _ in delivered(sink, "j", "b")] == ["a", "b", "c"]


def test_empty_batch_is_still_marked_delivered(sink: ResultSink) -> None:
    assert sink.write_batch("j", "b", iter([])) == 0
    assert sink.has("j", "b")


def test_two_threads_delivering_the_same_batch_write_each_line_once(
    sink: ResultSink,
) -> None:
    barrier = threading.Barrier(2)
    many = [(f"id-{i}", orjson.dumps({"i": i})) for i in range(2000)]
    written: list[int] = []

    def slow_results() -> Iterator[tuple[str, bytes]]:
        barrier.wait()  # both writers are past has() and writing at the same time
        yield from many

    def deliver() -> None:
        written.append(sink.write_batch("j", "batch_race", slow_results()))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(written) == [0, 2000]
    ids = [cid for cid, _ in delivered(sink, "j", "batch_race")]
    assert ids == [cid for cid, _ in many]


def test_directory_layout_holds_only_successes_as_jsonl(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "results")
    outcomes = list(iter_outcomes(DATA / "output_embeddings.jsonl")) + list(
        iter_outcomes(DATA / "error_mixed.jsonl")
    )
    successes = [
        (o.custom_id, o.body)
        for o in outcomes
        if o.kind is OutcomeKind.SUCCEEDED and o.custom_id and o.body
    ]
    bad = [
        QuarantinedLine("error", o.line, o.raw, o.reason or "")
        for o in outcomes
        if o.kind is OutcomeKind.MALFORMED and o.raw is not None
    ]
    assert sink.write_batch("job-7", "batch_abc", successes) == 3
    assert sink.quarantine("job-7", "batch_abc", bad) == 5
    assert sink.quarantine("job-7", "batch_abc", bad) == 0

    jsonl = sorted((tmp_path / "results").rglob("*.jsonl"))
    assert jsonl == [tmp_path / "results" / "job-7" / "batch_abc.jsonl"]
    rows = [orjson.loads(line) for line in jsonl[0].read_bytes().splitlines()]
    assert [set(r) for r in rows] == [{"custom_id", "batch_id", "response"}] * 3
    assert {r["batch_id"] for r in rows} == {"batch_abc"}
    assert rows[0]["response"]["data"][0]["embedding"] == [0.0023064255, -0.009327292, 0.015797347]

    quarantined = tmp_path / "results.quarantine" / "job-7" / "batch_abc.jsonl"
    kept = [orjson.loads(line) for line in quarantined.read_bytes().splitlines()]
    assert [k["line"] for k in kept] == [10, 11, 12, 13, 14]
    assert kept[1]["raw"] == "not json at all\n"
    assert sink.batches("job-7") == ["batch_abc"]


def test_pretty_printed_body_is_compacted_to_keep_one_line(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "r")
    sink.write_batch("j", "b", [("x", b'{\n  "a": 1\n}')])
    (line,) = (tmp_path / "r" / "j" / "b.jsonl").read_bytes().splitlines()
    assert orjson.loads(line) == {"custom_id": "x", "batch_id": "b", "response": {"a": 1}}


@pytest.mark.parametrize("bad", ["", "..", "a/b", ".hidden", "x\0y", "a\nb", "a\\b", "x" * 201])
def test_ids_that_would_escape_the_directory_are_refused(tmp_path: Path, bad: str) -> None:
    sink = DirectorySink(tmp_path / "r")
    with pytest.raises(ValueError, match="file name"):
        sink.write_batch(bad, "b", [])
    with pytest.raises(ValueError, match="file name"):
        sink.has("j", bad)


def test_memory_sink_streams_back_what_it_delivered() -> None:
    sink = MemorySink()
    sink.write_batch("job", "batch_1", [("a", b'{"x":1}'), ("b", b'{"x":2}'), ("a", b"{}")])
    assert list(sink.read_batch("job", "batch_1")) == [("a", b'{"x":1}'), ("b", b'{"x":2}')]
    assert list(sink.read_batch("job", "batch_2")) == []


def test_names_that_are_safe_pass_and_each_unsafe_one_says_why() -> None:
    assert unsafe_name("job-7_a.b") is None
    assert unsafe_name("x" * MAX_NAME_BYTES) is None
    assert unsafe_name("é" * (MAX_NAME_BYTES // 2 + 1)) == f"is longer than {MAX_NAME_BYTES} bytes"
    assert unsafe_name("../../escape") == "starts with a dot (a hidden file or a parent folder)"
    assert unsafe_name("a/b") == "contains a path separator"


def test_results_and_the_quarantine_are_private_files(tmp_path: Path) -> None:
    """They hold model output and raw result lines: 0600, like the store, whatever the
    umask lets other files be."""
    sink = DirectorySink(tmp_path / "r")
    sink.write_batch("j", "b", [("x", b"{}")])
    sink.quarantine("j", "b", [QuarantinedLine("output", 1, b"not json", "invalid_json")])
    for path in (tmp_path / "r" / "j" / "b.jsonl", tmp_path / "r.quarantine" / "j" / "b.jsonl"):
        assert path.stat().st_mode & 0o777 == 0o600, path
