"""Factories for the tar fidelity tests: rich real trees, archives written by real tools,
hand-made headers, and GNU tar's extraction as the oracle of what an archive holds.

An archive "holds" what GNU tar, run as root, puts on disk when it extracts it. Reading
the archive with imgdiff must give the same entries as reading that extraction with
imgdiff's directory reader (mtime aside, which `imgdiff.diff` never reports alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import imgdiff
from imgdiff import Delta

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # the end-of-archive marker: two zero blocks
MiB = 1 << 20

# -- the oracle ---------------------------------------------------------------------------

GNU_EXTRACT = (
    "tar",
    "--numeric-owner",
    "--same-owner",
    "-p",
    "--acls",
    "--xattrs",
    "--xattrs-include=*",
)


def _umask_022() -> None:
    # GNU tar creates parents the archive does not list with mode 0777 & ~umask: fix the
    # umask so those directories are 0755 whatever the caller's shell had
    os.umask(0o022)


def extract_gnu(
    archive: Path, dest: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Extract `archive` into `dest` (created) with GNU tar as root, keeping everything.

    Decompression is detected by GNU tar. With `check=False` the caller reads what GNU
    tar refused from the returned `stderr` and `returncode`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [*GNU_EXTRACT, "-xf", str(archive), "-C", str(dest)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        preexec_fn=_umask_022,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"GNU tar could not extract {archive}: {proc.stderr}")
    return proc


def extract_bsdtar(archive: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    """Extract `archive` into `dest` (created) with bsdtar as root, numeric owners.

    bsdtar exits 1 after a member it could not fully restore (an invalid ACL); the caller
    reads that from the result.
    """
    if shutil.which("bsdtar") is None:
        pytest.skip("bsdtar (libarchive-tools) is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["bsdtar", "--numeric-owner", "-xpf", str(archive), "-C", str(dest)],
        capture_output=True,
        text=True,
        errors="replace",
        preexec_fn=_umask_022,
        check=False,
    )


def show(delta: Delta) -> str:
    """The changes (and warnings) of a delta, one per line, for an assertion message."""
    lines = []
    for c in delta.changes:
        aspects = ",".join(a.value for a in c.aspects)
        lines.append(f"  {c.status.value} {c.path!r} [{aspects}]")
        for side, e in (("old", c.old), ("new", c.new)):
            if e is not None:
                lines.append(
                    f"      {side}: {e.type.value} mode={e.mode:o} {e.uid}:{e.gid} size={e.size}"
                    f" target={e.target!r} hardlink={e.hardlink!r} rdev={e.rdev}"
                    f" xattrs={e.xattrs!r} digest={(e.digest or '')[:20]}"
                )
    lines += [f"  warning {w.path!r}: {w.message}" for w in delta.warnings]
    return "\n".join(lines)


def assert_same_as_extraction(archive: Path, dest: Path) -> Delta:
    """`imgdiff.diff(archive, dest)` reports no change at all; returns the delta."""
    delta = imgdiff.diff(str(archive), str(dest), use_cache=False, classify=False)
    assert delta.changes == (), f"{archive.name} read unlike its extraction:\n{show(delta)}"
    return delta


def assert_same_tree(old: Path, new: Path) -> None:
    """Two directory trees are equal for imgdiff (checks the oracle, not the tar reader)."""
    delta = imgdiff.diff(str(old), str(new), use_cache=False, classify=False)
    assert delta.changes == (), f"{old} and {new} differ:\n{show(delta)}"


# -- writers ------------------------------------------------------------------------------


def run(argv: Sequence[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool that must succeed; its stderr is in the failure message."""
    proc = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, errors="replace", check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc


GNU_CREATE = ("tar", "--numeric-owner", "--sort=name")
GNU_XATTRS = ("--xattrs", "--xattrs-include=*")

