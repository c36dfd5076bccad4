"""Every /proc parser of imgdiff, behind one boundary that maps OS errors to domain errors.

A process is read through one descriptor of its `/proc/PID` directory, opened once: after
the process exits every read fails with ESRCH, so a reused PID can never feed another
process's data into the record (the start time read first pins the identity). The
procfs root is a parameter (psutil's `PROCFS_PATH`), so tests and offline analysis can
point it elsewhere. Nothing here follows a path from /proc into a file system, executes
anything or reads a process's environment.
"""

from __future__ import annotations

import errno
import os

from imgdiff.errors import AccessDenied, NoSuchProcess

PF_KTHREAD = 0x00200000
_MAX_READ = 16 << 20
_CHUNK = 1 << 16
_READ = os.O_RDONLY | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
DELETED = " (deleted)"  # what the kernel appends to the path of an unlinked file


def _domain_error(pid: int, what: str, exc: OSError) -> Exception:
    """NoSuchProcess / AccessDenied for an OSError met reading /proc/PID (the OSError itself
    when neither fits): the one place OS errors become domain errors; nothing above catches
    OSError. (A plain try/except at each read, not a context manager: it wraps every /proc
    read, thousands per snapshot.)"""
    if exc.errno in (errno.ESRCH, errno.ENOENT):
        return NoSuchProcess(pid, f"{pid}: gone while reading {what}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(pid, f"{pid}: {what}: {exc.strerror}")
    return exc


# Stat and Mapping are plain slotted classes, not attrs records: they never leave the
# runtime stage, a process has hundreds of mappings, and this module is what `imgdiff
# stale` loads to see that no process runs in a root (attrs alone costs more than that).
class Stat:
    """The fields of /proc/PID/stat imgdiff needs."""

    __slots__ = ("comm", "flags", "ppid", "start_time", "state")

    def __init__(self, comm: str, state: str, ppid: int, flags: int, start_time: int) -> None:
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.flags = flags
        self.start_time = start_time  # clock ticks after boot


class Mapping:
    """One file-backed mapping of /proc/PID/maps, merged per file."""

    __slots__ = ("deleted", "dev", "ino", "path", "ranges")

    def __init__(
        self, path: str, dev: tuple[int, int], ino: int, deleted: bool, ranges: tuple[str, ...]
    ) -> None:
        self.path = path  # as the kernel prints it: a label only (see `parse_maps`)
        self.dev = dev
        self.ino = ino
        self.deleted = deleted
        self.ranges = ranges  # "start-end" keys of /proc/PID/map_files


def parse_stat(data: bytes) -> Stat:
    """Parse /proc/PID/stat: the command name is between the first '(' and the LAST ')'."""
    text = data.decode("utf-8", "surrogateescape")
    left = text.index("(")
    right = text.rindex(")")
    fields = text[right + 2 :].split()
    return Stat(
        comm=text[left + 1 : right],
        state=fields[0],
        ppid=int(fields[1]),
        flags=int(fields[6]),
        start_time=int(fields[19]),
    )


def _line_after(text: bytes, label: bytes) -> bytes | None:
    """The rest of the line that starts with `label` in a `Key:\tvalue` file, or None."""
    at = text.find(b"\n" + label)
    if at < 0:
        if not text.startswith(label):
            return None
        at = -1
    start = at + 1 + len(label)
    end = text.find(b"\n", start)
    return text[start:] if end < 0 else text[start:end]


def parse_status(data: bytes) -> tuple[int, int | None]:
    """(real uid, pid in the innermost pid namespace) from /proc/PID/status; the second
    is None on kernels without the `NSpid` line (before 4.1)."""
    uid = _line_after(data, b"Uid:")
    if uid is None:
        raise ValueError("no Uid line")
    ns_pid = _line_after(data, b"NSpid:")
    return int(uid.split()[0]), (int(ns_pid.split()[-1]) if ns_pid is not None else None)


def _unescape_maps(path: str) -> str:
    # the kernel escapes only newlines (as \012) in maps paths; backslashes stay raw
    return path.replace("\\012", "\n")


def parse_maps(data: bytes) -> list[Mapping]:
    """File-backed mappings, one per (dev, ino). Paths are ambiguous in maps (spaces are
    not escaped, a live file may be named "x (deleted)"): identity is dev:inode and the
    path is a label. Anonymous and pseudo mappings ([heap], [vdso], inode 0) are skipped."""
    # keyed by the device and inode fields as printed: the kernel prints each number one
    # way (%02x:%02x and %lu), so equal text is an equal identity, and only one line per
    # file (the first) is decoded
    found: dict[tuple[bytes, bytes], tuple[bytes, list[bytes]]] = {}
    for raw in data.split(b"\n"):
        parts = raw.split(None, 5)
        if len(parts) < 6 or parts[4] == b"0":
            continue  # no path (anonymous), or no inode (a pseudo file)
        key = (parts[3], parts[4])
        hit = found.get(key)
        if hit is None:
            found[key] = (parts[5], [parts[0]])
        else:
            hit[1].append(parts[0])
    out = []
    for (dev, inode), (path_b, ranges) in found.items():
        major, _, minor = dev.partition(b":")
        path = _unescape_maps(path_b.decode("utf-8", "surrogateescape"))
        deleted = path.endswith(DELETED)
        if deleted:
            path = path[: -len(DELETED)]
        dev_ids = (int(major, 16), int(minor, 16))
        out.append(Mapping(path, dev_ids, int(inode), deleted, tuple(r.decode() for r in ranges)))
    return out


def split_deleted(link: str) -> tuple[str, bool]:
    """A /proc symlink target and whether the kernel marked it deleted."""
    if link.endswith(DELETED):
        return link[: -len(DELETED)], True
    return link, False


class ProcDir:
    """One process's /proc directory, opened once and read relative to that descriptor."""

    def __init__(self, pid: int, procfs: str = "/proc") -> None:
        self.pid = pid
        try:
            self.fd = os.open(f"{procfs}/{pid}", _DIRECTORY)
        except OSError as exc:
            raise _domain_error(pid, "open", exc) from None

    def close(self) -> None:
        """Release the directory descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ProcDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, name: str) -> bytes:
        """A whole /proc/PID file (bounded)."""
        try:
            fd = os.open(name, _READ, dir_fd=self.fd)
            try:
                data = os.read(fd, _CHUNK)
                if not data:
                    return data
                more = os.read(fd, _CHUNK)  # b"": the usual end of a /proc file
                if not more:
                    return data
                chunks = [data, more]
                total = len(data) + len(more)
                while total <= _MAX_READ and (more := os.read(fd, _CHUNK)):
                    chunks.append(more)
                    total += len(more)
                return b"".join(chunks)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _domain_error(self.pid, name, exc) from None

    def readlink(self, name: str) -> str:
        """A /proc/PID symlink's target text (never followed)."""
        try:
            return os.readlink(name, dir_fd=self.fd)
        except OSError as exc:
            raise _domain_error(self.pid, name, exc) from None

    def stat_target(self, name: str) -> os.stat_result:
        """stat of what a /proc/PID magic link refers to (the open or mapped file itself)."""
        try:
            return os.stat(name, dir_fd=self.fd)
        except OSError as exc:
            raise _domain_error(self.pid, name, exc) from None

    def listdir(self, name: str) -> list[str]:
        """Names in a /proc/PID subdirectory."""
        try:
            fd = os.open(name, _DIRECTORY, dir_fd=self.fd)
            try:
                return os.listdir(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _domain_error(self.pid, name, exc) from None

    def open_target(self, name: str) -> int:
        """A read descriptor of what a /proc/PID magic link (`exe`, `fd/N`,
        `map_files/RANGE`) refers to: the very file the process holds, even unlinked."""
        # O_NONBLOCK: the descriptor may have been reused for a FIFO since the snapshot
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        try:
            return os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            raise _domain_error(self.pid, name, exc) from None

    def open_root(self) -> int:
        """An O_PATH descriptor of the process's root directory (its chroot or container)."""
        try:
            return os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            raise _domain_error(self.pid, "root", exc) from None


def pids(procfs: str = "/proc") -> list[int]:
    """Every process id listed in procfs."""
    return sorted(int(n) for n in os.listdir(procfs) if n.isdigit())


def root_of(pid: int, procfs: str = "/proc") -> str | None:
    """What `/proc/PID/root` reads (the process's root as a path of the reader's root);
    None when the process is gone. `AccessDenied` when it cannot be read."""
    try:
        return os.readlink(f"{procfs}/{pid}/root")
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.ENOENT):
            return None
        raise _domain_error(pid, "root", exc) from None


def resolve_root(root: str) -> str:
    """A root as `/proc/PID/root` of a process running in it reads."""
    return os.path.realpath(root) if root != "/" else "/"


def anyone_in(root: str, procfs: str = "/proc", *, besides: int | None = None) -> bool:
    """Whether some process other than `besides` may run in `root`: one whose root is
    `root`, or one whose root cannot be read. False means that reading every process in
    `root` finds none and no gap either, which one readlink per process tells."""
    want = resolve_root(root)
    want_id = None
    if want != "/":
        st = os.stat(want)
        want_id = (st.st_dev, st.st_ino)
    ours: bytes | None = None
    for pid in pids(procfs):
        if pid == besides:
            continue
        try:
            found = root_of(pid, procfs)
            if found == want:
                return True
            if want_id is not None and found != "/":  # a bind mount of it (`Snapshot`)
                st = os.stat(f"{procfs}/{pid}/root")
                if (st.st_dev, st.st_ino) == want_id:
                    return True
        except AccessDenied:
            ours = ours if ours is not None else mountinfo("self", procfs) or b""
            if want != "/" and sees_our_mounts(pid, procfs, ours):
                continue  # its root is "/" (see `sees_our_mounts`)
            return True  # the full read says why it cannot be read
        except OSError:
            return True
    return False


def boot_id(procfs: str = "/proc") -> str:
    """This boot's random id (start times are only comparable within one boot)."""
    try:
        with open(f"{procfs}/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def boot_time(procfs: str = "/proc") -> float:
    """When this boot began, in seconds since the epoch (`btime` in /proc/stat); 0 unknown."""
    try:
        with open(f"{procfs}/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def read_environ(pid: int, procfs: str = "/proc") -> list[tuple[bytes, bytes]] | None:
    """A process's environment as it started (bounded): (NAME, value) in order, a name
    given twice twice; None when unreadable. Data to look at, never to use."""
    try:
        with open(f"{procfs}/{pid}/environ", "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return None
    return [(n, v) for n, _, v in (i.partition(b"=") for i in data.split(b"\0") if i)]


def mountinfo(pid: int | str, procfs: str = "/proc") -> bytes | None:
    """A process's mount table as it sees it (bounded); None when unreadable."""
    try:
        with open(f"{procfs}/{pid}/mountinfo", "rb") as fh:
            return fh.read(1 << 22)
    except OSError:
        return None


class MountLine:
    """One line of a mountinfo table, the fields imgdiff uses (paths unescaped); a plain
    slotted class, as `Stat` and `Mapping` are."""

    __slots__ = ("dev", "fstype", "point", "source")

    def __init__(self, dev: str, point: str, fstype: str, source: str) -> None:
        self.dev = dev  # "major:minor" of the mounted filesystem (anonymous: major 0)
        self.point = point
        self.fstype = fstype
        self.source = source  # "" when the line names none


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    if "\\" not in field:
        return field
    import re  # rarely needed: `imgdiff stale`'s short cut loads this module, not re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_lines(path: str = "/proc/self/mountinfo") -> list[MountLine]:
    """A mountinfo table parsed (lines it cannot read skipped); [] when unreadable."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        source = _unescape_mountinfo(after[1]) if len(after) > 1 else ""
        out.append(MountLine(fields[2], _unescape_mountinfo(fields[4]), after[0], source))
    return out


def is_procfs(path: str) -> bool:
    """True if `path` is where a proc file system is mounted (in this mount namespace)."""
    real = os.path.realpath(path)
    return any(m.point == real and m.fstype == "proc" for m in mount_lines())


def sees_our_mounts(pid: int, procfs: str = "/proc", ours: bytes | None = None) -> bool:
    """True if the process sees exactly the mounts this process sees, at the same places.

    /proc/PID/mountinfo stays readable when /proc/PID/root does not (another user
    namespace's init, say); mount points in it are relative to the process's root, so an
    identical table (same mount ids, same points) means the same mount namespace and the
    same root as ours. Any difference, or an unreadable table, answers False. `ours` is this
    process's table when the caller read it already.
    """
    if ours is None:
        ours = mountinfo("self", procfs)
    theirs = mountinfo(pid, procfs)
    return bool(theirs) and theirs == ours


def mount_namespace(pid: int | str = "self", procfs: str = "/proc") -> str | None:
    """The `mnt:[ID]` text naming a process's mount namespace; None when unreadable."""
    try:
        return os.readlink(f"{procfs}/{pid}/ns/mnt")
    except OSError:
        return None


def hostname() -> str:
    """This host's name, as gethostname(2) gives it (on Linux: uname's nodename; the
    socket module is not loaded for it)."""
    return os.uname().nodename


def clock_ticks() -> int:
    """USER_HZ: the unit of start times."""
    return os.sysconf("SC_CLK_TCK")
