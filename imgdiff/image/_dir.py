"""Directory trees as images: walk with lstat, never follow a symlink, hash lazily.

The walk records each regular file's (dev, ino, ctime_ns) so `digest` can reopen
exactly that file beneath the root (see `_fs.open_beneath`) and notice when the tree
changed under it. Devices, FIFOs and sockets are recorded and never opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Iterator

from imgdiff import _digest
from imgdiff.cache import DigestCache
from imgdiff.errors import BadInput
from imgdiff.fs import openat as _fs
from imgdiff.image.base import HEAD_BYTES, Capture, FileId, Image, Limits, ReadResult
from imgdiff.model import UNLISTED, UNREAD_LINK, UNSTATED, Entry, EntryType, ImageWarning
from imgdiff.runtime._procfs import mount_lines

_TYPES = {
    stat.S_IFREG: EntryType.FILE,
    stat.S_IFDIR: EntryType.DIR,
    stat.S_IFLNK: EntryType.SYMLINK,
    stat.S_IFCHR: EntryType.CHAR,
    stat.S_IFBLK: EntryType.BLOCK,
    stat.S_IFIFO: EntryType.FIFO,
    stat.S_IFSOCK: EntryType.SOCKET,
}


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


# Filesystems that hold kernel or run-time state, never image content: a walk of a live
# root (or of a chroot with /proc mounted) records their mount point and stops there.
VIRTUAL_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2", "securityfs",
    "debugfs", "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl",
    "binfmt_misc", "autofs", "efivarfs", "rpc_pipefs", "nsfs", "ramfs",
})  # fmt: skip


def virtual_mounts(root: str, mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Mount points strictly below `root` with a virtual filesystem: {path: fstype}."""
    return {p: t for p, t in mounts_below(root, mountinfo).items() if t in VIRTUAL_FS}


