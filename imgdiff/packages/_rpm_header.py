"""Parse one rpm header blob, as the rpm database stores it, without the rpm library.

This module owns the header format only: the index of (tag, type, offset, count) entries,
the data store behind it, and typed access to the tags the rpm reader needs. It must not
open files or databases, and it trusts no count or offset in the blob: every length is
bounded and checked against the blob before use, and anything malformed raises
`HeaderError` (the caller adds the database file and package number).

Layout (rpm's `headerExport`, as the sqlite backend's `Packages.blob` holds it; an rpm
*file* puts the 8-byte intro `8e ad e8 01 00 00 00 00` before it, the database does not):
big-endian u32 `il` (index entries) and u32 `dl` (data bytes), then `il` entries of four
big-endian u32 (tag, type, offset into the data, count), then the `dl` data bytes. Entries
added after the signed region (at install time) come last and override earlier ones.
"""

from __future__ import annotations

import struct
from collections.abc import Collection

# tags (rpm's rpmtag.h)
NAME = 1000
VERSION = 1001
RELEASE = 1002
EPOCH = 1003
ARCH = 1022
OLDFILENAMES = 1027
FILEDIGESTS = 1035
FILEFLAGS = 1037
SOURCERPM = 1044
REQUIRENAME = 1049
DIRINDEXES = 1116
BASENAMES = 1117
DIRNAMES = 1118
FILEDIGESTALGO = 5011

# types (rpm's rpmTagType)
CHAR = 1
INT8 = 2
INT16 = 3
INT32 = 4
INT64 = 5
STRING = 6
BIN = 7
STRING_ARRAY = 8
I18NSTRING = 9

MAX_INDEX_ENTRIES = 100_000
MAX_DATA_BYTES = 256 << 20  # rpm's own HEADER_DATA_MAX

_INT_FORMATS = {CHAR: ("B", 1), INT8: ("B", 1), INT16: ("H", 2), INT32: ("I", 4), INT64: ("Q", 8)}
_STRING_TYPES = (STRING, STRING_ARRAY, I18NSTRING)
_INTRO_MAGIC = b"\x8e\xad\xe8\x01"


class HeaderError(ValueError):
    """The blob is not a well-formed rpm header (message says where it breaks)."""


class Header:
    """The index of one header blob; values are decoded (and checked) when asked for."""

    def __init__(self, blob: bytes, tags: Collection[int] | None = None) -> None:
        """Check the blob's frame and index the entries of `tags` (all when None)."""
        if len(blob) < 8:
            raise HeaderError(f"header of {len(blob)} bytes is shorter than its 8-byte size")
        if blob.startswith(_INTRO_MAGIC):
            raise HeaderError("header starts with an rpm file's header intro, not a db blob")
        il, dl = struct.unpack_from(">II", blob)
        if not 1 <= il <= MAX_INDEX_ENTRIES:
            raise HeaderError(f"index count {il} outside 1..{MAX_INDEX_ENTRIES}")
        if dl > MAX_DATA_BYTES:
            raise HeaderError(f"data length {dl} over {MAX_DATA_BYTES} bytes")
        self._start = 8 + 16 * il
        need = self._start + dl
        if len(blob) != need:
            state = "truncated" if len(blob) < need else "has trailing bytes"
            raise HeaderError(f"header {state}: {len(blob)} bytes, its sizes say {need}")
        self._blob = blob
        self._dl = dl
        self._index: dict[int, tuple[int, int, int]] = {}
        wanted = None if tags is None else frozenset(tags)
        for tag, typ, off, cnt in struct.iter_unpack(">IIII", memoryview(blob)[8 : self._start]):
            if wanted is None or tag in wanted:
                self._index[tag] = (typ, off, cnt)  # a later (install-time) entry wins

    def __contains__(self, tag: object) -> bool:
        return tag in self._index

    def _entry(self, tag: int) -> tuple[int, int, int]:
        typ, off, cnt = self._index[tag]
        if off >= self._dl:
            raise HeaderError(f"tag {tag}: offset {off} outside the {self._dl}-byte data")
        if cnt == 0:
            raise HeaderError(f"tag {tag}: zero count")
        return typ, off, cnt

    def ints(self, tag: int) -> tuple[int, ...]:
        """An integer tag's values; () when absent."""
        if tag not in self._index:
            return ()
        typ, off, cnt = self._entry(tag)
        fmt = _INT_FORMATS.get(typ)
        if fmt is None:
            raise HeaderError(f"tag {tag}: type {typ} where an integer was expected")
        code, size = fmt
        if cnt > (self._dl - off) // size:
            raise HeaderError(f"tag {tag}: {cnt} values of {size} bytes overrun the data")
        return struct.unpack_from(f">{cnt}{code}", self._blob, self._start + off)

    def first_int(self, tag: int) -> int | None:
        """An integer tag's first value; None when absent."""
        values = self.ints(tag)
        return values[0] if values else None

    def strings(self, tag: int) -> tuple[str, ...]:
        """A string tag's values (a STRING gives one); () when absent."""
        if tag not in self._index:
            return ()
        typ, off, cnt = self._entry(tag)
        if typ not in _STRING_TYPES:
            raise HeaderError(f"tag {tag}: type {typ} where a string was expected")
        if typ == STRING and cnt != 1:
            raise HeaderError(f"tag {tag}: STRING with count {cnt}")
        end = self._start + self._dl
        if cnt > end - (self._start + off):  # each string takes at least its NUL
            raise HeaderError(f"tag {tag}: {cnt} strings cannot fit in the data")
        parts = self._blob[self._start + off : end].split(b"\0", cnt)
        if len(parts) <= cnt:  # fewer than `cnt` terminating NULs before the end
            raise HeaderError(f"tag {tag}: string runs past the end of the data")
        return tuple(p.decode("utf-8", "surrogateescape") for p in parts[:cnt])

    def first_string(self, tag: int) -> str | None:
        """A string tag's (first) value; None when absent."""
        values = self.strings(tag)
        return values[0] if values else None

    def file_names(self) -> tuple[str, ...]:
        """Absolute file paths: dirnames[dirindexes[i]] + basenames[i], or the old list."""
        if BASENAMES not in self._index:
            return self.strings(OLDFILENAMES)
        basenames = self.strings(BASENAMES)
        indexes = self.ints(DIRINDEXES)
        dirnames = self.strings(DIRNAMES)
        if len(indexes) != len(basenames):
            raise HeaderError(f"{len(basenames)} basenames but {len(indexes)} dir indexes")
        try:
            return tuple(dirnames[i] + b for i, b in zip(indexes, basenames, strict=True))
        except IndexError:
            raise HeaderError(f"dir index outside the {len(dirnames)} dir names") from None
