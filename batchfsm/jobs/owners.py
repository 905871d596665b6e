"""Whether the process that holds a lease is known to be dead.

A lease (an open submit intent's ``lease_owner``/``lease_until``) protects work a
process may still be doing: nobody else takes it over before the lease runs out. When
that process crashed, waiting the lease out (300 s by default) only delays a re-run:
``submit`` after a crash would sit there before adopting the batch it had created.

Owner ids are ``host:pid:random`` (:func:`batchfsm.tracker.default_owner`). When the
host is this one and no process with that pid exists, the owner is certainly gone and
its lease can be taken at once. Anything else (another host, a pid that exists, even
one reused by an unrelated process, an id in another shape) is *not known* to be gone,
and the lease is honoured as before: a wrong "gone" could let two processes create the
same batch, a wrong "alive" only costs the wait.

One assumption: a host name names one process table. Containers normally get their own
host name; containers sharing the host's name (``--uts=host``) but not its process table
must not share a store through this check.
"""

from __future__ import annotations

import os
import socket

__all__ = ["owner_is_gone"]


def owner_is_gone(owner: str | None) -> bool:
    """True only when ``owner`` was a process of this host that no longer exists."""
    if not owner:
        return False
    host, sep, _random = owner.rpartition(":")  # host:pid:random, hosts hold no ":"
    host, sep2, pid_text = host.rpartition(":")
    if not (sep and sep2) or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return False
