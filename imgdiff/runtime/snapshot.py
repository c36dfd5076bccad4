"""`Snapshot`: what every process runs and uses, read from /proc once, saved as JSON.

A process is identified by (pid, start_time) within one boot. For each one the snapshot
records its executable, the files it maps and the regular files it holds open, each with
the (dev, ino) of the very file the kernel has (through `/proc/PID/map_files` and
`/proc/PID/fd`, which survive deletion and are immune to the ambiguity of path text), and
paths translated into the process's own root. Processes that vanish or cannot be read
become `Gap`s with the reason: never a crash, never silently "clean".
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from imgdiff import _parallel, _repr
from imgdiff._jsondoc import as_list as _list
from imgdiff._jsondoc import check_root
from imgdiff._jsondoc import check_types as _check_types
from imgdiff.errors import AccessDenied, BadInput, NoSuchProcess
from imgdiff.fs.inputs import directory, fspath, open_regular_file
from imgdiff.runtime import _procfs
from imgdiff.runtime._procfs import ProcDir, sees_our_mounts
from imgdiff.systemd.cgroup import place

if TYPE_CHECKING:
    from pathlib import Path

    from imgdiff.runtime.inspect import SameBytes

SCHEMA = "imgdiff.snapshot/1"
VIAS = ("exe", "mapped", "open", "imported", "import-graph", "elf-needed", "config", "deleted")


@attrs.frozen
class FileUse:
    """A file a process uses: the path inside its root, how, and the file's identity."""

    path: str
    via: str  # "exe", "mapped", "open" or "imported"
    dev: int = 0
    ino: int = 0
    deleted: bool = False  # the kernel reports the path unlinked
    outside_root: bool = False  # the path is not below the process's root (opened before chroot)
    # for imports recorded by the tracer: size and mtime at import time
    size: int | None = None
    mtime_ns: int | None = None
    # where /proc/PID still reaches the very file: "exe", "fd/N" or "map_files/RANGE"
    handle: str | None = None
    # for imports: the chain of importers the tracer saw ("a ← b ← (program or start-up)")
    detail: str = ""
    # for code the kernel marked "(deleted)", compared when a snapshot to be saved was taken:
    # True, the file now at its path has the very bytes the process holds; False, it has
    # others or nothing is there; None, not compared
    same_bytes: bool | None = None

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"FileUse({_repr.text(self.path)}, {self.via!r})"


@attrs.frozen
class Process:
    """One process as the snapshot saw it."""

    pid: int
    ppid: int
    start_time: int
    uid: int
    comm: str
    exe: str | None
    cmdline: tuple[str, ...]
    cwd: str | None
    root: str  # the process's root as a path of the reader's root ("/" normally)
    unit: str | None
    container: str | None
    cgroup: str
    mnt_ns: str | None
    files: tuple[FileUse, ...]
    traced: bool = False  # an import trace was found for this process
    ns_pid: int | None = None  # its pid inside its own pid namespace (1: a container's init)

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        files = _repr.count(len(self.files), "file")
        return f"Process(pid={self.pid}, {self.comm!r}, unit={self.unit!r}, {files})"

    @property
    def is_init(self) -> bool:
        """PID 1 of the host or of its own pid namespace (a container's init)."""
        return self.pid == 1 or self.ns_pid == 1

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start_time): unique within a boot, unlike the pid alone."""
        return (self.pid, self.start_time)


@attrs.frozen
class Gap:
    """A process (or part of one) the snapshot could not read, and why."""

    pid: int
    reason: str


def _inside(path: str, root: str) -> tuple[str, bool]:
    """A path the kernel printed relative to the reader's root, made relative to `root`."""
    if root == "/":
        return path, False
    if path == root:
        return "/", False
    if path.startswith(root + "/"):
        return path[len(root) :], False
    return path, True


# (mount namespace, root, path, dev and inode as maps shows them) -> (st_dev, st_ino) as a
# stat of the path shows them: the same library mapped by many processes is stat-ed once.
# The path is in the key: two overlay mounts may share a lower file (same maps dev/ino)
# yet give it different identities.
_VfsIds = dict[tuple[str | None, str, str, int, int], tuple[int, int]]


