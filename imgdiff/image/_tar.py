"""A tar reader written for hostile input: ustar, GNU and PAX headers, streamed once.

Python's `tarfile` is not used: it loops forever on a negative base-256 size, accepts
corrupt gzip trailers, recurses on deep paths and was never a containment boundary. This
parser checks every header checksum, bounds every loop and header, and hashes each
regular member while it streams past, so a compressed archive is read exactly once.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO

import attrs

from imgdiff import _digest
from imgdiff.errors import BadInput, LimitExceeded, Unsupported
from imgdiff.image._stream import Stream, sniff_compression
from imgdiff.image.base import CONTENT_MAGICS, HEAD_BYTES, Image, Limits
from imgdiff.model import Entry, EntryType

BLOCK = 512
_TYPES = {
    b"0": EntryType.FILE,
    b"\0": EntryType.FILE,
    b"7": EntryType.FILE,  # contiguous file: a regular file everywhere that matters
    b"2": EntryType.SYMLINK,
    b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK,
    b"5": EntryType.DIR,
    b"6": EntryType.FIFO,
}
_HARDLINK = b"1"


@attrs.frozen(slots=True)
class Member:
    """One tar member as stored: `name` normalised to an absolute path, nothing resolved."""

    name: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str | None
    hardlink: bool
    rdev: tuple[int, int] | None
    xattrs: tuple[tuple[str, bytes], ...]
    digest: str | None
    offset: int = -1  # where the content starts in the (decompressed) stream
    content: bytes | None = None  # kept when the owner's `capture` selects this path


def _number(field: bytes, src: str, what: str, name: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256: big-endian, first byte's top bit set
        if field[0] == 0xFF:
            raise BadInput(src, f"negative {what} in tar header", name)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BadInput(src, f"bad {what} field {text[:16]!r} in tar header", name) from None


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    signed = unsigned - 256 * sum(1 for b in blanked if b > 127)
    return want in (unsigned, signed)


def normalize(raw: bytes, src: str, warn: Image | None = None) -> str | None:
    """An archive member name as an absolute image path; None for the root itself.

    A leading ``/`` is dropped with a warning (as GNU tar does); a ``..`` component is
    hostile and refused.
    """
    name = os.fsdecode(raw)
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise BadInput(src, "member name escapes the image with '..'", name)
    if raw.startswith(b"/") and warn is not None and parts:
        warn.warn("/" + "/".join(parts), "absolute member name, read as relative to the image")
    if not parts:
        return None
    return "/" + "/".join(parts)


def _pax_records(data: bytes, src: str, name: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        space = data.find(b" ", pos, pos + 24)
        if space < 0:
            raise BadInput(src, "malformed PAX header", name)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise BadInput(src, "malformed PAX record length", name) from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise BadInput(src, "malformed PAX record", name)
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise BadInput(src, "PAX record without '='", name)
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out


def _pax_time(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(text)
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    return -ns if neg else ns


class TarReader:
    """Iterate the members of one tar stream (plain or compressed)."""

    def __init__(self, fh: BinaryIO, name: str, limits: Limits, owner: Image) -> None:
        head = fh.read(8)
        fh.seek(0)
        self.compression = sniff_compression(head)
        self.stream = Stream(fh, name, limits, self.compression)
        self.name = name
        self.limits = limits
        self.owner = owner
        self.kept_bytes = 0

    def _long(self, size: int, what: str) -> bytes:
        if size > self.limits.max_header_bytes:
            raise LimitExceeded(self.name, f"{what} of {size} bytes")
        data = self.stream.read(size)
        if len(data) < size:
            raise BadInput(self.name, f"truncated tar archive (in a {what})")
        self.stream.read(-size % BLOCK)
        return data

    def _keep(self, pieces: list[bytes], shown: str) -> bytes:
        data = b"".join(pieces)
        self.kept_bytes += len(data)
        if self.kept_bytes > self.limits.max_capture_bytes:
            raise LimitExceeded(self.name, "package databases larger than the capture limit", shown)
        return data

    def members(self, *, hash_content: bool = True) -> Iterator[Member]:
        """Yield every member; content of regular files is hashed (or skipped), the rest skipped."""
        src = self.name
        stream = self.stream
        limits = self.limits
        capture = self.owner.capture
        global_pax: dict[str, bytes] = {}
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        count = 0
        first = True
        while True:
            block = stream.read(BLOCK)
            if not block:
                if first:
                    raise BadInput(src, "empty archive")
                raise BadInput(src, "truncated tar archive (no end-of-archive marker)")
            if len(block) < BLOCK:
                raise BadInput(src, "truncated tar archive (partial header)")
            if block == b"\0" * BLOCK:
                stream.drain()  # second zero block, padding, and the compressed trailer
                return
            if not _checksum_ok(block):
                if first:
                    raise BadInput(src, "not a tar archive (bad header checksum)")
                raise BadInput(src, f"corrupt tar header at byte {stream.position - BLOCK}")
            first = False
            count += 1
            if count > limits.max_entries:
                raise LimitExceeded(src, f"more than {limits.max_entries} members")
            typeflag = block[156:157]
            raw_name = block[0:100].split(b"\0", 1)[0]
            magic = block[257:265]
            if magic[:6] == b"ustar\0":  # POSIX ustar: prefix holds the leading directories
                prefix = block[345:500].split(b"\0", 1)[0]
                if prefix:
                    raw_name = prefix + b"/" + raw_name
            shown = os.fsdecode(raw_name)
            size = _number(block[124:136], src, "size", shown)
            if size > limits.max_member_bytes:
                raise LimitExceeded(src, f"member claims {size} bytes", shown)
            if typeflag in (b"x", b"g"):
                records = _pax_records(self._long(size, "PAX header"), src, shown)
                if typeflag == b"g":
                    global_pax.update(records)
                else:
                    pax = records
                continue
            if typeflag == b"L":
                long_name = self._long(size, "GNU long name").split(b"\0", 1)[0]
                continue
            if typeflag == b"K":
                long_link = self._long(size, "GNU long link").split(b"\0", 1)[0]
                continue
            attrs_ = {**global_pax, **pax} if global_pax else pax
            pax = {}
            if long_name is not None:
                raw_name, long_name = long_name, None
            if "path" in attrs_:
                raw_name = attrs_["path"]
            linkname = block[157:257].split(b"\0", 1)[0]
            if long_link is not None:
                linkname, long_link = long_link, None
            if "linkpath" in attrs_:
                linkname = attrs_["linkpath"]
            shown = os.fsdecode(raw_name)
            if len(raw_name) > limits.max_path_bytes:
                raise LimitExceeded(src, f"member name of {len(raw_name)} bytes", shown[:200])
            if raw_name.count(b"/") > limits.max_depth:
                raise LimitExceeded(src, f"member name deeper than {limits.max_depth}", shown[:200])
            try:
                if "size" in attrs_:
                    size = int(attrs_["size"])
                mtime_ns = (
                    _pax_time(attrs_["mtime"])
                    if "mtime" in attrs_
                    else _number(block[136:148], src, "mtime", shown) * 1_000_000_000
                )
                uid = (
                    int(attrs_["uid"])
                    if "uid" in attrs_
                    else _number(block[108:116], src, "uid", shown)
                )
                gid = (
                    int(attrs_["gid"])
                    if "gid" in attrs_
                    else _number(block[116:124], src, "gid", shown)
                )
            except ValueError:
                raise BadInput(src, "malformed number in PAX header", shown) from None
            if size < 0 or size > limits.max_member_bytes:
                raise LimitExceeded(src, f"member claims {size} bytes", shown)
            if any(k.startswith("GNU.sparse.") for k in attrs_) or typeflag == b"S":
                raise Unsupported(f"{src}: {shown}: sparse tar members are not supported")
            mode = _number(block[100:108], src, "mode", shown) & 0o7777
            hardlink = typeflag == _HARDLINK
            etype = EntryType.FILE if hardlink else _TYPES.get(typeflag)
            if etype is None:
                raise BadInput(src, f"unsupported tar member type {typeflag!r}", shown)
            path = normalize(raw_name, src, self.owner)
            heads = self.owner.heads
            keep = (
                capture is not None
                and path is not None
                and etype is EntryType.FILE
                and not hardlink
                and capture(path)
            )
            kept: list[bytes] = []
            rdev = None
            if etype in (EntryType.CHAR, EntryType.BLOCK):
                rdev = (
                    _number(block[329:337], src, "devmajor", shown),
                    _number(block[337:345], src, "devminor", shown),
                )
            xattrs = []
            for key, value in attrs_.items():
                if key.startswith("SCHILY.xattr."):
                    xattrs.append((key[13:], value))
                elif key.startswith("LIBARCHIVE.xattr."):
                    try:
                        xname = urllib.parse.unquote(key[17:])
                        xattrs.append((xname, base64.b64decode(value + b"==", validate=False)))
                    except ValueError:
                        raise BadInput(src, "malformed LIBARCHIVE.xattr record", shown) from None
            digest = None
            offset = stream.position
            if etype is EntryType.FILE and not hardlink and not hash_content:
                if stream.skip(size) < size:
                    raise BadInput(src, "truncated tar archive (member content)", shown)
                pad = -size % BLOCK
            elif etype is EntryType.FILE and not hardlink:
                hasher = _digest.new_hasher()
                got = 0
                for piece in stream.chunks(size):
                    if got == 0 and path is not None:
                        if piece.startswith(CONTENT_MAGICS):
                            heads[path] = bytes(piece[:HEAD_BYTES])
                        else:
                            heads.pop(path, None)
                    hasher.update(piece)
                    got += len(piece)
                    if keep:
                        kept.append(bytes(piece))
                if got < size:
                    raise BadInput(src, "truncated tar archive (member content)", shown)
                digest = _digest.finish(hasher)
                pad = -size % BLOCK
            else:
                pad = size + (-size % BLOCK)
                size = 0
            if pad:
                skipped = sum(len(p) for p in stream.chunks(pad))
                if skipped < pad:
                    raise BadInput(src, "truncated tar archive (member padding)", shown)
            if path is None:
                continue  # "./" itself: the image root has no entry
            target: str | None = None
            if etype is EntryType.SYMLINK:
                target = os.fsdecode(linkname)
            elif hardlink:
                target = normalize(linkname, src)
                if target is None:
                    raise BadInput(src, "hard link to the image root", shown)
            yield Member(
                path,
                etype,
                mode,
                uid,
                gid,
                size,
                mtime_ns,
                target,
                hardlink,
                rdev,
                tuple(sorted(xattrs)),
                digest,
                offset,
                self._keep(kept, shown) if keep else None,
            )


class TarImage(Image):
    """A root filesystem as a tar archive, optionally compressed (gzip, bzip2, xz, zstd)."""

    format = "tar"

    def __init__(self, path: str, *, limits: Limits | None = None) -> None:
        super().__init__(path, limits=limits)

    def entries(self) -> Iterator[Entry]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed in finally; generator scope
        except OSError as exc:
            raise BadInput(self.path, f"cannot open: {exc.strerror}") from None
        try:
            reader = TarReader(fh, self.path, self.limits, self)
            if reader.compression:
                self.format = f"tar+{reader.compression}"
            yield from members_to_entries(reader.members(), self.path, self.captured)
        finally:
            fh.close()


def member_entry(m: Member, base: Entry | None, src: str) -> tuple[Entry, Entry | None]:
    """The entry for member `m`, and for a hard link its `base` regrouped (or None).

    A hard link shares its base's inode: its content, size and xattrs; the group is
    named after the base's path (renamed to the smallest path later, in `Manifest`).
    """
    if not m.hardlink:
        entry = Entry(
            m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime_ns,
            m.linkname, None, m.rdev, m.xattrs, m.digest,
        )  # fmt: skip
        return entry, None
    if base is None or base.type is not EntryType.FILE:
        raise BadInput(src, f"hard link to missing or non-file {m.linkname!r}", m.name)
    group = base.hardlink or base.path
    entry = Entry(
        m.name, EntryType.FILE, m.mode, m.uid, m.gid, base.size, m.mtime_ns,
        None, group, None, m.xattrs or base.xattrs, base.digest,
    )  # fmt: skip
    return entry, (attrs.evolve(base, hardlink=group) if base.hardlink is None else None)


def members_to_entries(
    members: Iterator[Member], src: str, captured: dict[str, bytes]
) -> Iterator[Entry]:
    """Resolve hard links against earlier members and turn members into entries.

    Later members with the same name replace earlier ones, as on extraction; the result
    is yielded once the whole stream has been read, so replacement is exact.
    """
    seen: dict[str, Entry] = {}
    for m in members:
        base = seen.get(m.linkname) if m.hardlink and m.linkname else None
        entry, regrouped = member_entry(m, base, src)
        if regrouped is not None:
            seen[regrouped.path] = regrouped
        seen.pop(m.name, None)  # re-insert so dict order follows the last write
        seen[m.name] = entry
        keep_content(captured, m)
    yield from seen.values()


def keep_content(captured: dict[str, bytes], m: Member) -> None:
    """Track the captured content of the member now at `m.name` (or forget stale content)."""
    if m.content is not None:
        captured[m.name] = m.content
    elif m.hardlink and m.linkname in captured:
        captured[m.name] = captured[m.linkname]
    else:
        captured.pop(m.name, None)


__all__ = [
    "Member",
    "TarImage",
    "TarReader",
    "keep_content",
    "member_entry",
    "members_to_entries",
    "normalize",
]
