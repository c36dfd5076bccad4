"""Tar extension records: PAX headers, their values, extended attributes and sparse maps.

PAX records are `"%d %s=%s\\n"` (POSIX.1-2017 pax, "pax Extended Header"); GNU tar's
sparse formats are described in its manual ("Storing Sparse Files"): 0.0 repeats
`GNU.sparse.offset`/`GNU.sparse.numbytes` records, 0.1 lists them in `GNU.sparse.map`,
1.0 stores the map as decimal lines at the start of the member's data, and the old GNU
format keeps it in header slots and extension blocks. This module turns those bytes into
values and checks them; it reads no stream itself (the 1.0 map and extension blocks are
handed to it).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
from collections.abc import Iterable

from imgdiff.errors import BadInput
from imgdiff.image._tarheader import UID_LIMIT

Records = list[tuple[str, bytes]]
"""PAX records in archive order; a key may repeat (sparse 0.0 relies on it)."""

_XATTR_SCHILY = "SCHILY.xattr."
_XATTR_LIBARCHIVE = "LIBARCHIVE.xattr."
_XATTR_RHT = "RHT.security.selinux"  # Red Hat's tar before SCHILY.xattr was common


def pax_records(data: bytes, src: str, name: str) -> Records:
    """The records of one PAX header block's data, checked for exact framing."""
    out: Records = []
    pos = 0
    end_all = len(data)
    while pos < end_all:
        if not data[pos:].strip(b"\0"):
            break  # NUL padding after the last record
        space = data.find(b" ", pos, pos + 24)
        if space < 0:
            raise BadInput(src, "malformed PAX header", name)
        digits = data[pos:space]
        if not digits.isdigit():
            raise BadInput(src, "malformed PAX record length", name)
        length = int(digits)
        end = pos + length
        if length <= space - pos + 1 or end > end_all or data[end - 1 : end] != b"\n":
            raise BadInput(src, "malformed PAX record", name)
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise BadInput(src, "PAX record without '='", name)
        out.append((key.decode("utf-8", "surrogateescape"), value))
        pos = end
    return out


def pax_int(value: bytes, what: str, src: str, name: str, limit: int | None = None) -> int:
    """A non-negative decimal PAX value (size, uid, gid), below `limit` if given."""
    if not value.isdigit():
        raise BadInput(src, f"bad {what} {value[:24]!r} in PAX header", name)
    number = int(value)
    if limit is not None and number >= limit:
        raise BadInput(src, f"{what} {number} out of range in PAX header", name)
    return number


