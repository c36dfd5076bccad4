"""The runtime view: which processes run, and exactly which files each one uses.

`Snapshot.capture()` reads /proc (see `_procfs`, the only module that parses it);
`stale()` tells which processes still use code or configuration that changed on disk.
"""

from imgdiff.errors import AccessDenied, NoSuchProcess
from imgdiff.runtime.snapshot import FileUse, Gap, Process, Snapshot
from imgdiff.runtime.stale import stale

__all__ = [
    "AccessDenied",
    "FileUse",
    "Gap",
    "NoSuchProcess",
    "Process",
    "Snapshot",
    "stale",
]
