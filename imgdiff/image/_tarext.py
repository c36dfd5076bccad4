"""Tar extension records: PAX headers, their values, extended attributes and sparse maps.

PAX records are `"%d %s=%s\\n"` (POSIX.1-2017 pax, "pax Extended Header"); GNU tar's
sparse formats are described in its manual ("Storing Sparse Files"): 0.0 repeats
`GNU.sparse.offset`/`GNU.sparse.numbytes` records, 0.1 lists them in `GNU.sparse.map`,
1.0 stores the map as decimal lines at the start of the member's data, and the old GNU
format keeps it in header slots and extension blocks. POSIX ACLs are `SCHILY.acl.access`
and `SCHILY.acl.default` in POSIX.1e text (star's, also written by GNU tar and bsdtar),
made into the `system.posix_acl_*` xattrs Linux keeps them in. This module turns those
bytes into values and checks them; it reads no stream itself (the 1.0 map and extension
blocks are handed to it).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
import urllib.parse
from collections.abc import Iterable
from typing import NamedTuple

from imgdiff.errors import BadInput
from imgdiff.image._tarheader import UID_LIMIT
from imgdiff.model import EntryType

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
    seconds = -int(whole) if negative else int(whole)
    if not _TIME_MIN <= seconds <= _TIME_MAX:  # GNU tar: "out of range" of time_t
        raise BadInput(src, f"mtime {text[:32]!r} in PAX header is out of range", name)
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if negative else ns


_TIME_MIN, _TIME_MAX = -(1 << 63), (1 << 63) - 1


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
            # GNU tar --selinux writes the context without its NUL and restores it with
            # setfilecon, which sets strlen + 1 bytes: the kernel keeps "ctx\0", as the
            # SCHILY.xattr record of the same file holds it (bsdtar drops the NUL, but an
            # SELinux kernel reads it back with one all the same)
            found.setdefault("security.selinux", value if value.endswith(b"\0") else value + b"\0")
    return tuple(sorted(found.items()))


_NAMESPACES = ("security.", "system.", "trusted.", "user.")
_XATTR_NAME_MAX = 255  # bytes (XATTR_NAME_MAX, include/uapi/linux/limits.h)
_XATTR_SIZE_MAX = 65536  # bytes of value (XATTR_SIZE_MAX)


def unsettable(xname: str, value: bytes) -> str | None:
    """Why Linux refuses to set an xattr (setxattr(2): a name outside the four namespaces
    is EOPNOTSUPP, an empty one or one past 255 bytes ERANGE, a namespace alone EINVAL, a
    value past 64 KiB E2BIG), or None if it can be set."""
    raw = os.fsencode(xname)
    prefix = next((p for p in _NAMESPACES if xname.startswith(p)), None)
    if prefix is None:
        return "has no namespace Linux knows"
    if xname == prefix:
        return "names a namespace alone"
    if len(raw) > _XATTR_NAME_MAX:
        return f"has a name longer than {_XATTR_NAME_MAX} bytes"
    if len(value) > _XATTR_SIZE_MAX:
        return f"has a value longer than {_XATTR_SIZE_MAX} bytes"
    return None


# -- POSIX ACLs ---------------------------------------------------------------------------

_ACL_ACCESS = "system.posix_acl_access"
_ACL_DEFAULT = "system.posix_acl_default"
_ACL_RECORDS = (("SCHILY.acl.access", _ACL_ACCESS), ("SCHILY.acl.default", _ACL_DEFAULT))
ACL_XATTRS = frozenset((_ACL_ACCESS, _ACL_DEFAULT))

# Linux's xattr form (include/uapi/linux/posix_acl_xattr.h): u32 version 2, then
# (u16 tag, u16 perm, u32 id) entries, little-endian; id is 0xffffffff but for USER, GROUP
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_ACL_HEAD = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
_TAG_WORDS = {"user": "user", "u": "user", "group": "group", "g": "group",
              "mask": "mask", "m": "mask", "other": "other", "o": "other"}  # fmt: skip
_PERMS = re.compile("([r-])([w-])([x-])")

AclEntry = tuple[int, int, int | str]
"""(tag, rwx bits, id): the id of a named entry is its user or group name when the text
gives no number for it."""


class PosixAcls(NamedTuple):
    """What the ACL records of one member leave on disk."""

    xattrs: tuple[tuple[str, bytes], ...]
    """All the member's xattrs, the ACLs' among them, sorted by name."""
    perms: int | None
    """The mode's rwx bits an access ACL sets (owner, mask or else group, other)."""
    warnings: tuple[str, ...]


