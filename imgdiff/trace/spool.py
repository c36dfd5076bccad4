"""Reading the import tracer's spool: one JSON-lines file per traced process, `{pid}-{start}.jsonl`.

It owns the reading side of the format that `tracer` writes (the constants, file naming and line
encoding live there, in the module the traced program loads, so both sides share one
definition) and the spool's housekeeping (`list_spool`, `prune`). A spool file is written by the
traced process — possibly unprivileged, possibly hostile — so everything here treats it as
untrusted input: symlinks refused, size and record count bounded, a torn or malformed line
skipped and counted, and, given the process's uid, only a file owned by that uid or by root
believed. It never follows a path out of the spool directory and never raises for a bad file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from typing import Any

import attrs

from imgdiff.trace.tracer import (
    DEFAULT_SPOOL_DIR,
    FORMAT_VERSION,
    KINDS,
    SPOOL_SUFFIX,
    read_boot_id,
    spool_file_name,
)

__all__ = [
    "DEFAULT_SPOOL_DIR",
    "MAX_LINE_BYTES",
    "MAX_RECORDS",
    "MAX_SPOOL_BYTES",
    "ImportRecord",
    "Spool",
    "list_spool",
    "load_spool",
    "prune",
    "read_boot_id",
    "read_spool",
]

MAX_SPOOL_BYTES = 64 << 20  # a process importing ~300k modules; anything past this is ignored
MAX_RECORDS = 300_000
MAX_LINE_BYTES = 64 << 10  # a path is at most 4096 bytes, escaped at most 6 characters each
_NAME = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)" + re.escape(SPOOL_SUFFIX))


@attrs.frozen
class ImportRecord:
    """One file a traced process imported a module from, with its identity at import time.

    `path` is absolute in the traced process's view (its root, its mount namespace); for
    kind "zip" it is the archive and `member` the name inside; dev/ino/size/mtime_ns are None
    when the file could not be stat'ed at import.
    """

    module: str
    path: str
    dev: int | None
    ino: int | None
    size: int | None
    mtime_ns: int | None
    kind: str
    member: str | None = None
    by: str | None = None  # the importing module ("": the program or start-up; None: unknown)
    # (st_dev, st_ino) of the process's root directory when it imported (None: not recorded):
    # a process that chroot'ed since saw `path` from another root than its own now
    root: tuple[int, int] | None = None


@attrs.frozen
class Spool:
    """One process's spool file as read: header fields, records, and what was skipped."""

    pid: int
    start: int
    boot_id: str
    exe: str
    argv: tuple[str, ...]
    records: tuple[ImportRecord, ...]
    malformed: int  # lines that were not a valid record (skipped)
    torn: bool  # the last line had no newline yet (a write in progress, or a crash): skipped
    truncated: bool  # the file exceeded MAX_SPOOL_BYTES or MAX_RECORDS: the rest was ignored
    uid: int  # owner of the file


def list_spool(spool_dir: str) -> list[tuple[int, int]]:
    """(pid, start) of every spool file in the directory, sorted; [] if it does not exist."""
    found = []
    try:
        with os.scandir(spool_dir) as entries:
            for entry in entries:
                m = _NAME.fullmatch(entry.name)
                if m:
                    found.append((int(m[1]), int(m[2])))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found)


def read_spool(
    spool_dir: str,
    pid: int,
    start: int,
    *,
    boot_id: str | None = None,
    uid: int | None = None,
) -> list[ImportRecord] | None:
    """The imports recorded for process (pid, start), or None when there is no trustworthy file
    for it (missing, not a regular file, a symlink, owned by someone other than `uid` or root,
    header not for this process or — given `boot_id` — not for this boot)."""
    spool = load_spool(spool_dir, pid, start, boot_id=boot_id, uid=uid)
    return None if spool is None else list(spool.records)


def load_spool(
    spool_dir: str,
    pid: int,
    start: int,
    *,
    boot_id: str | None = None,
    uid: int | None = None,
) -> Spool | None:
    """`read_spool` with the header and the reading statistics."""
    got = _read_bounded(os.path.join(spool_dir, spool_file_name(pid, start)), uid)
    if got is None:
        return None
    data, owner, over_size = got
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # a complete file ends with "\n": the last piece is empty
    if not lines:
        return None
    header = _header(lines[0], pid, start, boot_id)
    if header is None:
        return None
    records: list[ImportRecord] = []
    malformed = 0
    truncated = over_size
    root = _root(header.get("root"))
    for line in lines[1:]:
        if len(records) >= MAX_RECORDS:
            truncated = True
            break
        record = _record(line, root)
        if record is None:
            new = _root_line(line)
            if new is not None:
                root = new  # the process chroot'ed: later paths are seen from there
            else:
                malformed += 1
        else:
            records.append(record)
    return Spool(
        pid=pid,
        start=start,
        boot_id=header["boot_id"],
        exe=header["exe"],
        argv=tuple(header["argv"]),
        records=tuple(records),
        malformed=malformed,
        torn=torn,
        truncated=truncated,
        uid=owner,
    )


