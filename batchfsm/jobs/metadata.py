"""Batch metadata: the user's pairs and the two batchfsm adds.

Every batch carries ``batchfsm_job`` and ``batchfsm_intent`` in its metadata, so a
crash between ``create`` and our own write is reconciled by finding the batch that
carries the intent id. The API allows 16 pairs (keys up to 64 characters, values up to
512: https://platform.openai.com/docs/api-reference/batch/create), so the user keeps 14.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchfsm.errors import InputFileError
from batchfsm.ledger.records import INTENT_KEY

__all__ = ["INTENT_KEY", "JOB_KEY", "MAX_KEY_CHARS", "MAX_VALUE_CHARS", "check_metadata"]

JOB_KEY = "batchfsm_job"
RESERVED_KEYS = frozenset({JOB_KEY, INTENT_KEY})
MAX_METADATA_PAIRS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The user's batch metadata, checked against the API's limits *including* the two
    pairs batchfsm adds (so at most 14 of the user's own)."""
    for key, value in metadata.items():
        where = f"metadata.{key}"
        if key in RESERVED_KEYS:
            raise InputFileError(f"{key!r} is reserved for batchfsm", field=where)
        if not key or len(key) > MAX_KEY_CHARS:
            raise InputFileError(f"keys must be 1-{MAX_KEY_CHARS} characters", field=where)
        if len(value) > MAX_VALUE_CHARS:
            raise InputFileError(
                f"value is {len(value)} characters, over the limit of {MAX_VALUE_CHARS}",
                field=where,
            )
    room = MAX_METADATA_PAIRS - len(RESERVED_KEYS)
    if len(metadata) > room:
        raise InputFileError(
            f"{len(metadata)} metadata pairs given; the API allows {MAX_METADATA_PAIRS} and "
            f"batchfsm uses {len(RESERVED_KEYS)}, so at most {room}",
            field="metadata",
        )
    return dict(metadata)
