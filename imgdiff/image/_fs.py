"""Open files beneath a directory without ever leaving it.

`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` where the kernel
has it (Linux 5.6+), otherwise a component-wise walk with `O_NOFOLLOW`. Both refuse any
symlink on the way, so a path found by walking an image can only open that same path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

_SYS_OPENAT2 = 437  # same number on every architecture (unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_have_openat2: bool | None = None


def _openat2(dir_fd: int, rel: bytes, flags: int) -> int:
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
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
