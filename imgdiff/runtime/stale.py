"""Processes running code or configuration that is no longer what is on disk.

The needrestart/checkrestart question, answered from a `Snapshot` and the live file
systems: an executable or mapped library deleted or replaced (the inode on disk is not
the inode mapped), a module a traced Python process imported that changed since, a
configuration file held open that was replaced. Every path is looked up inside the
process's own root (its chroot or container), never on the host's tree by the same name:
that is what makes a contained process with an unchanged image come out clean.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from imgdiff._digest import of_fd as _digest_fd
from imgdiff.errors import AccessDenied, NoSuchProcess
from imgdiff.fs.rootfs import RootFS
from imgdiff.results import Reason, StaleProcess, StaleReport
from imgdiff.runtime._procfs import ProcDir, parse_stat
from imgdiff.runtime.snapshot import FileUse, Gap, Process, Snapshot
from imgdiff.trace.importgraph import ProgramGraphs

# pseudo files that look like paths: never "deleted" in a way a restart changes
_PSEUDO = ("/memfd:", "/dev/", "/SYSV", "/proc/", "/sys/", "/anon_hugepage", "/[")
# open files there are run-time state (logs, caches, spools), not code or configuration
_RUNTIME_STATE = ("/var/", "/run/", "/tmp/", "/home/", "/root/", "/srv/", "/mnt/", "/media/")  # noqa: S108 - prefixes compared, nothing created


def recorded_deleted(use: FileUse) -> Reason | None:
    """What a saved snapshot alone says: the kernel marked the file "(deleted)" then."""
    if not use.deleted or use.path.startswith(_PSEUDO) or use.outside_root:
        return None
    if use.via == "open":
        return None  # rotated logs and unlinked temp files are not code
    return Reason(use.path, use.via, "deleted when the snapshot was taken")


def check_use(
    use: FileUse,
    fs: RootFS,
    cache: dict[str, os.stat_result | None],
    same: Callable[[FileUse, os.stat_result], bool] | None = None,
) -> Reason | None:
    """Why the file a process uses is not what is on disk now at its path (inside the
    root `fs`), or None; `cache` holds stat results by path for that root. `same` says
    whether a replaced file still has the same bytes (then nothing changes for the
    process: a package manager rewrites every file of a package it upgrades)."""
    if use.path.startswith(_PSEUDO) or use.outside_root:
        return None
    if use.via == "open" and use.path.startswith(_RUNTIME_STATE):
        return None  # logs, caches, spools: run-time state, not code or configuration
    if use.path in cache:
        st = cache[use.path]
    else:
        st = cache[use.path] = fs.stat(use.path)
    if st is None:
        if use.via == "open":
            return None  # an unlinked temporary file: nothing took its place
        return Reason(use.path, "deleted", "no longer on disk")
    if use.deleted or (st.st_dev, st.st_ino) != (use.dev, use.ino):
        # the kernel marks an unlinked inode "(deleted)"; a new file at the path means the
        # package manager replaced it (write + rename), which is what a restart picks up
        if same is not None and same(use, st):
            return None  # another inode with the very same bytes
        return Reason(use.path, use.via, "replaced on disk")
    if use.via == "imported" and (use.size, use.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return Reason(use.path, "imported", "changed since it was imported")
    return None


_MAX_COMPARE = 1 << 30  # bytes; a larger replaced file counts as changed


class SameBytes:
    """Compares a replaced file a process still holds (through /proc/PID/exe, fd/N or
    map_files/RANGE) with the file now at its path, by digest; digests are kept per
    inode, so a library held by many processes is read once. Anything unreadable counts
    as different."""

    def __init__(self) -> None:
        self.digests: dict[tuple[int, int], str | None] = {}

    def against(self, d: ProcDir, fs: RootFS) -> Callable[[FileUse, os.stat_result], bool]:
        """The comparison for one process (`check_use`'s `same`)."""
        return lambda use, now: self(d, fs, use, now)

    def __call__(self, d: ProcDir, fs: RootFS, use: FileUse, now: os.stat_result) -> bool:
        if use.handle is None:
            return False
        handle = use.handle
        if not stat.S_ISREG(now.st_mode):
            return False  # a FIFO or device took the path: never opened (it could block)
        new = self._digest(
            (now.st_dev, now.st_ino), lambda: fs.open(use.path, os.O_RDONLY | os.O_NONBLOCK)
        )
        old = self._digest((use.dev, use.ino), lambda: d.open_target(handle))
        return old is not None and old == new

    def _digest(self, key: tuple[int, int], opener: Callable[[], int]) -> str | None:
        if key in self.digests:
            return self.digests[key]
        digest = None
        try:
            fd = opener()
        except (OSError, NoSuchProcess, AccessDenied):
            fd = -1
        if fd >= 0:
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_size <= _MAX_COMPARE:
                    found, n = _digest_fd(fd, st.st_size)
                    digest = found if n == st.st_size else None
            except OSError:
                digest = None
            finally:
                os.close(fd)
        self.digests[key] = digest
        return digest


_PYTHON = re.compile(r"^python[0-9.]*$")


def is_python(proc: Process) -> bool:
    """True if the process runs a CPython interpreter (by its executable's name)."""
    return proc.exe is not None and bool(_PYTHON.match(posixpath.basename(proc.exe)))


class _Context:
    """What one stale run shares across processes: stat caches, import graphs, boot time."""

    def __init__(self, procfs: str, clock_ticks: int) -> None:
        self.procfs = procfs
        self.roots: dict[str, dict[str, os.stat_result | None]] = {}  # root → path → stat
        self.graphs = ProgramGraphs()
        self.same = SameBytes()
        self.boot_time = _boot_time(procfs)
        self.ticks = clock_ticks


def _boot_time(procfs: str) -> float:
    try:
        with open(f"{procfs}/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def stale(snapshot: Snapshot, *, procfs: str = "/proc") -> StaleReport:
    """Check every process of a live snapshot against the files now in its root.

    Untraced Python processes are checked through their static import graph: a module
    file whose ctime is later than the process's start changed after it was (probably)
    imported. ctime, not mtime: package managers restore mtimes, never ctimes.
    """
    found: list[StaleProcess] = []
    gaps: list[Gap] = list(snapshot.gaps)
    ctx = _Context(procfs, snapshot.clock_ticks)
    for proc in snapshot.processes:
        try:
            reasons = _process_reasons(proc, ctx)
        except NoSuchProcess:
            continue  # exited since the snapshot: nothing to restart
        except AccessDenied as exc:
            gaps.append(Gap(proc.pid, f"root not readable: {exc}"))
            continue
        if reasons:
            found.append(
                StaleProcess(proc.pid, proc.start_time, proc.unit, proc.comm, proc.exe, reasons)
            )
    return StaleReport(tuple(found), tuple(gaps))


@contextmanager
def live_root(proc: Process, procfs: str = "/proc") -> Iterator[tuple[ProcDir, RootFS]]:
    """The /proc directory and the root of a snapshot's process, while it is still that
    process (`NoSuchProcess` when it exited or its pid was reused since)."""
    with ProcDir(proc.pid, procfs) as d:
        if parse_stat(d.read("stat")).start_time != proc.start_time:
            raise NoSuchProcess(proc.pid, f"{proc.pid}: pid reused")
        root_fd = d.open_root()
        try:
            fs = RootFS(root_fd)  # holds its own copy of the descriptor
        finally:
            os.close(root_fd)
        with fs:
            yield d, fs


def _process_reasons(proc: Process, ctx: _Context) -> tuple[Reason, ...]:
    # processes sharing a root and a mount namespace see the same files
    key = f"{proc.root}\0{proc.mnt_ns}"
    cache = ctx.roots.setdefault(key, {})
    with live_root(proc, ctx.procfs) as (d, fs):
        same = ctx.same.against(d, fs)
        reasons = [r for use in proc.files if (r := check_use(use, fs, cache, same)) is not None]
        if is_python(proc) and not proc.traced:
            reasons += _import_graph_reasons(proc, fs, cache, key, ctx)
    return tuple(dict.fromkeys(reasons))


def _import_graph_reasons(
    proc: Process, fs: RootFS, cache: dict[str, os.stat_result | None], key: str, ctx: _Context
) -> list[Reason]:
    assert proc.exe is not None
    files = ctx.graphs.files(fs, key, proc.cmdline, proc.exe, proc.cwd)
    started = ctx.boot_time + proc.start_time / ctx.ticks
    out = []
    for path in sorted(files):
        if path in cache:
            st = cache[path]
        else:
            st = cache[path] = fs.stat(path)
        if st is None:
            out.append(Reason(path, "import-graph", "imported module no longer on disk"))
        elif st.st_ctime > started + 1:  # a second of slack: ctime and start time granularity
            out.append(Reason(path, "import-graph", "changed after the process started"))
    return out