# GNU tar's formats and the options each is written with. GNU tar stores xattrs only in
# POSIX archives: `--xattrs` before `--format=gnu` is refused ("--xattrs can be used only
# on POSIX archives"), after it silently switches the format to posix. It refuses --sparse
# for v7 and ustar ("GNU features wanted on incompatible archive format"): those two keep
# sparse files dense.
GNU_FORMATS: dict[str, tuple[str, ...]] = {
    "v7": ("--format=v7",),
    "ustar": ("--format=ustar",),
    "oldgnu": ("--format=oldgnu", "--sparse"),
    "gnu": ("--format=gnu", "--sparse"),
    "posix": ("--format=posix", "--sparse", *GNU_XATTRS),
    "posix-sparse-0.0": ("--format=posix", "--sparse", "--sparse-version=0.0", *GNU_XATTRS),
    "posix-sparse-0.1": ("--format=posix", "--sparse", "--sparse-version=0.1", *GNU_XATTRS),
    "posix-sparse-1.0": ("--format=posix", "--sparse", "--sparse-version=1.0", *GNU_XATTRS),
}

# bsdtar's formats. Its default is "restricted pax": ustar headers, a pax header only where
# needed, sparse files as GNU 1.0 sparse members and each xattr twice (LIBARCHIVE.xattr.*
# base64 and SCHILY.xattr.* raw). bsdtar archives xattrs by default as root.
BSDTAR_FORMATS: dict[str, tuple[str, ...]] = {
    "default": (),
    "default-xattrs": ("--xattrs",),
    "pax": ("--format=pax",),
    "ustar": ("--format=ustar",),
    "gnutar": ("--format=gnutar",),
    "v7": ("--format=v7",),
}

TARFILE_FORMATS = {
    "gnu": tarfile.GNU_FORMAT,
    "pax": tarfile.PAX_FORMAT,
    "ustar": tarfile.USTAR_FORMAT,
}


def gnu_archive(root: Path, dest: Path, *options: str, members: Sequence[str] = (".",)) -> Path:
    """`tar -cf dest -C root MEMBERS` with numeric owners, sorted names and `options`."""
    run([*GNU_CREATE, *options, "-C", str(root), "-cf", str(dest), *members])
    return dest


def bsdtar_archive(root: Path, dest: Path, *options: str) -> Path:
    """`bsdtar -cf dest -C root .` with numeric owners and `options`."""
    if shutil.which("bsdtar") is None:
        pytest.skip("bsdtar (libarchive-tools) is not installed")
    run(["bsdtar", "--numeric-owner", *options, "-C", str(root), "-cf", str(dest), "."])
    return dest


def tarfile_archive(root: Path, dest: Path, fmt: int) -> Path:
    """Python's tarfile writing the whole tree (`tf.add(root, arcname=".")`)."""
    with tarfile.open(dest, "w", format=fmt) as tf:
        tf.add(str(root), arcname=".")
    return dest


def compress(path: Path, tool: str) -> Path:
    """`tool -c path > path.ext`; the plain file is removed."""
    ext = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}[tool]
    out = path.with_name(path.name + ext)
    with open(out, "wb") as fh:
        subprocess.run([tool, "-c", str(path)], stdout=fh, check=True)
    path.unlink()
    return out


