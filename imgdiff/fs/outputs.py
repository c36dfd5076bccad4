"""Files the caller names as output, checked before any work is done.

Outputs are written beside their path and renamed over it; this module only says,
before the work, whether that can be done (the parent exists and takes a new file, the
path is no directory, device, FIFO or symlink). It writes nothing.
"""

from __future__ import annotations

import os
import stat

from imgdiff.errors import BadInput, escape_path


def writable(path: str | os.PathLike[str]) -> str:
    """`path` as text, when an output can be written there; `BadInput` naming it
    otherwise (refused before any work is done)."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BadInput(path, f"cannot write: no such directory {escape_path(parent)}")
    if os.path.isdir(path):
        raise BadInput(path, "cannot write: is a directory")
    try:
        st = os.lstat(path)
    except OSError:
        pass
    else:
        # outputs are written beside and renamed over the path: a device node, FIFO or
        # symlink there would be replaced by a regular file (`-o /dev/null` took the node)
        if not stat.S_ISREG(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise BadInput(path, f"cannot write: {what} (the output replaces what is there)")
    import tempfile

    try:  # a real probe: access(2) says yes to root on /proc or a read-only filesystem
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise BadInput(path, f"cannot write in {escape_path(parent)}: {exc.strerror}") from None
    return path


__all__ = ["writable"]
