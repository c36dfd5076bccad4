"""One 512-byte tar header block, decoded: checksum, numeric fields, names, GNU sparse slots.

This module knows the byte layout of v7, ustar, GNU and star headers (POSIX.1-2017
`pax`, "ustar Interchange Format"; GNU tar's `tar.h`) and nothing about extension
records, member content or what members mean together; those are `_tarext` and `_tar`.
Every malformed field is `BadInput` naming the field and the member.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

from imgdiff.errors import BadInput

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
_HIGH = bytes(range(128, 256))
_POSIX_MAGIC = b"ustar\0"
_GNU_MAGIC = b"ustar  \0"
UID_LIMIT = 1 << 32  # uid_t and gid_t are 32 bits on Linux


class Header(NamedTuple):
    """The fields of one header block; names are raw bytes, nothing resolved yet."""

    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int  # seconds; negative before 1970 (GNU base-256 or PAX)
    typeflag: bytes
    linkname: bytes
    devmajor: int
    devminor: int
    gnu: bool  # GNU magic: offsets 345.. hold atime/ctime/sparse slots, not a prefix


def _byte_sum(block: bytes) -> int:
    """The sum of a block's bytes. Adler-32's low half is 1 + the sum modulo 65521, exact
    for 256 bytes (at most 65280), and zlib computes it ten times faster than `sum`."""
    if len(block) != BLOCK:
        return sum(block)
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def checksum_ok(block: bytes) -> bool:
    """True if the header's checksum matches, summing bytes as unsigned or as signed."""
    stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    # the checksum field itself counts as eight spaces (0x20 * 8 = 256)
    unsigned = _byte_sum(block) - sum(block[148:156]) + 256
    if want == unsigned:
        return True
    # some old tars summed signed chars: each byte over 127 counts 256 less
    high = len(block) - len(block.translate(None, _HIGH))
    high -= 8 - len(block[148:156].translate(None, _HIGH))
    return want == unsigned - 256 * high


def number(field: bytes, src: str, what: str, name: str, *, signed: bool = False) -> int:
    """A numeric field: octal text, or GNU base-256 when the first byte's top bit is set.

    Base-256 is big-endian two's complement with the top bit of the first byte as the
    marker (0x80 positive, 0xFF negative). Only `signed` fields (mtime) may be negative.
    """
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            value = int.from_bytes(field, "big", signed=True)
            if not signed:
                raise BadInput(src, f"negative {what} in tar header", name)
            return value
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0]
    try:
        value = int(text, 8)  # int() skips the spaces tar pads numbers with
    except ValueError:
        if not text.strip(b" "):
            return 0
        value = -1
    if value < 0 or b"_" in text or b"+" in text:
        raise BadInput(src, f"bad {what} field {text.strip()[:16]!r} in tar header", name)
    return value


def parse(block: bytes, src: str) -> Header:
    """Decode a header block whose checksum has been checked."""
    raw_name = block[0:100].split(b"\0", 1)[0]
    magic = block[257:265]
    gnu = magic == _GNU_MAGIC
    if magic[:6] == _POSIX_MAGIC:  # POSIX ustar: the prefix holds the leading directories
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            raw_name = prefix + b"/" + raw_name
    typeflag = block[156:157]
    mode = uid = gid = size = mtime = -1
    m, u, g = (
        block[100:108].rstrip(b"\0"),
        block[108:116].rstrip(b"\0"),
        block[116:124].rstrip(b"\0"),
    )
    z, t = block[124:136].rstrip(b"\0"), block[136:148].rstrip(b"\0")
    if m.isdigit() and u.isdigit() and g.isdigit() and z.isdigit() and t.isdigit():
        try:  # octal digits and NUL padding, as nearly every header has them
            mode, uid, gid, size, mtime = int(m, 8), int(u, 8), int(g, 8), int(z, 8), int(t, 8)
        except ValueError:  # an 8 or a 9: `number` says which field
            mode = -1
    if mode < 0:
        shown = raw_name.decode("utf-8", "surrogateescape")
        mode = number(block[100:108], src, "mode", shown)
        uid = number(block[108:116], src, "uid", shown)
        gid = number(block[116:124], src, "gid", shown)
        size = number(block[124:136], src, "size", shown)
        mtime = number(block[136:148], src, "mtime", shown, signed=True)
    major = minor = 0
    if typeflag in (b"3", b"4"):
        shown = raw_name.decode("utf-8", "surrogateescape")
        major = number(block[329:337], src, "devmajor", shown)
        minor = number(block[337:345], src, "devminor", shown)
    linkname = block[157:257].split(b"\0", 1)[0]
    return Header(raw_name, mode, uid, gid, size, mtime, typeflag, linkname, major, minor, gnu)


Plain = tuple[bytes, int, int, int, int, int, bytes, bytes]
"""(name, mode, uid, gid, size, mtime, typeflag, linkname) of a header `plain` accepts."""

_PLAIN_TYPES = frozenset((b"0", b"\0", b"5", b"2"))


def plain(block: bytes) -> Plain | None:
    """The fields of the commonest header, or None for anything else (then `parse`).

    A plain header is a regular file, directory or symlink whose numeric fields are octal
    digits and NUL padding and whose name is relative and clean: no empty, "." or ".."
    component, no trailing "/". Its checksum must have been checked.
    """
    typeflag = block[156:157]
    if typeflag not in _PLAIN_TYPES:
        return None
    m, u, g = (
        block[100:108].rstrip(b"\0"),
        block[108:116].rstrip(b"\0"),
        block[116:124].rstrip(b"\0"),
    )
    z, t = block[124:136].rstrip(b"\0"), block[136:148].rstrip(b"\0")
    if not (m.isdigit() and u.isdigit() and g.isdigit() and z.isdigit() and t.isdigit()):
        return None
    raw_name = block[0:100].split(b"\0", 1)[0]
    if block[257:263] == _POSIX_MAGIC:
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            raw_name = prefix + b"/" + raw_name
    if (
        not raw_name
        or raw_name[0] == 0x2F  # "/"
        or raw_name[0] == 0x2E  # "."
        or raw_name[-1] == 0x2F
        or b"//" in raw_name
        or b"/." in raw_name
    ):
        return None
    try:
        mode, uid, gid, size, mtime = int(m, 8), int(u, 8), int(g, 8), int(z, 8), int(t, 8)
    except ValueError:  # an 8 or a 9
        return None
    linkname = block[157:257].split(b"\0", 1)[0]
    return raw_name, mode, uid, gid, size, mtime, typeflag, linkname


def gnu_sparse_slots(block: bytes, start: int, count: int, src: str, name: str) -> list[int]:
    """Offsets and lengths (flattened) from `count` GNU sparse slots of 24 bytes each.

    An empty slot (all NUL) ends the list: GNU tar fills slots in order.
    """
    out: list[int] = []
    for i in range(count):
        slot = block[start + 24 * i : start + 24 * (i + 1)]
        if not slot.strip(b"\0"):
            break
        out.append(number(slot[:12], src, "sparse offset", name))
        out.append(number(slot[12:], src, "sparse length", name))
    return out


def is_tar_header(block: bytes) -> bool:
    """True if `block` is a tar header (valid checksum) or an end-of-archive zero block."""
    return len(block) == BLOCK and (block == ZERO_BLOCK or checksum_ok(block))


__all__ = [
    "BLOCK",
    "UID_LIMIT",
    "ZERO_BLOCK",
    "Header",
    "checksum_ok",
    "gnu_sparse_slots",
    "is_tar_header",
    "number",
    "parse",
    "plain",
]
