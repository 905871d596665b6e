"""The DynamoDB store's token budgets: one item per model, a conditional ``PutItem``.

A mixin of :class:`~batchfsm.persistence.dynamodb.store.DynamoDBJobStore`::

    item           pk           sk    attributes
    token budget   Q#<model>    #     version, data

Read with ``ConsistentRead``; written with ``attribute_not_exists(pk)`` (the first
write) or ``version = :expected``, so two pollers on two hosts never both take the last
room of a model's queue (the loser gets StaleJobError and reads again).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from batchfsm.errors import StaleJobError, StoreError
from batchfsm.persistence.dynamodb import layout as L

if TYPE_CHECKING:
    from batchfsm.persistence.dynamodb.calls import DynamoCalls

__all__ = ["DynamoBudgets", "budget_key"]


def budget_key(model: str) -> L.Item:
    return {L.PK: L.s(f"Q#{model}"), L.SK: L.s(L.RECORD_SK)}


class DynamoBudgets:
    table: str

    @abstractmethod
    def _open(self) -> DynamoCalls: ...

    def _get_budget(self, model: str) -> tuple[int, str] | None:
        answer = self._open().call(
            "get_item", TableName=self.table, Key=budget_key(model), ConsistentRead=True
        )
        item = answer.get("Item")
        return (int(item["version"]["N"]), str(item["data"]["S"])) if item else None

    def _put_budget(self, model: str, data: str, *, version: int, expected_version: int) -> None:
        def conflict(old: Mapping[str, Any] | None, _index: int | None) -> StoreError:
            actual = int(old["version"]["N"]) if old and "version" in old else None
            return StaleJobError(
                model, kind="token budget", expected_version=expected_version, actual_version=actual
            )

        item = {**budget_key(model), "version": L.n(version), "data": L.s(data)}
        if expected_version == 0:
            condition, values = "attribute_not_exists(#pk)", {}
        else:
            condition, values = "#v = :expected", {":expected": L.n(expected_version)}
        names = {"#pk": L.PK} if expected_version == 0 else {"#v": "version"}
        request = L.with_condition(
            {"TableName": self.table, "Item": item}, condition, names, values
        )
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self._open().call("put_item", conflict, **request)