# -- hand-made headers --------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def header(
    name: bytes | str,
    typeflag: bytes = b"0",
    *,
    size: int = 0,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 0,
    linkname: bytes | str = b"",
    devmajor: int = 0,
    devminor: int = 0,
    magic: bytes = b"ustar\x0000",
    prefix: bytes = b"",
    fields: Mapping[str, bytes] | None = None,
) -> bytes:
    """One 512-byte ustar header with a valid checksum.

    `fields` replaces raw fields by name (``uid``, ``mode``, ``size``, ``mtime``...) with
    the given bytes, to write garbage or base-256 numbers the checksum still covers.
    """
    raw_name = os.fsencode(name) if isinstance(name, str) else name
    raw_link = os.fsencode(linkname) if isinstance(linkname, str) else linkname
    layout = {
        "name": (0, raw_name),
        "mode": (100, _octal(mode, 8)),
        "uid": (108, _octal(uid, 8)),
        "gid": (116, _octal(gid, 8)),
        "size": (124, _octal(size, 12)),
        "mtime": (136, _octal(mtime, 12)),
        "typeflag": (156, typeflag),
        "linkname": (157, raw_link),
        "magic": (257, magic),
        "uname": (265, b"root"),
        "gname": (297, b"root"),
        "devmajor": (329, _octal(devmajor, 8)),
        "devminor": (337, _octal(devminor, 8)),
        "prefix": (345, prefix),
    }
    widths = {"name": 100, "mode": 8, "uid": 8, "gid": 8, "size": 12, "mtime": 12}
    widths |= {"typeflag": 1, "linkname": 100, "magic": 8, "uname": 32, "gname": 32}
    widths |= {"devmajor": 8, "devminor": 8, "prefix": 155}
    for key, value in (fields or {}).items():
        layout[key] = (layout[key][0], value)
    block = bytearray(BLOCK)
    for key, (offset, value) in layout.items():
        if len(value) > widths[key]:
            raise ValueError(f"{key} field of {len(value)} bytes does not fit {widths[key]}")
        block[offset : offset + len(value)] = value
    return seal(bytes(block))


def seal(block: bytes) -> bytes:
    """`block` with its checksum field recomputed."""
    out = bytearray(block)
    out[148:156] = b" " * 8
    out[148:156] = f"{sum(out):06o}\0 ".encode()
    return bytes(out)


def padded(data: bytes) -> bytes:
    """`data` padded with zeros to a whole number of blocks."""
    return data + b"\0" * (-len(data) % BLOCK)


def file_member(name: bytes | str, data: bytes, typeflag: bytes = b"0", **kw: Any) -> bytes:
    """Header and content of a member carrying `data` (`kw` as for `header`)."""
    return header(name, typeflag, size=len(data), **kw) + padded(data)


def pax_record(key: str, value: bytes | str) -> bytes:
    """One ``"LEN key=value\\n"`` record; LEN counts itself."""
    body = b" " + key.encode() + b"=" + (value.encode() if isinstance(value, str) else value)
    body += b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_header(records: Iterable[tuple[str, bytes | str]], typeflag: bytes = b"x") -> bytes:
    """An extended header member (`x`, `g`, or Solaris `X`) holding `records`."""
    data = b"".join(pax_record(k, v) for k, v in records)
    return header(b"./PaxHeaders/member", typeflag, size=len(data)) + padded(data)


def tar_bytes(*parts: bytes) -> bytes:
    """Members followed by the end-of-archive marker."""
    return b"".join(parts) + END


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def tarfile_names(archive: Path) -> list[str]:
    """Member names as Python's tarfile lists them."""
    with tarfile.open(archive, encoding="utf-8", errors="surrogateescape") as tf:
        return tf.getnames()


def gnu_names(archive: Path) -> list[str]:
    """Member names as `tar tf` lists them (names without newlines only)."""
    proc = subprocess.run(
        ["tar", "-tf", str(archive)], capture_output=True, text=True, errors="replace", check=False
    )
    return proc.stdout.splitlines()