_Own = tuple[str | None, tuple[int, int] | None]  # our mount namespace, our root's (dev, ino)


def _own(procfs: str) -> _Own:
    """This process's mount namespace and the identity of its root directory."""
    try:
        st = os.stat(f"{procfs}/self/root")
        root: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        root = None
    return _procfs.mount_namespace("self", procfs), root


def _foreign(d: ProcDir, mnt_ns: str | None, own: _Own) -> bool:
    """Whether a process lives in a mount namespace of its own whose "/" is not ours (a
    container). A service with PrivateTmp=, ProtectSystem= and the like has a namespace
    of its own, but its root is the host's very root directory (a bind mount keeps the
    device and inode), and it is one of the host's processes."""
    own_ns, own_root = own
    if mnt_ns is None or mnt_ns == own_ns:
        return False
    return own_root is None or not _same_dir(d, own_root)


def _named_deleted(d: ProcDir, use: FileUse) -> FileUse:
    """`use` as it is when the file's own name ends in " (deleted)": the kernel prints a
    live file so named just as it marks an unlinked one. The name is taken as it stands
    when that path (inside the process's root) is the very file the process holds."""
    if use.outside_root:
        return use
    literal = f"{use.path}{_procfs.DELETED}"
    try:
        st = os.stat(f"root{literal}", dir_fd=d.fd, follow_symlinks=False)
    except (OSError, ValueError):
        return use  # unlinked indeed (the usual case), or unreadable: as the kernel says
    if (st.st_dev, st.st_ino) != (use.dev, use.ino):
        return use
    return attrs.evolve(use, path=literal, deleted=False)


def _compare_deleted(d: ProcDir, files: list[FileUse], same: SameBytes) -> list[FileUse]:
    """The code the kernel marks "(deleted)" compared with what is at its path now (in the
    process's root): a saved snapshot has no /proc to settle it with later."""
    if not any(f.deleted and f.via != "open" and not f.outside_root for f in files):
        return files
    from imgdiff.runtime.inspect import process_root

    out = []
    with process_root(d) as fs:
        for f in files:
            if f.deleted and f.via != "open" and not f.outside_root:
                now = fs.stat(f.path)
                f = attrs.evolve(f, same_bytes=False if now is None else same(d, fs, f, now))  # noqa: PLW2901
            out.append(f)
    return out


def _same_dir(d: ProcDir, want: tuple[int, int]) -> bool:
    """Whether the process's root is the directory `want` (device, inode) names."""
    try:
        st = d.stat_target("root")
    except AccessDenied:
        return False
    return (st.st_dev, st.st_ino) == want


