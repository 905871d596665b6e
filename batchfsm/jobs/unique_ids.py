"""Finding a repeated ``custom_id`` in a file of millions of lines, in 8 bytes a line.

A set of the ids themselves would hold every id as a Python string (about 100 bytes
each: 100 MB for a million-request file), the one thing that grew with the file while
everything else is read a chunk at a time. :class:`IdDigests` keeps an 8-byte digest
of each id instead, spread over 256 compact arrays; :meth:`IdDigests.repeats` finds the
digests seen twice one array at a time. Two different ids that share a digest (for a
million ids, about 3 chances in 100 million) are told apart by :func:`first_repeat`,
which reads the file once more comparing the ids themselves, so the verdict is exact:
the check never refuses a good file nor passes a bad one.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable

__all__ = ["IdDigests", "first_repeat"]

_BUCKETS = 256


def digest(custom_id: str) -> int:
    """An 8-byte digest of ``custom_id`` (blake2b: fast, and no chosen-id collisions)."""
    return int.from_bytes(hashlib.blake2b(custom_id.encode(), digest_size=8).digest(), "big")


class IdDigests:
    """The digests of every id seen, 8 bytes each (see the module docstring)."""

    def __init__(self) -> None:
        self._buckets = [array("Q") for _ in range(_BUCKETS)]

    def add(self, custom_id: str) -> None:
        value = digest(custom_id)
        self._buckets[value >> 56].append(value)

    def repeats(self) -> set[int]:
        """Digests seen more than once (usually none)."""
        repeated: set[int] = set()
        for bucket in self._buckets:
            if len(set(bucket)) == len(bucket):
                continue
            seen: set[int] = set()
            for value in bucket:
                if value in seen:
                    repeated.add(value)
                seen.add(value)
        return repeated


def first_repeat(ids: Iterable[tuple[int, str]], suspects: set[int]) -> tuple[int, str, int] | None:
    """The first ``(line, custom_id, first_line)`` whose id appeared on an earlier line,
    looking only at ids whose digest is in ``suspects``; None when the suspects were
    mere digest collisions. ``ids`` yields ``(line, custom_id)`` in file order."""
    first: dict[str, int] = {}
    for number, custom_id in ids:
        if digest(custom_id) not in suspects:
            continue
        if custom_id in first:
            return number, custom_id, first[custom_id]
        first[custom_id] = number
    return None
