"""Processes running code or configuration that is no longer what is on disk.

The needrestart/checkrestart question, answered from a `Snapshot` and the live file
systems: an executable or mapped library deleted or replaced (the inode on disk is not
the inode mapped), a module a traced Python process imported that changed since, a
configuration file held open that was replaced. Every path is looked up inside the
process's own root (its chroot or container), never on the host's tree by the same name:
that is what makes a contained process with an unchanged image come out clean. The
looking is `inspect`'s; this module only says which processes are stale.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from imgdiff.errors import AccessDenied, BadInput, NoSuchProcess
from imgdiff.fs.inputs import fspath
from imgdiff.results import StaleProcess, StaleReport
from imgdiff.runtime import _procfs
from imgdiff.runtime.inspect import Inspector, is_python
from imgdiff.runtime.snapshot import Gap, Snapshot

if TYPE_CHECKING:
    from imgdiff.manifest import Manifest


def stale(
    snapshot: Snapshot,
    *,
    procfs: str | os.PathLike[str] = "/proc",
    against: Manifest | None = None,
    root: str | os.PathLike[str] = "/",
) -> StaleReport:
    """Check every process of a live snapshot against the files now in its root.

    Untraced Python processes are checked through their static import graph: a module
    file whose ctime is later than the process's start changed after it was (probably)
    imported. ctime, not mtime: package managers restore mtimes, never ctimes. Such
    evidence, and a replaced file whose old bytes could not be read, is unconfirmed
    (`Evidence.confirmed`) unless a witness of the old bytes settles it (`settle`):
    `against`, the tree as it was before the update (an image or saved manifest), then
    the state of the last `imgdiff apply` in the root, then CPython's bytecode cache.
    A reason whose bytes are the same is dropped. `root` names the root the snapshot was
    taken for, for the report. `procfs` must be where a proc file system is mounted
    (`BadInput` otherwise: read anywhere else, every process would look clean).
    """
    procfs, root = fspath(procfs), fspath(root)
    if not _procfs.is_procfs(procfs):
        # read elsewhere, every process would look gone since the snapshot: all clear
        raise BadInput(procfs, "not a mounted proc file system")
    found: list[StaleProcess] = []
    gaps: list[Gap] = list(snapshot.gaps)
    inspector = Inspector(procfs, snapshot.clock_ticks, against)
    for proc in snapshot.processes:
        try:
            with inspector.open(proc) as (d, fs):
                reasons = inspector.stale_uses(proc, d, fs)
                if is_python(proc) and not proc.traced:
                    reasons += inspector.stale_imports(proc, fs)
                    if (why := inspector.graph_unknown(proc, fs)) is not None:
                        gaps.append(Gap(proc.pid, why))
        except NoSuchProcess:
            continue  # exited since the snapshot: nothing to restart
        except AccessDenied as exc:
            gaps.append(Gap(proc.pid, f"root not readable: {exc}"))
            continue
        if reasons:
            found.append(
                StaleProcess(
                    proc.pid, proc.start_time, proc.unit, proc.comm, proc.exe,
                    tuple(dict.fromkeys(reasons)),
                )
            )  # fmt: skip
    return StaleReport(
        tuple(found),
        tuple(gaps),
        root,
        len(snapshot.processes),
        against.info.path if against is not None else None,
    )
