"""Provider profiles: the Batch APIs batchfsm drives, and what differs between them.

``--provider`` / ``BATCHFSM_PROVIDER`` (default: detected from ``OPENAI_BASE_URL`` where
the host is unambiguous, else ``openai``) picks one :class:`ProviderProfile`
(:mod:`batchfsm.providers.profiles`): the client it needs
(:func:`~batchfsm.providers.clients.make_client`), its endpoints and limits, whether
its batches expire, its status words and its object's shape
(:mod:`batchfsm.providers.objects`). Profiles are data, read where they matter: the
gateway maps each answer through :meth:`ProviderProfile.read_batch` before the snapshot
is built, the ``watch`` handler asks :attr:`ProviderProfile.expires`, and ``submit``
checks the endpoint and limits. The eight states and the rulebook are the same for all.
"""

from __future__ import annotations

from batchfsm.providers.clients import make_client
from batchfsm.providers.profiles import (
    PROFILES,
    ProviderProfile,
    detect_provider,
    profile_for,
    profile_named,
)

__all__ = [
    "PROFILES",
    "ProviderProfile",
    "detect_provider",
    "make_client",
    "profile_for",
    "profile_named",
]
