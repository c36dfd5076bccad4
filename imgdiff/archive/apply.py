"""`apply` and `rollback`: a delta archive onto a tree that is OLD, crash-safe either way.

The tree is first checked to be OLD (its manifest against the one the header rebuilds),
and nothing is touched when it is not. Then, in `TREE/var/lib/imgdiff/`:

1. staging: a record of what apply makes for its state directory (so a refusal, or a
   rollback after a kill, leaves exactly OLD), then every new file, symlink and FIFO is
   written under `staging/`, its bytes checked against NEW's digest, its metadata set
   as NEW's (owner, mode, xattrs, mtime), and fsynced;
2. a journal of the operations is written (fsync, rename, fsync), taking over the record;
3. commit: what is replaced or removed is renamed into `undo/` (no copy), staged files
   are renamed into place, directories made, hard links linked, metadata set, directory
   metadata last and deepest first;
4. the paths the commit touched are checked to be NEW's (the rest was checked to be
   OLD, which is NEW there), and the journal marked done; undo data stays until the
   next apply, so `rollback` can give OLD back after a completed apply too.

Every step of the commit is idempotent and decided by what exists (a staged file not yet
renamed, an undo slot already filled), so after SIGKILL or power loss running `apply`
again finishes, and `rollback` undoes whatever was done. All paths are opened beneath
the tree with no symlink on the way (`fs.openat`), so a symlink in the tree can never
redirect a write outside it. Nothing here decides what a delta holds (`pack`) or how it
is encoded (`format`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import json
import os
import shutil
import stat
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import attrs
import blake3

from imgdiff import _digest
from imgdiff.archive.codec import MAX_BASE, decode
from imgdiff.archive.format import (
    STATE_DIR,
    Header,
    Record,
    in_state_dir,
    keeps_file,
    read_header,
    record_data,
)
from imgdiff.archive.pack import creates_device
from imgdiff.delta import compare
from imgdiff.errors import BadInput, ImgdiffError, escape_path
from imgdiff.fs.inputs import fspath, open_regular_file
from imgdiff.fs.openat import open_beneath
from imgdiff.image import DirImage
from imgdiff.image._dir import _TYPES as _STAT_TYPES
from imgdiff.image._dir import mounts_below
from imgdiff.manifest import ImageInfo, Manifest
from imgdiff.model import Aspect, Change, Entry, EntryType, Status
from imgdiff.results import ApplyResult

_JOURNAL = "journal.json"
_HISTORY = "history.json"
_HEADER = "delta-header"  # the applied delta's header: what rollback needs of it
_STAGING = "staging.json"  # an unfinished staging: what apply made for the state directory
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotTheBase(BadInput):
    """The tree is not the delta's OLD (or not the image a rollback expects)."""


@attrs.frozen
class Op:
    """One step of the commit; `n` names its staging and undo slots."""

    n: int
    action: str  # aside | mkdir | place | link | meta
    path: str
    leader: str | None = None  # link: the path the new name links to


# -- the operations a header implies --------------------------------------------------------
def _content_same(o: Entry, n: Entry) -> bool:
    if o.type is not n.type:
        return False
    if n.type is EntryType.FILE:
        return keeps_file(o, n)
    if n.type is EntryType.SYMLINK:
        return o.target == n.target
    return o.rdev == n.rdev


def _meta_same(o: Entry, n: Entry) -> bool:
    return (o.mode, o.uid, o.gid, o.xattrs, o.mtime_ns) == (
        n.mode,
        n.uid,
        n.gid,
        n.xattrs,
        n.mtime_ns,
    )


def operations(header: Header) -> list[Op]:
    """The commit's steps, in order: asides deepest first, then directories shallowest
    first, files, links, and metadata with directories last and deepest first."""
    old = header.old_manifest
    new = header.new.entries
    asides: list[str] = []
    mkdirs: list[str] = []
    places: list[str] = []
    links: list[tuple[str, str]] = []
    metas: list[str] = []
    dirmetas: list[str] = []
    touched_parents: set[str] = set()
    for p in sorted(old.keys() | new.keys()):
        o, n = old.get(p), new.get(p)
        if o is not None and n is not None and _content_same(o, n):
            if not _meta_same(o, n):
                (dirmetas if n.type is EntryType.DIR else metas).append(p)
            continue
        touched_parents.add(p.rpartition("/")[0] or "/")
        if o is not None:
            asides.append(p)
        if n is None:
            continue
        if creates_device(o, n):
            raise BadInput(header.new.info.path, "a delta never creates device nodes", p)
        if n.type is EntryType.DIR:
            mkdirs.append(p)
            dirmetas.append(p)
        elif n.type is EntryType.FILE and n.hardlink not in (None, p):
            links.append((p, n.hardlink))
        else:
            places.append(p)
    for parent in touched_parents:  # renames change their parents' mtimes: set NEW's again
        if parent in new and new[parent].type is EntryType.DIR and parent not in dirmetas:
            dirmetas.append(parent)
    ops: list[Op] = []
    for p in sorted(asides, key=lambda x: (-x.count("/"), x)):
        ops.append(Op(len(ops), "aside", p))
    for p in sorted(mkdirs, key=lambda x: (x.count("/"), x)):
        ops.append(Op(len(ops), "mkdir", p))
    for p in places:
        ops.append(Op(len(ops), "place", p))
    for p, leader in links:
        ops.append(Op(len(ops), "link", p, leader))
    for p in metas:
        ops.append(Op(len(ops), "meta", p))
    for p in sorted(dirmetas, key=lambda x: (-x.count("/"), x)):
        ops.append(Op(len(ops), "meta", p))
    return ops


