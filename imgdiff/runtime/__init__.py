"""The runtime view: which processes run, and exactly which files each one uses.

`Snapshot.capture()` reads /proc (see `_procfs`, the only module that parses it);
`stale()` tells which processes still use code or configuration that changed on disk.

Names load on first use: `_procfs` alone (what `imgdiff stale` needs to see that no
process runs in a root) must not pull in the record classes and the loaders.
"""

from __future__ import annotations

from imgdiff._lazy import install
from imgdiff.errors import AccessDenied, NoSuchProcess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from imgdiff.runtime.snapshot import FileUse, Gap, Process, Snapshot
    from imgdiff.runtime.stale import stale

_LAZY = {
    "FileUse": "imgdiff.runtime.snapshot",
    "Gap": "imgdiff.runtime.snapshot",
    "Process": "imgdiff.runtime.snapshot",
    "Snapshot": "imgdiff.runtime.snapshot",
    "stale": "imgdiff.runtime.stale",
}


__getattr__ = install(__name__, _LAZY)

__all__ = [
    "AccessDenied",
    "FileUse",
    "Gap",
    "NoSuchProcess",
    "Process",
    "Snapshot",
    "stale",
]