def _acl_id(text: str, what: str, src: str, name: str) -> int:
    if not (text.isdigit() and text.isascii()) or int(text) >= _NO_ID:
        raise BadInput(src, f"malformed {what} (bad id {text[:24]!r})", name)
    return int(text)


def _acl_perm(text: str, what: str, src: str, name: str) -> int:
    match = _PERMS.fullmatch(text)
    if match is None:
        raise BadInput(src, f"malformed {what} (bad permissions {text[:24]!r})", name)
    return sum(bit for bit, c in zip((4, 2, 1), match.groups(), strict=True) if c != "-")


def _acl_entry(item: str, what: str, src: str, name: str) -> AclEntry:
    """One `tag:qualifier:perms[:id]` entry; `mask` and `other` may leave out the qualifier."""
    fields = item.split(":")
    word = _TAG_WORDS.get(fields[0])
    if word in ("mask", "other"):
        if len(fields) == 3 and not fields[1]:
            fields = [fields[0], fields[2]]
        if len(fields) == 2:
            tag = _MASK if word == "mask" else _OTHER
            return tag, _acl_perm(fields[1], what, src, name), _NO_ID
    elif word is not None and len(fields) in (3, 4):
        qualifier, perm = fields[1], fields[2]
        bits = _acl_perm(perm, what, src, name)
        number = _acl_id(fields[3], what, src, name) if len(fields) == 4 else None
        if not qualifier:
            return (_USER_OBJ if word == "user" else _GROUP_OBJ), bits, _NO_ID
        tag = _USER if word == "user" else _GROUP
        if number is not None:  # star's id field: the number, as --numeric-owner reads it
            return tag, bits, number
        if qualifier.isdigit() and qualifier.isascii():
            return tag, bits, _acl_id(qualifier, what, src, name)
        return tag, bits, qualifier
    raise BadInput(src, f"malformed {what} (entry {item[:40]!r})", name)


def _acl_checked(entries: list[AclEntry], what: str, src: str, name: str) -> list[AclEntry]:
    """`entries` if they form a valid ACL (acl_valid(3)), else bad input naming the fault."""
    tags = [tag for tag, _, _ in entries]
    named = [(tag, ident) for tag, _, ident in entries if tag in (_USER, _GROUP)]
    if any(tags.count(t) != 1 for t in (_USER_OBJ, _GROUP_OBJ, _OTHER)):
        fault = "needs exactly one user::, group:: and other:: entry"
    elif tags.count(_MASK) > 1 or (named and _MASK not in tags):
        fault = "needs one mask entry when it names users or groups"
    elif len(set(named)) != len(named):
        fault = "names a user or group twice"
    else:
        return entries
    raise BadInput(src, f"invalid {what}: it {fault}", name)


def acl_text(value: bytes, what: str, src: str, name: str) -> list[AclEntry]:
    """The entries of a POSIX.1e ACL in text form, checked; [] for empty text.

    Entries are separated by commas (bsdtar) or newlines (GNU tar). A named entry's id is
    its fourth field when there is one (star's form, bsdtar writes it), else a numeric
    qualifier, else the name itself, left for the caller.
    """
    text = value.decode("utf-8", "surrogateescape")
    items = [item.strip(" \t") for item in re.split("[,\n]", text)]
    entries = [_acl_entry(item, what, src, name) for item in items if item]
    return _acl_checked(entries, what, src, name) if entries else []


def acl_binary(value: bytes, what: str, src: str, name: str) -> list[AclEntry]:
    """The entries of an ACL in Linux's xattr form, checked."""
    body = len(value) - _ACL_HEAD.size
    if body < 0 or body % _ACL_ENTRY.size or _ACL_HEAD.unpack_from(value)[0] != 2:
        raise BadInput(src, f"malformed {what} xattr", name)
    entries: list[AclEntry] = []
    for tag, perm, ident in _ACL_ENTRY.iter_unpack(value[_ACL_HEAD.size :]):
        if tag not in (_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER) or perm > 7:
            raise BadInput(src, f"malformed {what} xattr (tag {tag:#x}, perm {perm})", name)
        entries.append((tag, perm, ident if tag in (_USER, _GROUP) else _NO_ID))
    return _acl_checked(entries, what, src, name)