# -- the tree, reached only beneath its root --------------------------------------------------
class Tree:
    """A directory tree changed only through descriptors opened beneath its root."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        try:
            self.fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            raise BadInput(root, f"cannot open the tree: {exc.strerror}") from None
        self._kept: dict[str, int] | None = None

    def close(self) -> None:
        os.close(self.fd)

    def lock(self) -> None:
        """Hold the tree for this apply or rollback (an exclusive flock of the root's
        descriptor, released when it is closed); another running on it is refused."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(
                self.root, "another imgdiff apply or rollback is running on this tree"
            ) from None

    @contextlib.contextmanager
    def keeping_directories(self) -> Iterator[None]:
        """Within the block, each directory is opened once and its descriptor reused.

        Only for stretches that never rename or remove a directory (a kept descriptor
        would follow it wherever it went): checking, and the commit after its asides.
        """
        self._kept = {}
        try:
            yield
        finally:
            kept, self._kept = self._kept, None
            for fd in kept.values():
                os.close(fd)

    @contextlib.contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """(descriptor of `path`'s directory, its last name), no symlink on the way."""
        head, _, name = path.rpartition("/")
        if not head:
            yield self.fd, name
            return
        kept = self._kept
        if kept is not None:
            fd = kept.get(head)
            if fd is None:
                fd = kept[head] = open_beneath(self.fd, os.fsencode(head.lstrip("/")), _DIR_FLAGS)
            yield fd, name
            return
        fd = open_beneath(self.fd, os.fsencode(head.lstrip("/")), _DIR_FLAGS)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result | None:
        """The path's own status (a symlink's, not its target's), or None if absent."""
        try:
            with self.parent(path) as (fd, name):
                return os.lstat(name, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def link(self, src: str, dst: str) -> None:
        """A hard link `dst` to the very inode at `src` (a symlink itself, not its target)."""
        with self.parent(src) as (sfd, sname), self.parent(dst) as (dfd, dname):
            os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def unlink(self, path: str) -> None:
        with self.parent(path) as (fd, name):
            os.unlink(name, dir_fd=fd)

    def rename(self, src: str, dst: str) -> None:
        with self.parent(src) as (sfd, sname), self.parent(dst) as (dfd, dname):
            os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)

    def read(self, path: str, size_limit: int) -> bytes:
        with self.parent(path) as (fd, name):
            f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        try:
            st = os.fstat(f)
            if not stat.S_ISREG(st.st_mode) or st.st_size > size_limit:
                raise BadInput(self.root, "not a regular file of a readable size", path)
            return os.pread(f, st.st_size, 0)
        finally:
            os.close(f)


def _set_meta(fd: int, name: str, entry: Entry) -> None:
    """Set owner, mode, xattrs and mtime as `entry` says, on `name` in directory `fd`."""
    if entry.type in (EntryType.SYMLINK, EntryType.CHAR, EntryType.BLOCK, EntryType.SOCKET):
        # a symlink cannot be opened, and opening a device can fail or act (ptmx, tty):
        # set metadata by name, never following the last component
        os.chown(name, entry.uid, entry.gid, dir_fd=fd, follow_symlinks=False)
        if entry.type is not EntryType.SYMLINK:  # a symlink's mode is always 0777
            os.chmod(name, entry.mode, dir_fd=fd)
        by_name = f"/proc/self/fd/{fd}/{name}"
        want = dict(entry.xattrs)
        for key in os.listxattr(by_name, follow_symlinks=False):
            if key not in want:
                os.removexattr(by_name, key, follow_symlinks=False)
        for key, value in entry.xattrs:
            os.setxattr(by_name, key, value, follow_symlinks=False)
        os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=fd, follow_symlinks=False)
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    f = os.open(name, flags, dir_fd=fd)
    try:
        set_meta_fd(f, entry)
    finally:
        os.close(f)


def set_meta_fd(f: int, entry: Entry) -> None:
    """Owner first (chown clears set-id bits and capabilities), then mode, xattrs, mtime."""
    os.fchown(f, entry.uid, entry.gid)
    os.fchmod(f, entry.mode)
    want = dict(entry.xattrs)
    for key in os.listxattr(f):
        if key not in want:
            os.removexattr(f, key)
    for key, value in entry.xattrs:
        os.setxattr(f, key, value)
    os.utime(f, ns=(entry.mtime_ns, entry.mtime_ns))


# -- state directory ---------------------------------------------------------------------------
_STATE_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_STATE_MAX = 1 << 28  # a journal lists every path a delta touches