def prune(spool_dir: str, live: set[tuple[int, int]], *, boot_id: str | None = None) -> int:
    """Delete the spool files of processes not in `live` (pid, start) — and, given `boot_id`,
    those whose header names another boot; returns how many were deleted."""
    removed = 0
    try:
        dir_fd = os.open(spool_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        for pid, start in list_spool(spool_dir):
            name = spool_file_name(pid, start)
            if (pid, start) in live and (
                boot_id is None or _header_boot_id(name, dir_fd) in (boot_id, None)
            ):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)  # a symlink is removed itself, never followed
                removed += 1
    finally:
        os.close(dir_fd)
    return removed


def _open_regular(path: str, *, dir_fd: int | None = None) -> int | None:
    """A read descriptor for a regular file at `path` (not through a final symlink, not
    blocking on a FIFO), or None."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _read_bounded(path: str, uid: int | None) -> tuple[bytes, int, bool] | None:
    """(at most MAX_SPOOL_BYTES, ending at a line end if there was more; owner; whether there
    was more) of a trusted regular file, or None."""
    fd = _open_regular(path)
    if fd is None:
        return None
    try:
        owner = os.fstat(fd).st_uid
        if uid is not None and owner not in (uid, 0):
            return None
        data = _read_up_to(fd, MAX_SPOOL_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) <= MAX_SPOOL_BYTES:
        return data, owner, False
    return data[: data.rfind(b"\n", 0, MAX_SPOOL_BYTES) + 1], owner, True


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _loads(line: bytes) -> Any:
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _header(line: bytes, pid: int, start: int, boot_id: str | None) -> dict[str, Any] | None:
    h = _loads(line)
    if not (
        isinstance(h, dict)
        and h.get("v") == FORMAT_VERSION
        and _is_int(h.get("pid"))
        and h["pid"] == pid
        and _is_int(h.get("start"))
        and h["start"] == start
        and isinstance(h.get("boot_id"), str)
        and (boot_id is None or h["boot_id"] == boot_id)
    ):
        return None
    exe, argv = h.get("exe"), h.get("argv")
    h["exe"] = exe if isinstance(exe, str) else ""
    h["argv"] = argv if isinstance(argv, list) and all(isinstance(a, str) for a in argv) else []
    return h


def _header_boot_id(name: str, dir_fd: int) -> str | None:
    fd = _open_regular(name, dir_fd=dir_fd)
    if fd is None:
        return None
    try:
        first = _read_up_to(fd, MAX_LINE_BYTES).split(b"\n", 1)[0]
    except OSError:
        return None
    finally:
        os.close(fd)
    h = _loads(first)
    boot = h.get("boot_id") if isinstance(h, dict) else None
    return boot if isinstance(boot, str) else None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_fs_text(*texts: str) -> bool:
    """Whether each is text `os.fsdecode` can give (the tracer's paths are): JSON can also
    spell lone surrogates no file name has, on which `os.fsencode` (a stat of the path, a
    print) raises."""
    try:
        for text in texts:
            text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def _root(v: object) -> tuple[int, int] | None:
    if isinstance(v, list) and len(v) == 2 and all(_is_int(n) and n >= 0 for n in v):
        return (v[0], v[1])
    return None


def _root_line(line: bytes) -> tuple[int, int] | None:
    r = _loads(line) if line.startswith(b'{"root": ') else None
    return _root(r.get("root")) if isinstance(r, dict) and len(r) == 1 else None


def _record(line: bytes, root: tuple[int, int] | None = None) -> ImportRecord | None:
    r = _loads(line)
    if not isinstance(r, dict):
        return None
    module, path, kind, member = r.get("m"), r.get("p"), r.get("kind"), r.get("member")
    by = r.get("by")
    if not (
        isinstance(module, str)
        and module
        and isinstance(path, str)
        and path.startswith("/")
        and "\0" not in path
        and kind in KINDS
        and (member is None or isinstance(member, str))
        and (by is None or (isinstance(by, str) and len(by) <= 1024))
        and _is_fs_text(module, path, member or "", by or "")
    ):
        return None
    identity: list[int | None] = []
    for key in ("dev", "ino", "size", "mtime_ns"):
        v = r.get(key)
        if not (v is None or (_is_int(v) and v >= 0)):
            return None
        identity.append(v)
    dev, ino, size, mtime_ns = identity
    return ImportRecord(module, path, dev, ino, size, mtime_ns, kind, member, by, root)