def mounts_below(root: str, mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Every mount point strictly below `root` (bind mounts too): {path: fstype}."""
    prefix = root.rstrip("/") + "/"
    return {m.point: m.fstype for m in mount_lines(mountinfo) if m.point.startswith(prefix)}


def _read_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
    except OSError:
        return ()
    if not names:
        return ()
    out = []
    for name in names:
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue  # vanished between list and get: nothing left to record
    return tuple(out)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

_Row = tuple[str, int, int, int, int, int, int, int, int, int, int, bool]
"""(name, st_mode, st_uid, st_gid, st_size, st_mtime_ns, st_ino, st_dev, st_ctime_ns,
st_nlink, st_rdev, has extended attributes) of one directory entry, from lstat."""
_Failed = tuple[str, int]  # (name, errno): an entry that could not be lstat'ed


def _scan(path: str, xattrs: bool) -> list[_Row | _Failed] | int:
    """The entries of the directory `path` in the order the kernel lists them, or the
    errno that kept it from being opened. The directory is opened with O_NOFOLLOW (one
    swapped for a symlink since it was listed is not read through) and its entries are
    lstat'ed relative to it. `xattrs`: ask each entry whether it has extended attributes.
    (A compiled version of this loop was measured at 4% of a whole diff: not worth it.)
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        return exc.errno or 0
    prefix = path if path.endswith("/") else path + "/"
    rows: list[_Row | _Failed] = []
    try:
        with os.scandir(fd) as it:
            for de in it:
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError as exc:
                    rows.append((de.name, exc.errno or 0))
                    continue
                rows.append(
                    (de.name, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                     st.st_ino, st.st_dev, st.st_ctime_ns, st.st_nlink, st.st_rdev,
                     xattrs and _has_xattrs(prefix + de.name))
                )  # fmt: skip
    finally:
        os.close(fd)
    return rows


def _has_xattrs(path: str) -> bool:
    try:
        return bool(os.listxattr(path, follow_symlinks=False))
    except OSError:
        return False


class DirImage(Image):
    """An unpacked root filesystem (or any directory) read in place."""

    format = "dir"
    digests_on_read = False  # files are hashed on demand, through the digest cache
    opens_files = True

    def __init__(
        self,
        path: str,
        *,
        limits: Limits | None = None,
        xattrs: bool = True,
        skip_virtual: bool = True,
        prune: Callable[[str], bool] | None = None,
        cache_whole: bool | None = None,
    ) -> None:
        """`prune`: image paths of directories listed but not descended into; `cache_whole`:
        whether the digest cache may forget files this walk does not see (default: when
        nothing is pruned; a caller pruning only what needs no cache may say True)."""
        super().__init__(path, limits=limits)
        if not os.path.isdir(path):
            raise BadInput(path, "not a directory")
        self.root = os.path.realpath(path)
        self._xattrs = xattrs
        self._root_fd: int | None = None
        self._skip = virtual_mounts(self.root) if skip_virtual else {}
        # directories (image paths) listed but not descended into, for callers that
        # compare only part of a tree (the drift check skips /var, /home, ...)
        self._prune = prune
        self._cache_whole = prune is None if cache_whole is None else cache_whole

    def _read(self, result: ReadResult, capture: Capture | None) -> None:
        # contents are read on demand from the tree (`read_files`): nothing to capture
        walk = self._walk(result)
        result.entries = list(walk if result.progress is None else _counted(walk, result.progress))

    def _walk(self, result: ReadResult) -> Iterator[Entry]:
        limits = self.limits
        root = self.root
        strip = len(root) if root != "/" else 0
        stack = [root]
        count = 0
        file_ids = result.file_ids
        warn = result.warn
        inodes: dict[tuple[int, int], str] = {}
        skip = self._skip
        prune = self._prune
        want_xattrs = self._xattrs
        types = _TYPES
        file, directory, symlink = EntryType.FILE, EntryType.DIR, EntryType.SYMLINK
        char, block = EntryType.CHAR, EntryType.BLOCK
        while stack:
            top = stack.pop()
            # the directory is opened with O_NOFOLLOW: one swapped for a symlink since it
            # was listed is not read through
            rows = _scan(top, want_xattrs)
            if isinstance(rows, int) and top == root:
                raise BadInput(self.path, f"{UNLISTED}{os.strerror(rows)}")
            if isinstance(rows, int):
                warn(top[strip:] or "/", f"{UNLISTED}{os.strerror(rows)}")
                continue
            prefix = top if top.endswith("/") else top + "/"
            for row in rows:
                count += 1
                if count > limits.max_entries:
                    raise self.limit(f"more than {limits.max_entries} entries")
                full = prefix + row[0]
                ipath = full[strip:]
                if len(row) == 2:
                    warn(ipath, f"{UNSTATED}{os.strerror(row[1])}")
                    continue
                _, st_mode, uid, gid, size, mtime_ns, ino, dev, ctime_ns, nlink, rdev, xa = row
                fmt = st_mode & 0o170000  # stat.S_IFMT
                etype = types.get(fmt)
                if etype is None:
                    warn(ipath, f"unknown file type {fmt:#o}")
                    continue
                target = None
                hardlink = None
                device = None
                if etype is file:
                    file_ids[ipath] = FileId(dev, ino, ctime_ns)
                    if nlink > 1:
                        hardlink = inodes.setdefault((dev, ino), ipath)
                else:
                    size = 0
                    if etype is directory:
                        if full in skip:
                            warn(ipath, f"{skip[full]} mounted here: contents not read")
                        elif prune is None or not prune(ipath):
                            stack.append(full)
                    elif etype is symlink:
                        try:
                            target = os.readlink(full)
                        except OSError as exc:
                            warn(ipath, f"{UNREAD_LINK}{exc.strerror}")
                    elif etype is char or etype is block:
                        device = (os.major(rdev), os.minor(rdev))
                yield Entry(
                    ipath,
                    etype,
                    st_mode & 0o7777,  # stat.S_IMODE
                    uid,
                    gid,
                    size,
                    mtime_ns,
                    target,
                    hardlink,
                    device,
                    _read_xattrs(full) if xa else (),
                )

    def prepare(self) -> None:
        """Open the root once, before digests are computed from several threads."""
        if self._root_fd is None:
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _root(self) -> int:
        self.prepare()
        assert self._root_fd is not None
        return self._root_fd

    def digest_cache(self) -> DigestCache:
        return DigestCache(self.root, whole_reads=self._cache_whole)

    def _open_recorded(self, entry: Entry, read: ReadResult) -> tuple[int, int] | str:
        """(descriptor, size) of the file the walk recorded at `entry.path`, or why not.

        The file is opened by its full path with O_NOFOLLOW and then must be the very
        inode the walk recorded: if any directory on the way had been swapped for a
        symlink, the identity check fails and nothing outside the tree is read. Files
        the walk did not record are opened beneath the root with no symlink allowed.
        """
        expected = read.file_ids.get(entry.path)
        try:
            if expected is None:
                fd, st = _fs.open_regular(self._root(), os.fsencode(entry.path.lstrip("/")))
            else:
                fd = os.open(self.root + entry.path, _OPEN_FLAGS)
                st = os.fstat(fd)
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        if expected is not None and (st.st_dev, st.st_ino) != (expected.dev, expected.ino):
            os.close(fd)
            return "replaced while the image was being read"
        return fd, st.st_size

    def open_file(self, entry: Entry, read: ReadResult) -> int | None:
        opened = self._open_recorded(entry, read)
        return None if isinstance(opened, str) else opened[0]

    def hash_file(self, entry: Entry, read: ReadResult) -> tuple[str | None, str | None]:
        """(digest, None), or (None, why not) — records nothing, so workers may call it.

        The file read is the one the walk recorded (see `_open_recorded`).
        """
        opened = self._open_recorded(entry, read)
        if isinstance(opened, str):
            return None, opened
        fd, size = opened
        try:
            digest, nread = _digest.of_fd(fd, size)
        except OSError as exc:
            return None, f"read error: {exc.strerror}"
        finally:
            os.close(fd)
        if nread != entry.size:
            return None, "size changed while the image was being read"
        return digest, None

    def read_files(self, paths: Collection[str], read: ReadResult) -> dict[str, bytes]:
        """Contents of regular files opened beneath the root, no symlink followed."""
        out: dict[str, bytes] = {}
        budget = self.limits.max_capture_bytes
        for path in paths:
            try:
                fd, st = _fs.open_regular(self._root(), os.fsencode(path.lstrip("/")))
            except OSError:
                continue
            try:
                if st.st_size > budget:
                    raise self.limit("files to read exceed the capture limit", path)
                data = os.pread(fd, st.st_size + 1, 0)
            except OSError as exc:
                read.warn(path, f"unreadable: {exc.strerror}")
                continue
            finally:
                os.close(fd)
            budget -= len(data)
            out[path] = data
        return out

    def head(self, entry: Entry, read: ReadResult) -> bytes | None:
        try:
            fd, _ = _fs.open_regular(self._root(), os.fsencode(entry.path.lstrip("/")))
        except OSError:
            return None
        try:
            return os.pread(fd, HEAD_BYTES, 0)
        except OSError:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None


__all__ = ["DirImage", "ImageWarning"]


def _counted(entries: Iterator[Entry], progress: Callable[[int, int], None]) -> Iterator[Entry]:
    """The walk's entries, reported every 1,024 (a directory has no size to report)."""
    for n, entry in enumerate(entries, 1):
        if not n & 1023:
            progress(n, 0)
        yield entry
