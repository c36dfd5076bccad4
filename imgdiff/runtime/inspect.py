"""One inspection of live processes, shared by `stale` and `impact`.

This module owns reading a snapshot's processes where they run: each one's root opened
through `/proc/PID/root` (`live_root`), and per root and mount namespace the caches every
question shares (`Inspector`: stat results, static import graphs, ELF closures, digests
of replaced files, the boot time). It answers "is what this process uses still what is
on disk?" as `Evidence` with status `stale`. It knows nothing of images or deltas (that
join is `impact`'s) and decides nothing.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import attrs

from imgdiff.errors import AccessDenied, NoSuchProcess
from imgdiff.fs.rootfs import RootFS
from imgdiff.model import Via
from imgdiff.results import Evidence
from imgdiff.runtime._procfs import ProcDir, boot_time, parse_stat, read_environ
from imgdiff.runtime.settle import (
    CHANGED,
    Answer,
    Applied,
    by_apply,
    by_bytecode,
    by_image,
    in_image,
    read_applied,
)
from imgdiff.runtime.snapshot import FileUse, Process

if TYPE_CHECKING:
    # the loaders are imported where used: most processes are not Python, and only `impact`
    # asks for ELF closures (`imgdiff stale` of a thousand C processes never loads them)
    from imgdiff.loaders.elf import ElfClosure, FactsCache, LoaderConfig
    from imgdiff.loaders.python import ImportGraph, ProgramGraphs
    from imgdiff.manifest import Manifest

# pseudo files that look like paths: never "deleted" in a way a restart changes
_PSEUDO = ("/memfd:", "/dev/", "/SYSV", "/proc/", "/sys/", "/anon_hugepage", "/[")


def is_pseudo(path: str) -> bool:
    """Whether a path the kernel names is no file of the root (a memfd, an anonymous or
    System V mapping, a device): nothing a package installs, so nothing an update moves."""
    return path.startswith(_PSEUDO)


# open files there are run-time state (logs, caches, spools), not code or configuration
_RUNTIME_STATE = ("/var/", "/run/", "/tmp/", "/home/", "/root/", "/srv/", "/mnt/", "/media/")  # noqa: S108 - prefixes compared, nothing created
STALE = "stale"  # the status of evidence that the live file is not the one in use


def _stale(path: str, via: str, detail: str, confirmed: bool = True) -> Evidence:
    return Evidence(path, Via(via), STALE, "", detail, confirmed)


def recorded_deleted(use: FileUse) -> Evidence | None:
    """What a saved snapshot alone says: the kernel marked the file "(deleted)" then, and
    the file at its path had other bytes or none (confirmed), or was not compared."""
    if not use.deleted or use.path.startswith(_PSEUDO) or use.outside_root:
        return None
    if use.via == "open":
        return None  # rotated logs and unlinked temp files are not code
    if use.same_bytes:
        return None  # rewritten with the very same bytes: nothing to restart for
    if use.same_bytes is None:
        detail = "deleted or replaced when the snapshot was taken (bytes not compared)"
        return _stale(use.path, use.via, detail, False)
    return _stale(use.path, use.via, "deleted or replaced when the snapshot was taken")


def check_use(
    use: FileUse,
    fs: RootFS,
    cache: dict[str, os.stat_result | None],
    same: Callable[[FileUse, os.stat_result], bool | None] | None = None,
) -> Evidence | None:
    """Why the file a process uses is not what is on disk now at its path (inside the
    root `fs`), or None; `cache` holds stat results by path for that root. `same` says
    whether a replaced file still has the same bytes (then nothing changes for the
    process: a package manager rewrites every file of a package it upgrades), or None
    when it cannot tell: the evidence is then unconfirmed."""
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
        return _stale(use.path, Via.DELETED, "no longer on disk")
    if use.deleted or (st.st_dev, st.st_ino) != (use.dev, use.ino):
        # the kernel marks an unlinked inode "(deleted)"; a new file at the path means the
        # package manager replaced it (write + rename), which is what a restart picks up
        answer = same(use, st) if same is not None else None
        if answer is None and use.size is not None and use.size != st.st_size:
            answer = False  # a traced import recorded its size: another size, other bytes
        if answer:
            return None  # another inode with the very same bytes
        if answer is None:
            return _stale(use.path, use.via, "replaced on disk (bytes not compared)", False)
        return _stale(use.path, use.via, "replaced on disk")
    if use.via == "imported" and (use.size, use.mtime_ns) != (st.st_size, st.st_mtime_ns):
        # another size is other bytes; another mtime alone may be a same-bytes rewrite
        return _stale(
            use.path, Via.IMPORTED, "changed since it was imported", use.size != st.st_size
        )
    return None


_MAX_COMPARE = 1 << 30  # bytes; a larger replaced file counts as changed


# said of a module an import graph reaches only through imports inside functions
DEFERRED_UNCERTAIN = (
    "(uncertain: reached only through imports inside functions, which may not have run)"
)


class SameBytes:
    """Compares a replaced file a process still holds (through /proc/PID/exe, fd/N or
    map_files/RANGE) with the file now at its path, by digest; digests are kept per
    inode, so a library held by many processes is read once. Anything unreadable leaves
    the answer unknown (the evidence stays, unconfirmed)."""

    def __init__(self) -> None:
        self.digests: dict[tuple[int, int], str | None] = {}

    def against(self, d: ProcDir, fs: RootFS) -> Callable[[FileUse, os.stat_result], bool | None]:
        """The comparison for one process (`check_use`'s `same`)."""
        return lambda use, now: self(d, fs, use, now)

    def __call__(self, d: ProcDir, fs: RootFS, use: FileUse, now: os.stat_result) -> bool | None:
        """True: the same bytes; False: other bytes; None: either side unreadable."""
        if not stat.S_ISREG(now.st_mode):
            return False  # a FIFO or device took the path: never opened (it could block)
        if use.handle is None:
            return None
        handle = use.handle
        new = self.now(fs, use.path, now)
        old = self._digest((use.dev, use.ino), lambda: d.open_target(handle))
        if old is None or new is None:
            return None
        return old == new

    def now(self, fs: RootFS, path: str, st: os.stat_result) -> str | None:
        """The digest of the file at `path` in `fs` now (`st`: its status), or None."""
        if not stat.S_ISREG(st.st_mode):
            return None
        return self._digest(
            (st.st_dev, st.st_ino), lambda: fs.open(path, os.O_RDONLY | os.O_NONBLOCK)
        )

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
                    from imgdiff._digest import of_fd

                    found, n = of_fd(fd, st.st_size)
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


@contextmanager
def live_root(proc: Process, procfs: str = "/proc") -> Iterator[tuple[ProcDir, RootFS]]:
    """The /proc directory and the root of a snapshot's process, while it is still that
    process (`NoSuchProcess` when it exited or its pid was reused since)."""
    with ProcDir(proc.pid, procfs) as d:
        if parse_stat(d.read("stat")).start_time != proc.start_time:
            raise NoSuchProcess(proc.pid, f"{proc.pid}: pid reused")
        with process_root(d) as fs:
            yield d, fs


def process_root(d: ProcDir) -> RootFS:
    """The root of the process `d` reads, as a `RootFS` (closed by the caller)."""
    root_fd = d.open_root()
    try:
        return RootFS(root_fd)  # holds its own copy of the descriptor
    finally:
        os.close(root_fd)


Space = tuple[str, str | None]  # (root, mount namespace): processes that see the same files


class Inspector:
    """What one run shares across the processes it looks into: stat results per space,
    import graphs, ELF closures and loader configurations, digests of replaced files."""

    def __init__(
        self, procfs: str = "/proc", clock_ticks: int = 100, against: Manifest | None = None
    ) -> None:
        self.procfs = procfs
        self.ticks = clock_ticks
        self.stats: dict[Space, dict[str, os.stat_result | None]] = {}
        self.same = SameBytes()
        self.loaders: dict[Space, LoaderConfig] = {}
        self.closures: dict[tuple[Space, str], ElfClosure] = {}
        self._boot_time: float | None = None
        self.against = against  # the tree as it was before the update, when known
        self.applied: dict[Space, Applied | None] = {}
        # per space and path: the symlinks on its way, and when each last changed
        self.links: dict[Space, dict[str, list[tuple[str, float]]]] = {}
        # per process: may it write its bytecode cache (settle asks once per question)
        self.writers: dict[tuple[int, int], bool] = {}
        # per space, program and PATH: why a bare argv[0] leaves the interpreter unknown
        self.searched: dict[tuple[object, ...], str | None] = {}

    @functools.cached_property
    def graphs(self) -> ProgramGraphs:
        """Static import graphs of Python programs, per space and command line."""
        from imgdiff.loaders.python import ProgramGraphs

        return ProgramGraphs()

    @functools.cached_property
    def facts(self) -> FactsCache:
        """What each ELF file says (needed, soname, ...), by identity."""
        from imgdiff.loaders.elf import FactsCache

        return FactsCache()

    def open(self, proc: Process) -> AbstractContextManager[tuple[ProcDir, RootFS]]:
        """The process's /proc directory and root (`live_root`)."""
        return live_root(proc, self.procfs)

    def stat(self, space: Space, fs: RootFS, path: str) -> os.stat_result | None:
        """`fs.stat(path)`, once per space."""
        cache = self.stats.setdefault(space, {})
        if path not in cache:
            cache[path] = fs.stat(path)
        return cache[path]

    def stale_uses(self, proc: Process, d: ProcDir, fs: RootFS) -> list[Evidence]:
        """Each file the process maps or holds that is no longer the one at its path
        (evidence resting on an identity alone settled by the witnesses, `settle`)."""
        cache = self.stats.setdefault(_space(proc), {})
        same = self.same.against(d, fs)
        found = [e for use in proc.files if (e := check_use(use, fs, cache, same)) is not None]
        return self.settle(proc, fs, found)

    def started(self, proc: Process) -> float:
        """When the process started, in seconds since the epoch (to the second)."""
        if self._boot_time is None:
            self._boot_time = boot_time(self.procfs)
        return self._boot_time + proc.start_time / self.ticks

    def settle(
        self, proc: Process, fs: RootFS, found: list[Evidence], version: str | None = None
    ) -> list[Evidence]:
        """Unconfirmed evidence asked of the witnesses of the old bytes, in order (the
        image before the update, the state of the last apply, the bytecode cache): same
        bytes drop it, other bytes confirm it, no answer leaves it unconfirmed. `version`
        is the process's Python ("3.11"), for its bytecode cache."""
        if all(e.confirmed for e in found):
            return found
        space = _space(proc)
        if self.against is not None:
            real = (in_image(self.against, e.path) for e in found if not e.confirmed)
            known = self.against.entries
            self.against.fill_digests([p for p in real if p is not None and p in known])
        if space not in self.applied:
            self.applied[space] = read_applied(fs)
        applied = self.applied[space]
        started = self.started(proc)
        writer = proc.uid if self._writes_bytecode(proc) else None
        out = []
        for e in found:
            st = None if e.confirmed else self.stat(space, fs, e.path)
            if e.confirmed or st is None:
                out.append(e)
                continue
            answer, witness = self._ask(fs, e.path, st, started, applied, version, writer)
            if answer == CHANGED:
                out.append(attrs.evolve(e, detail=witness, confirmed=True))
            elif answer is None:
                out.append(e)
        return out

    def _ask(
        self,
        fs: RootFS,
        path: str,
        st: os.stat_result,
        started: float,
        applied: Applied | None,
        version: str | None,
        writer: int | None,
    ) -> tuple[Answer, str]:
        if self.against is not None:
            answer = by_image(self.against, path, lambda: self.same.now(fs, path, st))
            if answer is not None:
                return answer, "bytes differ from the image before the update"
        if applied is not None:
            answer = by_apply(applied, path, st, started)
            if answer is not None:
                return answer, "bytes changed by the last imgdiff apply"
        return by_bytecode(fs, path, st, started, version, writer), ""

    def _writes_bytecode(self, proc: Process) -> bool:
        """Whether the process may write its bytecode cache where the sources are: no -B,
        no cache prefix, and (its environment read, never used) no PYTHONDONTWRITEBYTECODE
        or PYTHONPYCACHEPREFIX. Unknown counts as no."""
        known = self.writers.get(proc.key)
        if known is None:
            known = self.writers[proc.key] = self._may_write_bytecode(proc)
        return known

    def _may_write_bytecode(self, proc: Process) -> bool:
        from imgdiff.loaders.python.cmdline import parse_cmdline

        invocation = parse_cmdline(proc.cmdline)
        if invocation.no_bytecode_writes:
            return False
        if invocation.ignore_environment:
            return True
        environ = read_environ(proc.pid, self.procfs)
        if environ is None:
            return False
        said = (b"PYTHONDONTWRITEBYTECODE", b"PYTHONPYCACHEPREFIX")
        return not any(value and name in said for name, value in environ)

    def graph(self, proc: Process, fs: RootFS) -> ImportGraph:
        """The static import graph of a Python process's program (`proc.exe` set)."""
        assert proc.exe is not None
        return self.graphs.graph(fs, _space(proc), proc.cmdline, proc.exe, proc.cwd)

    def graph_unknown(self, proc: Process, fs: RootFS) -> str | None:
        """Why the static import graph of an untraced Python process could not be
        computed (its imports are then unknown, never clean), or None."""
        graph = self.graph(proc, fs)
        why = graph.unknown
        if why is None and graph.searched is not None:
            why = self._searched(proc, fs, graph.searched)
        return None if why is None else f"import graph not computed: {why}"

    def _searched(self, proc: Process, fs: RootFS, name: str) -> str | None:
        """Why the interpreter started by the bare name `name` (a PATH search) may not be
        the one its executable says: a venv's `bin/python3` links to the base interpreter,
        so /proc/PID/exe cannot tell them apart. The process's PATH is only looked at,
        to widen the answer to unknown, never to pick a sys.path: each of its directories
        holding `name` that leads to the same executable from inside a venv makes the
        interpreter unknown; an unreadable environment too."""
        assert proc.exe is not None
        environ = read_environ(proc.pid, self.procfs)
        if environ is None:
            return (
                f"started as {name!r} through PATH, its environment not readable:"
                " which interpreter (a venv's?) is unknown"
            )
        values = [v for n, v in environ if n == b"PATH"] or [_DEFAULT_PATH]
        key = (_space(proc), proc.exe, name, tuple(values), proc.cwd)
        if key not in self.searched:
            self.searched[key] = _venv_on_path(fs, proc, name, values)
        return self.searched[key]

    def stale_imports(self, proc: Process, fs: RootFS) -> list[Evidence]:
        """Modules an untraced Python process's import graph reaches that are gone or
        changed after it started. ctime, not mtime: package managers restore mtimes,
        never ctimes."""
        started = self.started(proc)
        space = _space(proc)
        graph = self.graph(proc, fs)
        out = []
        for path in sorted(graph.files):
            st = self.stat(space, fs, path)
            # reached only through imports inside functions: it may never have been loaded
            maybe = f" {DEFERRED_UNCERTAIN}" if graph.uncertain(path) else ""
            if st is None:
                why = f"imported module no longer on disk{maybe}"
                out.append(_stale(path, Via.IMPORT_GRAPH, why))
            elif st.st_ctime > started + 1:  # a second of slack: ctime and start granularity
                # a ctime says the file was written, not that its bytes changed
                why = f"changed after the process started{maybe}"
                out.append(_stale(path, Via.IMPORT_GRAPH, why, False))
            elif (link := self._link_since(space, fs, path, started)) is not None:
                # a release switched by a symlink (current -> v2): the files it leads to now
                # may all be older than the process, which read the ones it led to then
                why = f"the symlink {link} on its path changed after the process started{maybe}"
                out.append(_stale(path, Via.IMPORT_GRAPH, why, False))
        return self.settle(proc, fs, out, graph.version)

    def _link_since(self, space: Space, fs: RootFS, path: str, started: float) -> str | None:
        """A symlink on the way to `path` made or replaced after `started`, or None (the
        symlinks of each directory are looked up once per space)."""
        cache = self.links.setdefault(space, {})
        head = path.rpartition("/")[0] or "/"
        if head not in cache:
            cache[head] = [(link, st.st_ctime) for link, st in fs.links_on(head)]
        if path not in cache:
            st = fs.lstat(path)
            is_link = st is not None and stat.S_ISLNK(st.st_mode)
            cache[path] = [(path, st.st_ctime)] if st is not None and is_link else []
        return next(
            (link for link, ctime in cache[head] + cache[path] if ctime > started + 1), None
        )

    def closure(self, proc: Process, fs: RootFS) -> ElfClosure:
        """The ELF closure of the process's executable (`proc.exe` set), inside its root."""
        assert proc.exe is not None
        space = _space(proc)
        key = (space, proc.exe)
        if key not in self.closures:
            from imgdiff.loaders.elf import elf_closure, load_loader_config

            if space not in self.loaders:
                self.loaders[space] = load_loader_config(fs)
            self.closures[key] = elf_closure(fs, proc.exe, self.loaders[space], cache=self.facts)
        return self.closures[key]


_DEFAULT_PATH = b"/bin:/usr/bin"  # glibc's execvp search without PATH (_CS_PATH)
_MAX_PATH_DIRS = 64


def _venv_on_path(fs: RootFS, proc: Process, name: str, values: list[bytes]) -> str | None:
    """A venv interpreter named `name` in one of the PATH `values` that leads to the
    process's executable (why its sys.path is unknown), or None."""
    from imgdiff.loaders.python import find_interpreter

    assert proc.exe is not None
    real = fs.realpath(proc.exe)
    dirs = [d for v in values for d in os.fsdecode(v).split(":")][:_MAX_PATH_DIRS]
    for entry in dirs:
        if not entry.startswith("/") and (proc.cwd is None or not proc.cwd.startswith("/")):
            return f"started as {name!r} through a PATH with a relative entry {entry!r}"
        candidate = posixpath.normpath(posixpath.join(proc.cwd or "/", entry, name))
        if fs.stat(candidate) is None or fs.realpath(candidate) != real:
            continue
        venv = find_interpreter(fs, candidate).venv
        if venv is not None:
            return (
                f"started as {name!r} through PATH, which holds {candidate} of the venv"
                f" {venv}: which interpreter's sys.path applies is unknown"
            )
    return None


def _space(proc: Process) -> Space:
    return (proc.root, proc.mnt_ns)
