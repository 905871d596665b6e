"""Choosing a store from one URL string.

=====================================  ==============================================
``sqlite:///relative/path.db``         a file relative to the working directory
``sqlite:////absolute/path.db``        an absolute path (four slashes)
``sqlite://:memory:``                  a private in-memory SQLite database
``memory://``                          :class:`MemoryJobStore`, dicts in this process
``dynamodb://TABLE?region=R&...``      :class:`DynamoDBJobStore` (needs ``batchfsm[aws]``)
=====================================  ==============================================

The URL is always the caller's: a command or the Lambda passes
:attr:`Settings.store_url <batchfsm.config.Settings.store_url>` (``--store``, else
``BATCHFSM_STORE``, else ``sqlite:///batchfsm.db``), so the environment is read in one
place and this parser can be tested with plain strings.
"""

from __future__ import annotations

import importlib

from batchfsm.errors import MissingDependencyError, StoreURLError
from batchfsm.ports import JobStore

_SCHEMES = ("sqlite", "memory", "dynamodb")


def open_store(url: str, *, create: bool = True) -> JobStore:
    """The store a URL names.

    Opening does no I/O for the embedded stores: SQLite creates and migrates its file on
    first use. ``create=False`` is for commands that only read: a SQLite file that does
    not exist is then reported (:class:`~batchfsm.errors.StoreNotInitialisedError`)
    rather than created empty, so a mistyped path is not shown as an empty store. An
    unknown scheme or a malformed URL raises StoreURLError naming the URL, with any
    password removed; a ``dynamodb://`` URL without the ``aws`` extra installed raises
    :class:`~batchfsm.errors.MissingDependencyError` saying what to install.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise StoreURLError(f"store URL {redact_url(url)!r} names no known store (use {known})")
    if scheme == "memory":
        if rest.strip("/"):
            raise StoreURLError(f"store URL {redact_url(url)!r}: memory:// takes no path")
        from batchfsm.persistence.memory import MemoryJobStore

        return MemoryJobStore()
    if scheme == "sqlite":
        from batchfsm.persistence.sqlite.store import SQLiteJobStore

        return SQLiteJobStore(sqlite_path(url), create=create)
    # Imported here only: botocore is an optional dependency (batchfsm[aws]).
    require_extra("botocore", extra="aws", purpose="a dynamodb:// store")
    from batchfsm.persistence.dynamodb.store import DynamoDBJobStore

    return DynamoDBJobStore.from_url(url)


def require_extra(module: str, *, extra: str, purpose: str) -> None:
    """Import ``module`` now, or say in one line which extra installs it.

    Checked before the store is built, so a missing extra is the user's setup (exit 2
    at the command line) rather than an ImportError deep inside the first call.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs the {module} package, which is not installed: "
            f"pip install 'batchfsm[{extra}]'",
            missing=module,
            extra=extra,
        ) from None


def sqlite_path(url: str) -> str:
    """The database path in a ``sqlite://`` URL (SQLAlchemy's spelling).

    ``sqlite:///a/b.db`` is relative (``a/b.db``), ``sqlite:////a/b.db`` absolute
    (``/a/b.db``); ``sqlite://:memory:`` and ``sqlite:///:memory:`` are in memory.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep:
        raise StoreURLError(f"store URL {redact_url(url)!r} is not a sqlite:// URL")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise StoreURLError(
            f"store URL {redact_url(url)!r}: a host is not allowed; write sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    path = rest[1:].split("?", 1)[0]
    if not path:
        raise StoreURLError(f"store URL {redact_url(url)!r} names no database file")
    return path


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print or log).

    Plain string surgery rather than ``urlsplit``: it must work on URLs too broken to
    parse, since those are exactly the ones that end up in error messages.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}{tail}"
