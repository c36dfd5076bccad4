"""Read files inside another root (a chroot, a container, an image tree) safely.

This module owns `RootFS`, which answers "what is at this path as the processes in that
root see it" without ever leaving the root: paths resolve with chroot semantics through
`openat2(RESOLVE_IN_ROOT)` (or the walker of `imgdiff.fs.walk`), on a root given as a path
or as a descriptor such as `/proc/PID/root`; it also spells paths the way they resolve
there (`realpath`, `path_of`) and expands glob(3) patterns. `/proc/PID/root/<path>` itself
is not used: a chrooted process's absolute symlinks would lead a reader there to the
host's files. It must not interpret what it reads, and nothing read is ever executed or
imported.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat as stat_
from types import TracebackType

from imgdiff.fs.openat import open_in_root
from imgdiff.fs.paths import child, normalise
from imgdiff.fs.walk import walk

DEFAULT_LIMIT = 64 << 20
_GLOB_MAGIC = re.compile(r"[*?\[]")


class RootFS:
    """Files inside one root directory, resolved as that root's processes resolve them."""

    def __init__(self, root: str | int) -> None:
        if isinstance(root, int):
            self.fd = os.dup(root)
            self.name = f"fd:{root}"
        else:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.name = root
        self._host_path: str | bool | None = False  # the root's own path: not read yet

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

    def readlink(self, path: str) -> str | None:
        """The target of the symlink at `path` (its directory resolved), or None."""
        parent, _, name = path.rpartition("/")
        try:
            fd = self.open(parent or "/", os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return os.readlink(name, dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def realpath(self, path: str) -> str:
        """`path` with every symlink resolved inside the root (`..` stops at the root).

        A missing component or one that is not a directory is kept as named; a symlink
        loop leaves the whole path unresolved (normalised only).
        """
        try:
            return walk(path, lambda parent, name, _last: self.readlink(child(parent, name)))
        except OSError:
            return normalise(path)

    def links_on(self, path: str) -> list[tuple[str, os.stat_result]]:
        """The symlinks resolving `path` inside the root goes through (the resolved path of
        each, as `realpath` meets it, with its own lstat), in order; [] on a loop."""
        found: list[tuple[str, os.stat_result]] = []

        def readlink(parent: str, name: str, _last: bool) -> str | None:
            where = child(parent, name)
            target = self.readlink(where)
            if target is not None and (st := self.lstat(where)) is not None:
                found.append((where, st))
            return target

        try:
            walk(path, readlink)
        except OSError:
            return []
        return found

    def lstat(self, path: str) -> os.stat_result | None:
        """lstat of `path` inside the root (its directory resolved, itself not), or None."""
        parent, _, name = path.rpartition("/")
        if not name:
            return self.stat(path)
        try:
            fd = self.open(parent or "/", os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        finally:
            os.close(fd)

    def path_of(self, fd: int) -> str | None:
        """The path inside the root of what `fd` (opened in this root) leads to, as the
        kernel names it (`/proc/self/fd`), or None where it cannot say: the root's own
        path unknown, or the file no longer under it."""
        if self._host_path is False:
            try:
                self._host_path = os.readlink(f"/proc/self/fd/{self.fd}")
            except OSError:
                self._host_path = None
        root = self._host_path
        if not isinstance(root, str):
            return None
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        if root == "/":
            return target
        if target.startswith(root + "/"):
            return target[len(root) :]
        return target if target == root else None

    def glob(self, pattern: str, max_matches: int) -> list[str]:
        """glob(3) of an absolute pattern inside the root: sorted, existing paths only,
        at most `max_matches` kept at each level of the pattern."""
        paths = ["/"]
        for part in (p for p in pattern.split("/") if p and p != "."):
            found: list[str] = []
            for base in paths:
                if not _GLOB_MAGIC.search(part):
                    found.append(child(base, part))
                    continue
                for name in sorted(self.listdir(base) or ()):
                    # glob(3) leaves dot files out unless the pattern asks for them
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, part):
                        found.append(child(base, name))
            paths = found[:max_matches]
        return sorted(p for p in paths if p != "/" and self.stat(p) is not None)

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