def image_path(name: str) -> str:
    """A member name as imgdiff spells the path: absolute, no "." parts, no trailing "/"."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


# -- trees --------------------------------------------------------------------------------

FEATURES = (
    "files",  # regular files, empty files, an empty directory, nested directories
    "odd_modes",  # setuid/setgid/sticky, 0000 files, 0700/0555/1777/2750 directories
    "owners",  # numeric owners that exist nowhere (1234:5678, 70000:70001)
    "big_ids",  # owners past ustar's 7 octal digits (4000000:4000001): base-256 or pax
    "symlinks",  # relative, absolute, dangling, to a directory
    "hardlinks",  # hard links between regular files (a group of three, across dirs)
    "symlink_hardlinks",  # a hard link to a symlink
    "node_hardlinks",  # hard links to a FIFO and to a character device
    "fifos",
    "devices",  # character and block devices
    "sparse",  # 3 data islands in 8 MiB, data then a trailing hole, a file all hole
    "xattrs",  # user.* xattrs (binary values too) on files and a directory
    "security_xattrs",  # a security.capability xattr
    "pre1970",  # a file whose mtime is 10 years before the epoch
    "non_utf8",  # names that are not UTF-8
    "odd_names",  # spaces, newline, tab, backslash, UTF-8, leading dash
    "long_names",  # paths over 100 bytes that ustar can still split (<= 255)
    "very_long_names",  # a 255-byte component, a path over 255 bytes, a long symlink target
    "deep",  # 40 nested directories (a path over 1000 bytes)
)
ALL = frozenset(FEATURES)
# what every tar reader has handled for years; the rest is where readers disagree
BASELINE = ALL - {
    "sparse",
    "xattrs",
    "security_xattrs",
    "pre1970",
    "symlink_hardlinks",
    "node_hardlinks",
}

_NO_XATTRS = frozenset({"xattrs", "security_xattrs"})
_NO_NODES = frozenset({"fifos", "devices", "node_hardlinks"})
_NO_LONG = frozenset({"long_names", "very_long_names", "deep"})

# Features each writer can hold (it refuses or drops the others, with an error status).
HOLDS: dict[str, frozenset[str]] = {
    # GNU tar v7: "Unknown file type; file ignored" for nodes, names <= 99 bytes,
    # "value -31536000 out of time_t range" for pre-1970 mtimes, ids in 7 octal digits
    "gnu-v7": ALL - _NO_XATTRS - _NO_NODES - _NO_LONG - {"pre1970", "big_ids"},
    "gnu-ustar": ALL - _NO_XATTRS - {"very_long_names", "deep", "pre1970", "big_ids"},
    "gnu-oldgnu": ALL - _NO_XATTRS,
    "gnu-gnu": ALL - _NO_XATTRS,
    "gnu-posix": ALL,
    "bsdtar-default": ALL,
    "bsdtar-pax": ALL,
    # bsdtar drops pre-1970 files from ustar/v7 ("File modification time too large")
    "bsdtar-ustar": ALL - _NO_XATTRS - {"very_long_names", "deep", "pre1970", "big_ids"},
    "bsdtar-gnutar": ALL - _NO_XATTRS,
    # v7: "v7tar format cannot archive named pipes / character devices"
    "bsdtar-v7": ALL - _NO_XATTRS - _NO_NODES - _NO_LONG - {"pre1970", "big_ids"},
    # tarfile writes no xattrs; ustar cannot hold negative numbers or names over 255 bytes
    "tarfile-gnu": ALL - _NO_XATTRS,
    "tarfile-pax": ALL - _NO_XATTRS,
    "tarfile-ustar": ALL - _NO_XATTRS - {"very_long_names", "deep", "pre1970", "big_ids"},
}


def holds(writer: str) -> frozenset[str]:
    """The features `writer` (e.g. "gnu-posix-sparse-0.1", "bsdtar-default") can hold."""
    for key in sorted(HOLDS, key=len, reverse=True):
        if writer == key or writer.startswith(key + "-"):
            return HOLDS[key]
    raise KeyError(writer)


@dataclass
class Tree:
    """A tree made by `make_tree`: which features it has, and why the others are missing."""

    root: Path
    built: dict[str, list[str]] = field(default_factory=dict)  # feature -> image paths
    missing: dict[str, str] = field(default_factory=dict)  # feature -> why not built

    def require(self, *features: str) -> None:
        """Skip the calling test if one of `features` could not be built here."""
        for f in features:
            if f in self.missing:
                pytest.skip(f"{f}: {self.missing[f]}")
            if f not in self.built:
                raise AssertionError(f"feature {f!r} was not asked for")

    def paths(self, feature: str) -> list[str]:
        return self.built.get(feature, [])


def probe(where: Path) -> dict[str, str]:
    """Features the filesystem at `where` (or this process) cannot hold: {feature: why}."""
    missing: dict[str, str] = {}
    scratch = where / ".probe"
    scratch.mkdir()
    try:
        f = scratch / "f"
        f.write_bytes(b"x")
        for feature, name, value in (
            ("xattrs", "user.probe", b"v"),
            ("security_xattrs", "security.capability", _CAPABILITY),
        ):
            try:
                os.setxattr(f, name, value)
            except OSError as exc:
                missing[feature] = f"{name} xattrs not supported here: {exc.strerror}"
        try:
            os.mknod(scratch / "c", 0o600 | 0o020000, os.makedev(1, 3))
        except OSError as exc:
            missing["devices"] = f"mknod not permitted: {exc.strerror}"
            missing["node_hardlinks"] = missing["devices"]
        try:
            os.mkfifo(scratch / "p")
        except OSError as exc:
            missing["fifos"] = f"mkfifo failed: {exc.strerror}"
            missing["node_hardlinks"] = missing["fifos"]
        try:
            os.link(scratch / "f", scratch / "s", follow_symlinks=False)
            os.symlink("f", scratch / "l")
            os.link(scratch / "l", scratch / "l2", follow_symlinks=False)
        except OSError as exc:
            missing["symlink_hardlinks"] = f"cannot hard-link a symlink: {exc.strerror}"
        try:
            with open(os.path.join(os.fsencode(scratch), b"\xff\xfe"), "wb"):
                pass
        except OSError as exc:
            missing["non_utf8"] = f"filesystem refuses non-UTF-8 names: {exc.strerror}"
        try:
            os.utime(f, ns=(0, -PRE1970_NS))
            if os.stat(f).st_mtime_ns != -PRE1970_NS:
                missing["pre1970"] = "filesystem does not keep mtimes before 1970"
        except OSError as exc:
            missing["pre1970"] = f"cannot set a mtime before 1970: {exc.strerror}"
        with open(scratch / "h", "wb") as fh:
            fh.truncate(MiB)
        if os.stat(scratch / "h").st_blocks != 0:
            missing["sparse"] = "filesystem does not make holes"
    finally:
        shutil.rmtree(scratch)
    return missing


PRE1970_NS = 86400 * 365 * 10**9 * 10  # ten years of 365 days before the epoch
_CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service


def _write(root: Path, rel: str | bytes, data: bytes = b"", mode: int | None = None) -> str:
    raw = os.fsencode(root) + b"/" + (os.fsencode(rel) if isinstance(rel, str) else rel)
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "wb") as fh:
        fh.write(data)
    if mode is not None:
        os.chmod(raw, mode)
    return image_path(os.fsdecode(rel) if isinstance(rel, bytes) else rel)


def _sparse(root: Path, rel: str, size: int, islands: Iterable[tuple[int, bytes]]) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as fh:
        fh.truncate(size)
        for offset, data in islands:
            fh.seek(offset)
            fh.write(data)
    return image_path(rel)


# POSIX ACL tags in Linux's xattr form, and the id of the entries that have none
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
ACL_NO_ID = 0xFFFFFFFF


def acl_xattr(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """`system.posix_acl_*` bytes of (tag, perm, id) entries, in the given order (setfacl
    sorts by tag, then id; the kernel keeps whatever order it is given)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def set_acl(path: Path, access: Sequence[tuple[int, int, int]] = (),
            default: Sequence[tuple[int, int, int]] = ()) -> None:  # fmt: skip
    """Set ACLs as setfacl would (entries sorted); the kernel sets the mode's group bits
    from the mask, or drops a minimal access ACL into the mode."""
    if access:
        os.setxattr(path, "system.posix_acl_access", acl_xattr(sorted(access, key=_by_tag_id)))
    if default:
        os.setxattr(path, "system.posix_acl_default", acl_xattr(sorted(default, key=_by_tag_id)))