class State:
    """`TREE/var/lib/imgdiff`: journal, history, staging and undo areas.

    Reached only through one descriptor, opened from the tree's root a component at a
    time with no symlink followed, and made there at the first write (a refused apply,
    or the rollback of the only one, removes it); its files are created
    `O_EXCL | O_NOFOLLOW` through that descriptor, so nothing planted in the tree (or
    carried by an image) can redirect a write. A state directory that is not a
    directory of ours, writable by us alone, is refused.
    """

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.dir = tree.root + STATE_DIR  # for messages only: never opened by name
        self.fd: int | None = None
        self._open(create=False)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open(self, *, create: bool) -> None:
        names = STATE_DIR.strip("/").split("/")
        fd = self.tree.fd
        try:
            for i, name in enumerate(names):
                here = "/" + "/".join(names[: i + 1])
                try:
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        if fd != self.tree.fd:  # the parent reached so far
                            os.close(fd)
                        return
                    os.mkdir(name, 0o700 if i == len(names) - 1 else 0o755, dir_fd=fd)
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise BadInput(
                        self.tree.root,
                        f"{here} is a symlink or not a directory: imgdiff's state directory "
                        f"({STATE_DIR}) must be a plain directory in the tree",
                    ) from None
                if fd != self.tree.fd:
                    os.close(fd)
                fd = nxt
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise BadInput(
                    self.tree.root,
                    f"{STATE_DIR} is owned by uid {st.st_uid} with mode "
                    f"{stat.S_IMODE(st.st_mode):04o}: it must be ours and writable by us alone",
                )
        except BaseException:
            if fd != self.tree.fd:
                os.close(fd)
            raise
        self.fd = fd

    def ensure(self) -> int:
        """The state directory's descriptor, made at the first write."""
        if self.fd is None:
            self._open(create=True)
        assert self.fd is not None
        return self.fd

    def path(self, *parts: str) -> str:
        return "/".join((STATE_DIR, *parts))

    def read(self, name: str) -> bytes | None:
        """The bytes of the state file `name`, None if there is none."""
        if self.fd is None:
            return None
        try:
            f = os.open(name, _STATE_READ, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadInput(self.dir, f"cannot open {name}: {exc.strerror}") from None
        try:
            st = os.fstat(f)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _STATE_MAX:
                raise BadInput(self.dir, f"{name} is not a regular file of a readable size")
            return os.pread(f, st.st_size, 0)
        finally:
            os.close(f)

    def _json(self, name: str, what: str) -> Any:
        raw = self.read(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadInput(self.dir, f"unreadable {what}: {exc}") from None

    def journal(self) -> dict[str, Any] | None:
        doc = self._json(_JOURNAL, "journal")
        if doc is None:
            return None
        if not isinstance(doc, dict) or doc.get("schema") != "imgdiff.journal/1":
            raise BadInput(self.dir, "not an imgdiff journal")
        return doc

    def staging_record(self) -> dict[str, Any] | None:
        """The record an unfinished staging left (`_start_staging`), checked: its `made`
        paths are removed by whoever takes the staging back."""
        doc = self._json(_STAGING, "staging record")
        if doc is None:
            return None
        chain = _state_chain()
        made = doc.get("made") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or doc.get("schema") != "imgdiff.staging/1"
            or not isinstance(made, list)
            or made != [p for p in chain if p in made]
            or not isinstance(doc.get("parent_mtime_ns"), int | None)
        ):
            raise BadInput(self.dir, "not an imgdiff staging record")
        return doc

    def unmake(self, made: Sequence[str], parent_mtime_ns: int | None) -> None:
        """Remove the state directory with all it holds (the journal, when there is one,
        last), and the parents of it in `made`, which apply made for it; give the parent
        of the first one its mtime back. Only for a state directory apply made, holding
        no history to keep."""
        if self.fd is not None:
            for name in sorted(os.listdir(self.fd), key=lambda n: n == _JOURNAL):
                self.remove(name)
            self.close()
        t = self.tree
        for path in reversed(made):
            with contextlib.suppress(OSError), t.parent(path) as (pfd, name):
                os.rmdir(name, dir_fd=pfd)  # left if something else was put in it
        top = made[0].rpartition("/")[0] if made else ""
        if parent_mtime_ns is None or not made or t.lstat(made[0]) is not None:
            return
        if not top:
            os.utime(t.fd, ns=(parent_mtime_ns, parent_mtime_ns))
            return
        with t.parent(top) as (pfd, name):
            os.utime(name, ns=(parent_mtime_ns,) * 2, dir_fd=pfd, follow_symlinks=False)

    def write_json(self, name: str, doc: dict[str, Any] | list[Any]) -> None:
        self.write_bytes(name, json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode())

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace the file `name` atomically: write, fsync, rename, fsync the directory."""
        fd = self.ensure()
        tmp = f".{name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)  # a killed writer's, or anything planted there
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        f = os.open(tmp, flags, 0o600, dir_fd=fd)
        try:
            _write_all(f, data)
            os.fsync(f)
        finally:
            os.close(f)
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)

    def history(self) -> list[dict[str, Any]]:
        doc = self._json(_HISTORY, "history")
        return doc if isinstance(doc, list) else []

    def remove(self, name: str) -> None:
        """Remove the state file or area `name` (a symlink itself, never its target)."""
        if self.fd is None:
            return
        try:
            st = os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            os.unlink(name, dir_fd=self.fd)

    def fresh(self, name: str) -> int:
        """An empty directory `name` in the state directory (its old content removed),
        opened: the caller closes the descriptor."""
        fd = self.ensure()
        self.remove(name)
        os.mkdir(name, 0o700, dir_fd=fd)
        return os.open(name, _DIR_FLAGS, dir_fd=fd)


_libc = ctypes.CDLL(None, use_errno=True)


def sync_filesystem(fd: int) -> None:
    """Flush the whole filesystem holding `fd` (syncfs(2)): one call where a commit would
    otherwise fsync each of thousands of files; `os.sync` where syncfs is missing."""
    if getattr(_libc, "syncfs", None) is None or _libc.syncfs(fd) != 0:
        os.sync()


# -- checking a tree against a manifest ----------------------------------------------------------
def tree_manifest(tree: str, *, use_cache: bool = True) -> Manifest:
    """The tree as an image, leaving out imgdiff's own state directory (whose files, staged
    and undo copies, the digest cache need not keep)."""
    image = DirImage(tree, prune=lambda p: p == STATE_DIR, cache_whole=True)
    return Manifest.read(image, use_cache=use_cache)


def differences(tree: Manifest, want: Mapping[str, Entry] | Manifest, name: str) -> list[str]:
    """What keeps `tree` from being the image `want` describes: "path (aspects)" lines."""
    return describe(tree_changes(tree, want, name))


def tree_differences(tree: str, want: Mapping[str, Entry], name: str, use_cache: bool) -> list[str]:
    """`differences` of the tree at `tree` (read here, and closed after: a tree on its own
    mount can be unmounted once apply or rollback returns)."""
    with tree_manifest(tree, use_cache=use_cache) as live:
        return differences(live, want, name)


_SPELLED = {Aspect.HARDLINK: "hard link"}


def describe(changes: Sequence[Change]) -> list[str]:
    """`tree_changes` as text: "path (aspects)", "path (only in the tree)", "path (hard
    link)", ..., in path order."""
    found: dict[str, str] = {}
    for c in changes:
        found[c.path] = {"added": "only in the tree", "removed": "missing from the tree"}.get(
            c.status.value, ", ".join(_SPELLED.get(a, a.value) for a in c.aspects)
        )
    return [f"{escape_path(p)} ({found[p]})" for p in sorted(found)]


def tree_changes(tree: Manifest, want: Mapping[str, Entry] | Manifest, name: str) -> list[Change]:
    """How `tree` differs from the image `want` describes, read from the image to the tree
    as `verify` reads it ("added": in the tree only), hard-link groups included: files
    of both whose group differs (joined, split) hold the same bytes and metadata, but one
    write would change the others, or not.

    mtime alone is not a difference; the state directory (left out of both, an image
    taken from an updated host has one) and the parents apply created for it are not
    part of the tree. A `Manifest` given as `want` computes the digests the comparison
    needs from its own image; its state directory entries are dropped from it.
    """
    for path in _ancestors(STATE_DIR):
        if path not in want:
            tree.entries.pop(path, None)
    tree.entries.pop(STATE_DIR, None)  # pruned: its contents were never read
    if isinstance(want, Manifest):
        if STATE_DIR in want.entries:  # anything beneath it has it as a parent
            for path in [p for p in want.entries if in_state_dir(p)]:
                del want.entries[path]
        wanted = want
    else:
        kept = {p: e for p, e in want.items() if not in_state_dir(p)}
        files = sum(1 for e in kept.values() if e.type is EntryType.FILE)
        wanted = Manifest(kept, ImageInfo(name, "manifest", len(kept), files, 0))
    flipped = {Status.ADDED: Status.REMOVED, Status.REMOVED: Status.ADDED}
    return [
        attrs.evolve(c, status=flipped.get(c.status, c.status), old=c.new, new=c.old)
        for c in compare(tree, wanted, links=True).changes
    ]


