"""Open files beneath a directory, or inside it as a root, without ever leaving it.

This module owns the `openat2` system call and its fallbacks for kernels without it
(before Linux 5.6, or behind a seccomp filter): `open_beneath` refuses any symlink on the
way (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, else a component-wise `O_NOFOLLOW` walk), so
a path found by walking an image can only open that same path; `open_in_root` resolves
with chroot semantics (`RESOLVE_IN_ROOT`, else `imgdiff.fs.walk` over held
directory descriptors). Neither ever follows a magic link. It must not read
what it opens: callers get descriptors.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from imgdiff.fs.paths import child
from imgdiff.fs.walk import walk

_SYS_OPENAT2 = 437  # same number on every architecture (unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_have_openat2: bool | None = None


def _openat2(dir_fd: int, rel: bytes, flags: int, resolve: int = -1) -> int:
    if resolve < 0:
        resolve = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
    how = _OpenHow(flags, 0, resolve)
    fd = int(_libc.syscall(_SYS_OPENAT2, dir_fd, rel, ctypes.byref(how), ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return fd


def _open_walk(dir_fd: int, rel: bytes, flags: int) -> int:
    parts = [p for p in rel.split(b"/") if p]
    if not parts or any(p in (b".", b"..") for p in parts):
        raise OSError(errno.EINVAL, "not a plain relative path", rel)
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def open_beneath(dir_fd: int, rel: bytes, flags: int = os.O_RDONLY) -> int:
    """Open `rel` (relative, no symlinks anywhere on the way) under `dir_fd`."""
    global _have_openat2  # noqa: PLW0603 - probe the kernel once per process
    flags |= os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    if _have_openat2 is not False:
        try:
            fd = _openat2(dir_fd, rel, flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _have_openat2:
                raise
            _have_openat2 = False  # ENOSYS: old kernel; EPERM: seccomp filter
        else:
            _have_openat2 = True
            return fd
    return _open_walk(dir_fd, rel, flags)


def open_regular(dir_fd: int, rel: bytes) -> tuple[int, os.stat_result]:
    """Open a regular file beneath `dir_fd`; refuse anything else before reading a byte."""
    fd = open_beneath(dir_fd, rel)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", rel)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _open_in_root_walk(root_fd: int, path: bytes, flags: int) -> int:
    """Resolve `path` as if `root_fd` were `/` (`imgdiff.fs.walk`), through directory
    descriptors held open from the root down: no component is looked up by name twice."""
    dirs = {"/": os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)}
    opened: list[int] = []

    def readlink(parent: str, name: str, last: bool) -> str | None:
        dir_fd = dirs[parent]
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # ENOENT: the open fails
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(name, dir_fd=dir_fd)
        if last:
            opened.append(os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd))
        else:  # entered now, as the kernel does: `file/..` is ENOTDIR
            key = child(parent, name)
            if key not in dirs:
                dirs[key] = os.open(
                    name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
                )
        return None

    try:
        resolved = walk(os.fsdecode(path), readlink)
        if opened:
            return opened.pop()
        return os.open(".", flags, dir_fd=dirs[resolved])  # the path ended in `..` or `/`
    finally:
        for fd in (*dirs.values(), *opened):
            os.close(fd)


_have_in_root: bool | None = None


def open_in_root(root_fd: int, path: str | bytes, flags: int = os.O_RDONLY) -> int:
    """Open `path` inside the root `root_fd` with chroot semantics (symlinks resolved
    there, absolute ones from that root, `..` clamped), never reaching outside it and
    never through magic links (`/proc/self/...`)."""
    global _have_in_root  # noqa: PLW0603 - probe the kernel once per process
    raw = os.fsencode(path)
    # openat2 refuses O_PATH with anything but O_CLOEXEC/O_DIRECTORY/O_NOFOLLOW
    flags |= os.O_CLOEXEC if flags & os.O_PATH else os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    if _have_in_root is not False:
        try:
            fd = _openat2(root_fd, raw, flags, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _have_in_root:
                raise
            _have_in_root = False
        else:
            _have_in_root = True
            return fd
    return _open_in_root_walk(root_fd, raw, flags)