def _read_process(
    pid: int,
    procfs: str,
    own: _Own,
    vfs_ids: _VfsIds | None = None,
    want_root: str | None = None,
    same: SameBytes | None = None,
    want_id: tuple[int, int] | None = None,
) -> Process | None:
    """The process `pid`; None for a kernel thread, a zombie, or a process whose root is
    not `want_root` (when given: nothing more of it is read). With `same`, its code marked
    "(deleted)" is compared with the files now at those paths (`FileUse.same_bytes`)."""
    with ProcDir(pid, procfs) as d:
        st = _procfs.parse_stat(d.read("stat"))
        if st.flags & _procfs.PF_KTHREAD:
            return None
        root = d.readlink("root")
        named = root  # as the kernel prints it: the process's paths are relative to this
        if want_root is not None and root != want_root:
            if want_id is None or not _same_dir(d, want_id):
                return None
            root = want_root  # the same directory reached another way (a bind mount of it)
        uid, ns_pid = _procfs.parse_status(d.read("status"))
        cmdline = tuple(os.fsdecode(a) for a in d.read("cmdline").split(b"\0")[:-1])
        try:
            mnt_ns: str | None = d.readlink("ns/mnt")
        except AccessDenied:
            mnt_ns = None
        placement = place(d.read("cgroup"))
        foreign = _foreign(d, mnt_ns, own)
        files: list[FileUse] = []
        exe: str | None = None
        try:
            raw_exe, exe_deleted = _procfs.split_deleted(d.readlink("exe"))
            exe, outside = _inside(raw_exe, named)
            est = d.stat_target("exe")
            files.append(
                FileUse(exe, "exe", est.st_dev, est.st_ino, exe_deleted, outside, handle="exe")
            )
        except NoSuchProcess:
            if d.read("stat") and not cmdline:
                return None  # a zombie: nothing left mapped
            raise
        try:
            cwd: str | None = _inside(d.readlink("cwd"), named)[0]
        except NoSuchProcess:
            cwd = None
        ids: _VfsIds = {} if vfs_ids is None else vfs_ids
        for m in _procfs.parse_maps(d.read("maps")):
            dev, ino = os.makedev(*m.dev), m.ino
            key = (mnt_ns, root, m.path, dev, ino)
            known = ids.get(key)
            if known is not None:
                dev, ino = known
            else:
                try:
                    mst = d.stat_target(f"map_files/{m.ranges[0]}")
                    # the VFS identity, as a path stat shows it
                    dev, ino = ids[key] = mst.st_dev, mst.st_ino
                except (NoSuchProcess, AccessDenied):
                    pass
            path, outside = _inside(m.path, named)
            if exe is not None and (dev, ino) == (files[0].dev, files[0].ino):
                continue  # the executable's own mapping
            handle = f"map_files/{m.ranges[0]}"
            files.append(FileUse(path, "mapped", dev, ino, m.deleted, outside, handle=handle))
        for fd_name in d.listdir("fd"):
            try:
                target = d.readlink(f"fd/{fd_name}")
                if not target.startswith("/"):
                    continue  # socket:[…], pipe:[…], anon_inode:…
                fst = d.stat_target(f"fd/{fd_name}")
            except NoSuchProcess:
                continue  # this descriptor closed meanwhile
            if not stat.S_ISREG(fst.st_mode):
                continue
            raw, deleted = _procfs.split_deleted(target)
            path, outside = _inside(raw, named)
            files.append(
                FileUse(
                    path, "open", fst.st_dev, fst.st_ino, deleted, outside, handle=f"fd/{fd_name}"
                )
            )
        files = [_named_deleted(d, f) if f.deleted else f for f in files]
        if files and files[0].via == "exe":
            exe = files[0].path
        if same is not None:
            files = _compare_deleted(d, files, same)
        d.read("stat")  # still the same process: a reused pid would fail here (ESRCH)
    return Process(
        pid=pid,
        ppid=st.ppid,
        start_time=st.start_time,
        uid=uid,
        comm=st.comm,
        exe=exe,
        cmdline=cmdline,
        cwd=cwd,
        root=root,
        unit=placement.unit,
        container=placement.container or (mnt_ns if foreign else None),
        cgroup=placement.cgroup,
        mnt_ns=mnt_ns,
        files=tuple(_dedupe(files)),
        ns_pid=ns_pid,
    )


_PARALLEL_FROM = 256  # processes; fewer are read faster than a fork returns


def _read_slice(
    work: tuple[list[int], str, _Own, str | None, bool, tuple[int, int] | None],
) -> list[tuple[int, Process | None, str | None]]:
    """(pid, process or None, gap reason or None) for each pid of one slice."""
    pids, procfs, own, want_root, compare, want_id = work
    out: list[tuple[int, Process | None, str | None]] = []
    vfs_ids: _VfsIds = {}
    ours: bytes | None = None  # our mount table, read at the first access denied
    same = None
    if compare:
        from imgdiff.runtime.inspect import SameBytes

        same = SameBytes()  # digests per inode: a library many processes map is read once
    for pid in pids:
        try:
            proc = _read_process(pid, procfs, own, vfs_ids, want_root, same, want_id)
            out.append((pid, proc, None))
        except NoSuchProcess:
            continue  # exited before or while it was read: nothing left to restart
        except AccessDenied as exc:
            ours = ours if ours is not None else _procfs.mountinfo("self", procfs) or b""
            hint = _ROOT_IS_OURS if sees_our_mounts(pid, procfs, ours) else ""
            out.append((pid, None, f"access denied: {exc}{hint}"))
        except (OSError, ValueError, IndexError) as exc:
            out.append((pid, None, f"unreadable: {exc}"))
    return out


