"""The one symlink walker: a path resolved component by component, as inside a chroot.

This module owns the rules every resolution inside a root follows: a symlink is replaced
by its target, an absolute target starts again from `/`, `..` leaves the last component
resolved so far and never goes above `/`, and at most `MAX_HOPS` links are followed for
one path (the kernel's MAXSYMLINKS). Trees on disk, manifests and held directory
descriptors share these rules by passing the function that reads a link. It must not read
anything itself nor decide what a missing component means: the readlink function answers
for its tree (and may raise), and each caller decides what a loop means.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

MAX_HOPS = 40  # the kernel's MAXSYMLINKS

ReadLink = Callable[[str, str, bool], "str | None"]
"""`(parent, name, last) -> target`: the target of the symlink `name` in the resolved
directory `parent`, or None when it is not a symlink (absent, a file, a directory).
`last` says no component follows `name` (a `..` counts as one)."""


def walk(path: str, readlink: ReadLink) -> str:
    """`path` resolved from `/` through `readlink`: absolute, symlink-free, normalised.

    Empty and `.` components are skipped. Raises `OSError(ELOOP)` naming `path` when more
    than `MAX_HOPS` links are met, and whatever `readlink` raises.
    """
    done: list[str] = []
    todo = [p for p in reversed(path.split("/")) if p and p != "."]  # next one last
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        target = readlink("/" + "/".join(done), part, not todo)
        if target is None:
            done.append(part)
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            done.clear()
        todo.extend(p for p in reversed(target.split("/")) if p and p != ".")
    return "/" + "/".join(done)