def acl_xattr(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """An ACL as Linux's xattr, entries sorted by tag, then id, as libacl sets them."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))
    return _ACL_HEAD.pack(2) + b"".join(_ACL_ENTRY.pack(*e) for e in ordered)


def _acl_perms(entries: Iterable[AclEntry]) -> int:
    """The rwx bits of the mode an access ACL sets: the mask stands for the group bits."""
    bits = {tag: perm for tag, perm, _ in entries if tag not in (_USER, _GROUP)}
    return bits[_USER_OBJ] << 6 | bits.get(_MASK, bits[_GROUP_OBJ]) << 3 | bits[_OTHER]


def posix_acls(
    records: dict[str, bytes],
    xattrs: tuple[tuple[str, bytes], ...],
    etype: EntryType,
    src: str,
    name: str,
) -> PosixAcls:
    """The member's xattrs and mode bits as ACL-restoring extraction leaves them.

    bsdtar (as root) and GNU tar `--acls` set ACLs from the `SCHILY.acl.*` text only and
    never from a `system.posix_acl_*` xattr record, which both ignore, so that record is
    dropped. A default ACL is set on a directory only, none on a symlink. An access ACL
    sets the mode's rwx bits; one of just user::, group:: and other:: is those bits and
    no xattr (Linux keeps no minimal ACL). Ids are numeric, as `--numeric-owner` reads
    them: a name without one (GNU tar writes names only) takes the ids of the raw
    record when the archive has one (GNU tar `--xattrs` writes it beside the text, with
    the writer's ids), else the ACL is not restored, with a warning.
    """
    raw = {xname: value for xname, value in xattrs if xname in ACL_XATTRS}
    found = {xname: value for xname, value in xattrs if xname not in ACL_XATTRS}
    perms: int | None = None
    warnings: list[str] = []
    for key, xname in _ACL_RECORDS:
        value = records.get(key)
        if value is None or etype is EntryType.SYMLINK:
            continue
        if xname == _ACL_DEFAULT and etype is not EntryType.DIR:
            continue
        entries = acl_text(value, key, src, name)
        name_only = next((ident for _, _, ident in entries if isinstance(ident, str)), None)
        if name_only is not None:
            if xname not in raw:
                warnings.append(f"{key} names {name_only!r} without a numeric id: not restored")
                continue
            entries = acl_binary(raw[xname], xname, src, name)
        if not entries:
            continue
        if xname == _ACL_ACCESS:
            perms = _acl_perms(entries)
            if len(entries) == 3:
                continue
        found[xname] = acl_xattr((tag, perm, int(ident)) for tag, perm, ident in entries)
    return PosixAcls(tuple(sorted(found.items())), perms, tuple(warnings))


def has_acls(records: dict[str, bytes], xattrs: tuple[tuple[str, bytes], ...]) -> bool:
    """Whether the member has ACL records, as text or as a raw xattr record."""
    return any(key in records for key, _ in _ACL_RECORDS) or any(
        xname in ACL_XATTRS for xname, _ in xattrs
    )


class SparseMap:
    """Where a sparse member's stored data lies in the file: (offset, length) in order."""

    __slots__ = ("real_size", "segments")

    def __init__(self, segments: list[tuple[int, int]], real_size: int) -> None:
        self.segments = segments
        self.real_size = real_size

    @property
    def stored(self) -> int:
        """The bytes of data the archive stores for the member (its segments')."""
        return sum(length for _, length in self.segments)

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
    "ACL_XATTRS",
    "AclEntry",
    "PosixAcls",
    "Records",
    "SparseMap",
    "acl_binary",
    "acl_text",
    "acl_xattr",
    "has_acls",
    "pax_int",
    "pax_name",
    "pax_records",
    "pax_time",
    "pax_uid",
    "posix_acls",
    "sparse_1_0_length",
    "sparse_decimals",
    "xattrs_of",
]