def _state_chain() -> list[str]:
    """/var, /var/lib, the state directory: what apply makes when missing, in order."""
    return [*reversed(_ancestors(STATE_DIR)), STATE_DIR]


def _ancestors(path: str) -> list[str]:
    out = []
    while (path := path.rpartition("/")[0]) not in ("", "/"):
        out.append(path)
    return out


# -- apply ------------------------------------------------------------------------------------
def _open_delta(path: str) -> BinaryIO:
    """The delta archive at `path`, refused unless a regular file (a FIFO would block)."""
    try:
        return open(open_regular_file(path), "rb")
    except OSError as exc:
        raise BadInput(path, f"cannot open: {exc.strerror}") from None


def apply(
    delta: str | os.PathLike[str],
    tree: str | os.PathLike[str],
    *,
    digest: str | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Apply `delta` to `tree` (which must be its OLD); see the module docstring."""
    delta, tree = fspath(delta), fspath(tree)
    say = progress or (lambda _: None)
    t = Tree(tree)
    state: State | None = None
    try:
        t.lock()
        root_mtime = os.stat(t.fd).st_mtime_ns  # the root has no entry: rollback restores it
        state = State(t)
        with _open_delta(delta) as fh:
            header = read_header(fh, delta)
            end = fh.tell()
            fh.seek(0)
            raw_header = fh.read(end)  # kept, so that `rollback TREE` needs no delta
            journal = state.journal()
            if journal is not None and journal.get("phase") == "commit":
                if (
                    journal.get("new") != header.new_identity
                    or journal.get("old") != header.old_identity
                ):
                    raise BadInput(
                        tree, "an interrupted apply of another delta is pending: roll it back first"
                    )
                say("finishing the interrupted apply")
                return _commit(
                    t, state, header, journal, resumed=True, say=say, use_cache=use_cache
                )
            if _already_applied(t, header, journal, use_cache):
                say("the tree is already NEW")
                assert journal is not None
                return ApplyResult(t.root, str(journal.get("delta")), header.old_identity,
                                   header.new_identity, 0, False)  # fmt: skip
            got, _ = _digest.of_fd(fh.fileno(), os.fstat(fh.fileno()).st_size)
            if digest is not None and got != _full(digest):
                raise BadInput(delta, f"delta digest {got} is not the one asked for")
            say("checking the tree is the delta's base")
            _check_base(t, state, header, use_cache)
            ops = operations(header)
            _check_one_filesystem(t, ops)
            _check_state_spared(t, ops)
            _check_unpinned(t, ops)
            say("staging new files")
            record = _start_staging(t, state, header, got)
            try:
                hasher = _staging(t, state, header, ops, raw_header, fh, delta, say)
                if _digest.finish(hasher) != got:
                    raise BadInput(delta, "changed while it was read")
            except BaseException:
                # refused before the commit: the tree is OLD again, state and mtimes too
                _drop_staging(t, state, record)
                _settle_parents(t, header.old_manifest)
                raise
        journal = {
            "schema": "imgdiff.journal/1",
            "phase": "commit",
            "root_mtime_ns": root_mtime,
            "delta": got,
            "old": header.old_identity,
            "new": header.new_identity,
            "ops": [[op.n, op.action, op.path, op.leader] for op in ops],
            # what apply made for the state directory: a rollback to no history removes it
            "made": record["made"],
            "parent_mtime_ns": record["parent_mtime_ns"],
        }
        _write_journal(state, journal, raw_header)
        return _commit(t, state, header, journal, resumed=False, say=say, use_cache=use_cache)
    finally:
        if state is not None:
            state.close()
        t.close()


def _write_journal(state: State, journal: dict[str, Any], raw_header: bytes) -> None:
    """Replace the previous apply's journal, undo data and header with this one's."""
    # the previous apply's journal goes (durably) before its undo data: killed in
    # between, a rollback finds the staging record alone and removes the staging rather
    # than run the journal without its undo data
    state.remove(_JOURNAL)
    os.fsync(state.ensure())
    state.remove("undo")
    os.close(state.fresh("undo"))
    state.write_bytes(_HEADER, raw_header)
    state.write_json(_JOURNAL, journal)
    state.remove(_STAGING)  # the journal says it all from here on


def apply_chain(
    deltas: list[str],
    tree: str,
    *,
    digests: list[str | None] | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[ApplyResult]:
    """Apply several deltas in order (updates 4, 5, 6 after a missed one, say).

    The chain is checked from the headers alone before the tree is touched: each delta's
    OLD must be the previous one's NEW. Each is then applied as `apply` does; `rollback`
    undoes the last one (the history lists them all).
    """
    heads = [_read_delta_header(path) for path in deltas]
    for i in range(1, len(heads)):
        before, after, path = heads[i - 1], heads[i], deltas[i]
        if after.old_identity != before.new_identity:
            raise BadInput(
                path,
                f"breaks the chain: its base is {after.old_identity}, "
                f"the delta before it gives {before.new_identity}",
            )
    pins = digests if digests is not None else [None] * len(deltas)
    return [
        apply(path, tree, digest=pin, use_cache=use_cache, progress=progress)
        for path, pin in zip(deltas, pins, strict=True)
    ]


def _read_delta_header(delta: str) -> Header:
    with _open_delta(delta) as fh:
        return read_header(fh, delta)


def _already_applied(
    t: Tree, header: Header, journal: dict[str, Any] | None, use_cache: bool
) -> bool:
    """True when this very delta's apply is done and the tree is still its NEW (a re-run
    after a kill that came once the journal said done)."""
    if journal is None or journal.get("phase") != "done":
        return False
    if (journal.get("old"), journal.get("new")) != (header.old_identity, header.new_identity):
        return False
    return not tree_differences(t.root, header.new.entries, "NEW", use_cache)


def _full(digest: str) -> str:
    return digest if digest.startswith(_digest.PREFIX) else _digest.PREFIX + digest


def _start_staging(t: Tree, state: State, header: Header, delta_digest: str) -> dict[str, Any]:
    """Write the staging record (making the state directory): which of /var, /var/lib
    and the state directory the apply makes, and the mtime of the first one's parent
    before, so that a refused staging, or a rollback after a kill, takes them back. An
    unfinished staging's record keeps what it made (it saw the tree before)."""
    earlier = state.staging_record()
    if earlier is not None:
        made, before = earlier["made"], earlier["parent_mtime_ns"]
    else:
        made = [p for p in _state_chain() if t.lstat(p) is None]
        top = made[0].rpartition("/")[0] if made else None
        st = None if top is None else os.fstat(t.fd) if not top else t.lstat(top)
        before = None if st is None else st.st_mtime_ns
    record = {
        "schema": "imgdiff.staging/1",
        "made": made,
        "parent_mtime_ns": before,
        "old": header.old_identity,
        "new": header.new_identity,
        "delta": delta_digest,
    }
    state.write_json(_STAGING, record)
    return record


