"""Lexical path arithmetic for the paths of a root: no file is looked at.

This module owns joining and normalising paths inside a root (an image, a process's
root): `..` stops at `/`, as it does inside a chroot, and an absolute path keeps exactly
one leading slash. It must not resolve symlinks (`imgdiff.fs.walk` does) nor touch the
file system.
"""

from __future__ import annotations

import posixpath


def normalise(path: str) -> str:
    """`path` with `.`, `..` and repeated or trailing slashes folded, lexically.

    An absolute path stays under `/` (`/../x` is `/x`); a relative one stays relative, as
    `posixpath.normpath` leaves it.
    """
    p = posixpath.normpath(path)
    if p.startswith("//"):  # POSIX keeps exactly two leading slashes; a root path has one
        p = "/" + p.lstrip("/")
    return p


def join(base: str, rel: str) -> str:
    """`rel` taken from the directory `base` (an absolute `rel` from `/`), normalised."""
    return normalise(posixpath.join(base, rel))


def child(directory: str, name: str) -> str:
    """`name` in `directory`, spelled as given: no `..` folded, no slash added twice.

    For the dynamic loader's paths, which keep the spelling they were found under
    (`/opt/app/bin/../lib/libx.so.1`, as `ldd` prints it).
    """
    return f"{directory.rstrip('/')}/{name}"


def canonical(path: str) -> bool:
    """True for an absolute path with no empty, `.` or `..` component (and not the root):
    what `normalise` leaves unchanged, told without building it (a saved manifest's every
    path is asked). What saved manifests', delta archives' and reports' paths must be."""
    if path[:1] != "/" or path == "/" or path.endswith(("/", "/.", "/..")):
        return False
    return "//" not in path and "/./" not in path and "/../" not in path
