"""A persistent cache of content digests for files on mounted filesystems.

A file's digest is reused only while its (dev, ino, size, mtime_ns, ctime_ns) are all
unchanged and its device still holds the same attachment of the same disk (`disk_instance`);
ctime cannot be set from user space, so a rewritten file never matches a stale entry. One
cache file per directory tree, written atomically (write, fsync, rename). The cache is a
speed-up only: a missing, corrupt or foreign file is ignored and rebuilt.

A digest is not kept for a file changed within the writeback window (`settle_window_ns`)
before it was read: a process writing through a shared mapping moves mtime and ctime only
at the first write to a page after it was written back, so until then the bytes can change
under an unchanged stat (git's "racily clean" entries, for the same reason).

It stays bounded: a read of the whole tree drops the records of files it no longer has
(`retain`), and cache files of trees not used for `MAX_AGE_DAYS` are removed, a look at
the directory at most once a day (`save`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import time
from collections.abc import Collection
from pathlib import Path

import blake3

from imgdiff import _digest
from imgdiff.runtime._procfs import mount_lines

_MAGIC = b"IMGDIFF-DIGESTS-2\n"  # then a u32 count of _DEV, the _DEVs, the _RECs
_COUNT = struct.Struct("<I")
_DEV = struct.Struct("<QQ")  # dev, its disk_instance when the records were written
_REC = struct.Struct("<QQQqq32s")  # dev, ino, size, mtime_ns, ctime_ns, raw blake3
_U64 = range(1 << 64)
_I64 = range(-(1 << 63), 1 << 63)
_SUFFIX = ".digests"
MAX_AGE_DAYS = 30  # a tree's cache file unused this long is removed
_DAY = 86400.0
_STAMP = ".pruned"  # its mtime: when the directory was last pruned
_SETTLE_FLOOR_NS = 30 * 10**9
SETTLE_NS: int | None = None  # the writeback window for new caches; None: the kernel's


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/imgdiff`, or `~/.cache/imgdiff`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgdiff"


def settle_window_ns(vm: str = "/proc/sys/vm") -> int:
    """How long a page dirtied through a mapping may stay dirty, and so keep taking writes
    that change no time: dirty_expire_centisecs plus dirty_writeback_centisecs (the flusher's
    period), never under 30 s (the kernel's default expiry)."""
    total = 0
    for name in ("dirty_expire_centisecs", "dirty_writeback_centisecs"):
        with contextlib.suppress(OSError, ValueError), open(f"{vm}/{name}", "rb") as fh:
            total += int(fh.read()) * 10**7
    return max(total, _SETTLE_FLOOR_NS)


Key = tuple[int, int]
Value = tuple[int, int, int, bytes]


def disk_instance(
    dev: int, sysfs: str = "/sys/dev/block", mountinfo: str = "/proc/self/mountinfo"
) -> int | None:
    """Which attachment of which disk the filesystem on device `dev` is read from: the
    disk's `diskseq` (Linux 5.15+ numbers every disk attached, each loop attach anew), 0 for
    a disk without one (an older kernel: a fixed disk keeps its filesystem), None when
    nothing tells one instance from the next (a loop device before 5.15; no block device:
    tmpfs, overlay, network and FUSE filesystems).

    A reproducible image pins inode numbers, times and the filesystem UUID, and a second
    loop mount reuses the first's device number: (dev, ino, ctime) cannot tell them apart.
    """
    if os.major(dev) == 0:  # an anonymous device (btrfs, tmpfs, overlay): the mount's source
        found = _mounted_block_device(dev, mountinfo)
        if found is None:
            return None
        dev = found
    base = f"{sysfs}/{os.major(dev)}:{os.minor(dev)}"
    if os.path.exists(base + "/partition"):
        base += "/.."  # the sysfs directory of the partition's disk
    try:
        with open(base + "/diskseq", "rb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        pass
    return 0 if os.path.isdir(base) and not os.path.exists(base + "/loop") else None


def _mounted_block_device(dev: int, mountinfo: str) -> int | None:
    """The block device mounted as anonymous device `dev` (btrfs's subvolumes), if any."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for m in mount_lines(mountinfo):
        if m.dev == want and m.source:
            if not m.source.startswith("/"):
                return None  # "tmpfs", "overlay", "server:/export": no device
            try:
                st = os.stat(m.source)
            except OSError:
                return None
            return st.st_rdev if stat.S_ISBLK(st.st_mode) else None
    return None


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
        # a file changed this long before it was read is not cached
        self.settle_ns = SETTLE_NS if SETTLE_NS is not None else settle_window_ns()
        self._entries: dict[Key, Value] = {}
        self._instances: dict[int, int | None] = {}  # disk_instance of each dev, asked once
        self._dirty = False
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def _instance(self, dev: int) -> int | None:
        if dev not in self._instances:
            self._instances[dev] = disk_instance(dev)
        return self._instances[dev]

    def _load(self) -> None:
        try:
            with open(self.file, "rb") as fh:
                data = fh.read()
                mtime = os.fstat(fh.fileno()).st_mtime
        except OSError:
            return
        start = len(_MAGIC) + _COUNT.size
        if not data.startswith(_MAGIC) or len(data) < start:
            return  # foreign, of an older format, or torn: start afresh
        (ndevs,) = _COUNT.unpack_from(data, len(_MAGIC))
        body = start + ndevs * _DEV.size
        if len(data) < body or (len(data) - body) % _REC.size:
            return
        if time.time() - mtime > _DAY:
            # in use: not to be pruned as unused (a warm read writes nothing otherwise)
            with contextlib.suppress(OSError):
                os.utime(self.file)
        # records of a device now holding another disk, or another attachment, are dropped
        devs = {d for d, seq in _DEV.iter_unpack(data[start:body]) if self._instance(d) == seq}
        entries = self._entries
        for dev, ino, size, mtime, ctime, raw in _REC.iter_unpack(memoryview(data)[body:]):
            if dev in devs:
                entries[dev, ino] = (size, mtime, ctime, raw)
            else:
                self._dirty = True

    def get(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str | None:
        """The cached digest if the file is provably unchanged since it was hashed."""
        hit = self._entries.get((dev, ino))
        if hit is None or hit[0] != size or hit[1] != mtime_ns or hit[2] != ctime_ns:
            return None
        return _digest.PREFIX + hit[3].hex()

    def put(
        self,
        dev: int,
        ino: int,
        size: int,
        mtime_ns: int,
        ctime_ns: int,
        digest: str,
        *,
        read_after_ns: int | None,
    ) -> None:
        """Remember a digest just computed from bytes read after `read_after_ns`
        (`time.time_ns()`), unless the file changed less than `settle_ns` before that,
        its stat does not fit a record, or nothing tells its filesystem from the next one
        mounted there (`disk_instance`). `read_after_ns` None: the caller wrote the bytes
        itself, to a new file nobody else can have mapped."""
        # every write fault moves ctime; the page then takes writes unseen until written back
        if read_after_ns is not None and read_after_ns - ctime_ns < self.settle_ns:
            return
        # Timestamps before 1678 or after 2262 overflow a signed 64-bit count of
        # nanoseconds (ext4 stores mtimes up to 2446; a tar member can carry any). Such
        # files are simply not cached: they are rare, so the speed-up lost is nothing,
        # and the record format (and every cache already written) stays as it is.
        if not (
            dev in _U64 and ino in _U64 and size in _U64 and mtime_ns in _I64 and ctime_ns in _I64
        ):
            return
        if self._instance(dev) is None:
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
        devs = {d for d, _ in self._entries}
        head = _COUNT.pack(len(devs)) + b"".join(_DEV.pack(d, self._instance(d)) for d in devs)
        body = head + b"".join(pack(d, i, *v) for (d, i), v in self._entries.items())
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
