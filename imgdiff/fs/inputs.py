"""Files a caller names as input (images, saved manifests, delta archives), opened for
reading only when they are regular files.

Sniffing what an input is must not act on it: opening a FIFO for reading blocks until a
writer comes, and opening a device may act on the device (a tape rewinds, a watchdog
arms). So the path is checked with `stat` before it is opened, and the descriptor again
with `fstat` in case the path was replaced between the two. It must not read what it
opens: callers get descriptors.
"""

from __future__ import annotations

import errno
import os
import stat


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


__all__ = ["open_regular_file"]
