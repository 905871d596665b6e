"""Slotted pydantic dataclasses with the ``BaseModel`` calls batchfsm uses.

Records held per tracked batch are slotted dataclasses rather than ``BaseModel``s (see
:class:`SlottedModel` for why); this module gives them ``model_validate``,
``model_dump`` and ``model_copy``, with one ``TypeAdapter`` per class built on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar, Literal, Self

from pydantic import TypeAdapter

__all__ = ["SlottedModel"]


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """One TypeAdapter per class, built on first use (never at import)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


class SlottedModel:
    """The BaseModel calls we use, for slotted pydantic dataclasses.

    Records held per tracked batch are slotted dataclasses rather than ``BaseModel``s:
    a BaseModel keeps a ``__dict__`` and a set of the fields it was given, which made a
    tracked batch cost about 6 KB; slots bring it under 1 KB (see bench/bench_engine.py).
    They are values: never mutate one, derive a new one with :meth:`model_copy`. They
    are not declared frozen only because a frozen dataclass pays a slow
    ``object.__setattr__`` per field, which doubled the cost of applying an observation.
    """

    __slots__ = ()
    _field_names: ClassVar[tuple[str, ...]]

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        result: Self = _adapter(cls).validate_python(data)
        return result

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Self:
        result: Self = _adapter(cls).validate_json(data)
        return result

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] = "python",
        by_alias: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = _adapter(type(self)).dump_python(
            self,
            mode=mode,
            by_alias=by_alias,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        return result

    def model_dump_json(
        self, *, by_alias: bool = False, exclude_defaults: bool = False, exclude_none: bool = False
    ) -> str:
        return (
            _adapter(type(self))
            .dump_json(
                self,
                by_alias=by_alias,
                exclude_defaults=exclude_defaults,
                exclude_none=exclude_none,
            )
            .decode()
        )

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A shallow copy with some fields replaced, without re-validation (trusted
        internal updates only; untrusted data goes through ``model_validate``)."""
        cls = type(self)
        clone = object.__new__(cls)
        names = _NAMES.get(cls) or _names(cls)
        if not update:
            for name in names:
                setattr(clone, name, getattr(self, name))
            return clone
        if not update.keys() <= _NAME_SETS[cls]:
            unknown = sorted(set(update) - _NAME_SETS[cls])
            raise AttributeError(f"{cls.__name__} has no field(s) {unknown}")
        for name in names:  # one setattr per field: the copy is on every apply's path
            setattr(clone, name, update[name] if name in update else getattr(self, name))
        return clone


_NAMES: dict[type[Any], tuple[str, ...]] = {}
_NAME_SETS: dict[type[Any], frozenset[str]] = {}


def _names(cls: type[Any]) -> tuple[str, ...]:
    names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    _NAME_SETS[cls] = frozenset(names)
    return names
