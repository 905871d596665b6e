"""When a lease's owner is known to be dead (so a crashed submit's intent is taken at
once), and every case where it is not known (so the lease is honoured)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from batchfsm.jobs.owners import owner_is_gone
from batchfsm.tracker import default_owner

HOST = socket.gethostname()


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_of_this_host_that_exited_is_gone() -> None:
    assert owner_is_gone(f"{HOST}:{a_dead_pid()}:1a2b3c4d")


def test_this_process_is_not_gone() -> None:
    assert not owner_is_gone(default_owner())


def test_a_live_process_of_this_host_is_not_gone() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            assert not owner_is_gone(f"{HOST}:{child.pid}:1a2b3c4d")
        finally:
            child.kill()


@pytest.mark.parametrize(
    "owner",
    [
        None,
        "",
        "poller-a",  # a name given by hand
        f"another-{HOST}:{{pid}}:1a2b3c4d",  # another host: its processes are not ours to see
        f"{HOST}:not-a-pid:1a2b3c4d",
        f"{HOST}:0:1a2b3c4d",
        f"{HOST}:{{pid}}",  # not host:pid:random
    ],
)
def test_anything_else_is_not_known_to_be_gone(owner: str | None) -> None:
    if owner is not None:
        owner = owner.replace("{pid}", str(a_dead_pid()))
    assert not owner_is_gone(owner)


def test_default_owner_has_the_shape_the_check_reads() -> None:
    host, pid, random = default_owner().rsplit(":", 2)
    assert (host, int(pid), len(random)) == (HOST, os.getpid(), 8)
