"""S3Sink against moto's S3 over HTTP: exactly once per (job, batch), all or nothing,
streamed (multipart above the part size), readable back line for line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchfsm.errors import StoreUnavailableError, StoreURLError
from batchfsm.persistence.s3_sink import MIN_PART_SIZE, S3Sink
from batchfsm.ports import QuarantinedLine, ResultSink

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def body(i: int) -> bytes:
    return orjson.dumps({"status_code": 200, "body": {"data": [{"embedding": [i, i + 1]}]}})


def test_it_is_a_result_sink(s3: S3Client, bucket: str) -> None:
    assert isinstance(S3Sink(bucket, client=s3), ResultSink)


def test_a_batch_is_published_once_and_read_back(s3: S3Client, bucket: str) -> None:
    sink = S3Sink.from_url(f"s3://{bucket}/runs/2026", client=s3)
    rows = [("a", body(1)), ("b", body(2)), ("a", body(3))]  # a duplicate custom_id

    assert not sink.has("job-1", "batch_1")
    assert sink.write_batch("job-1", "batch_1", rows) == 2
    assert sink.has("job-1", "batch_1")
    assert sink.write_batch("job-1", "batch_1", [("c", body(4))]) == 0  # already delivered

    assert list(sink.read_batch("job-1", "batch_1")) == [("a", body(1)), ("b", body(2))]
    assert sink.batches("job-1") == ["batch_1"]
    key = "runs/2026/results/job-1/batch_1.jsonl"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/x-ndjson"
    first = s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()[0]
    assert orjson.loads(first) == {
        "custom_id": "a",
        "batch_id": "batch_1",
        "response": orjson.loads(body(1)),
    }


def test_results_that_break_midway_publish_nothing(s3: S3Client, bucket: str) -> None:
    sink = S3Sink(bucket, "p", client=s3)

    def broken() -> Iterator[tuple[str, bytes]]:
        yield "a", body(1)
        raise OSError("download cut")

    with pytest.raises(OSError, match="download cut"):
        sink.write_batch("job-1", "batch_1", broken())
    assert not sink.has("job-1", "batch_1")
    assert sink.write_batch("job-1", "batch_1", [("a", body(1))]) == 1


def test_racing_writers_publish_exactly_once(s3: S3Client, bucket: str) -> None:
    # Each writer checks has() first and finds nothing, then both put: the conditional
    # write lets exactly one create the object.
    sinks = [S3Sink(bucket, client=s3) for _ in range(4)]
    start = threading.Barrier(len(sinks))
    written: list[int] = []

    def rows(tag: int) -> Iterator[tuple[str, bytes]]:
        start.wait()
        yield f"from-{tag}", body(tag)

    threads = [
        threading.Thread(target=lambda s=s, i=i: written.append(s.write_batch("j", "b", rows(i))))
        for i, s in enumerate(sinks)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(written) == [0, 0, 0, 1]
    assert len(list(sinks[0].read_batch("j", "b"))) == 1


def test_a_large_batch_goes_up_in_parts_and_only_once(s3: S3Client, bucket: str) -> None:
    filler = b'"' + b"x" * 4096 + b'"'
    count = (MIN_PART_SIZE // 4096) + 50  # a bit over one part: two parts
    start = threading.Barrier(2)
    written: list[int] = []

    def rows() -> Iterator[tuple[str, bytes]]:
        start.wait()  # both writers have checked has() and found nothing
        yield from ((f"r{i}", filler) for i in range(count))

    def write() -> None:
        sink = S3Sink(bucket, client=s3, part_size=MIN_PART_SIZE, spool_limit=1024 * 1024)
        written.append(sink.write_batch("job", "big", rows()))

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(written) == [0, count]
    assert sum(1 for _ in S3Sink(bucket, client=s3).read_batch("job", "big")) == count
    head = s3.head_object(Bucket=bucket, Key="results/job/big.jsonl")
    assert head["ContentLength"] > MIN_PART_SIZE
    assert head["ETag"].strip('"').endswith("-2")  # a multipart object of two parts
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # loser aborted


def test_quarantine_is_kept_apart_from_results(s3: S3Client, bucket: str) -> None:
    sink = S3Sink(bucket, "p", client=s3)
    lines = [QuarantinedLine("output", 3, b"{not json", "unparseable")]

    assert sink.quarantine("job", "b1", lines) == 1
    assert sink.quarantine("job", "b1", lines) == 0
    assert sink.batches("job") == []  # results/ holds successes only
    raw = s3.get_object(Bucket=bucket, Key="p/quarantine/job/b1.jsonl")["Body"].read()
    assert orjson.loads(raw)["raw"] == "{not json"


@pytest.mark.parametrize("bad", ["../etc", ".hidden", "a/b", ""])
def test_ids_that_could_escape_the_prefix_are_refused(s3: S3Client, bucket: str, bad: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        S3Sink(bucket, client=s3).write_batch(bad, "b", [])


def test_bad_locations_and_a_missing_bucket_are_clear_errors(s3: S3Client) -> None:
    with pytest.raises(StoreURLError, match="s3://"):
        S3Sink.from_url("s4://bucket/x")
    with pytest.raises(StoreURLError, match=r"(?i)bucket"):
        S3Sink.from_url("s3:///x")
    with pytest.raises(StoreUnavailableError, match="NoSuchBucket"):
        S3Sink("batchfsm-no-such-bucket", client=s3).write_batch("j", "b", [("a", body(1))])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
        max_size=30,
    )
)
def test_every_custom_id_is_delivered_once_in_first_seen_order(
    s3: S3Client, bucket: str, ids: list[str]
) -> None:
    sink = S3Sink(bucket, client=s3)
    batch = f"b{abs(hash(tuple(ids)))}"
    expected = list(dict.fromkeys(ids))
    rows = [(cid, body(i)) for i, cid in enumerate(ids)]
    first_body = dict(reversed(rows))

    assert sink.write_batch("job", batch, rows) == len(expected)

    assert list(sink.read_batch("job", batch)) == [(cid, first_body[cid]) for cid in expected]
