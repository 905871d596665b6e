"""The SQLite store's file on disk: created private, or refused when it must exist.

The file keeps every original request line (which may carry personal data), so it is
created 0600 before SQLite opens it, like the result files; SQLite gives the ``-wal``
and ``-shm`` files it adds the database file's mode. Commands that only read pass
``create=False``: a missing file (a mistyped path, most often) is then reported instead
of being created empty and shown as an empty store.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchfsm.errors import StoreNotInitialisedError, StoreUnavailableError

__all__ = ["ensure_file"]


def ensure_file(path: str, *, create: bool, url: str) -> None:
    """Make sure ``path`` exists before SQLite opens it (``create``), or refuse.

    :raises StoreNotInitialisedError: it is missing and ``create`` is False; nothing,
        not even its folder, is created.
    :raises StoreUnavailableError: it cannot be created (a folder in the way, no
        permission), naming the store.
    """
    file = Path(path)
    if file.exists():
        return
    if not create:
        raise StoreNotInitialisedError(f"the SQLite store {path}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it first, with the same mode
    except OSError as exc:
        raise StoreUnavailableError(f"{url}: could not create the file: {exc}") from exc
