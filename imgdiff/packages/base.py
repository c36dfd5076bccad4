"""Records and helpers every package reader shares: packages, databases, path normalisation.

A reader (dpkg, rpm, pip) turns an image's own database, read through
`Manifest.read_files` and never from the host, into a `PackageDB`. Paths are normalised
once, here: the directories a manager lists are resolved through the image's own
symlinks (usr-merge: dpkg lists `/lib/x86_64-linux-gnu/libc.so.6`, the file lives at
`/usr/lib/...`), so package ownership and the file-level delta speak of the same paths.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection
from typing import Protocol

import attrs

from imgdiff.fs.paths import child, join, normalise
from imgdiff.fs.walk import walk
from imgdiff.manifest import Manifest
from imgdiff.model import EntryType, ImageWarning

_PYTHON_VERSION = re.compile(r"/python3\.\d+(?=/|$)")


@attrs.frozen
class Package:
    """One installed package (or Python distribution) in one image."""

    manager: str  # "dpkg", "rpm" or "pip"
    name: str
    version: str
    arch: str = ""  # "" where the manager has none (pip)
    files: tuple[str, ...] = ()  # normalised absolute image paths the package owns
    config_files: tuple[str, ...] = ()  # normalised; dpkg conffiles, rpm %config
    depends: tuple[str, ...] = ()  # names of packages it needs (same manager, alternatives flat)
    # (normalised path, "md5:<hex>" | "sha256:<hex>" | ...) as the database records it
    file_digests: tuple[tuple[str, str], ...] = ()
    # where a pip distribution is installed (its site directory); "" for dpkg and rpm.
    # pip's `arch` holds the same directory, as `imgdiff.packages/1` has always said.
    location: str = ""
    # False for a dpkg package removed but not purged ("rc", config-files): it still owns
    # its conffiles, but is not installed, so the package delta counts it absent
    installed: bool = True
    # the source package it was built from (dpkg `Source:`, else its own name; rpm: the
    # name in SOURCERPM); "" where unknown (pip, an rpm with no SOURCERPM)
    source: str = ""

    @property
    def key(self) -> str:
        """Identity within one manager and image: name, plus arch where there is one."""
        return f"{self.name}:{self.arch}" if self.arch else self.name

    @property
    def lineage(self) -> str:
        """Identity across images: the key, with a site directory's Python version left
        out (`/usr/lib/python3.11/site-packages` and `.../python3.12/...` are one place:
        the distribution is upgraded with its interpreter, not removed and added)."""
        if not self.location:
            return self.key
        return f"{self.name}:{_PYTHON_VERSION.sub('/python3', self.location)}"


@attrs.frozen
class PackageDB:
    """One package manager's packages in one image."""

    manager: str
    packages: tuple[Package, ...]
    source: str  # the database path inside the image, for messages
    warnings: tuple[ImageWarning, ...] = ()

    def restricted(self, only: Collection[str] | None) -> PackageDB:
        """This database as a reader given `only` returns it: each package's files and
        config files among `only`, no digests (itself when `only` is None)."""
        if only is None:
            return self
        return attrs.evolve(
            self,
            packages=tuple(
                attrs.evolve(
                    p,
                    files=tuple(f for f in p.files if f in only),
                    config_files=tuple(f for f in p.config_files if f in only),
                    file_digests=(),
                )
                for p in self.packages
            ),
        )


class PathResolver:
    """Normalise paths through an image's own directory symlinks, never leaving the image."""

    def __init__(self, manifest: Manifest) -> None:
        self._entries = manifest.entries
        self._memo: dict[str, str] = {"/": "/"}
        self._fast: dict[str, str] = {}  # raw parent as given -> resolved parent + "/"

    def _dir(self, path: str) -> str:
        """Canonical form of a directory path (every component resolved)."""
        hit = self._memo.get(path)
        if hit is not None:
            return hit
        try:
            resolved = walk(path, self._readlink)
        except OSError:
            return path  # a loop: keep the unresolved path, it will simply own nothing
        self._memo[path] = resolved
        return resolved

    def _readlink(self, parent: str, name: str, _last: bool) -> str | None:
        entry = self._entries.get(child(parent, name))
        if entry is None or entry.type is not EntryType.SYMLINK or not entry.target:
            return None
        # `..` in a target is taken lexically, from the link's directory, and the result
        # walked again from `/` (where the link's directory was itself a link, the kernel
        # would go up from that link's target instead)
        return join(parent, entry.target)

    def normalise(self, path: str) -> str:
        """`path` with its parent directories resolved (the last component kept as is)."""
        parent, _, name = path.rpartition("/")
        hit = self._fast.get(parent)
        if hit is not None and name not in ("", ".", ".."):
            return hit + name  # the common case: a sibling of a path already seen
        path_in = path
        path = normalise(path if path.startswith("/") else "/" + path)
        if path == "/":
            return path
        parent, _, name = path.rpartition("/")
        resolved = self._dir(parent or "/")
        if path_in == path:  # a clean absolute path: its parent string can be reused as is
            self._fast[parent] = resolved.rstrip("/") + "/"
        return posixpath.join(resolved, name)


class Reader(Protocol):
    """A package reader: the image's database of one manager, or None if it has none.

    `only` names the paths the caller will ask owners of: the reader may then skip work
    (digests, paths no one asks about), and its packages list only files among `only`.
    """

    def __call__(
        self, manifest: Manifest, resolver: PathResolver, *, only: Collection[str] | None = None
    ) -> PackageDB | None: ...
