"""Lexical path arithmetic for the paths of a root: no file is looked at.

This module owns joining and normalising paths inside a root (an image, a process's
root): `..` stops at `/`, as it does inside a chroot, and an absolute path keeps exactly
one leading slash. It must not resolve symlinks (`imgdiff.fs.walk` does) nor touch the
file system.
"""

from __future__ import annotations

import posixpath
from fnmatch import fnmatchcase

_WILDCARDS = "*?["


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


def is_glob(path: str) -> bool:
    """True when `path` holds a `*` or `?` wildcard: a glob(3) pattern (its `[…]`
    classes too). A `[` alone is taken literally: `/usr/bin/[` is a file."""
    return "*" in path or "?" in path


def glob_head(pattern: str) -> str:
    """What every path `pattern` matches starts with: the text before its first wildcard."""
    return pattern[: min((i for c in _WILDCARDS if (i := pattern.find(c)) >= 0), default=None)]


def glob_match(pattern: str, path: str) -> bool:
    """True when `path` matches the glob(3) `pattern`, lexically: component by
    component, a wildcard never crosses `/` nor matches a leading `.` (no GLOB_PERIOD)."""
    pats, parts = pattern.split("/"), path.split("/")
    return len(pats) == len(parts) and all(
        fnmatchcase(part, pat) and (pat.startswith(".") or not part.startswith("."))
        for pat, part in zip(pats, parts, strict=True)
    )
