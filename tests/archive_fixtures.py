"""Factories and independent checks for the delta-archive tests (`test_archive.py`).

Trees are real directories: a rich OLD from `tarzoo.make_tree`, and NEW made from a copy
of it with every kind of change a delta carries. Whether a tree is an image is checked
without imgdiff: `listing` (lstat, xattrs, blake3 of the bytes, hard-link groups, mtimes),
`rsync -anicX` and `diff -r`. Hostile deltas are written with the archive's own writer
(`forge`) or by editing the header document (`edit_header`), identities recomputed so
that the one thing wrong is the thing under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import zstandard

from imgdiff.archive.format import MAGIC, Header, Record, read_header, record_data, write_header
from imgdiff.manifest import ImageInfo, Manifest, entry_row, identity_of
from imgdiff.model import Entry, EntryType

from .tarzoo import ALL, MiB, Tree, make_tree, pattern

STATE = "/var/lib/imgdiff"
PRE1970 = -315_360_000_000_000_000
_LEN = struct.Struct("<Q")

# -- an independent view of a tree --------------------------------------------------------

Listing = dict[str, tuple[Any, ...]]


def listing(root: Path, *, skip: tuple[str, ...] = (STATE,)) -> Listing:
    """{image path: (type, mode, uid, gid, mtime_ns, size, target, rdev, xattrs, digest,
    hard-link group)} for every path under `root`, the root itself as "/".

    Nothing of imgdiff's is used: lstat, listxattr, blake3 of the bytes read. A hard-link
    group is named by its smallest path (inodes with links elsewhere are not groups).
    """
    base = os.fsencode(root)
    out: Listing = {}
    inodes: dict[tuple[int, int], list[str]] = {}

    def visit(full: bytes, path: str) -> None:
        st = os.lstat(full)
        kind = stat.S_IFMT(st.st_mode)
        target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
        rdev = (
            (os.major(st.st_rdev), os.minor(st.st_rdev))
            if kind in (stat.S_IFCHR, stat.S_IFBLK)
            else None
        )
        names = sorted(os.listxattr(full, follow_symlinks=False))
        xattrs = tuple((n, os.getxattr(full, n, follow_symlinks=False)) for n in names)
        digest = None
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as fh:
                digest = blake3.blake3(fh.read()).hexdigest()
        size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else 0
        out[path] = (
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            size,
            target,
            rdev,
            xattrs,
            digest,
        )
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(path)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                child = (
                    "/" + name.decode("utf-8", "surrogateescape")
                    if path == "/"
                    else (path + "/" + name.decode("utf-8", "surrogateescape"))
                )
                if child in skip:
                    continue
                visit(full + b"/" + name, child)

    visit(base, "/")
    groups = {p: min(ps) for ps in inodes.values() if len(ps) > 1 for p in ps}
    return {p: (*v, groups.get(p)) for p, v in out.items()}


FIELDS = ("type", "mode", "uid", "gid", "mtime_ns", "size", "target", "rdev", "xattrs",
          "digest", "hardlink")  # fmt: skip


def listing_diff(want: Listing, got: Listing, *, ignore_mtime: tuple[str, ...] = ()) -> list[str]:
    """What differs, one "path: field want -> got" line each (empty: the same trees).

    `ignore_mtime` names paths whose mtime alone is not compared.
    """
    out = []
    for path in sorted(want.keys() | got.keys()):
        a, b = want.get(path), got.get(path)
        if a is None:
            out.append(f"{path!r}: only in the tree")
        elif b is None:
            out.append(f"{path!r}: missing from the tree")
        else:
            for name, x, y in zip(FIELDS, a, b, strict=True):
                if x != y and not (name == "mtime_ns" and path in ignore_mtime):
                    out.append(f"{path!r}: {name} {x!r} -> {y!r}")
    return out


def _rsync(want: Path, tree: Path, *options: str) -> list[str]:
    argv = ["rsync", *options, "--delete", "--numeric-ids", f"{want}/", f"{tree}/"]
    proc = subprocess.run([*argv, "--exclude=/var/lib/imgdiff"], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [ln.decode(errors="backslashreplace") for ln in proc.stdout.splitlines()]


def rsync_lines(want: Path, tree: Path) -> list[str]:
    """`rsync -anicX --delete --numeric-ids WANT/ TREE/` itemized lines (state dir left
    out): what rsync would change to make TREE into WANT."""
    return _rsync(want, tree, "-anicX")


ROOT_TIME = ".d..t...... ./"  # rsync's line for a root that differs in mtime only


_SPECIAL = re.compile(
    r"^File .* is a (fifo|socket|character special file|block special file) "
    r"while file .* is a \1$"
)


def diff_r(want: Path, tree: Path) -> list[str]:
    """`diff -r --no-dereference` lines (state dir left out by name), without the lines
    saying that two FIFOs or two device nodes are not compared (rsync and `listing` do)."""
    proc = subprocess.run(
        ["diff", "-r", "--no-dereference", "-x", "imgdiff", str(want), str(tree)],
        capture_output=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode(errors="backslashreplace").splitlines()
    return [ln for ln in lines if not _SPECIAL.match(ln)]


def clone(src: Path, dest: Path) -> Path:
    """`cp -a SRC DEST`: a copy with every attribute, hard links and xattrs kept."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