def _drop_staging(t: Tree, state: State, record: dict[str, Any]) -> None:
    """Take an unfinished staging back: its area and record, and the state directory
    (with the parents it needed) when the staging made it."""
    if STATE_DIR in record["made"]:
        state.unmake(record["made"], record["parent_mtime_ns"])
        return
    state.remove("staging")
    state.remove(_STAGING)


def _check_base(t: Tree, state: State, header: Header, use_cache: bool) -> None:
    diffs = tree_differences(t.root, header.old_manifest, "OLD", use_cache)
    if not diffs:
        return
    known = [h for h in state.history() if isinstance(h, dict)]
    where = ""
    if known and known[-1].get("new") != header.old_identity:
        at = next((i + 1 for i, h in enumerate(known) if h.get("new") == header.old_identity), None)
        where = (
            f"; this tree is at update {len(known)} ({known[-1].get('new')}), "
            f"the delta needs {header.old_identity}" + (f" (update {at})" if at else "")
        )
    shown = ", ".join(diffs[:5]) + (f" and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    raise NotTheBase(t.root, f"is not the delta's base: {len(diffs)} paths differ: {shown}{where}")


def _check_one_filesystem(t: Tree, ops: list[Op]) -> None:
    """Refuse, before anything is written, a delta that would rename across mounts.

    Staging, undo and the commit are renames, atomic only within one mount: every path
    the commit names (a directory moved aside: itself) must be in the state directory's.
    A tree with a mount (a bind mount too) inside where the delta writes is refused
    whole rather than half applied.
    """
    points = sorted((p[len(t.root) :] for p in mounts_below(t.root)), key=len, reverse=True)
    if not points:
        return

    def mount_of(path: str) -> str:
        return next((m for m in points if path == m or path.startswith(m + "/")), "/")

    home = mount_of(STATE_DIR)
    for op in ops:
        if op.action == "meta":
            continue  # metadata is set in place: any mount will do
        where = op.path if op.action == "aside" else op.path.rpartition("/")[0]
        if mount_of(where) != home:
            raise BadInput(
                t.root,
                f"{escape_path(op.path)} is in another mount ({escape_path(mount_of(where))}) "
                f"than {STATE_DIR}: a delta is applied by renames within one mount",
            )


_FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long); the kernel reads and writes an int
_PINNED = {0x10: ("immutable", "i"), 0x20: ("append-only", "a")}  # FS_IMMUTABLE_FL, FS_APPEND_FL


