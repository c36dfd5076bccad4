"""Witnesses of what a file was before: did the bytes a process loaded really change?

Some stale evidence rests on an identity alone: a module's ctime later than the process's
start, a new inode at a path whose old bytes could not be read. A rewrite with the very
same bytes (rsync, a reinstall) moves both and changes nothing for the process. This
module owns asking the witnesses that know the old bytes, in order:

1. an image of the tree as it was before the update (`stale --against`): the file now
   against the image's digest;
2. the state directory an `imgdiff apply` leaves in the tree (`/var/lib/imgdiff`): the
   applied delta's header holds OLD's and NEW's entry of every path it changed, and the
   history says when;
3. CPython's bytecode cache: a `.pyc` unchanged since before the process started records
   the source it was compiled from (PEP 552: mtime and size, or a hash of the source),
   and CPython itself rewrites it when the source it imports does not match.

Each answers SAME (the evidence goes), CHANGED (it is confirmed) or None (it stays
unconfirmed). Headers are parsed as bytes: nothing is executed or imported.
"""

from __future__ import annotations

import _imp
import io
import json
import os
import posixpath
import stat
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

import attrs

from imgdiff.errors import ImgdiffError
from imgdiff.fs.paths import child, join
from imgdiff.fs.rootfs import RootFS
from imgdiff.fs.walk import walk
from imgdiff.model import Entry, EntryType

if TYPE_CHECKING:
    from imgdiff.manifest import Manifest

Answer = Literal["same", "changed"] | None
SAME: Answer = "same"
CHANGED: Answer = "changed"

STATE_DIR = "/var/lib/imgdiff"  # archive.apply's; not imported: that module loads zstd, hdiff
_MAX_HEADER = 256 << 20
_SLACK = 1.0  # seconds: /proc/stat's btime is whole seconds


@attrs.frozen
class Applied:
    """What the last `imgdiff apply` of a tree changed, and when."""

    old: Mapping[str, Entry]  # OLD's entry of every path whose entry the apply changed
    new: Mapping[str, Entry]  # NEW's entries
    at: float  # when it finished (seconds since the epoch)
    since: float  # when the apply before it finished (-inf: none)


def read_applied(fs: RootFS) -> Applied | None:
    """The last completed apply recorded in the tree `fs`, or None (none, or unreadable)."""
    from imgdiff.archive.format import read_header

    journal = _json(fs, f"{STATE_DIR}/journal.json", 1 << 28)
    history = _json(fs, f"{STATE_DIR}/history.json", 1 << 24)
    if not isinstance(journal, dict) or journal.get("phase") != "done":
        return None
    if not isinstance(history, list) or not history or not isinstance(history[-1], dict):
        return None
    last = history[-1]
    at = last.get("applied")
    if not isinstance(at, int | float) or last.get("new") != journal.get("new"):
        return None
    before = history[-2] if len(history) > 1 and isinstance(history[-2], dict) else {}
    since = before.get("applied", float("-inf"))
    raw = fs.read(f"{STATE_DIR}/delta-header", _MAX_HEADER)
    if raw is None or not isinstance(since, int | float):
        return None
    try:
        header = read_header(io.BytesIO(raw), STATE_DIR + "/delta-header")
    except ImgdiffError:
        return None
    if header.new_identity != journal.get("new"):
        return None
    return Applied(dict(header.old_entries), header.new.entries, float(at), float(since))


def _json(fs: RootFS, path: str, limit: int) -> object:
    data = fs.read(path, limit)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def in_image(against: Manifest, path: str) -> str | None:
    """`path` resolved through the image's own symlinks (None: a loop)."""
    entries = against.entries

    def readlink(parent: str, name: str, _last: bool) -> str | None:
        entry = entries.get(child(parent, name))
        if entry is None or entry.type is not EntryType.SYMLINK or not entry.target:
            return None
        return join(parent, entry.target)

    try:
        return walk(path, readlink)
    except OSError:
        return None


def by_image(against: Manifest, path: str, now: Callable[[], str | None]) -> Answer:
    """The file now (`now()`: its digest) against the image before the update."""
    real = path if path in against.entries else in_image(against, path)
    entry = against.entries.get(real) if real is not None else None
    if entry is not None and entry.type is EntryType.SYMLINK:
        real = in_image(against, path)
        entry = against.entries.get(real) if real is not None else None
    if real is None:
        return None
    if entry is None:
        return CHANGED  # the process could not have loaded it from there: something new
    if entry.type is not EntryType.FILE:
        return None  # a directory or device there: not ours to judge
    old = against.digest(real)
    current = now()
    if old is None or current is None:
        return None
    return SAME if old == current else CHANGED


