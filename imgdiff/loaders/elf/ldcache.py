"""`/etc/ld.so.cache`: the soname index `ldconfig` writes and the loader consults.

This module owns parsing the cache file, both formats ('glibc-ld.so.cache1.1' with its
glibc-hwcaps extension, and the old 'ld.so-1.7.0' table alone or before it) in either
byte order, into `CacheEntry` records. It must not read the file itself nor decide which
entry the loader takes (the closure does), and it trusts nothing in the data: every
count, offset and string is checked against the size of what it is given.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

from imgdiff.errors import BadInput, escape_path
from imgdiff.loaders.elf.abi import Endian

MAX_CACHE_BYTES: Final = 64 << 20  # /etc/ld.so.cache (real ones: 10-500 KiB)
MAX_CACHE_STRING: Final = 4096  # PATH_MAX: longest soname or path in the cache
MAX_CACHE_EXTENSIONS: Final = 64  # extension sections in the cache directory
LD_SO_CACHE: Final = "/etc/ld.so.cache"

_NEW_MAGIC: Final = b"glibc-ld.so.cache1.1"
_OLD_MAGIC: Final = b"ld.so-1.7.0"
_NEW_HEADER_SIZE: Final = 48  # magic+version, nlibs, len_strings, flags, pad, ext, unused[3]
_OLD_HEADER_SIZE: Final = 16  # magic (11 bytes), pad, nlibs
_NEW_ENTRY: Final = {"little": struct.Struct("<iIIIQ"), "big": struct.Struct(">iIIIQ")}
_OLD_ENTRY: Final = {"little": struct.Struct("<iII"), "big": struct.Struct(">iII")}
_U32X2: Final = {"little": struct.Struct("<II"), "big": struct.Struct(">II")}
_U32X4: Final = {"little": struct.Struct("<IIII"), "big": struct.Struct(">IIII")}
_EXTENSION_MAGIC: Final = 0xEAA42174  # (uint32_t) -358342284, dl-cache.h
_EXT_TAG_HWCAPS: Final = 1  # cache_extension_tag_glibc_hwcaps
_HWCAP_EXTENSION: Final = 1 << 62  # DL_CACHE_HWCAP_EXTENSION
_ISA_LEVEL_MASK: Final = (1 << 10) - 1  # DL_CACHE_HWCAP_ISA_LEVEL_MASK (upper half)


@attrs.frozen(slots=True)
class CacheEntry:
    """One `/etc/ld.so.cache` entry: a soname (`key`) and the file ldconfig found for it.

    `flags` says the library's ABI (FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 = 0x0303 for x86-64).
    `hwcap` is 0 for the baseline library; otherwise the entry is a variant the loader picks
    only on a CPU that supports it: a glibc-hwcaps subdirectory (`hwcaps_subdir`, e.g.
    'x86-64-v3') or, from old ldconfigs, a legacy hwcap bit mask.
    """

    key: str
    path: str
    flags: int
    hwcap: int = 0
    hwcaps_subdir: str | None = None


def _cache_string(data: bytes, base: int, offset: int, what: str) -> str:
    start = base + offset
    if offset < 0 or start >= len(data):
        raise BadInput(LD_SO_CACHE, f"{what} string offset {offset} beyond the file")
    end = data.find(b"\0", start, start + MAX_CACHE_STRING)
    if end < 0:
        raise BadInput(LD_SO_CACHE, f"{what} string at offset {offset} is not NUL-terminated")
    return data[start:end].decode("utf-8", "surrogateescape")


def _cache_hwcaps_names(
    data: bytes, endian: Endian, ext_offset: int, base: int
) -> list[str | None]:
    """The glibc-hwcaps subdirectory names of the extension directory ([] if none/bad).

    Section offsets count from the start of the file, the names' string offsets from the
    new-format header (ldconfig's save_cache). A damaged extension only costs the names.
    """
    if ext_offset == 0 or ext_offset % 4 or ext_offset + 8 > len(data):
        return []
    magic, count = _U32X2[endian].unpack_from(data, ext_offset)
    if magic != _EXTENSION_MAGIC or count > MAX_CACHE_EXTENSIONS:
        return []
    if ext_offset + 8 + 16 * count > len(data):
        return []
    for i in range(count):
        tag, _flags, offset, size = _U32X4[endian].unpack_from(data, ext_offset + 8 + 16 * i)
        if tag != _EXT_TAG_HWCAPS:
            continue
        if offset % 4 or size % 4 or offset + size > len(data):
            return []
        names: list[str | None] = []
        for at in range(offset, offset + size, 4):  # bounded by the file size
            (index,) = struct.unpack_from("<I" if endian == "little" else ">I", data, at)
            try:
                names.append(_cache_string(data, base, index, "glibc-hwcaps name"))
            except BadInput:
                names.append(None)
        return names
    return []


def _check_entry(key: str, path: str) -> None:
    if not key or "/" in key:
        raise BadInput(LD_SO_CACHE, "entry with an empty soname or one naming a path", key)
    if not path.startswith("/"):
        raise BadInput(LD_SO_CACHE, f"entry for {escape_path(key)} names a relative path")


def _parse_new(data: bytes, base: int) -> tuple[CacheEntry, ...]:
    if len(data) - base < _NEW_HEADER_SIZE:
        raise BadInput(LD_SO_CACHE, "truncated header")
    flags = data[base + 28]
    endians: tuple[Endian, ...]
    if flags & 3 == 1:  # cache_file_new_flags_endian_invalid
        raise BadInput(LD_SO_CACHE, "header marks the cache as invalid")
    if flags & 3 == 2:
        endians = ("little",)
    elif flags & 3 == 3:
        endians = ("big",)
    else:  # written by an ldconfig older than 2.33: the byte order of the machine
        endians = ("little", "big")
    room = (len(data) - base - _NEW_HEADER_SIZE) // 24
    for endian in endians:
        nlibs, _len_strings = _U32X2[endian].unpack_from(data, base + 20)
        if nlibs <= room:  # glibc's own corruption check
            break
    else:
        raise BadInput(LD_SO_CACHE, f"{nlibs} entries do not fit in {len(data)} bytes")
    (ext_offset,) = struct.unpack_from("<I" if endian == "little" else ">I", data, base + 32)
    hwcaps = _cache_hwcaps_names(data, endian, ext_offset, base)
    entry = _NEW_ENTRY[endian]
    out: list[CacheEntry] = []
    for at in range(base + _NEW_HEADER_SIZE, base + _NEW_HEADER_SIZE + 24 * nlibs, 24):
        eflags, key_at, value_at, _osversion, hwcap = entry.unpack_from(data, at)
        key = _cache_string(data, base, key_at, "soname")
        path = _cache_string(data, base, value_at, "path")
        _check_entry(key, path)
        subdir = None
        if ((hwcap >> 32) & ~_ISA_LEVEL_MASK) == _HWCAP_EXTENSION >> 32:
            index = hwcap & 0xFFFFFFFF
            subdir = hwcaps[index] if index < len(hwcaps) else None
        out.append(CacheEntry(key, path, eflags, hwcap, subdir))
    return tuple(out)


def _parse_old(data: bytes) -> tuple[CacheEntry, ...]:
    endian: Endian = "little"
    room = (len(data) - _OLD_HEADER_SIZE) // 12
    (nlibs,) = struct.unpack_from("<I", data, 12)
    if nlibs > room:
        (nlibs,) = struct.unpack_from(">I", data, 12)
        endian = "big"
        if nlibs > room:
            raise BadInput(LD_SO_CACHE, "old-format entries do not fit in the file")
    strings = _OLD_HEADER_SIZE + 12 * nlibs
    out: list[CacheEntry] = []
    for at in range(_OLD_HEADER_SIZE, strings, 12):
        eflags, key_at, value_at = _OLD_ENTRY[endian].unpack_from(data, at)
        key = _cache_string(data, strings, key_at, "soname")
        path = _cache_string(data, strings, value_at, "path")
        _check_entry(key, path)
        out.append(CacheEntry(key, path, eflags))
    return tuple(out)


def parse_ld_so_cache(data: bytes) -> tuple[CacheEntry, ...]:
    """The entries of an `/etc/ld.so.cache`, in file order (ldconfig sorts them by soname).

    Reads the 'glibc-ld.so.cache1.1' format (glibc 2.2 and later: a 48-byte header,
    24-byte entries whose string offsets count from the header, and the extension
    directory naming glibc-hwcaps subdirectories), alone or after the old 'ld.so-1.7.0'
    table (the compat layout), and the old table alone. Either byte order. Raises
    `BadInput` for anything truncated, out of range or not NUL-terminated; every count and
    offset is checked against the size of `data`.
    """
    if len(data) > MAX_CACHE_BYTES:
        raise BadInput(LD_SO_CACHE, f"{len(data)} bytes, more than {MAX_CACHE_BYTES}")
    if data.startswith(_NEW_MAGIC):
        return _parse_new(data, 0)
    if data.startswith(_OLD_MAGIC) and len(data) >= _OLD_HEADER_SIZE:
        for endian in ("<I", ">I"):
            (nlibs,) = struct.unpack_from(endian, data, 12)
            if nlibs <= (len(data) - _OLD_HEADER_SIZE) // 12:
                new_at = (_OLD_HEADER_SIZE + 12 * nlibs + 7) & ~7  # ALIGN_CACHE: 8 bytes
                if data[new_at : new_at + len(_NEW_MAGIC)] == _NEW_MAGIC:
                    return _parse_new(data, new_at)
        return _parse_old(data)
    raise BadInput(LD_SO_CACHE, "not an ld.so cache (unknown magic)")