def _pinned(fd: int, name: str | None) -> tuple[str, str] | None:
    """(what, chattr letter) when `name` in directory `fd` (`fd` itself for None) is
    immutable or append-only: then it cannot be renamed, unlinked, linked to, have its
    metadata set, nor (a directory) have names removed. None when it is neither, absent,
    or a filesystem that has no such flags.

    Only directories and regular files are opened: a symlink cannot be, a device may act.
    """
    f = fd
    if name is not None:
        try:
            st = os.lstat(name, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
        f = os.open(name, flags, dir_fd=fd)
    try:
        (got,) = struct.unpack("=i", fcntl.ioctl(f, _FS_IOC_GETFLAGS, bytes(8))[:4])
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise
    finally:
        if f != fd:
            os.close(f)
    return next((how for bit, how in _PINNED.items() if got & bit), None)


def _check_unpinned(t: Tree, ops: list[Op]) -> None:
    """Refuse, before anything is written, a delta whose commit (or rollback) the kernel
    would stop half way with EPERM: an immutable or append-only (`chattr +i`, `+a`) path
    it replaces, removes, links to or changes, or directory it renames into or out of;
    the tree's root and the state directory's chain likewise (rollback resets the root's
    mtime; the state directory is made and written in)."""
    own: dict[str, str] = {}  # path -> what the delta does to it
    for op in ops:
        if op.action != "mkdir":
            own.setdefault(op.path, "would change it")
        if op.action == "link" and op.leader is not None:
            own.setdefault(op.leader, "would link a new name to it")
        if op.action != "meta":
            own.setdefault(op.path.rpartition("/")[0] or "/", "would rename or remove names in it")
    for path in (*_ancestors(STATE_DIR), STATE_DIR):
        own.setdefault(path, "keeps its state there")
    own.setdefault("/", "would reset its mtime on a rollback")
    with t.keeping_directories():
        for path in sorted(own):
            try:
                if path == "/":
                    how = _pinned(t.fd, None)
                else:
                    with t.parent(path) as (fd, name):
                        how = _pinned(fd, name)
            except (FileNotFoundError, NotADirectoryError):
                continue  # beneath a path the delta makes
            if how is not None:
                raise BadInput(
                    t.root,
                    f"{escape_path(path)} is {how[0]} and the delta {own[path]}: "
                    f"nothing was changed (chattr -{how[1]} it to apply)",
                )


def _check_state_spared(t: Tree, ops: list[Op]) -> None:
    """Refuse, before anything is written, a delta that would touch the state directory
    or anything in it, or replace, remove or change the type of one of its parents: the
    commit would move the journal and undo data it works from (or rename /var/lib into
    its own undo area). A parent the delta makes as a directory, or whose metadata it
    sets, is fine."""
    parents = set(_ancestors(STATE_DIR))
    for op in ops:
        if in_state_dir(op.path) or (op.path in parents and op.action not in ("mkdir", "meta")):
            raise BadInput(
                t.root,
                f"the delta would replace or remove {escape_path(op.path)}: imgdiff's state "
                f"directory ({STATE_DIR}) and its parents must stay directories",
            )


def _staging(
    t: Tree,
    state: State,
    header: Header,
    ops: list[Op],
    raw_header: bytes,
    fh: BinaryIO,
    delta: str,
    say: Callable[[str], None],
) -> blake3.blake3:
    """Write every new file, symlink and FIFO under staging/; returns the delta's hasher.

    The archive is read on from the end of its header (`raw_header`, already read),
    once; every record must be the content of a path the commit places, and every such
    file must have one.
    """
    hasher = _digest.new_hasher()
    hasher.update(raw_header)
    places = {op.path: op for op in ops if op.action == "place"}
    files = {p for p in places if header.new.entries[p].type is EntryType.FILE}
    old = header.old_manifest
    sfd = state.fresh("staging")
    try:
        seen = set()
        for record, data in record_data(fh, header, delta):
            hasher.update(data)
            if record.path not in files:
                raise BadInput(
                    delta, "a content record for a path the delta does not write", record.path
                )
            if record.base is not None and (
                record.base not in old or old[record.base].type is not EntryType.FILE
            ):
                raise BadInput(delta, f"base {record.base!r} is not a file of OLD", record.path)
            entry = header.new.entries[record.path]
            content = _decode(t, record, data, entry, delta)
            _write_file(sfd, str(places[record.path].n), entry, content)
            seen.add(record.path)
        if files - seen:
            raise BadInput(delta, "no content record for a changed file", min(files - seen))
        for path, op in places.items():
            entry = header.new.entries[path]
            if entry.type is EntryType.SYMLINK:
                assert entry.target is not None
                os.symlink(entry.target, str(op.n), dir_fd=sfd)
                _set_meta(sfd, str(op.n), entry)
            elif entry.type is EntryType.FIFO:
                os.mkfifo(str(op.n), 0o600, dir_fd=sfd)
                _set_meta(sfd, str(op.n), entry)
            elif entry.type is not EntryType.FILE:
                raise BadInput(delta, f"a delta cannot carry a {entry.type.value}", path)
        sync_filesystem(sfd)  # every staged file durable before the journal says "commit"
    finally:
        os.close(sfd)
    say(f"staged {len(places)} paths")
    return hasher


def _decode(t: Tree, record: Record, data: bytes, entry: Entry, delta: str) -> bytes:
    """A record's bytes, decoded against the tree's own (just checked) base file."""
    return decode(record, data, entry, lambda path: t.read(path, MAX_BASE), delta)


def _write_file(sfd: int, name: str, entry: Entry, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    f = os.open(name, flags, 0o600, dir_fd=sfd)
    try:
        _write_sparse(f, data)
        set_meta_fd(f, entry)  # made durable by one syncfs of the staging area, not per file
    finally:
        os.close(f)


_HOLE = 1 << 16  # zero blocks of this size (aligned) are left as holes


def _write_sparse(fd: int, data: bytes) -> None:
    """Write `data`, leaving aligned blocks of zeros as holes (a sparse file stays sparse:
    a lastlog of a system with large uids is terabytes of them), then set the size."""
    view = memoryview(data)
    zero = bytes(_HOLE)
    start = 0  # of the data not yet written
    for at in range(0, len(data) - _HOLE + 1, _HOLE):
        end = at + _HOLE
        if not data[at] and not data[end - 1] and data[at:end] == zero:
            if start < at:
                os.lseek(fd, start, os.SEEK_SET)
                _write_all(fd, view[start:at])
            start = at + _HOLE
    if start < len(data):
        os.lseek(fd, start, os.SEEK_SET)
        _write_all(fd, view[start:])
    os.ftruncate(fd, len(data))


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` (a write may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _commit(
    t: Tree,
    state: State,
    header: Header,
    journal: dict[str, Any],
    *,
    resumed: bool,
    say: Callable[[str], None],
    use_cache: bool = True,
) -> ApplyResult:
    ops = [Op(n, action, path, leader) for n, action, path, leader in journal["ops"]]
    new = header.new.entries
    say(f"committing {len(ops)} operations")
    placed = {op.path for op in ops if op.action == "place"}
    asides = next((i for i, op in enumerate(ops) if op.action != "aside"), len(ops))
    if any(op.action == "aside" for op in ops[asides:]):
        raise BadInput(state.dir, "journal lists an aside after the commit's first placement")
    again = "`imgdiff rollback` returns to OLD, or run apply again once it can be changed"
    for op in ops[:asides]:
        with _permitted(t, op.path, again):
            _do(t, state, op, new, placed)
    with t.keeping_directories():  # from here on no directory is renamed or removed
        for op in ops[asides:]:
            with _permitted(t, op.path, again):
                _do(t, state, op, new, placed)
        with _permitted(t, STATE_DIR, again):
            _settle_parents(t, new)
        say("checking the tree is NEW")
        seen: dict[str, os.stat_result] = {}
        diffs = _touched_differences(t, ops, new, seen)
        if diffs:
            raise ImgdiffError(
                f"{t.root}: after apply the tree is not NEW ({', '.join(diffs[:5])}); "
                "run `imgdiff rollback` to return to OLD"
            )
        if use_cache:
            _remember_placed(t, ops, new, seen)
    sync_filesystem(t.fd)  # every rename durable before the journal says "done"
    journal = {**journal, "phase": "done"}
    state.write_json(_JOURNAL, journal)
    history = state.history()
    history.append(
        {"old": header.old_identity, "new": header.new_identity, "delta": journal["delta"],
         "applied": time.time()}
    )  # fmt: skip
    state.write_json(_HISTORY, history)
    state.remove("staging")
    state.remove(_STAGING)
    return ApplyResult(
        t.root, journal["delta"], header.old_identity, header.new_identity, len(ops), resumed
    )


@contextlib.contextmanager
def _permitted(t: Tree, path: str, then: str) -> Iterator[None]:
    """A step the kernel refuses (EPERM: an immutable or append-only path, set after the
    check before the commit) is bad input naming the path; the journal stays, so `then`."""
    try:
        yield
    except PermissionError as exc:
        raise BadInput(
            t.root,
            f"cannot change {escape_path(path)}: {exc.strerror} (immutable or append-only? "
            f"lsattr shows it); the journal is kept: {then}",
        ) from None


def _do(t: Tree, state: State, op: Op, new: Mapping[str, Entry], placed: set[str]) -> None:
    """One commit step, idempotent: it looks at what exists before acting.

    OLD's file is kept in its undo slot as a hard link, not moved there: the new file is
    then renamed over the path, so the path is never missing, and a process that maps
    the old file sees it "(deleted)", as after dpkg, so `stale` and its peers find it.
    A directory (emptied first, deepest first) is renamed into its slot.
    """
    slot = state.path("undo", str(op.n))
    staged = state.path("staging", str(op.n))
    if op.action == "aside":
        here = t.lstat(op.path)
        if t.lstat(slot) is None and here is not None:
            if stat.S_ISDIR(here.st_mode):
                t.rename(op.path, slot)
                return
            t.link(op.path, slot)
        if op.path not in placed and _same_inode(t.lstat(op.path), t.lstat(slot)):
            t.unlink(op.path)  # nothing is renamed over it: OLD's name goes now
    elif op.action == "mkdir":
        with t.parent(op.path) as (fd, name), contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=fd)
    elif op.action == "place":
        if t.lstat(staged) is not None:
            t.rename(staged, op.path)
    elif op.action == "link":
        assert op.leader is not None
        with t.parent(op.leader) as (lfd, lname), t.parent(op.path) as (fd, name):
            try:
                os.link(lname, name, src_dir_fd=lfd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                if os.lstat(name, dir_fd=fd).st_ino != os.lstat(lname, dir_fd=lfd).st_ino:
                    raise
    elif op.action == "meta":
        with t.parent(op.path) as (fd, name):
            _set_meta(fd, name, new[op.path])
    else:
        raise BadInput(state.dir, f"unknown journal action {op.action!r}", op.path)


def _remember_placed(
    t: Tree, ops: list[Op], new: Mapping[str, Entry], seen: dict[str, os.stat_result]
) -> None:
    """Tell the tree's digest cache the digests of the files the commit placed, so that
    `check`, `verify` and the next apply need not read them again.

    A placed file is a new inode whose bytes were checked in staging: nobody can have had
    it mapped before. A file whose metadata alone was set, or an existing one a new name was
    linked to, may be: its ctime just moved, so the cache's settle rule would not keep it.
    (A name linked to a placed leader shares the leader's record.) `seen`: their status as
    the check after the commit found it.
    """
    cache = DirImage(t.root).digest_cache()
    for op in ops:
        want = new.get(op.path)
        if op.action != "place" or want is None or want.digest is None:
            continue
        st = seen.get(op.path)
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == want.size:
            cache.put(
                st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, want.digest,
                read_after_ns=None,
            )  # fmt: skip
    cache.save()


def _touched_differences(
    t: Tree, ops: list[Op], new: Mapping[str, Entry], seen: dict[str, os.stat_result]
) -> list[str]:
    """What keeps the paths the commit touched from being NEW's: "path (aspects)" lines.

    Only these need looking at: the rest of the tree was checked, content included, to be
    OLD before anything was touched, and where the commit does nothing OLD's entry is
    NEW's (mtime included). Placed files had their digests checked in staging and are the
    very inodes renamed here, so size stands for content; a hard link must be its leader's
    inode. Each path's status goes into `seen`.
    """
    paths = {op.path for op in ops}
    paths.update(p for p in _ancestors(STATE_DIR) if p in new)
    leaders = {op.path: op.leader for op in ops if op.action == "link"}
    out = []
    for path in sorted(paths):
        want = new.get(path)
        st = t.lstat(path)
        if st is not None:
            seen[path] = st
        if want is None or st is None:
            if want is not None or st is not None:
                how = "missing from the tree" if st is None else "only in the tree"
                out.append(f"{escape_path(path)} ({how})")
            continue
        aspects = _stat_aspects(t, path, st, want)
        leader = leaders.get(path)
        if leader is not None and not _same_inode(st, t.lstat(leader)):
            aspects.append("hard link")
        if aspects:
            out.append(f"{escape_path(path)} ({', '.join(aspects)})")
    return out


def _stat_aspects(t: Tree, path: str, st: os.stat_result, want: Entry) -> list[str]:
    """The aspects in which the object at `path` (its `st`) is not `want`."""
    etype = _STAT_TYPES.get(stat.S_IFMT(st.st_mode))
    if etype is not want.type:
        return ["type"]
    out = []
    if etype is not EntryType.SYMLINK and stat.S_IMODE(st.st_mode) != want.mode:
        out.append("mode")
    if (st.st_uid, st.st_gid) != (want.uid, want.gid):
        out.append("owner")
    if st.st_mtime_ns != want.mtime_ns:
        out.append("mtime")
    with t.parent(path) as (fd, name):
        if etype is EntryType.SYMLINK:
            if os.readlink(name, dir_fd=fd) != want.target:
                out.append("target")
        elif etype is EntryType.FILE:
            if st.st_size != want.size:
                out.append("content")
        elif etype in (EntryType.CHAR, EntryType.BLOCK) and want.rdev != (
            os.major(st.st_rdev),
            os.minor(st.st_rdev),
        ):
            out.append("content")
        if _xattrs_at(fd, name) != want.xattrs:
            out.append("xattrs")
    return out


def _xattrs_at(fd: int, name: str) -> tuple[tuple[str, bytes], ...]:
    """The xattrs of `name` in directory `fd`, sorted by name, without following a symlink."""
    by_name = f"/proc/self/fd/{fd}/{name}"
    try:
        keys = sorted(os.listxattr(by_name, follow_symlinks=False))
        return tuple((k, os.getxattr(by_name, k, follow_symlinks=False)) for k in keys)
    except OSError:
        return ()


def _same_inode(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _settle_parents(t: Tree, entries: Mapping[str, Entry]) -> None:
    """Give the state directory's parents the metadata `entries` says (making the state
    directory, and working in it, changed their mtimes)."""
    for path in _ancestors(STATE_DIR):
        if path in entries and entries[path].type is EntryType.DIR:
            with t.parent(path) as (fd, name):
                _set_meta(fd, name, entries[path])


# -- rollback -----------------------------------------------------------------------------------
def rollback(
    tree: str | os.PathLike[str],
    delta: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Undo the last apply on `tree` (interrupted or completed): the tree is OLD again.

    The header of the applied delta is kept in the state directory; `delta`, when given,
    must be that delta.
    """
    tree, delta = fspath(tree), fspath(delta)
    say = progress or (lambda _: None)
    t = Tree(tree)
    state: State | None = None
    try:
        t.lock()
        state = State(t)
        journal = state.journal()
        record = state.staging_record()
        wanted = None if delta is None else _read_delta_header(delta)
        if journal is None and record is not None:
            # killed while staging, before its journal: the tree was never touched
            if wanted is not None and wanted.new_identity != record.get("new"):
                raise BadInput(tree, "no apply of this delta to roll back")
            say("removing an unfinished apply's staging")
            _drop_staging(t, state, record)
            return _undone(t.root, record, 0)
        if wanted is not None:
            header = wanted
        else:
            raw = state.read(_HEADER)
            if raw is None:
                raise BadInput(tree, "no apply to roll back")
            header = read_header(io.BytesIO(raw), state.dir + "/" + _HEADER)
        if journal is None or journal.get("new") != header.new_identity:
            raise BadInput(tree, "no apply of this delta to roll back")
        if journal.get("phase") == "done":
            # a later apply's, killed while staging: never placed
            state.remove("staging")
            state.remove(_STAGING)
        ops = [Op(n, action, path, leader) for n, action, path, leader in journal["ops"]]
        old = header.old_manifest
        say(f"undoing {len(ops)} operations")
        asides = {op.path: op.n for op in ops if op.action == "aside"}
        again = "run rollback again once it can be changed"
        for op in reversed(ops):
            with _permitted(t, op.path, again):
                _undo(t, state, op, old, asides)
        _restore_directories(t, ops, old, journal.get("root_mtime_ns"), again)
        diffs = tree_differences(t.root, old, "OLD", True)
        if diffs:
            raise ImgdiffError(
                f"{t.root}: after rollback the tree is not OLD ({', '.join(diffs[:5])})"
            )
        _forget(t, state, header, journal)
        return _undone(t.root, journal, len(ops))
    finally:
        if state is not None:
            state.close()
        t.close()


def _restore_directories(
    t: Tree, ops: list[Op], old: Mapping[str, Entry], root_mtime: object, again: str
) -> None:
    """The renames back changed the mtimes of their directories: OLD's metadata again,
    deepest first, the state directory's parents' and the root's mtime too."""
    dirs = {op.path.rpartition("/")[0] for op in ops} | {op.path for op in ops}
    for path in sorted(dirs & old.keys(), key=lambda x: (-x.count("/"), x)):
        if old[path].type is EntryType.DIR:
            with _permitted(t, path, again), t.parent(path) as (fd, name):
                _set_meta(fd, name, old[path])
    with _permitted(t, STATE_DIR, again):
        _settle_parents(t, old)
    if isinstance(root_mtime, int):
        with _permitted(t, "/", again):
            os.utime(t.fd, ns=(root_mtime, root_mtime))


def _undone(root: str, doc: dict[str, Any], operations: int) -> ApplyResult:
    """A rollback's result, from the journal or staging record it undid."""
    return ApplyResult(root, str(doc.get("delta")), str(doc.get("old")), str(doc.get("new")),
                       operations, False, True)  # fmt: skip


def _forget(t: Tree, state: State, header: Header, journal: dict[str, Any]) -> None:
    """After a rollback: the history loses its last line, the state goes; the journal
    last (without it, the rollback was done). A state directory the apply made goes
    whole, with the parents made for it, when no earlier apply is left in the history."""
    history = state.history()
    if history and history[-1].get("new") == header.new_identity:
        history.pop()
        state.write_json(_HISTORY, history)
    made = journal.get("made")
    if not history and isinstance(made, list) and STATE_DIR in made:
        before = journal.get("parent_mtime_ns")
        state.unmake(
            [p for p in _state_chain() if p in made], before if isinstance(before, int) else None
        )
        _settle_parents(t, header.old_manifest)
        return
    for name in ("staging", "undo", _HEADER, _STAGING):
        state.remove(name)
    state.remove(_JOURNAL)


def _undo(t: Tree, state: State, op: Op, old: dict[str, Entry], asides: dict[str, int]) -> None:
    """One rollback step, idempotent like `_do`: OLD's entry decides what is moved.

    `asides` gives the aside step of each path: where OLD's entry is kept while set aside.
    """
    slot = state.path("undo", str(op.n))
    staged = state.path("staging", str(op.n))
    was = old.get(op.path)
    if op.action == "aside":
        if t.lstat(slot) is not None:
            t.rename(slot, op.path)  # over NEW's file, atomically, for a non-directory
    elif op.action == "mkdir":
        if op.path in _ancestors(STATE_DIR):
            return  # the state directory is in it: left, as a parent apply made would be
        # the apply may have died before making it, or a rerun already removed its parent
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            t.parent(op.path) as (fd, name),
        ):
            os.rmdir(name, dir_fd=fd)
    elif op.action == "place":
        if was is not None and was.type is not EntryType.DIR:
            return  # the aside step renames OLD's back over it
        here = t.lstat(op.path)
        if here is not None and not stat.S_ISDIR(here.st_mode) and t.lstat(staged) is None:
            if t.lstat(state.path("staging")) is None:
                os.mkdir("staging", 0o700, dir_fd=state.ensure())
            t.rename(op.path, staged)
    elif op.action == "link":
        assert op.leader is not None
        if was is not None:
            aside = asides.get(op.path)
            if aside is None or t.lstat(state.path("undo", str(aside))) is None:
                return  # OLD's entry is still there, or back: OLD may be linked the same way
        if _same_inode(t.lstat(op.path), t.lstat(op.leader)):
            t.unlink(op.path)  # NEW's link; the aside step puts OLD's back
    elif op.action == "meta" and was is not None:
        # a path still set aside gets OLD's metadata back with its inode, from undo/; so
        # does one whose type NEW changed (a directory NEW made a symlink: not set on that)
        here = t.lstat(op.path)
        if here is not None and _STAT_TYPES.get(stat.S_IFMT(here.st_mode)) is was.type:
            with t.parent(op.path) as (fd, name):
                _set_meta(fd, name, was)


__all__ = [
    "STATE_DIR",
    "ApplyResult",
    "NotTheBase",
    "Op",
    "apply",
    "apply_chain",
    "operations",
    "rollback",
]
