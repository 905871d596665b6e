"""What a command says when the quiet answer would mislead: requests another process
still holds, a store with nothing in it.

Each function reads the store and returns one line for stderr, or None when there is
nothing to say.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from batchfsm.cli.output import plural

if TYPE_CHECKING:
    from batchfsm.ledger.records import SubmitIntent
    from batchfsm.ports import JobStore
    from batchfsm.wiring import Runtime

__all__ = ["describe_owner", "held_intents", "nothing_tracked"]


def describe_owner(owner: str | None) -> str:
    """``"process 4242 on this host, still running"`` and the like, from a lease owner
    id (``host:pid:random``)."""
    from batchfsm.jobs.owners import owner_is_gone

    if not owner:
        return "an earlier run"
    rest, _, _random = owner.rpartition(":")
    host, _, pid = rest.rpartition(":")
    if not host or not pid.isdigit():
        return f"owner {owner}"
    if host != socket.gethostname():
        return f"process {pid} on host {host}"
    if int(pid) == os.getpid():
        return "this process"
    state = "gone" if owner_is_gone(owner) else "still running"
    return f"process {pid} on this host, {state}"


def held_intents(runtime: Runtime, *, job_id: str, open_ids: list[str]) -> str | None:
    """The requests of ``job_id`` that open intents of *another* process hold, until
    when, and how to change that; None when nothing is held."""
    from batchfsm.jobs.intents import lease_ends

    if not open_ids:
        return None
    lease = runtime.settings.lease_seconds
    wanted = set(open_ids)
    held = [i for i in runtime.store.list_intents(job_id) if i.intent_id in wanted]
    if not held:
        return None
    until = max(lease_ends(i, lease) for i in held)
    requests = sum(len(i.custom_ids) for i in held)
    return (
        f"{plural(requests, 'request')} of this job are held by {_owners(held)} until "
        f"{until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({_left(until, runtime)}): it may "
        "still be sending them. They go out once it finishes or its lease ends: then run "
        "this command again or `batchfsm poll`, which take them over. A lease lasts "
        f"BATCHFSM_LEASE_SECONDS (now {lease:g} s; lease_seconds in batchfsm.toml)."
    )


def _owners(intents: list[SubmitIntent]) -> str:
    owners = sorted({describe_owner(i.lease_owner) for i in intents})
    return owners[0] if len(owners) == 1 else "; ".join(owners)


def _left(until: datetime, runtime: Runtime) -> str:
    seconds = max(0, int((until - runtime.tracker.clock.now()).total_seconds()))
    return f"in {seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"in {seconds} s"


def nothing_tracked(store: JobStore) -> str | None:
    """Why a poll found nothing to do: the store is empty (which store), or every batch
    in it has ended. None when it does hold batches that need polling."""
    batches = store.list_batches()
    if not batches:
        return (
            f"nothing to poll: the store {_where(store.url)} tracks no batch. Submit a file first "
            "(`batchfsm submit FILE --endpoint E`), or name the store that holds your "
            "batches with --store URL or BATCHFSM_STORE."
        )
    if any(not b.terminal or b.pending_effects for b in batches):
        return None
    return (
        f"nothing left to poll: all {plural(len(batches), 'batch')} in {_where(store.url)} "
        "have ended."
    )


def _where(url: str) -> str:
    """A store URL, with the file it means when it is a relative SQLite path."""
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and not path.startswith("/") and path != url:
        return f"{url} ({os.path.abspath(path)})"
    return url
