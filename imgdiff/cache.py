"""A persistent cache of content digests for files on mounted filesystems.

A file's digest is reused only while its (dev, ino, size, mtime_ns, ctime_ns) are all
unchanged; ctime cannot be set from user space, so a rewritten file never matches a stale
entry. One cache file per directory tree, written atomically (write, fsync, rename).
The cache is a speed-up only: a missing, corrupt or foreign file is ignored and rebuilt.

It stays bounded: a read of the whole tree drops the records of files it no longer has
(`retain`), and cache files of trees not used for `MAX_AGE_DAYS` are removed, a look at
the directory at most once a day (`save`).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Collection
from pathlib import Path

import blake3

from imgdiff import _digest

_MAGIC = b"IMGDIFF-DIGESTS-1\n"
_REC = struct.Struct("<QQQqq32s")  # dev, ino, size, mtime_ns, ctime_ns, raw blake3
_U64 = range(1 << 64)
_I64 = range(-(1 << 63), 1 << 63)
_SUFFIX = ".digests"
MAX_AGE_DAYS = 30  # a tree's cache file unused this long is removed
_DAY = 86400.0
_STAMP = ".pruned"  # its mtime: when the directory was last pruned


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/imgdiff`, or `~/.cache/imgdiff`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgdiff"


Key = tuple[int, int]
Value = tuple[int, int, int, bytes]


class DigestCache:
    """Digests of the regular files under one directory tree."""

    def __init__(
        self, tree: str, directory: Path | None = None, *, whole_reads: bool = True
    ) -> None:
        """The cache of `tree` (in `directory`, default `default_dir()`); `whole_reads`:
        the reads that use it cover the whole tree, so `retain` may drop what they miss."""
        self.directory = directory or default_dir()
        real = os.path.realpath(tree)
        name = blake3.blake3(os.fsencode(real)).hexdigest()[:32]
        self.file = self.directory / f"{name}{_SUFFIX}"
        self.whole_reads = whole_reads
        self._entries: dict[Key, Value] = {}
        self._dirty = False
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self) -> None:
        try:
            with open(self.file, "rb") as fh:
                data = fh.read()
                mtime = os.fstat(fh.fileno()).st_mtime
        except OSError:
            return
        if not data.startswith(_MAGIC) or (len(data) - len(_MAGIC)) % _REC.size:
            return  # foreign or torn: start afresh
        if time.time() - mtime > _DAY:
            # in use: not to be pruned as unused (a warm read writes nothing otherwise)
            with contextlib.suppress(OSError):
                os.utime(self.file)
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

    def retain(self, live: Collection[Key]) -> None:
        """After a read of the whole tree: forget the files it did not find, `live` being
        the (dev, ino) of every regular file it did (a no-op unless `whole_reads`)."""
        if not self.whole_reads:
            return
        stale = [key for key in self._entries if key not in live]
        for key in stale:
            del self._entries[key]
        self._dirty = self._dirty or bool(stale)

    def save(self) -> None:
        """Write the cache if it changed; failures are ignored (it is only a speed-up)."""
        if not self._dirty:
            return
        self._prune_directory()
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

    def _prune_directory(self) -> None:
        """Remove the cache files of trees unused for `MAX_AGE_DAYS` (and temporary files a
        killed writer left), at most once a day; errors are ignored."""
        stamp = self.directory / _STAMP
        now = time.time()
        try:
            if now - stamp.stat().st_mtime < _DAY:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp.touch()
            with os.scandir(self.directory) as it:
                for item in it:
                    name = item.name
                    if name.endswith(_SUFFIX):
                        limit = MAX_AGE_DAYS * _DAY
                    elif ".tmp" in name and name.split(".tmp")[0].isalnum():
                        limit = _DAY
                    else:
                        continue
                    with contextlib.suppress(OSError):
                        if now - item.stat(follow_symlinks=False).st_mtime > limit:
                            os.unlink(item.path)
        except OSError:
            return
