"""The enqueued-token budgets of every store: one conditional record per model.

:class:`~batchfsm.ledger.budget.TokenBudget` is written like every other record: read,
change, write only if the stored version is the one read (insert when 0), else
:class:`~batchfsm.errors.StaleJobError`. A backend writes two primitives, a read and a
conditional put; this mixin of :class:`~batchfsm.persistence.base.BaseJobStore` does
the versioning and the encoding once, for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import ValidationError

from batchfsm.errors import StoreError
from batchfsm.ledger.budget import TokenBudget

__all__ = ["TokenBudgets"]


class TokenBudgets(ABC):
    """``load_budget`` / ``save_budget`` over ``_get_budget`` / ``_put_budget``."""

    url: str = ""

    @abstractmethod
    def _get_budget(self, model: str) -> tuple[int, str] | None:
        """The stored (version, JSON) of ``model``'s budget, or None."""

    @abstractmethod
    def _put_budget(self, model: str, data: str, *, version: int, expected_version: int) -> None:
        """Insert (``expected_version`` 0, must be absent) or replace if the stored
        version equals it; StaleJobError otherwise, nothing written."""

    def load_budget(self, model: str) -> TokenBudget:
        """``model``'s budget as stored (version 0 and empty if never written)."""
        found = self._get_budget(model)
        if found is None:
            return TokenBudget(model=model)
        version, data = found
        try:
            budget = TokenBudget.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(f"{self.url}: the token budget of {model} is unreadable") from exc
        return budget.model_copy(update={"version": version})

    def save_budget(self, budget: TokenBudget) -> TokenBudget:
        """Write ``budget`` if the stored version is still ``budget.version``; returns it
        at version + 1. :raises StaleJobError: someone wrote it since."""
        stored = budget.model_copy(update={"version": budget.version + 1})
        self._put_budget(
            budget.model,
            stored.model_dump_json(),
            version=stored.version,
            expected_version=budget.version,
        )
        return stored
