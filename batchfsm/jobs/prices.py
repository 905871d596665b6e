"""The price table: USD per 1,000,000 tokens per model, and the batch discount.

One data file, ``batchfsm/jobs/prices.json`` (or the one ``BATCHFSM_PRICES`` names)::

    {"source": "<where the prices were read>", "as_of": "YYYY-MM-DD",
     "batch_discount": 0.5,
     "models": {"<model>": {"input": 2.5, "cached_input": 1.25, "output": 10.0,
                            "cache_write_input": 3.75}}}

``input`` is required; ``output`` may be left out for a model that writes none (an
embedding model): output tokens of such a model are then unpriced, never free.
``cached_input`` (a prompt-cache read) and ``cache_write_input`` (a cache write:
Anthropic bills it above input, OpenAI does not) fall back to ``input``. Prices are the
standard ones; the Batch API bills ``batch_discount`` less. A model is priced by the
longest listed name that equals it or prefixes it before a ``-`` (a dated snapshot
``gpt-4o-mini-2024-07-18`` is ``gpt-4o-mini``); one that matches none is unpriced.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from batchfsm.errors import ConfigError

__all__ = ["PER", "Price", "PriceTable", "load_prices"]

PER = 1_000_000
SHIPPED = "batchfsm/jobs/prices.json"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per :data:`PER` tokens, before the batch discount."""

    input: float
    output: float | None
    cached_input: float | None = None
    cache_write_input: float | None = None


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, Price]
    batch_discount: float
    source: str
    """The file read."""
    as_of: str | None = None
    reference: str | None = None
    """Where the file says its prices come from (its ``source``)."""

    def price_of(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.rsplit("/", 1)[-1]
        matches = [m for m in self.models if name == m or name.startswith(m + "-")]
        return self.models[max(matches, key=len)] if matches else None

    def cost(
        self,
        model: str | None,
        *,
        input_tokens: int,
        cached: int = 0,
        output: int = 0,
        cache_write: int = 0,
    ) -> float | None:
        """USD at batch prices for ``input_tokens`` (of which ``cached`` read from and
        ``cache_write`` written to the prompt cache) and ``output``; None when the model
        has no price, or output tokens have none."""
        price = self.price_of(model)
        if price is None or (output and price.output is None):
            return None
        cached = min(max(cached, 0), input_tokens)
        cache_write = min(max(cache_write, 0), input_tokens - cached)
        fresh = input_tokens - cached - cache_write
        cached_rate = price.input if price.cached_input is None else price.cached_input
        write_rate = price.input if price.cache_write_input is None else price.cache_write_input
        full = fresh * price.input + cached * cached_rate + cache_write * write_rate
        full += output * (price.output or 0.0)
        return full / PER * (1 - self.batch_discount)


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table (the shipped file unless ``path``), read again once the file
    changes. :raises ConfigError: unreadable."""
    if path is None:
        return _load(None, None)
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ConfigError(f"price table {path} is unreadable: {exc}") from exc
    return _load(str(path), (stat.st_mtime_ns, stat.st_size))


def _rate(row: Mapping[str, Any], key: str, *, required: bool = False) -> float | None:
    if key not in row and not required:
        return None
    value = row[key]
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a number >= 0, not {value!r}")
    return float(value)


def _price(row: Any) -> Price:
    if not isinstance(row, Mapping):
        raise TypeError(f"a model's prices must be an object, not {row!r}")
    return Price(
        input=_rate(row, "input", required=True) or 0.0,
        output=_rate(row, "output"),
        cached_input=_rate(row, "cached_input"),
        cache_write_input=_rate(row, "cache_write_input"),
    )


_UNREADABLE = (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError)


@functools.lru_cache(maxsize=8)
def _load(path: str | None, _version: tuple[int, int] | None) -> PriceTable:
    where = path or SHIPPED
    try:
        if path is None:
            raw = resources.files("batchfsm.jobs").joinpath("prices.json").read_bytes()
        else:
            raw = Path(path).read_bytes()
        data = orjson.loads(raw)
        models = {str(name): _price(row) for name, row in data["models"].items()}
        discount = float(data.get("batch_discount", 0.5))
        as_of, reference = data.get("as_of"), data.get("source")
    except (
        OSError,
        orjson.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
    ) as exc:
        raise ConfigError(f"price table {where} is unreadable: {exc}") from exc
    if not 0 <= discount < 1:
        raise ConfigError(f"price table {where}: batch_discount must be in [0, 1)")
    return PriceTable(
        models,
        discount,
        where,
        as_of if isinstance(as_of, str) else None,
        reference if isinstance(reference, str) else None,
    )
