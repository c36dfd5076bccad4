"""What extracting archive members in order leaves on disk, worked out without a disk.

`Extraction` applies tar members one after another the way extraction does, so an
archive and the tree it extracts to compare equal:

- a directory the archive implies but does not list is created, 0755 and owned by root
  (`Entry.implicit`);
- a later member replaces an earlier one at the same path; a directory replacing a
  directory keeps its children;
- a hard link is another name for its target's inode: type, mode, owner, content and
  xattrs are the target's as it is at that point of the stream, and a target replaced
  later does not take the link with it;
- a member that extraction cannot place is dropped with a warning naming it: one under a
  symlink (bsdtar refuses to extract through symlinks; we never resolve through them)
  or under a non-directory, and, for a plain tar, a non-directory replacing a directory
  that has children (GNU tar and bsdtar leave the directory). Container layers are
  applied as runtimes apply them: there, such a member replaces the whole subtree.

It reads no archive itself; `_tar` and `_oci` feed it `Member` records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from imgdiff._entrytable import EntryStore
from imgdiff.errors import BadInput
from imgdiff.image._tarext import SparseMap
from imgdiff.image.base import ReadResult
from imgdiff.model import Entry, EntryType

_DIR = EntryType.DIR
_FILE = EntryType.FILE


class Member(NamedTuple):
    """One tar member as stored: `name` normalised to an absolute path, nothing resolved.

    `linkname` is a symlink's target as written, or a hard link's target path normalised;
    `size` is the logical size (a sparse member's real size); `offset` is where stored
    content starts in the decompressed stream (after a sparse map stored with the data);
    `sparse` is a sparse member's map, its stored segments back to back from `offset`;
    `content` is kept when the reader's `capture` selects the path; `head` holds the first
    bytes of content whose kind depends on it (ELF, "#!").
    """

    name: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str | None
    hardlink: bool
    rdev: tuple[int, int] | None
    xattrs: tuple[tuple[str, bytes], ...]
    digest: str | None
    offset: int = -1
    content: bytes | None = None
    head: bytes | None = None
    sparse: SparseMap | None = None


def _parent(path: str) -> str:
    """The parent of an absolute image path; "" for a child of the root."""
    return path[: path.rfind("/")]


class Extraction:
    """The tree built so far: `entries` by path, each with its parents present as dirs."""

    def __init__(
        self,
        src: str,
        result: ReadResult,
        *,
        layered: bool = False,
        charge: Callable[[int, str], None] | None = None,
    ) -> None:
        self.src = src
        # called with the bytes of each implicit directory's path, to bound them
        self.charge = charge
        # compact: a plain entry is a record until someone asks for its `Entry`
        self.entries = EntryStore()
        self._notes = result  # where warnings go
        self._heads = result.heads
        self._captured = result.captured
        self._layered = layered
        self._with_children: set[str] = set()
        self._groups = 0  # hard-link groups get private names; `Manifest` renames them
        self._dropped: set[str] = set()  # members extraction could not place

    def add(self, m: Member) -> None:
        """Apply one member."""
        name = m.name
        entries = self.entries
        parent = _parent(name)
        if parent:
            above = entries.type_of(parent)
            if above is not _DIR and not self._make_parents(parent, name):
                return
        new_is_dir = m.type is _DIR and not m.hardlink
        if not new_is_dir and name in self._with_children and entries.type_of(name) is _DIR:
            if not self._layered:
                self._drop(name, "replaces a directory that is not empty")
                return
            self.remove_under(name)
        if m.hardlink:
            entry = self._link(m)
            if entry is None:
                return
            entries[name] = entry
            etype = entry.type
        else:
            etype = m.type
            if etype is EntryType.SYMLINK or m.rdev is not None or m.xattrs:
                entries[name] = Entry(
                    name, etype, m.mode, m.uid, m.gid, m.size, m.mtime_ns,
                    m.linkname if etype is EntryType.SYMLINK else None,
                    None, m.rdev, m.xattrs, m.digest,
                )  # fmt: skip
            else:
                entries.put(name, etype, m.mode, m.uid, m.gid, m.size, m.mtime_ns, m.digest)
        if parent:
            self._with_children.add(parent)
        self._track_content(name, m, etype)

    def _drop(self, name: str, why: str) -> None:
        self._dropped.add(name)
        self._notes.warn(name, f"{why}: dropped, as extraction does")

    def _link(self, m: Member) -> Entry | None:
        """A hard link: another name for the inode now at its target path."""
        base = self.entries.get(m.linkname) if m.linkname is not None else None
        if base is None and m.linkname in self._dropped:
            self._drop(m.name, f"links to {m.linkname}, which was dropped")
            return None
        if base is None and m.linkname is not None and (link := self._through_link(m.linkname)):
            # bsdtar refuses to resolve a link's target through a symlink, as any member
            # under one (GNU tar follows an in-tree one: we do not copy it, see architecture)
            self._drop(m.name, f"links to {m.linkname}, which lies under {link}, a symlink")
            return None
        if base is None:
            raise BadInput(self.src, f"hard link to missing target {m.linkname!r}", m.name)
        if base.type is _DIR:
            raise BadInput(self.src, f"hard link to a directory {m.linkname!r}", m.name)
        if base.type is not _FILE:
            # a second name of a symlink, FIFO or device: the directory reader sees an
            # entry of the same type and metadata, with no group (groups are for files)
            return Entry(
                m.name, base.type, base.mode, base.uid, base.gid, 0, base.mtime_ns,
                base.target, None, base.rdev, base.xattrs, None,
            )  # fmt: skip
        group = base.hardlink
        if group is None:
            self._groups += 1
            group = f"\0{self._groups}"
            self.entries[base.path] = Entry(
                base.path, _FILE, base.mode, base.uid, base.gid, base.size, base.mtime_ns,
                None, group, None, base.xattrs, base.digest,
            )  # fmt: skip
        return Entry(
            m.name, _FILE, base.mode, base.uid, base.gid, base.size, base.mtime_ns,
            None, group, None, base.xattrs, base.digest,
        )  # fmt: skip

    def _through_link(self, path: str) -> str | None:
        """The symlink entry among `path`'s parents, the nearest to the root, or None."""
        at = 0
        while (at := path.find("/", at + 1)) > 0:
            if self.entries.type_of(path[:at]) is EntryType.SYMLINK:
                return path[:at]
        return None

    def _make_parents(self, parent: str, name: str) -> bool:
        """Create the implied directories above `name`; False if extraction cannot."""
        entries = self.entries
        missing = []
        path = parent
        while path:
            found = entries.type_of(path)
            if found is not None:
                if found is not _DIR:
                    self._drop(name, f"lies under {path}, a {found.value}")
                    return False
                break
            missing.append(path)
            path = _parent(path)
        if self.charge is not None:
            self.charge(sum(map(len, missing)), name)
        for path in reversed(missing):
            entries.put(path, _DIR, 0o755, 0, 0, 0, 0, None, True)
            above = _parent(path)
            if above:
                self._with_children.add(above)
        return True

    def _track_content(self, name: str, m: Member, etype: EntryType) -> None:
        """Keep heads and captured contents in step with the file now at `name`."""
        heads, captured = self._heads, self._captured
        if m.head is None and m.content is None and not m.hardlink:
            if heads and name in heads:
                del heads[name]
            if captured and name in captured:
                del captured[name]
            return
        source = m.linkname if m.hardlink and etype is _FILE else None
        head = self._heads.get(source) if source is not None else m.head
        if head is not None:
            self._heads[name] = head
        else:
            self._heads.pop(name, None)
        content = self._captured.get(source) if source is not None else m.content
        if content is not None:
            self._captured[name] = content
        else:
            self._captured.pop(name, None)

    # -- container layers --------------------------------------------------------------
    def remove_under(self, top: str) -> None:
        """Remove everything below the directory `top`, keeping `top` itself."""
        self.remove((), (top,))

    def remove(self, paths: Iterable[str], emptied: Iterable[str]) -> None:
        """Remove `paths` with everything under them, and everything under `emptied`.

        Whiteouts and opaque directories of a container layer; the parents stay.
        """
        gone = set(paths)
        below = {p.rstrip("/") + "/" for p in (*gone, *emptied)}
        if not below:
            return
        everything = "/" in below
        doomed = [p for p in self.entries if everything or p in gone or _under(p, below)]
        for path in doomed:
            del self.entries[path]
            self._heads.pop(path, None)
            self._captured.pop(path, None)
        self._with_children = {parent for p in self.entries if (parent := _parent(p))}


def _under(path: str, below: set[str]) -> bool:
    """True if a directory prefix of `path` ("/a/", "/a/b/", ...) is in `below`."""
    cut = path.find("/", 1)
    while cut > 0:
        if path[: cut + 1] in below:
            return True
        cut = path.find("/", cut + 1)
    return False


__all__ = ["Extraction"]