_ROOT_IS_OURS = " (its mount table is ours: its root is /)"


def _dedupe(files: Iterable[FileUse]) -> list[FileUse]:
    seen: set[tuple[str, str, int, int]] = set()
    out = []
    for f in files:
        key = (f.path, f.via, f.dev, f.ino)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


@attrs.frozen
class Snapshot:
    """Every process of a host (or of one root on it) and the files each one uses."""

    boot_id: str
    taken_at: float
    host: str
    processes: tuple[Process, ...]
    gaps: tuple[Gap, ...] = ()
    clock_ticks: int = 100

    __repr__ = _repr.short_repr

    @classmethod
    def capture(
        cls,
        root: str | os.PathLike[str] = "/",
        *,
        procfs: str | os.PathLike[str] = "/proc",
        pids: Iterable[int] | None = None,
        spool: str | os.PathLike[str] | None = None,
        exclude_self: bool = False,
        workers: int | None = None,
        compare_deleted: bool = False,
    ) -> Snapshot:
        """Read /proc now. Only processes whose root is `root` are kept ("/" : the host's
        own processes, containers in other mount namespaces excluded). `spool` is the
        import tracer's directory, whose records join the traced processes' files.
        `exclude_self` leaves out this process and its forked workers (the command line
        tool does: it is not what is being asked about). `workers` caps the processes
        reading /proc (default: the CPUs available, from 256 processes on); 1 reads in
        this process only, as threaded callers need. `compare_deleted`, for a snapshot to
        be saved and planned from later: code the kernel marks "(deleted)" is compared now
        with the file at its path (`FileUse.same_bytes`), as a live plan would; without
        it, a saved snapshot's deleted code is unconfirmed evidence. A `root` that is not
        a directory is `BadInput`."""
        root, procfs, spool = directory(root), fspath(procfs), fspath(spool)
        want_root = _procfs.resolve_root(root)
        own = _own(procfs)
        own_ns = own[0]
        processes: list[Process] = []
        gaps: list[Gap] = []
        todo = sorted(pids) if pids is not None else _procfs.pids(procfs)
        # interleaved slices: neighbouring pids are often alike (a service's workers)
        n = (workers or _parallel.workers()) if len(todo) >= _PARALLEL_FROM else 1
        want_id = None  # a chroot's directory also reached through a bind mount of it
        if want_root != "/":
            wst = os.stat(want_root)
            want_id = (wst.st_dev, wst.st_ino)
        slices = [(todo[i::n], procfs, own, want_root, compare_deleted, want_id) for i in range(n)]
        read = [r for part in _parallel.fork_map(_read_slice, slices, size=len(todo)) for r in part]
        me = os.getpid()
        my_cmdline = next((p.cmdline for _, p, _ in read if p is not None and p.pid == me), None)
        for pid, proc, gap in sorted(read, key=lambda r: r[0]):
            if exclude_self and (
                pid == me or (proc is not None and proc.ppid == me and proc.cmdline == my_cmdline)
            ):
                continue  # imgdiff itself, and forked copies of it (its workers)
            if gap is not None:
                if want_root != "/" and gap.endswith(_ROOT_IS_OURS):
                    continue  # its root is "/", not the one asked about: not a gap here
                gaps.append(Gap(pid, gap))
                continue
            if proc is None:
                continue
            if proc.root != want_root:
                continue
            if want_root == "/" and proc.container is not None and proc.mnt_ns != own_ns:
                continue  # a container: its "/" is not ours
            processes.append(proc)
        if spool is not None:
            boot = _procfs.boot_id(procfs)
            processes = [_with_imports(p, spool, boot, procfs) for p in processes]
        return cls(
            boot_id=_procfs.boot_id(procfs),
            taken_at=time.time(),
            host=_procfs.hostname(),
            processes=tuple(processes),
            gaps=tuple(gaps),
            clock_ticks=_procfs.clock_ticks(),
        )

    def by_key(self) -> dict[tuple[int, int], Process]:
        """Processes by (pid, start_time)."""
        return {p.key: p for p in self.processes}

    def _repr_html_(self) -> str:
        """The snapshot in a notebook: its console table as HTML, as every result."""
        from imgdiff.report.notebook import to_html

        return to_html(self)

    # -- persistence ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The `imgdiff.snapshot/1` document."""
        return {
            "schema": SCHEMA,
            "boot_id": self.boot_id,
            "taken_at": self.taken_at,
            "host": self.host,
            "clock_ticks": self.clock_ticks,
            "processes": [_process_json(p) for p in self.processes],
            "gaps": [attrs.asdict(g) for g in self.gaps],
        }

    def save(self, path: str | Path) -> None:
        """Write the snapshot as JSON (atomically)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as fh:
            json.dump(self.to_json(), fh, separators=(",", ":"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """Read a snapshot written by `save` (or `imgdiff snapshot --json`)."""
        name = os.fspath(path)
        try:
            with open(open_regular_file(name), encoding="ascii") as fh:  # never a FIFO
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            raise BadInput(name, f"not a readable snapshot: {exc}") from None
        return cls.from_json(doc, name)

    @classmethod
    def from_json(cls, doc: Any, name: str = "<snapshot>") -> Snapshot:
        """A snapshot from its JSON document; malformed documents raise `BadInput`."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise BadInput(name, f"not an {SCHEMA} document")
        try:
            _check_types(doc, _SNAPSHOT_TYPES, "snapshot", _SNAPSHOT_REQUIRED, {"clock_ticks": 1})
            procs = []
            gaps = []
            for p in _list(doc["processes"], "processes"):
                _check_types(p, _PROCESS_TYPES, "process", _PROCESS_REQUIRED, _PROCESS_MINIMUMS)
                files = []
                unknown = False  # written before files carried their identity
                for f in _list(p["files"], "files"):
                    _check_types(f, _FILE_TYPES, "file", ("path", "via"), _FILE_MINIMUMS)
                    unknown = unknown or ("deleted" not in f and f["via"] != "imported")
                    files.append(FileUse(**f))
                if any(f.via not in VIAS for f in files):
                    raise ValueError("unknown via")
                cmdline = _list(p["cmdline"], "cmdline")
                if not all(isinstance(a, str) for a in cmdline):
                    raise ValueError("cmdline holds a non-string")
                fields = {k: v for k, v in p.items() if k not in ("files", "cmdline")}
                fields = {**_PROCESS_DEFAULTS, **fields}
                proc = Process(**fields, cmdline=tuple(cmdline), files=tuple(files))
                check_root(proc.root, f"process {proc.pid}: key 'root'")
                procs.append(proc)
                if unknown:  # its replaced files are not known: never taken as none
                    gaps.append(Gap(proc.pid, _NO_IDENTITIES))
                elif relative := _relative(proc):  # it would match no image path
                    gaps.append(Gap(proc.pid, f"{relative} is not an absolute path"))
            for g in _list(doc.get("gaps", []), "gaps"):
                _check_types(g, {"pid": int, "reason": str}, "gap")
                gaps.append(Gap(**g))
            taken_at = float(doc.get("taken_at", 0.0))
            if not math.isfinite(taken_at):
                raise ValueError(f"taken_at is {taken_at}")
            return cls(
                boot_id=str(doc.get("boot_id", "")),  # unknown: another boot, as it may be
                taken_at=taken_at,
                host=str(doc.get("host", "")),
                processes=tuple(procs),
                gaps=tuple(sorted(gaps, key=lambda g: g.pid)),
                clock_ticks=int(doc.get("clock_ticks", 100)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadInput(name, f"malformed snapshot: {exc}") from None


_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
# the JSON type of every field a saved snapshot may hold (other keys: bad input), and the
# least value of the integers docs/schemas/snapshot.schema.json bounds
_SNAPSHOT_TYPES: dict[str, type | tuple[type, ...]] = {
    "schema": str, "boot_id": str, "taken_at": (int, float), "host": str, "clock_ticks": int,
    "processes": list, "gaps": list,
}  # fmt: skip
# contract.md's core keys; the others were added since, and older files are read with
# these defaults (a file without its identity makes its process a gap: not known clean)
_SNAPSHOT_REQUIRED = ("schema", "processes")
_PROCESS_REQUIRED = ("pid", "ppid", "exe", "cmdline", "unit", "root", "start_time", "files")
_PROCESS_DEFAULTS: dict[str, Any] = {
    "uid": 0, "comm": "", "cwd": None, "container": None, "cgroup": "", "mnt_ns": None,
}  # fmt: skip
_NO_IDENTITIES = "saved without file identities (an older snapshot): replaced files not known"
_PROCESS_MINIMUMS = {"pid": 0, "ppid": 0, "start_time": 0, "uid": 0}
_FILE_MINIMUMS = {"dev": 0, "ino": 0, "size": 0}
_PROCESS_TYPES: dict[str, type | tuple[type, ...]] = {
    "pid": int, "ppid": int, "start_time": int, "uid": int, "comm": str, "exe": _OPT_STR,
    "cmdline": list, "cwd": _OPT_STR, "root": str, "unit": _OPT_STR, "container": _OPT_STR,
    "cgroup": str, "mnt_ns": _OPT_STR, "files": list, "traced": bool, "ns_pid": _OPT_INT,
}  # fmt: skip
_FILE_TYPES: dict[str, type | tuple[type, ...]] = {
    "path": str, "via": str, "dev": int, "ino": int, "deleted": bool, "outside_root": bool,
    "size": _OPT_INT, "mtime_ns": _OPT_INT, "handle": _OPT_STR, "detail": str,
    "same_bytes": (bool, type(None)),
}  # fmt: skip


def _relative(proc: Process) -> str:
    """The first of a process's paths that is not absolute, as /proc never gives one
    (described), or ""."""
    named = [("exe", proc.exe), ("cwd", proc.cwd), *(("file", f.path) for f in proc.files)]
    for key, path in named:
        if path is not None and not path.startswith("/"):
            return f"its {key} {path!r}"
    return ""


def _written(a: attrs.Attribute[Any], value: Any) -> bool:
    return a.name != "same_bytes" or value is not None  # only where it was compared


def _process_json(p: Process) -> dict[str, Any]:
    doc = attrs.asdict(p, recurse=False, filter=lambda a, _: a.name != "files")
    doc["cmdline"] = list(p.cmdline)
    doc["files"] = [attrs.asdict(f, filter=_written) for f in p.files]
    return doc


def _import_chain(module: str, importer: dict[str, str | None]) -> str:
    """ "wsgiref ← wsgiref.simple_server ← (program or start-up)", from the tracer's records;
    "" when the tracer did not say who imported the module."""
    chain = [module]
    by = importer.get(module)
    while by and by not in chain and len(chain) < 64:
        chain.append(by)
        by = importer.get(by)
    if len(chain) == 1 and by is None:
        return ""
    return " ← ".join(chain) + (" ← (program or start-up)" if by == "" else "")


def _root_now(proc: Process, procfs: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the process's root directory, None when it cannot be told."""
    try:
        st = os.stat(f"{procfs}/{proc.pid}/root")
        with open(f"{procfs}/{proc.pid}/stat", "rb") as f:
            if _procfs.parse_stat(f.read()).start_time != proc.start_time:
                return None  # the pid was reused meanwhile
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _with_imports(proc: Process, spool: str, boot: str, procfs: str = "/proc") -> Process:
    """Join the tracer's records for this exact process (pid and start time). A record made
    under another root than the process's now (it chroot'ed since) names a path outside it."""
    from imgdiff.trace.spool import read_spool

    records = read_spool(spool, proc.pid, proc.start_time, boot_id=boot, uid=proc.uid)
    if records is None:
        return proc
    roots = {r.root for r in records} - {None}
    root = _root_now(proc, procfs) if roots else None
    importer = {r.module: r.by for r in records}
    imported = tuple(
        FileUse(
            r.path, "imported", r.dev, r.ino, size=r.size, mtime_ns=r.mtime_ns,
            detail=_import_chain(r.module, importer),
            outside_root=root is not None and r.root is not None and r.root != root,
        )
        for r in records
        if r.dev is not None and r.ino is not None  # namespace packages: directories only
    )  # fmt: skip
    return attrs.evolve(proc, files=proc.files + imported, traced=True)