def pax_time(value: bytes, src: str, name: str) -> int:
    """A PAX time (`[-]seconds[.fraction]`) in nanoseconds."""
    text = value.decode("ascii", "replace")
    negative = text.startswith("-")
    whole, _, frac = text.removeprefix("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or not whole.isascii():
        raise BadInput(src, f"bad mtime {text[:32]!r} in PAX header", name)
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if negative else ns


def pax_name(value: bytes, what: str, src: str, name: str) -> bytes:
    """A path-like PAX value: a NUL inside it is refused, as GNU tar refuses it."""
    if b"\0" in value:
        raise BadInput(src, f"{what} in PAX header contains a NUL byte", name)
    return value


def pax_uid(value: bytes, what: str, src: str, name: str) -> int:
    """A uid or gid from a PAX header: a decimal below 2**32."""
    return pax_int(value, what, src, name, UID_LIMIT)


def url_decoded(encoded: str) -> str:
    """An xattr name as libarchive's `url_decode` reads a `LIBARCHIVE.xattr.` key: each
    `%XX` (either case) is that byte, a `%` not followed by two hex digits is itself, and
    the name ends at a decoded NUL (libarchive hands it on as a C string)."""
    raw = urllib.parse.unquote_to_bytes(os.fsencode(encoded))
    return os.fsdecode(raw.split(b"\0", 1)[0])


def gnu_decoded(encoded: str) -> str:
    """An xattr name as GNU tar reads a `SCHILY.xattr.` key (`xattr_decode_keyword`):
    only `%25` and `%3D`, which GNU tar writes for `%` and `=`, are decoded."""
    if "%" not in encoded:
        return encoded
    return re.sub("%(25|3D)", lambda m: "%" if m[1] == "25" else "=", encoded)


def xattrs_of(records: dict[str, bytes], src: str, name: str) -> tuple[tuple[str, bytes], ...]:
    """Extended attributes from PAX records, each name once, sorted by name.

    bsdtar writes every attribute twice, as `LIBARCHIVE.xattr.KEY` (base64 value) and
    `SCHILY.xattr.KEY` (raw value), KEY being the name URL-encoded in both (libarchive's
    `url_encode`: bytes outside `!`..`~`, `%` and `=`). A pair with the same KEY is one
    attribute, named by decoding KEY fully (`bsdtar -x` also sets one named KEY as it
    stands from the SCHILY record, and GNU tar only that one, decoded its way: for a name
    that needed encoding, neither is the file's). A SCHILY record alone (GNU tar, star) is
    named as GNU tar decodes it, and wins over a LIBARCHIVE one naming the same
    attribute, as GNU tar reads only the SCHILY form.
    """
    found: dict[str, bytes] = {}
    schily: set[str] = set()
    for key, value in records.items():
        if key.startswith(_XATTR_SCHILY):
            xname = key[len(_XATTR_SCHILY) :]
            if _XATTR_LIBARCHIVE + xname in records:
                xname = url_decoded(xname)
            else:
                xname = gnu_decoded(xname)
            found[xname] = value
            schily.add(xname)
        elif key.startswith(_XATTR_LIBARCHIVE):
            xname = url_decoded(key[len(_XATTR_LIBARCHIVE) :])
            try:
                decoded = base64.b64decode(value + b"==", validate=False)
            except (ValueError, binascii.Error):
                raise BadInput(src, "malformed LIBARCHIVE.xattr record", name) from None
            if xname not in schily:
                found.setdefault(xname, decoded)
        elif key == _XATTR_RHT:
            found.setdefault("security.selinux", value)
    return tuple(sorted(found.items()))


class SparseMap:
    """Where a sparse member's stored data lies in the file: (offset, length) in order."""

    __slots__ = ("real_size", "segments")

    def __init__(self, segments: list[tuple[int, int]], real_size: int) -> None:
        self.segments = segments
        self.real_size = real_size

    @classmethod
    def checked(
        cls, flat: Iterable[int], real_size: int, stored: int, src: str, name: str
    ) -> SparseMap:
        """A map from alternating offsets and lengths, checked against the stored size.

        Segments must be in order, must not overlap, must end inside the file, and their
        lengths must add up to the bytes the archive stores. Empty segments (GNU tar
        writes one at the end of the file) carry no data and are dropped.
        """
        values = list(flat)
        if len(values) % 2:
            raise BadInput(src, "malformed sparse map (odd number of values)", name)
        segments: list[tuple[int, int]] = []
        end = 0
        total = 0
        for i in range(0, len(values), 2):
            offset, length = values[i], values[i + 1]
            if offset < end or offset + length > real_size:
                raise BadInput(src, "malformed sparse map (segments overlap or overrun)", name)
            if length:
                segments.append((offset, length))
                end = offset + length
                total += length
        if total != stored:
            raise BadInput(
                src, f"sparse map covers {total} bytes but the archive stores {stored}", name
            )
        return cls(segments, real_size)


def sparse_decimals(text: bytes, src: str, name: str) -> list[int]:
    """The numbers of a sparse map written as decimal text (0.1's commas, 1.0's lines)."""
    out = []
    for part in text.replace(b"\n", b",").split(b","):
        if not part.isdigit():
            raise BadInput(src, "malformed sparse map (not a decimal number)", name)
        out.append(int(part))
    return out


def sparse_1_0_length(head: bytes, src: str, name: str, limit: int) -> int | None:
    """Bytes the 1.0 map at the start of `head` occupies (unpadded), or None if incomplete.

    The map is a count line followed by that many offset and length lines.
    """
    newline = head.find(b"\n")
    if newline < 0:
        if len(head) > 24:
            raise BadInput(src, "malformed sparse map (no count line)", name)
        return None
    count_text = head[:newline]
    if not count_text.isdigit():
        raise BadInput(src, "malformed sparse map (count is not a number)", name)
    count = int(count_text)
    if count * 2 > limit:
        raise BadInput(src, f"sparse map of {count} segments is over the limit", name)
    pos = newline + 1
    for _ in range(2 * count):
        newline = head.find(b"\n", pos)
        if newline < 0:
            return None
        pos = newline + 1
    return pos


__all__ = [
    "Records",
    "SparseMap",
    "pax_int",
    "pax_name",
    "pax_records",
    "pax_time",
    "pax_uid",
    "sparse_1_0_length",
    "sparse_decimals",
    "xattrs_of",
]
