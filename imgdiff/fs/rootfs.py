"""Read files inside another root (a chroot, a container, an image tree) safely.

`RootFS` answers "what is at this path as the processes in that root see it" without
ever leaving the root: paths resolve with chroot semantics through
`openat2(RESOLVE_IN_ROOT)` (or an equivalent user-space walk), on a root given as a path
or as a descriptor such as `/proc/PID/root`. `/proc/PID/root/<path>` itself is not used:
a chrooted process's absolute symlinks would lead a reader there to the host's files.
Nothing read is ever executed or imported.
"""

from __future__ import annotations

import os
import stat as stat_
from types import TracebackType

from imgdiff.fs.openat import open_in_root

DEFAULT_LIMIT = 64 << 20


class RootFS:
    """Files inside one root directory, resolved as that root's processes resolve them."""

    def __init__(self, root: str | int) -> None:
        if isinstance(root, int):
            self.fd = os.dup(root)
            self.name = f"fd:{root}"
        else:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.name = root

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """A descriptor for `path` inside the root (OSError as the kernel reports it)."""
        return open_in_root(self.fd, path, flags)

    def stat(self, path: str) -> os.stat_result | None:
        """stat of what `path` leads to inside the root, or None."""
        try:
            fd = self.open(path, os.O_PATH)
        except OSError:
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def is_file(self, path: str) -> bool:
        """True if `path` leads to a regular file inside the root."""
        st = self.stat(path)
        return st is not None and stat_.S_ISREG(st.st_mode)

    def is_dir(self, path: str) -> bool:
        """True if `path` leads to a directory inside the root."""
        st = self.stat(path)
        return st is not None and stat_.S_ISDIR(st.st_mode)

    def read(self, path: str, limit: int = DEFAULT_LIMIT) -> bytes | None:
        """Content of a regular file (None if absent, not regular, unreadable or over `limit`)."""
        try:
            fd = self.open(path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            return os.pread(fd, st.st_size + 1, 0)[: limit + 1]
        except OSError:
            return None
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str] | None:
        """Names in a directory inside the root, or None."""
        try:
            fd = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return os.listdir(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the root descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RootFS:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
