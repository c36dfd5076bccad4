"""Files a caller names as input (images, saved manifests, delta archives), opened for
reading only when they are regular files.

Sniffing what an input is must not act on it: opening a FIFO for reading blocks until a
writer comes, and opening a device may act on the device (a tape rewinds, a watchdog
arms). So the path is checked with `stat` before it is opened, and the descriptor again
with `fstat` in case the path was replaced between the two. It must not read what it
opens: callers get descriptors. The path arguments of the public API are taken here too
(`fspath`: a `pathlib.Path` as its text; `directory`: a root or tree that must exist).
"""

from __future__ import annotations

import errno
import os
import stat

from imgdiff.errors import BadInput

TYPE_CHECKING = False
if TYPE_CHECKING:  # fspath's signatures: typing is not imported at run time (start-up)
    from typing import TypeVar, overload

    _T = TypeVar("_T")

    @overload
    def fspath(value: str | os.PathLike[str]) -> str: ...
    @overload
    def fspath(value: _T) -> _T: ...
    def fspath(value: object) -> object: ...

else:

    def fspath(value: object) -> object:
        """A path argument as text (`os.fspath` of a `pathlib.Path`); anything else (a
        `Manifest`, an `Image`, None) as given."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def directory(path: str | os.PathLike[str]) -> str:
    """`path` as text, when it is a directory; `BadInput` naming it otherwise."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise BadInput(path, "not a directory" if os.path.lexists(path) else "no such directory")
    return path


def open_regular_file(path: str) -> int:
    """A read-only descriptor on the regular file at `path` (symlinks followed); OSError
    (EINVAL for anything else that exists) before anything else is opened."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    # O_NONBLOCK: a FIFO put in the file's place since the stat opens without waiting
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["directory", "fspath", "open_regular_file"]
