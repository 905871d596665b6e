"""The DynamoDB store's webhook primitives: receipts and wait tokens, one item each.

A mixin of :class:`~batchfsm.persistence.dynamodb.store.DynamoDBJobStore`::

    item              pk                 sk    attributes
    webhook receipt   W#<webhook-id>     #     data, expires_at (TTL: 7 days)
    wait token        T#<scope>          #     token, expires_at (TTL: 2 days)

Recording a receipt is one ``PutItem`` conditional on the key being absent (or its TTL
past: DynamoDB deletes expired items late), so of two Lambda containers receiving the
same delivery exactly one wins. Taking a token is one ``UpdateItem`` that removes the
attribute on condition it exists and returns the old value: atomic, and it needs no
``DeleteItem`` permission (the functions' policies grant Put, Update and Get only).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchfsm.errors import StoreError
from batchfsm.persistence.dynamodb import layout as L

if TYPE_CHECKING:
    from batchfsm.persistence.dynamodb.calls import DynamoCalls

__all__ = ["TOKEN_TTL_SECONDS", "DynamoReceipts", "receipt_key", "token_key"]

TOKEN_TTL_SECONDS = 2 * 86400
"""A wait token outlives any wait: the state machine's fallback poll comes within 30 min."""


class _Collision(StoreError):
    """The condition failed: the receipt exists, or there is no token to take."""


def receipt_key(event_id: str) -> L.Item:
    return {L.PK: L.s(f"W#{event_id}"), L.SK: L.s(L.RECORD_SK)}


def token_key(scope: str) -> L.Item:
    return {L.PK: L.s(f"T#{scope}"), L.SK: L.s(L.RECORD_SK)}


class DynamoReceipts:
    """The four webhook primitives on the store's calls (``_open``), clock and TTL."""

    table: str

    @abstractmethod
    def _open(self) -> DynamoCalls: ...

    @abstractmethod
    def _now(self) -> int: ...

    @abstractmethod
    def _live(self, item: Mapping[str, Any]) -> bool: ...

    def _insert_receipt(self, event_id: str, data: str, expires_at: datetime) -> bool:
        item = {
            **receipt_key(event_id),
            "data": L.s(data),
            L.TTL_ATTRIBUTE: L.n(int(expires_at.timestamp())),
        }
        put = L.with_condition(
            {"TableName": self.table, "Item": item},
            "attribute_not_exists(#pk) OR (attribute_exists(#exp) AND #exp <= :now)",
            {"#pk": L.PK, "#exp": L.TTL_ATTRIBUTE},
            {":now": L.n(self._now())},
        )
        try:
            self._open().call("put_item", lambda _old, _i: _Collision(event_id), **put)
        except _Collision:
            return False
        return True

    def _get_receipt(self, event_id: str) -> str | None:
        answer = self._open().call(
            "get_item", TableName=self.table, Key=receipt_key(event_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return str(item["data"]["S"]) if item and self._live(item) else None

    def _put_token(self, scope: str, token: str) -> None:
        item = {
            **token_key(scope),
            "token": L.s(token),
            L.TTL_ATTRIBUTE: L.n(self._now() + TOKEN_TTL_SECONDS),
        }
        self._open().call("put_item", TableName=self.table, Item=item)

    def _take_token(self, scope: str) -> str | None:
        try:
            answer = self._open().call(
                "update_item",
                lambda _old, _i: _Collision(scope),
                TableName=self.table,
                Key=token_key(scope),
                UpdateExpression="REMOVE #t",
                ConditionExpression="attribute_exists(#t) AND #exp > :now",
                ExpressionAttributeNames={"#t": "token", "#exp": L.TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": L.n(self._now())},
                ReturnValues="ALL_OLD",
            )
        except _Collision:
            return None
        old = answer.get("Attributes", {})
        return str(old["token"]["S"]) if "token" in old else None
