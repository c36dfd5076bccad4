"""A persistent cache of content digests for files on mounted filesystems.

A file's digest is reused only while its (dev, ino, size, mtime_ns, ctime_ns) are all
unchanged; ctime cannot be set from user space, so a rewritten file never matches a stale
entry. One cache file per directory tree, written atomically (write, fsync, rename).
The cache is a speed-up only: a missing, corrupt or foreign file is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import blake3

from imgdiff import _digest

_MAGIC = b"IMGDIFF-DIGESTS-1\n"
_REC = struct.Struct("<QQQqq32s")  # dev, ino, size, mtime_ns, ctime_ns, raw blake3
_U64 = range(1 << 64)
_I64 = range(-(1 << 63), 1 << 63)


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/imgdiff`, or `~/.cache/imgdiff`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgdiff"


Key = tuple[int, int]
Value = tuple[int, int, int, bytes]


class DigestCache:
    """Digests of the regular files under one directory tree."""

    def __init__(self, tree: str, directory: Path | None = None) -> None:
        self.directory = directory or default_dir()
        real = os.path.realpath(tree)
        name = blake3.blake3(os.fsencode(real)).hexdigest()[:32]
        self.file = self.directory / f"{name}.digests"
        self._entries: dict[Key, Value] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            data = self.file.read_bytes()
        except OSError:
            return
        if not data.startswith(_MAGIC) or (len(data) - len(_MAGIC)) % _REC.size:
            return  # foreign or torn: start afresh
        entries = self._entries
        for dev, ino, size, mtime, ctime, raw in _REC.iter_unpack(memoryview(data)[len(_MAGIC) :]):
            entries[dev, ino] = (size, mtime, ctime, raw)

    def get(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str | None:
        """The cached digest if the file is provably unchanged since it was hashed."""
        hit = self._entries.get((dev, ino))
        if hit is None or hit[0] != size or hit[1] != mtime_ns or hit[2] != ctime_ns:
            return None
        return _digest.PREFIX + hit[3].hex()

    def put(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int, digest: str) -> None:
        """Remember a digest just computed (unless its file's stat does not fit a record)."""
        # Timestamps before 1678 or after 2262 overflow a signed 64-bit count of
        # nanoseconds (ext4 stores mtimes up to 2446; a tar member can carry any). Such
        # files are simply not cached: they are rare, so the speed-up lost is nothing,
        # and the record format (and every cache already written) stays as it is.
        if not (
            dev in _U64 and ino in _U64 and size in _U64 and mtime_ns in _I64 and ctime_ns in _I64
        ):
            return
        raw = bytes.fromhex(digest[len(_digest.PREFIX) :])
        self._entries[dev, ino] = (size, mtime_ns, ctime_ns, raw)
        self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed; failures are ignored (it is only a speed-up)."""
        if not self._dirty:
            return
        pack = _REC.pack
        body = b"".join(pack(d, i, *v) for (d, i), v in self._entries.items())
        tmp = self.file.with_suffix(f".tmp{os.getpid()}")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(_MAGIC + body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