def _by_tag_id(entry: tuple[int, int, int]) -> tuple[int, int]:
    return entry[0], entry[2]


def pattern(n: int, seed: int = 0) -> bytes:
    """`n` bytes that are neither zeros nor repetitive (data islands, file contents)."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF or 1 for i in range(4096))
    return (block * (n // 4096 + 1))[:n]


def make_tree(root: Path, spec: Collection[str] = ALL) -> Tree:
    """Build a real tree under `root` with the features named in `spec` (see FEATURES).

    Features the filesystem or this process cannot hold are left out and named in
    `Tree.missing` with the reason; `Tree.built` lists the image paths of each feature.
    """
    unknown = set(spec) - ALL
    if unknown:
        raise ValueError(f"unknown tree features {sorted(unknown)}")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    tree = Tree(root)
    cannot = probe(root)
    wanted = [f for f in FEATURES if f in spec]
    for feature in wanted:
        if feature in cannot:
            tree.missing[feature] = cannot[feature]
            continue
        tree.built[feature] = _BUILDERS[feature](root)
    return tree


def _files(root: Path) -> list[str]:
    out = [
        _write(root, "etc/hostname", b"box\n"),
        _write(root, "etc/empty", b""),
        _write(root, "usr/bin/tool", b"\x7fELF" + pattern(5000)),
        _write(root, "usr/share/doc/big", pattern(300_000, seed=3)),
        _write(root, "usr/share/doc/exact-block", pattern(BLOCK, seed=4)),
    ]
    (root / "var/empty-dir").mkdir(parents=True)
    return [*out, "/var/empty-dir"]


def _odd_modes(root: Path) -> list[str]:
    out = [
        _write(root, "modes/setuid", b"s", 0o4755),
        _write(root, "modes/setgid", b"g", 0o2711),
        _write(root, "modes/none", b"n", 0o000),
        _write(root, "modes/private", b"p", 0o600),
    ]
    for name, mode in (("private-dir", 0o700), ("ro-dir", 0o555), ("tmp", 0o1777)):
        d = root / "modes" / name
        d.mkdir()
        (d / "inside").write_bytes(name.encode())
        os.chmod(d, mode)
        out.append(f"/modes/{name}")
    d = root / "modes/setgid-dir"
    d.mkdir()
    os.chmod(d, 0o2750)
    return [*out, "/modes/setgid-dir"]


def _owners(root: Path) -> list[str]:
    a = _write(root, "owners/a", b"a")
    os.chown(root / "owners/a", 1234, 5678)
    (root / "owners/dir").mkdir()
    os.chown(root / "owners/dir", 70000, 70001)
    os.symlink("a", root / "owners/link")
    os.chown(root / "owners/link", 4321, 8765, follow_symlinks=False)
    return [a, "/owners/dir", "/owners/link"]


def _big_ids(root: Path) -> list[str]:
    p = _write(root, "owners/big", b"big")
    os.chown(root / "owners/big", 4_000_000, 4_000_001)
    return [p]


def _symlinks(root: Path) -> list[str]:
    d = root / "links"
    d.mkdir()
    (d / "target").write_bytes(b"t")
    os.symlink("target", d / "relative")
    os.symlink("../etc/hostname", d / "up")
    os.symlink("/etc/passwd", d / "absolute")
    os.symlink("no/such/file", d / "dangling")
    os.symlink(".", d / "self-dir")
    return ["/links/relative", "/links/up", "/links/absolute", "/links/dangling"]


def _hardlinks(root: Path) -> list[str]:
    _write(root, "hard/one", pattern(3000, seed=5))
    os.link(root / "hard/one", root / "hard/two")
    (root / "hard/sub").mkdir()
    os.link(root / "hard/one", root / "hard/sub/three")
    _write(root, "hard/pair-a", b"pair")
    os.link(root / "hard/pair-a", root / "hard/pair-b")
    return ["/hard/one", "/hard/two", "/hard/sub/three", "/hard/pair-a", "/hard/pair-b"]


def _symlink_hardlinks(root: Path) -> list[str]:
    d = root / "special"
    d.mkdir(exist_ok=True)
    os.symlink("../etc/hostname", d / "sym")
    os.link(d / "sym", d / "sym-hardlink", follow_symlinks=False)
    return ["/special/sym", "/special/sym-hardlink"]


def _fifos(root: Path) -> list[str]:
    (root / "nodes").mkdir(exist_ok=True)
    os.mkfifo(root / "nodes/fifo", 0o640)
    return ["/nodes/fifo"]


def _devices(root: Path) -> list[str]:
    (root / "nodes").mkdir(exist_ok=True)
    os.mknod(root / "nodes/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.chmod(root / "nodes/null", 0o666)
    os.mknod(root / "nodes/sda1", 0o660 | 0o060000, os.makedev(8, 1))
    os.mknod(root / "nodes/big-minor", 0o600 | 0o020000, os.makedev(240, 70000))
    return ["/nodes/null", "/nodes/sda1", "/nodes/big-minor"]


def _node_hardlinks(root: Path) -> list[str]:
    d = root / "special"
    d.mkdir(exist_ok=True)
    os.mkfifo(d / "fifo")
    os.link(d / "fifo", d / "fifo-hardlink")
    os.mknod(d / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    os.link(d / "zero", d / "zero-hardlink")
    return ["/special/fifo", "/special/fifo-hardlink", "/special/zero", "/special/zero-hardlink"]


SPARSE_SIZE = 8 * MiB


def _sparse_files(root: Path) -> list[str]:
    islands = [
        (0, pattern(4096, 1)),
        (3 * MiB, pattern(8192, 2)),
        (SPARSE_SIZE - 4096, b"end" * 1365),
    ]
    return [
        _sparse(root, "sparse/islands", SPARSE_SIZE, islands),
        _sparse(root, "sparse/trailing-hole", 6 * MiB, [(MiB, pattern(5000, 7))]),
        _sparse(root, "sparse/all-hole", 4 * MiB, []),
    ]


def _xattrs(root: Path) -> list[str]:
    f = _write(root, "xattr/file", b"with xattrs")
    os.setxattr(root / "xattr/file", "user.k", b"v")
    os.setxattr(root / "xattr/file", "user.binary", b"\xff\x00binary\n=")
    os.setxattr(root / "xattr", "user.on-dir", b"dir value")
    e = _write(root, "xattr/empty-value", b"e")
    os.setxattr(root / "xattr/empty-value", "user.empty", b"")
    return [f, "/xattr", e]


def _security_xattrs(root: Path) -> list[str]:
    p = _write(root, "xattr/capable", b"\x7fELF" + pattern(100))
    os.chmod(root / "xattr/capable", 0o755)
    os.setxattr(root / "xattr/capable", "security.capability", _CAPABILITY)
    return [p]


def _pre1970(root: Path) -> list[str]:
    p = _write(root, "old/1960", b"sixties")
    os.utime(root / "old/1960", ns=(0, -PRE1970_NS))
    return [p]


def _non_utf8(root: Path) -> list[str]:
    base = os.fsencode(root)
    os.mkdir(base + b"/latin1-\xe9t\xe9")
    with open(base + b"/latin1-\xe9t\xe9/caf\xe9", "wb") as fh:
        fh.write(b"latin-1 names")
    with open(base + b"/bad\xffname", "wb") as fh:
        fh.write(b"ff")
    return [os.fsdecode(b"/latin1-\xe9t\xe9/caf\xe9"), os.fsdecode(b"/bad\xffname")]


def _odd_names(root: Path) -> list[str]:
    names = [
        "with space",
        "new\nline",
        "tab\tname",
        "back\\slash",
        "uni-\u00e9\u00e8\u4e2d",
        "-dash",
    ]
    return [_write(root, f"names/{n}", n.encode()) for n in names]


def _long_names(root: Path) -> list[str]:
    # splittable into ustar's prefix (<= 155) and name (<= 100)
    rel = "long/" + "d" * 90 + "/" + "f" * 95
    p = _write(root, rel, b"long")
    os.symlink("f" * 95, root / "long" / ("d" * 90) / "link-to-long")
    return [p, image_path("long/" + "d" * 90 + "/link-to-long")]


def _very_long_names(root: Path) -> list[str]:
    d = root / "vlong" / ("x" * 200)
    d.mkdir(parents=True)
    p = _write(root, "vlong/" + "x" * 200 + "/" + "y" * 255, b"a 255-byte name")
    os.symlink("t" * 300, root / "vlong/long-target")
    os.link(d / ("y" * 255), root / "vlong" / ("z" * 150))
    return [p, "/vlong/long-target", "/vlong/" + "z" * 150]


def _deep(root: Path) -> list[str]:
    rel = "/".join(f"level{i:02d}-{'q' * 20}" for i in range(40))
    return [_write(root, "deep/" + rel + "/leaf", b"deep\n")]


_BUILDERS = {
    "files": _files,
    "odd_modes": _odd_modes,
    "owners": _owners,
    "big_ids": _big_ids,
    "symlinks": _symlinks,
    "hardlinks": _hardlinks,
    "symlink_hardlinks": _symlink_hardlinks,
    "node_hardlinks": _node_hardlinks,
    "fifos": _fifos,
    "devices": _devices,
    "sparse": _sparse_files,
    "xattrs": _xattrs,
    "security_xattrs": _security_xattrs,
    "pre1970": _pre1970,
    "non_utf8": _non_utf8,
    "odd_names": _odd_names,
    "long_names": _long_names,
    "very_long_names": _very_long_names,
    "deep": _deep,
}
assert set(_BUILDERS) == ALL


# -- memory, measured in a child ------------------------------------------------------------


@dataclass
class Measured:
    """What a child did: exit status, output, peak resident set size and wall time."""

    returncode: int
    stdout: str
    stderr: str
    max_rss: int  # bytes, of the child and the descendants it waited for
    seconds: float


def measure(
    argv: Sequence[str],
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    guard_seconds: float = 120.0,
) -> Measured:
    """Run `argv` and return its peak RSS as `wait4` reports it for that child alone.

    `resource.getrusage(RUSAGE_CHILDREN)` in this process would mix in every earlier
    child of the test run (tar, rsync, forked digest workers); `os.wait4` gives the same
    `ru_maxrss` for one child. But Linux keeps a child's peak from before its exec, when it
    was a copy of its parent: a test process grown large (a Dask cluster run in it) would
    lend it hundreds of MiB. So a small fresh interpreter forks the child and reports its
    peak. `guard_seconds` only stops a hang; it is not a bound.
    """
    out, err, peak = tmp / "measure.out", tmp / "measure.err", tmp / "measure.peak"
    start = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(peak), *argv],
            stdout=o, stderr=e, env=env, start_new_session=True,
        )  # fmt: skip
    timer = threading.Timer(guard_seconds, _kill_group, (proc.pid,))
    timer.start()
    try:
        _, status, _ = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    max_rss = int(peak.read_text()) if peak.exists() else 0
    peak.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    text_out = out.read_text(errors="replace")
    text_err = err.read_text(errors="replace")
    out.unlink()
    err.unlink()
    if proc.returncode == -signal.SIGKILL and seconds >= guard_seconds:
        raise AssertionError(f"{argv[0]} still running after {guard_seconds}s: {text_err}")
    return Measured(proc.returncode, text_out, text_err, max_rss, seconds)


# forks argv, waits, writes the child's peak RSS (bytes) to argv[1], exits as the child did
_TRAMPOLINE = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss * 1024))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def cpython_tar_data(name: str) -> Path:
    """CPython's own tar test data (testtar.tar, recursion.tar), or skip with where to get it."""
    import sys
    import sysconfig

    candidates = [Path(sysconfig.get_paths()["stdlib"]) / "test" / name]
    candidates.append(
        Path(f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}/test/{name}")
    )
    for c in candidates:
        if c.is_file():
            return c
    pytest.skip(f"{name} not found (libpython3.x-testsuite, installed by scripts/dev.sh)")


def walk_inodes(root: Path) -> dict[str, int]:
    """{image path: inode} for every non-directory under `root`."""
    out: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, os.fsencode(root)))
            out[image_path(rel)] = os.lstat(full).st_ino
    return out
