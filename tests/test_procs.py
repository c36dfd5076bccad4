"""The test helpers' own promise: every process a test starts is gone when it ends."""

from __future__ import annotations

import time
from pathlib import Path

from .procs import children, processes

_FORKS = (
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    time.sleep(600)\n"
    "    os._exit(0)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def test_what_a_started_process_forked_is_killed_with_it() -> None:
    with processes() as procs:
        master = procs.python(_FORKS)
        (worker,) = children(master.pid)
    for _ in range(200):
        if not _alive(worker):
            break
        time.sleep(0.01)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    """Running, or stopped; a zombie waiting for init to reap it is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
