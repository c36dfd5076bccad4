"""What the loaders parsed from a file, remembered by the file's identity.

This module owns the one caching pattern of `loaders`: a parse of a file (an ELF object's
facts, a source file's imports) is kept under the file's identity (device, inode, size,
mtime, ctime) and how it was parsed, never under its path, so one inode reached as
`/lib/...` and `/usr/lib/...`, or by every process of a root, is parsed once. The caller
owns a cache and passes it to every call of one run; what is only valid for one call
(directory listings, probes of a path) stays with that call. The cache is bounded: when
full it is emptied rather than grown. It must not read files nor decide what is parsed.
"""

from __future__ import annotations

import os
from typing import Generic, TypeVar

FileKey = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

V = TypeVar("V")


def file_key(st: os.stat_result) -> FileKey:
    """The identity of the file `st` describes, as long as nobody writes to it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileCache(Generic[V]):
    """Parses of files by identity and parse options (`how`), shared across calls."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[FileKey, tuple[object, ...]], V] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, st: os.stat_result, how: tuple[object, ...] = ()) -> V | None:
        """What was stored for this file parsed this way, if anything."""
        return self._entries.get((file_key(st), how))

    def put(self, st: os.stat_result, value: V, how: tuple[object, ...] = ()) -> None:
        """Remember `value` for this file parsed this way."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[file_key(st), how] = value
