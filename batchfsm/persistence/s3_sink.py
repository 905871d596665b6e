"""Results in S3, delivered exactly once per (job, batch), like :class:`DirectorySink`.

Layout under ``s3://BUCKET/PREFIX/``::

    results/<job_id>/<batch_id>.jsonl       successes, one line per custom_id (same lines
                                            as DirectorySink writes)
    quarantine/<job_id>/<batch_id>.jsonl    unusable lines kept for a human

Guarantees (the :class:`~batchfsm.persistence.sinks.ResultSink` contract):

* **Exactly once**: the object is created with a conditional write
  (``If-None-Match: *``, on ``PutObject`` or ``CompleteMultipartUpload``). Of two
  writers racing on one batch, S3 lets exactly one create the key; the other gets
  ``412 PreconditionFailed`` and returns 0. Keys are deterministic, so a re-run after a
  crash finds the object and writes nothing.
* **All or nothing**: an S3 object appears whole or not at all. Lines are first spooled
  to a temporary file (in memory up to ``spool_limit``, then on disk), so ``results``
  raising midway uploads nothing; a failed multipart upload is aborted.
* **Streaming**: never the whole output in memory: the spool spills to disk, and a body
  over ``part_size`` is sent as a multipart upload one part at a time.

botocore is imported only when no client is injected; errors from S3 become
:class:`~batchfsm.errors.StoreUnavailableError` (the effect stays owed and is retried).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchfsm.errors import StoreUnavailableError, StoreURLError
from batchfsm.persistence.sinks import _check_name, _quarantine_line, _unique
from batchfsm.ports import QuarantinedLine

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Sink"]

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
"""S3 rejects multipart parts below 5 MiB (except the last)."""
CONTENT_TYPE = "application/x-ndjson"


class S3Sink:
    """JSONL objects of successes under ``s3://bucket/prefix``; see the module docstring.

    Parameters
    ----------
    client, client_factory:
        A low-level S3 client, or a function making one on first use; with neither, one
        on a new botocore session on first use (it honours ``AWS_ENDPOINT_URL_S3``).
    part_size:
        Bodies larger than this go up as a multipart upload in parts of this size.
    spool_limit:
        Bytes kept in memory while spooling before spilling to a temporary file.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        client_factory: Callable[[], S3Client] | None = None,
        part_size: int = 16 * MIB,
        spool_limit: int = 8 * MIB,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreURLError(f"not an S3 bucket name: {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.spool_limit = spool_limit
        self._client = client
        self._client_factory = client_factory

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Sink:
        """``s3://bucket`` or ``s3://bucket/prefix``."""
        scheme, sep, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if scheme != "s3" or not sep or not bucket:
            raise StoreURLError(f"not an s3://BUCKET/PREFIX location: {url!r}")
        return cls(bucket, prefix, **options)

    def __repr__(self) -> str:
        return f"S3Sink('s3://{self.bucket}/{self.prefix}')"

    @property
    def client(self) -> S3Client:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                from batchfsm.persistence.botocore_clients import make_client

                self._client = make_client("s3")
        return self._client

    # -- keys ----------------------------------------------------------------------------
    def key_for(self, job_id: str, batch_id: str) -> str:
        _check_name("job_id", job_id)
        _check_name("batch_id", batch_id)
        return f"{self.prefix}results/{job_id}/{batch_id}.jsonl"

    def quarantine_key(self, job_id: str, batch_id: str) -> str:
        _check_name("job_id", job_id)
        _check_name("batch_id", batch_id)
        return f"{self.prefix}quarantine/{job_id}/{batch_id}.jsonl"

    # -- the ResultSink contract ---------------------------------------------------------
    def has(self, job_id: str, batch_id: str) -> bool:
        return self._exists(self.key_for(job_id, batch_id))

    def write_batch(self, job_id: str, batch_id: str, results: Iterable[tuple[str, bytes]]) -> int:
        key = self.key_for(job_id, batch_id)
        if self._exists(key):
            return 0
        return self._publish(key, _unique(results, batch_id))

    def quarantine(self, job_id: str, batch_id: str, lines: Iterable[QuarantinedLine]) -> int:
        key = self.quarantine_key(job_id, batch_id)
        if self._exists(key):
            return 0
        return self._publish(key, (_quarantine_line(job_id, batch_id, item) for item in lines))

    # -- reading back --------------------------------------------------------------------
    def batches(self, job_id: str) -> list[str]:
        """Batch ids delivered for ``job_id``, sorted."""
        _check_name("job_id", job_id)
        start = f"{self.prefix}results/{job_id}/"
        found = []
        with _s3_errors(f"list s3://{self.bucket}/{start}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            ):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(start) :]
                    if "/" not in name and name.endswith(".jsonl"):
                        found.append(name.removesuffix(".jsonl"))
        return sorted(found)

    def read_batch(self, job_id: str, batch_id: str) -> Iterator[tuple[str, bytes]]:
        """Stream back ``(custom_id, raw body)`` of a delivered batch."""
        key = self.key_for(job_id, batch_id)
        with _s3_errors(f"get s3://{self.bucket}/{key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            for raw in body.iter_lines():
                if raw:
                    row = orjson.loads(raw)
                    yield row["custom_id"], orjson.dumps(row["response"])
        finally:
            body.close()

    # -- internals -----------------------------------------------------------------------
    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise StoreUnavailableError(f"head s3://{self.bucket}/{key}: {_code(exc)}") from exc
        return True

    def _publish(self, key: str, lines: Iterable[bytes]) -> int:
        """Spool ``lines``, then create ``key`` only if it does not exist yet."""
        with tempfile.SpooledTemporaryFile(max_size=self.spool_limit, mode="w+b") as spool:
            count = 0
            for data in lines:  # an exception here leaves S3 untouched
                spool.write(data)
                count += 1
            size = spool.tell()
            spool.seek(0)
            with _s3_errors(f"put s3://{self.bucket}/{key}"):
                if size <= self.part_size:
                    created = self._put(key, spool)
                else:
                    created = self._multipart(key, spool)
        return count if created else 0

    def _put(self, key: str, body: IO[bytes]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType=CONTENT_TYPE
            )
        except ClientError as exc:
            return _lost_race(exc, self.bucket, key)
        return True

    def _multipart(self, key: str, body: IO[bytes]) -> bool:
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{key}"
        with _s3_errors(f"start multipart upload to {where}"):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE
            )["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := body.read(self.part_size):
                with _s3_errors(f"upload part {number} to {where}"):
                    etag = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                number += 1
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                return _lost_race(exc, self.bucket, key)
            upload_id = ""
            return True
        finally:
            if upload_id:  # failed or lost the race: leave no parts behind (they cost)
                self._abort(key, upload_id)

    def _abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        # If even the abort fails, the bucket's lifecycle rule expires the parts.
        with suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)


def _status(exc: Any) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))


def _lost_race(exc: Any, bucket: str, key: str) -> bool:
    """False when another writer created ``key`` first; any other failure raises.

    412 means the key exists: this batch is delivered, by someone else. 409
    (``ConditionalRequestConflict``) means a competing write is still in flight, whose
    outcome we cannot know, so it raises: the effect stays owed and the retry sees the
    object (or its absence) for sure.
    """
    if _status(exc) == 412 or _code(exc) == "PreconditionFailed":
        return False
    raise StoreUnavailableError(f"put s3://{bucket}/{key}: {_code(exc)}") from exc


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Translate botocore failures into StoreUnavailableError naming what was tried."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise StoreUnavailableError(f"{what}: {_code(exc)}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailableError(f"{what}: {type(exc).__name__}") from exc
