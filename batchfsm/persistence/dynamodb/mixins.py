"""The primitives :class:`~batchfsm.persistence.dynamodb.store.DynamoDBJobStore` mixes
in beside the batch, job and ledger ones: webhook receipts and token budgets."""

from batchfsm.persistence.dynamodb.budgets import DynamoBudgets
from batchfsm.persistence.dynamodb.receipts import DynamoReceipts

__all__ = ["DynamoBudgets", "DynamoReceipts"]
