"""Calling DynamoDB within its limits: error translation, backoff, chunking.

:class:`DynamoCalls` is the only place that talks to the boto3 client. It owns

* the one translation boundary (:meth:`DynamoCalls.translated`): a condition failure
  becomes whatever the caller says (``StaleJobError``, ``DuplicateJobError``...), a missing
  table :class:`~batchfsm.errors.StoreNotInitialisedError`, anything else
  :class:`~batchfsm.errors.StoreUnavailableError` chained ``from`` the ClientError;
* retries with exponential backoff and full jitter on throttling and transaction
  conflicts, which no local server ever produces (tested with botocore's Stubber);
* the service limits: 100 actions per ``TransactWriteItems``, 25 requests per
  ``BatchWriteItem`` and 100 keys per ``BatchGetItem``, with unprocessed leftovers
  resubmitted after a backoff.

The server used in tests (moto) accepts oversize batches and never throttles, so these
limits are enforced here rather than trusted to the server.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchfsm.errors import StoreError, StoreNotInitialisedError, StoreUnavailableError
from batchfsm.persistence.dynamodb.layout import (
    MAX_BATCH_GET,
    MAX_BATCH_WRITE,
    MAX_TRANSACTION_ACTIONS,
    Item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "TransactionConflictException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
"""Error codes worth retrying after a pause; every other error is final."""

RETRYABLE_CANCEL_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)
"""Per-action reasons of a cancelled transaction that a retry can cure."""

ConflictHandler = Callable[[Mapping[str, Any] | None, int | None], StoreError]
"""Builds the error for a failed condition from the competing item (when DynamoDB returned
it) and the index of the failed action in a transaction (None for a single write)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt k waits uniform(0, min(cap, base*2^k))."""

    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))


class DynamoCalls:
    """One table's calls, with retries and error translation; shared by one store."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- the translation boundary --------------------------------------------------------
    @contextmanager
    def translated(self, action: str, on_conflict: ConflictHandler | None = None) -> Iterator[None]:
        """Turn botocore's errors into the store's, most specific first."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code == "ConditionalCheckFailedException" and on_conflict is not None:
                old: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                raise on_conflict(old, None) from exc
            if code == "TransactionCanceledException" and on_conflict is not None:
                reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
                for index, reason in enumerate(reasons):
                    if reason.get("Code") == "ConditionalCheckFailed":
                        raise on_conflict(reason.get("Item"), index) from exc
            if code == "ResourceNotFoundException":
                raise StoreNotInitialisedError(f"DynamoDB table {self.table!r}") from exc
            message = error.get("Message", "")
            raise StoreUnavailableError(
                f"DynamoDB {action} on table {self.table!r} failed: {code}: {message}"
            ) from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(
                f"DynamoDB {action} on table {self.table!r} failed: {exc}"
            ) from exc

    # -- single calls --------------------------------------------------------------------
    def call(
        self, operation: str, on_conflict: ConflictHandler | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One client call (``operation`` is the snake_case method name), retried on
        throttling, translated on failure."""
        method = getattr(self.client, operation)
        with self.translated(operation, on_conflict):
            return self._with_backoff(operation, lambda: dict(method(**kwargs)))

    def transact(
        self, actions: Sequence[dict[str, Any]], on_conflict: ConflictHandler | None = None
    ) -> None:
        """One atomic ``TransactWriteItems``. More than 100 actions is refused, not split:
        splitting would silently give up the atomicity the caller asked for.

        The same ``ClientRequestToken`` is sent on every retry, so on AWS a retry of a
        transaction that did succeed (lost response) is a no-op, not a false conflict.
        """
        if len(actions) > MAX_TRANSACTION_ACTIONS:
            raise ValueError(
                f"{len(actions)} actions in one DynamoDB transaction; the limit is "
                f"{MAX_TRANSACTION_ACTIONS}"
            )
        token = str(uuid.uuid4())
        self.call(
            "transact_write_items",
            on_conflict,
            TransactItems=list(actions),
            ClientRequestToken=token,
        )

    def pause(self, attempt: int) -> None:
        """Sleep as the retry policy says before ``attempt`` + 1 (for callers' own loops)."""
        self._sleep(self.retry.delay(attempt, self._rng))

    def _with_backoff(
        self, operation: str, attempt: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        for number in range(self.retry.max_attempts):
            try:
                return attempt()
            except ClientError as exc:
                if not _retryable(exc) or number + 1 == self.retry.max_attempts:
                    raise
                code = exc.response.get("Error", {}).get("Code")
                pause = self.retry.delay(number, self._rng)
                logger.debug(
                    "DynamoDB %s: %s, retry %d in %.3fs", operation, code, number + 1, pause
                )
                self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- batched calls -------------------------------------------------------------------
    def batch_write(self, puts: Sequence[Item]) -> int:
        """Unconditional puts, 25 per ``BatchWriteItem``, leftovers resubmitted with
        backoff; returns how many calls were made."""
        calls = 0
        for start in range(0, len(puts), MAX_BATCH_WRITE):
            pending: list[dict[str, Any]] = [
                {"PutRequest": {"Item": item}} for item in puts[start : start + MAX_BATCH_WRITE]
            ]
            for number in range(self.retry.max_attempts):
                answer = self.call("batch_write_item", RequestItems={self.table: pending})
                calls += 1
                pending = list(answer.get("UnprocessedItems", {}).get(self.table, []))
                if not pending:
                    break
                self._sleep(self.retry.delay(number, self._rng))
            else:
                raise StoreUnavailableError(
                    f"DynamoDB BatchWriteItem on table {self.table!r}: {len(pending)} items "
                    f"still unprocessed after {self.retry.max_attempts} attempts"
                )
        return calls

    def batch_get(self, keys: Sequence[Item]) -> list[Item]:
        """Strongly consistent reads of many keys, 100 per ``BatchGetItem``."""
        found: list[Item] = []
        for start in range(0, len(keys), MAX_BATCH_GET):
            pending: dict[str, Any] = {
                "Keys": list(keys[start : start + MAX_BATCH_GET]),
                "ConsistentRead": True,
            }
            for number in range(self.retry.max_attempts):
                answer = self.call("batch_get_item", RequestItems={self.table: pending})
                found.extend(answer.get("Responses", {}).get(self.table, []))
                leftover = answer.get("UnprocessedKeys", {}).get(self.table)
                if not leftover or not leftover.get("Keys"):
                    break
                pending = leftover
                self._sleep(self.retry.delay(number, self._rng))
            else:
                raise StoreUnavailableError(
                    f"DynamoDB BatchGetItem on table {self.table!r}: keys still "
                    f"unprocessed after {self.retry.max_attempts} attempts"
                )
        return found

    def query(self, *, limit: int | None = None, **kwargs: Any) -> Iterator[Item]:
        """Every item of a Query (following LastEvaluatedKey), at most ``limit``."""
        yield from self._paged("query", limit, kwargs)

    def _paged(self, operation: str, limit: int | None, kwargs: dict[str, Any]) -> Iterator[Item]:
        seen = 0
        request = {"TableName": self.table, **kwargs}
        while True:
            answer = self.call(operation, **request)
            for item in answer.get("Items", []):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last


def _retryable(exc: Exception) -> bool:
    response: dict[str, Any] = getattr(exc, "response", {})
    code = response.get("Error", {}).get("Code", "")
    if code in THROTTLING_CODES:
        return True
    if code == "TransactionCanceledException":
        codes = {r.get("Code") for r in response.get("CancellationReasons", [])}
        return "ConditionalCheckFailed" not in codes and bool(codes & RETRYABLE_CANCEL_REASONS)
    return False