def by_apply(applied: Applied, path: str, st: os.stat_result, started: float) -> Answer:
    """The path's entries before and after the last apply, when the process started
    between the previous apply and that one and the file is still as it left it."""
    if not applied.since < started < applied.at:
        return None
    old, new = applied.old.get(path), applied.new.get(path)
    if old is None or new is None or new.type is not EntryType.FILE:
        return None  # the apply did not touch it: it does not explain the ctime
    if (st.st_size, st.st_mtime_ns) != (
        new.size,
        new.mtime_ns,
    ) or st.st_ctime > applied.at + _SLACK:
        return None  # changed again since
    if old.type is not EntryType.FILE or old.digest is None or new.digest is None:
        return CHANGED if old.type is not EntryType.FILE else None
    return SAME if old.digest == new.digest else CHANGED


def pyc_names(path: str, version: str | None) -> list[str]:
    """The bytecode files CPython `version` ("3.11") may have loaded for source `path`."""
    if not path.endswith(".py") or not version or "." not in version:
        return []
    head, name = posixpath.split(path)
    tag = "cpython-" + version.replace(".", "")
    stem = f"{head}/__pycache__/{name[:-3]}.{tag}"
    return [f"{stem}.pyc", f"{stem}.opt-1.pyc", f"{stem}.opt-2.pyc"]


def by_bytecode(
    fs: RootFS,
    path: str,
    st: os.stat_result,
    started: float,
    version: str | None,
    writer: int | None = None,
) -> Answer:
    """SAME when every cached bytecode file of the module was in place, unchanged, before
    the process started, is valid for the source now (what CPython checks before it uses
    one), and the process could have rewritten it: then the source it imported matched
    that bytecode (CPython rewrites a file that does not match), it ran that bytecode, and
    a restart would run it again. `writer` is the uid of a process free to write its
    cache (no -B, no PYTHONDONTWRITEBYTECODE, no cache prefix); None settles nothing, for
    such a process compiles a mismatch in memory and leaves the old file in place."""
    if writer is None:
        return None
    found = False
    for pyc in pyc_names(path, version):
        pst = fs.stat(pyc)
        if pst is None:
            continue
        if not stat.S_ISREG(pst.st_mode) or pst.st_ctime >= started - _SLACK:
            return None  # written since the process started: says nothing of before
        if not _writable(fs, posixpath.dirname(pyc), writer):
            return None
        if not _valid_for(_header(fs, pyc), fs, path, st):
            return None
        found = True
    return SAME if found else None


def _writable(fs: RootFS, directory: str, uid: int) -> bool:
    """Whether `uid` may write into `directory` (its owner or anyone may, or root on a
    filesystem mounted read-write). Group rights are not counted: the process's groups
    are not known, and "not writable" only leaves evidence unconfirmed."""
    st = fs.stat(directory)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return False
    if uid == 0:
        try:
            fd = fs.open(directory, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return False
        try:
            return not os.fstatvfs(fd).f_flag & os.ST_RDONLY
        except OSError:
            return False
        finally:
            os.close(fd)
    if st.st_uid == uid and st.st_mode & 0o300 == 0o300:
        return True
    return st.st_mode & 0o003 == 0o003


def _header(fs: RootFS, pyc: str) -> bytes:
    """The first 16 bytes of a bytecode file (fewer when short or unreadable)."""
    try:
        fd = fs.open(pyc, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        return os.pread(fd, 16, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _valid_for(header: bytes, fs: RootFS, path: str, st: os.stat_result) -> bool:
    """Whether a PEP 552 header is valid for the source at `path` (status `st`)."""
    if len(header) < 16 or header[2:4] != b"\r\n":
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags == 0:  # timestamp: the source's mtime and size, 32 bits each
        mtime = int.from_bytes(header[8:12], "little")
        size = int.from_bytes(header[12:16], "little")
        return (mtime, size) == (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    if flags in (1, 3):  # a keyed hash of the source's bytes; the magic number is the key
        source = fs.read(path, 1 << 26)
        if source is None:
            return False
        key = int.from_bytes(header[0:4], "little")
        # SipHash keyed by the magic number (CPython's importlib.util.source_hash): a
        # function of this interpreter's C code over bytes, nothing of the target is run;
        # an interpreter hashing another way only makes a match impossible, never wrong
        return bool(_imp.source_hash(key, source) == header[8:16])
    return False
