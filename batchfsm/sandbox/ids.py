"""Object ids in OpenAI's spellings, drawn from a seeded generator so runs repeat."""

from __future__ import annotations

import random
import string

__all__ = ["new_id"]

_ALPHABET = string.ascii_letters + string.digits


def new_id(rng: random.Random, prefix: str, length: int = 24) -> str:
    """``prefix`` + ``length`` alphanumerics, e.g. ``batch_6f2...`` or ``file-Ab3...``."""
    return prefix + "".join(rng.choices(_ALPHABET, k=length))
