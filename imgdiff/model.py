"""Frozen records shared by every stage: entries of an image and changes between two.

This module owns the vocabulary (entry types, change statuses, aspects, kinds of path,
how a process uses a file) and the image-side records, nothing else: no I/O, no parsing, no
presentation. Results of the later stages are `results`'.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from imgdiff import _repr


class EntryType(enum.StrEnum):
    """What a path is. Hard links are files that share a `hardlink` group."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"


class Status(enum.StrEnum):
    """How a path differs between the old and the new image."""

    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"


class Aspect(enum.StrEnum):
    """One way a path present in both images can differ (mtime alone never counts)."""

    CONTENT = "content"
    MODE = "mode"
    OWNER = "owner"
    TYPE = "type"
    TARGET = "target"
    XATTRS = "xattrs"
    # additive, and only where asked for (`verify`): a file that is in another hard-link
    # group (joined, split); `diff` counts the same bytes and metadata as unchanged
    HARDLINK = "hardlink"


class Kind(enum.StrEnum):
    """What a changed path is, as `classify` names it (docs/contract.md's `kind`)."""

    ELF_EXECUTABLE = "elf-executable"
    ELF_LIBRARY = "elf-library"
    ELF_OBJECT = "elf-object"
    ELF_CORE = "elf-core"
    ELF_UNPARSEABLE = "elf-unparseable"
    PYTHON_SOURCE = "python-source"
    PYTHON_BYTECODE = "python-bytecode"
    PYTHON_EXTENSION = "python-extension"
    CONFIG = "config"
    SYSTEMD_UNIT = "systemd-unit"
    KERNEL = "kernel"
    KERNEL_MODULE = "kernel-module"
    FIRMWARE = "firmware"
    BOOT = "boot"
    DOCS = "docs"
    SCRIPT = "script"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


class Via(enum.StrEnum):
    """How a process uses a file (docs/contract.md's `via`), strongest first: a path used several
    ways keeps the strongest (`strength`: 0 is the strongest)."""

    EXE = "exe"
    MAPPED = "mapped"
    IMPORTED = "imported"
    OPEN = "open"
    CONFIG = "config"
    DELETED = "deleted"  # a mapped or open file no longer the one on disk
    IMPORT_GRAPH = "import-graph"
    ELF_NEEDED = "elf-needed"

    @property
    def strength(self) -> int:
        """The rank of this kind of evidence: lower is stronger."""
        return _VIA_ORDER[self]


_VIA_ORDER = {via: rank for rank, via in enumerate(Via)}


@attrs.frozen(slots=True)
class Entry:
    """One path in an image, as metadata; content is identified by `digest` when known.

    Readers construct entries on hot paths, so fields are not converted: `type` must be
    an `EntryType` and `xattrs` sorted by name. `path` is absolute inside the image
    (`/usr/bin/env`), decoded with `os.fsdecode` so non-UTF-8 names round-trip exactly.
    `mode` holds permission bits (including setuid/setgid/sticky) without the type.
    `digest` is ``"blake3:<hex>"`` for regular files once computed; readers that stream
    content (tar, OCI) fill it at once, the directory reader leaves it to `Manifest` to
    compute lazily. `implicit` marks a directory an archive implies (a member lies under
    it) but does not list: it is what extraction creates, 0755 and owned by root.
    """

    path: str
    type: EntryType
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    target: str | None = None
    hardlink: str | None = None
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()  # sorted by name
    digest: str | None = None
    implicit: bool = False

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"Entry({_repr.text(self.path)}, {self.type.value!r})"

    def with_digest(self, digest: str) -> Entry:
        """This entry with its content digest filled in."""
        # direct construction: attrs.evolve costs ~10 us per call on hot paths
        return Entry(
            self.path,
            self.type,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            self.mtime_ns,
            self.target,
            self.hardlink,
            self.rdev,
            self.xattrs,
            digest,
            self.implicit,
        )


@attrs.frozen(slots=True)
class ImageWarning:
    """Something a reader could not read exactly, recorded instead of failing the run."""

    path: str
    message: str

    __repr__ = _repr.short_repr


# Warnings of a directory reader after which a path cannot be proven the same in another
# image: its listing (`UNLISTED`: the directory), an entry of it (`UNSTATED`: its parent
# directory) or a symlink's target (`UNREAD_LINK`: the link) was not read.
UNLISTED = "unreadable directory: "
UNSTATED = "vanished or unreadable: "
UNREAD_LINK = "unreadable symlink: "


def unread_paths(warnings: Iterable[ImageWarning]) -> set[str]:
    """The paths whose contents (a directory's entries, a symlink's target) a read with
    these warnings did not see whole."""
    out = set()
    for w in warnings:
        if w.message.startswith((UNLISTED, UNREAD_LINK)):
            out.add(w.path)
        elif w.message.startswith(UNSTATED):
            out.add(w.path.rsplit("/", 1)[0] or "/")
    return out


@attrs.frozen(slots=True)
class Change:
    """A path that differs between two images; `kind` is filled by classification."""

    path: str
    status: Status = attrs.field(converter=Status)
    aspects: tuple[Aspect, ...] = ()
    old: Entry | None = None
    new: Entry | None = None
    kind: Kind = attrs.field(default=Kind.OTHER, converter=Kind)  # a kind's string works too
    packages: tuple[str, ...] = ()  # "manager:name[:arch]" of the packages that own the path

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"Change({_repr.text(self.path)}, {self.status.value!r}, kind={self.kind.value!r})"

    @property
    def entry(self) -> Entry:
        """The newest side that exists: `new`, or `old` for a removal."""
        found = self.new if self.new is not None else self.old
        assert found is not None  # a Change always has at least one side
        return found
