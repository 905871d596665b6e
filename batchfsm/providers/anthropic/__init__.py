"""Anthropic's Message Batches API as a provider: the same eight states, rulebook,
ledger, outbox and results layout, behind the same gateway port.

* :mod:`~batchfsm.providers.anthropic.mapping`: statuses, timestamps, counts and result
  lines in the engine's terms, as data (pure);
* :mod:`~batchfsm.providers.anthropic.requests`: a request line in Anthropic's shape,
  or an OpenAI ``/v1/chat/completions`` line converted (pure);
* :mod:`~batchfsm.providers.anthropic.gateway`: :class:`AnthropicGateway`, the port on
  the official ``anthropic`` client (an optional extra: ``batchfsm[anthropic]``), with
  its errors in :mod:`~batchfsm.providers.anthropic.calls` and the client built by
  :mod:`~batchfsm.providers.anthropic.client`.

Nothing here imports ``anthropic`` until a gateway or client is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchfsm.providers.anthropic.client import make_anthropic_client
    from batchfsm.providers.anthropic.gateway import AnthropicGateway

__all__ = ["AnthropicGateway", "make_anthropic_client"]

_HOMES = {"AnthropicGateway": "gateway", "make_anthropic_client": "client"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