# -- the rich pair --------------------------------------------------------------------------

# everything but sparse files (8 MiB each, written dense by an apply: slow, and holes are
# not something a delta keeps) and device nodes (the pair leaves them unchanged; devices
# have tests of their own)
RICH = ALL - {"sparse"}
LIB = "usr/lib/libshared.so.1"


def lib_bytes() -> bytes:
    """A 1 MiB "shared library": random bytes, so only a patch can make it small."""
    return random.Random(7).randbytes(MiB)


def _raw(root: Path, rel: str | bytes) -> bytes:
    return os.fsencode(root) + b"/" + (rel if isinstance(rel, bytes) else os.fsencode(rel))


def _put(root: Path, rel: str | bytes, data: bytes, mode: int | None = None) -> None:
    path = _raw(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if mode is not None:
        os.chmod(path, mode)


def _set_mtime(root: Path, rel: str | bytes, ns: int) -> None:
    os.utime(_raw(root, rel), ns=(ns, ns), follow_symlinks=False)


def build_old(root: Path) -> Tree:
    """OLD: `make_tree` with the rich features, a 1 MiB library and a /var/lib."""
    tree = make_tree(root, RICH)
    _put(root, LIB, lib_bytes(), 0o755)
    _put(root, "usr/lib/libother.so.2", pattern(200_000, seed=9), 0o755)
    _put(root, "usr/bin/mover", b"#!/bin/sh\necho same bytes, new name\n" * 40, 0o755)
    _put(root, "opt/oldapp/bin/app", b"old app\n" * 100, 0o755)
    _put(root, "opt/oldapp/share/data/a.dat", pattern(9000, seed=11))
    _put(root, "opt/oldapp/share/data/b.dat", pattern(700, seed=12))
    os.symlink("bin/app", _raw(root, "opt/oldapp/run"))
    _put(root, "var/lib/dpkg/status", b"Package: base\nVersion: 1\n\n")
    (root / "var/lib/misc").mkdir(parents=True)
    _put(root, "srv/dir-to-file/inner", b"inner")
    _put(root, "srv/file-to-symlink", b"plain")
    os.symlink("elsewhere", _raw(root, "srv/symlink-to-dir"))
    os.symlink("/etc/hostname", _raw(root, "srv/symlink-to-file"))
    (root / "srv/dir-to-symlink").mkdir()
    _put(root, "srv/leader/a", b"group leader content\n")
    os.link(_raw(root, "srv/leader/a"), _raw(root, "srv/leader/b"))
    os.link(_raw(root, "srv/leader/a"), _raw(root, "srv/leader/c"))
    # fixed, distinct mtimes, so a change that forgets one shows
    for i, path in enumerate(sorted(_walk(root))):
        _set_mtime(root, path, 1_600_000_000_000_000_000 + i * 1_000_000_123)
    if "pre1970" in tree.built:
        _set_mtime(root, "old/1960", PRE1970)
    os.utime(root, ns=(1_500_000_000_000_000_000,) * 2)
    return tree


def _walk(root: Path) -> Iterator[bytes]:
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            yield os.path.relpath(os.path.join(dirpath, name), base)


Features = dict[str, list[str]]  # Tree.built: feature -> image paths
CHANGED_LIB_OFFSETS = (1000, 300_000, 700_001, MiB - 20)
LATER = 1_700_000_000_000_000_000


def _content(new: Path, built: Features) -> None:
    """Small and large edits, and the library with a few bytes changed (a patch wins)."""
    _put(new, "etc/hostname", b"box-2\n")
    big = bytearray(pattern(300_000, seed=3))
    big[1000:1010] = b"0123456789"
    big += pattern(50_000, seed=21)
    _put(new, "usr/share/doc/big", bytes(big))
    lib = bytearray(lib_bytes())
    for off in CHANGED_LIB_OFFSETS:
        lib[off : off + 4] = b"\xde\xad\xbe\xef"
    _put(new, LIB, bytes(lib))


def _added_removed(new: Path, built: Features) -> None:
    """Files and whole subtrees added and removed."""
    _put(new, "opt/newapp/bin/app", b"\x7fELF" + pattern(20_000, seed=31), 0o755)
    _put(new, "opt/newapp/share/doc/README", b"new app\n")
    _put(new, "opt/newapp/share/empty", b"")
    os.symlink("../bin/app", _raw(new, "opt/newapp/share/app-link"))
    subprocess.run(["rm", "-rf", str(new / "opt/oldapp")], check=True)
    (new / "usr/share/doc/exact-block").unlink()
    if "deep" in built:
        subprocess.run(["rm", "-rf", str(new / "deep")], check=True)


def _types(new: Path, built: Features) -> None:
    """file -> dir, dir -> file, file -> symlink, symlink -> file, dir -> symlink,
    symlink -> dir."""
    (new / "etc/empty").unlink()
    _put(new, "etc/empty/now-a-dir", b"x")
    subprocess.run(["rm", "-rf", str(new / "srv/dir-to-file")], check=True)
    _put(new, "srv/dir-to-file", b"was a directory")
    (new / "srv/file-to-symlink").unlink()
    os.symlink("dir-to-file", _raw(new, "srv/file-to-symlink"))
    (new / "srv/symlink-to-file").unlink()
    _put(new, "srv/symlink-to-file", b"was a symlink")
    (new / "srv/dir-to-symlink").rmdir()
    os.symlink("/usr", _raw(new, "srv/dir-to-symlink"))
    (new / "srv/symlink-to-dir").unlink()
    _put(new, "srv/symlink-to-dir/inside", b"was a symlink, now a directory")


def _symlink_fifo(new: Path, built: Features) -> None:
    """A symlink retargeted, a FIFO added."""
    (new / "links/absolute").unlink()
    os.symlink("/etc/shadow", _raw(new, "links/absolute"))
    os.mkfifo(_raw(new, "srv/new-fifo"), 0o620)


def _metadata(new: Path, built: Features) -> None:
    """Mode, owner, xattrs (of a file and a directory), a symlink's owner: nothing else."""
    os.chmod(new / "modes/private", 0o640)
    os.chown(new / "owners/a", 1235, 5679)
    os.chown(new / "owners/link", 99, 98, follow_symlinks=False)
    if "xattrs" in built:
        os.setxattr(new / "xattr/file", "user.k", b"v2")
        os.removexattr(new / "xattr/file", "user.binary")
        os.setxattr(new / "xattr/file", "user.added", b"\x00\x01")
        os.setxattr(new / "xattr", "user.on-dir", b"changed dir value")


def _mtimes(new: Path, built: Features) -> None:
    """mtimes alone: a directory's, a file's, a symlink's."""
    _set_mtime(new, "usr/share/doc", LATER)
    _set_mtime(new, "usr/lib/libother.so.2", LATER + 2)
    _set_mtime(new, "links/relative", LATER + 3)


def _setid(new: Path, built: Features) -> None:
    """Changed files keeping a setuid bit and a file capability (chown clears both)."""
    _put(new, "modes/setuid", b"s2")
    os.chown(new / "modes/setuid", 0, 0)
    os.chmod(new / "modes/setuid", 0o4755)
    if "security_xattrs" in built:
        caps = os.getxattr(new / "xattr/capable", "security.capability")
        _put(new, "xattr/capable", b"\x7fELF" + pattern(120))
        os.setxattr(new / "xattr/capable", "security.capability", caps)


def _link_made(new: Path, built: Features) -> None:
    """A hard-link group made of an unchanged file and a new name that sorts first (the
    group is named by the new name)."""
    os.link(new / "usr/lib/libother.so.2", new / "usr/lib/libother-hardlink")


def _link_joined(new: Path, built: Features) -> None:
    """A hard-link group made of an unchanged file and a new name that sorts after it
    (the group is named by the unchanged file, whose bytes the delta need not carry)."""
    os.link(new / "usr/bin/mover", new / "usr/bin/mover-link")


def _device_meta(new: Path, built: Features) -> None:
    """Device nodes whose owner or mtime alone changed (no device is made)."""
    if "devices" in built:
        os.chown(new / "nodes/sda1", 0, 6)
        _set_mtime(new, "nodes/big-minor", LATER + 4)


def _link_broken(new: Path, built: Features) -> None:
    """A group of two broken: one name gets bytes of its own."""
    (new / "hard/pair-b").unlink()
    _put(new, "hard/pair-b", b"pair, no longer linked")


def _leader_removed(new: Path, built: Features) -> None:
    """A group's first name removed: the group is named by another member."""
    (new / "srv/leader/a").unlink()


def _renamed(new: Path, built: Features) -> None:
    """A file renamed, bytes unchanged: a copy record."""
    os.rename(new / "usr/bin/mover", new / "usr/libexec-moved")


def _names(new: Path, built: Features) -> None:
    """Pre-1970 mtimes, non-UTF-8 and long names on changed and added files."""
    if "pre1970" in built:
        _put(new, "old/1960", b"still sixties")
        _set_mtime(new, "old/1960", PRE1970 - 7)
    if "non_utf8" in built:
        _put(new, b"bad\xffname", b"ff, changed")
        _put(new, b"latin1-\xe9t\xe9/new-\xe0", b"added beside a latin-1 name")
    if "very_long_names" in built:
        _put(new, "vlong/" + "x" * 200 + "/" + "y" * 255, b"a 255-byte name, new bytes")


KINDS: dict[str, Callable[[Path, Features], None]] = {
    "content": _content,
    "added-removed": _added_removed,
    "types": _types,
    "symlink-fifo": _symlink_fifo,
    "metadata": _metadata,
    "mtimes": _mtimes,
    "setid": _setid,
    "link-made": _link_made,
    "link-joined": _link_joined,
    "link-broken": _link_broken,
    "leader-removed": _leader_removed,
    "renamed": _renamed,
    "names": _names,
    "device-meta": _device_meta,
}


def change(new: Path, tree: Tree, kinds: Iterable[str] = KINDS) -> None:
    """Turn a copy of OLD into NEW with the changes `kinds` name (all by default)."""
    for kind in kinds:
        KINDS[kind](new, tree.built)


def build_pair(tmp: Path) -> tuple[Path, Path, Tree]:
    """(OLD, NEW, what OLD was built with) under `tmp`."""
    old = tmp / "old"
    tree = build_old(old)
    new = clone(old, tmp / "new")
    change(new, tree)
    return old, new, tree


def many_files_pair(tmp: Path, n: int = 300) -> tuple[Path, Path]:
    """OLD and NEW with `n` changed files, `n // 3` added and `n // 3` removed: a commit
    long enough to be interrupted."""
    old, new = tmp / "old", tmp / "new"
    for i in range(n):
        _put(old, f"usr/share/m{i % 7}/f{i:04d}", pattern(200 + i, seed=i))
    for i in range(n // 3):
        _put(old, f"usr/lib/gone/g{i:04d}", b"gone %d" % i)
    _put(old, "var/lib/misc/keep", b"keep")
    for i, path in enumerate(sorted(_walk(old))):
        _set_mtime(old, path, 1_600_000_000_000_000_000 + i * 1_000_003)
    os.utime(old, ns=(1_500_000_000_000_000_000,) * 2)
    clone(old, new)
    for i in range(n):
        _put(new, f"usr/share/m{i % 7}/f{i:04d}", pattern(210 + i, seed=i + 1))
    subprocess.run(["rm", "-rf", str(new / "usr/lib/gone")], check=True)
    for i in range(n // 3):
        _put(new, f"opt/added/d{i % 5}/a{i:04d}", b"added %d" % i, 0o750)
    os.utime(new, ns=(1_500_000_000_000_000_001,) * 2)
    return old, new


# -- hostile deltas -------------------------------------------------------------------------


def split_delta(path: Path) -> tuple[dict[str, Any], bytes]:
    """(the header document, the record data after it) of a delta archive."""
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    (size,) = _LEN.unpack(raw[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    text = zstandard.ZstdDecompressor().stream_reader(raw[start : start + size]).read()
    return json.loads(text), raw[start + size :]


def join_delta(path: Path, doc: dict[str, Any], data: bytes) -> Path:
    """Write a delta archive from a header document (as is) and record data."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    packed = zstandard.ZstdCompressor(level=3).compress(text.encode("ascii"))
    path.write_bytes(MAGIC + _LEN.pack(len(packed)) + packed + data)
    return path


@dataclass
class Parts:
    """What a delta says, as entries: OLD's whole manifest (as the header rebuilds it),
    NEW's, and the content records with their data."""

    old: dict[str, Entry]
    new: dict[str, Entry]
    records: list[tuple[Record, bytes]]


def parts(delta: Path) -> Parts:
    """A delta archive read by the archive's own reader."""
    with open(delta, "rb") as fh:
        header = read_header(fh, str(delta))
        records = list(record_data(fh, header, str(delta)))
    return Parts(dict(header.old_manifest), dict(header.new.entries), records)


def forge(dest: Path, p: Parts) -> Path:
    """A delta archive turning `p.old` into `p.new`, written by the archive's own writer
    with identities computed from the entries, whatever they say: a careful attacker's
    delta, where the one thing wrong is the thing under test."""
    old_entries = {path: e for path, e in p.old.items() if p.new.get(path) != e}
    added = frozenset(p.new.keys() - p.old.keys())
    files = sum(1 for e in p.new.values() if e.type is EntryType.FILE)
    manifest = Manifest(dict(p.new), ImageInfo("forged", "dir", len(p.new), files, 0))
    old_id = identity_of([entry_row(p.old[path]) for path in sorted(p.old)])
    header = Header(
        old_id, manifest.identity, manifest, old_entries, added, tuple(r for r, _ in p.records)
    )
    with open(dest, "wb") as fh:
        write_header(fh, header)
        for _, data in p.records:
            fh.write(data)
    return dest


def rewrite(src: Path, dest: Path, change: Callable[[Parts], None]) -> Path:
    """`src` read, changed by `change`, and written again by `forge`."""
    p = parts(src)
    change(p)
    return forge(dest, p)


def zstd_record(path: str, data: bytes) -> tuple[Record, bytes]:
    packed = zstandard.ZstdCompressor(level=3).compress(data)
    return Record(path, "zstd", None, len(packed)), packed


def bomb(expanded: int) -> bytes:
    """A zstd frame of `expanded` zero bytes, its size not in the frame header."""
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=False)
    compressor = cctx.compressobj()
    zeros = bytes(MiB)
    pieces = [compressor.compress(zeros) for _ in range(expanded // MiB)]
    return b"".join([*pieces, compressor.flush()])


# -- processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Kill and reap `proc` (by its own pid) whatever happens in the block."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll for `path` every 0.5 ms until it exists (True) or `proc` ends / time is up."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        if proc.poll() is not None:
            return path.exists()
        time.sleep(0.0005)
    return False


# -- crashes at chosen moments --------------------------------------------------------------


class Crash(BaseException):
    """Raised in place of a filesystem change: the process "dies" there."""


# the os functions through which a process changes files (shutil.rmtree's included)
MUTATIONS = ("rename", "replace", "rmdir", "unlink", "mkdir", "link", "symlink", "mkfifo",
             "utime", "chown", "chmod", "fchown", "fchmod", "setxattr", "removexattr",
             "write", "fsync", "truncate", "ftruncate")  # fmt: skip


@contextlib.contextmanager
def crash_at(step: int | None) -> Iterator[list[str]]:
    """Within the block, every call of an os function that changes a file from the
    `step`-th on (counting from 0) raises `Crash` instead, as if the process had been
    killed just before it; `None` only counts. Yields the calls made, by name.

    Unlike SIGKILL at a random time, this reaches every step boundary deterministically:
    `finally` blocks still run, but any change they try raises `Crash` too.
    """
    calls: list[str] = []
    saved = {name: getattr(os, name) for name in MUTATIONS}
    me = threading.get_ident()  # other threads (pytest-xdist's channel) are left alone

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def changing(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != me:
                return fn(*args, **kwargs)
            if step is not None and len(calls) >= step:
                raise Crash(f"killed before {name} (step {len(calls)})")
            calls.append(name)
            return fn(*args, **kwargs)

        return changing

    for name, fn in saved.items():
        setattr(os, name, wrap(name, fn))
    try:
        yield calls
    finally:
        for name, fn in saved.items():
            setattr(os, name, fn)


@contextlib.contextmanager
def meddle_at(step: int, action: Callable[[], None]) -> Iterator[None]:
    """Within the block, `action` runs (once, unwatched) just before the `step`-th call
    of an os function that changes a file: something else changing the tree right there.
    """
    calls = 0
    saved = {name: getattr(os, name) for name in MUTATIONS}
    me = threading.get_ident()

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def changing(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            if threading.get_ident() == me:
                calls += 1
                if calls == step + 1:
                    for name, orig in saved.items():
                        setattr(os, name, orig)
                    action()
            return fn(*args, **kwargs)

        return changing

    for name, fn in saved.items():
        setattr(os, name, wrap(fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(os, name, fn)


def spread(total: int, count: int) -> list[int]:
    """`count` steps spread evenly over 0..total-1 (every step if there are fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})
