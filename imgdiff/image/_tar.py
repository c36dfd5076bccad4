"""A tar reader written for hostile input: v7, ustar, GNU, PAX and sparse members, streamed once.

Python's `tarfile` is not used: it loops forever on a negative base-256 size, accepts
corrupt gzip trailers, recurses on deep paths and was never a containment boundary. The
work is split as `tarfile` splits it: `_tarheader` decodes one header block, `_tarext`
the extension records (PAX, GNU long names, sparse maps), and this module walks the
stream: it applies extension records to the member they precede and hashes each regular
member's logical content while it streams past (a sparse member's holes count as zeros
and are never held in memory), so a compressed archive is read exactly once. What
members mean together (hard links, replacement, implicit parents) is `_extract`.

Member data follows POSIX: types 1-6 (links, devices, directories, FIFOs) store none,
whatever their size field says; regular, contiguous, sparse, dumpdir and unknown types
store `size` bytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import BinaryIO

import blake3

from imgdiff import _digest
from imgdiff.errors import BadInput, LimitExceeded, Unsupported
from imgdiff.image import _tarext, _tarheader
from imgdiff.image._extract import Extraction, Member
from imgdiff.image._stream import Hasher, Stream, sniff_compression
from imgdiff.image._tarheader import BLOCK, ZERO_BLOCK, Header
from imgdiff.image.base import CONTENT_MAGICS, HEAD_BYTES, Capture, Image, Limits, ReadResult
from imgdiff.model import EntryType

_TYPES = {
    b"0": EntryType.FILE,
    b"\0": EntryType.FILE,
    b"7": EntryType.FILE,  # contiguous file: a regular file everywhere that matters
    b"S": EntryType.FILE,  # GNU sparse file (old format)
    b"1": EntryType.FILE,  # hard link: the type is its target's, resolved in `_extract`
    b"2": EntryType.SYMLINK,
    b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK,
    b"5": EntryType.DIR,
    b"D": EntryType.DIR,  # GNU dumpdir: a directory whose data lists its names
    b"6": EntryType.FIFO,
}
_NO_DATA = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_PAX = (b"x", b"g", b"X")  # X: Solaris' extended header, the same records
_ZEROS = memoryview(bytes(1 << 20))
_EMPTY_DIGEST = _digest.of_bytes(b"")
_SPARSE_LIMIT = 1 << 20  # numbers in one sparse map (an old-GNU extension block holds 42)
_FS = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())  # what os.fsdecode uses


def _decoded(raw: bytes) -> str:
    """`os.fsdecode(raw)`, for bytes only."""
    return raw.decode(*_FS)


def _clean(raw: bytes) -> bool:
    """True for a relative name without an empty, "." or ".." component (nor a trailing
    "/"): its image path is "/" + the name as it stands."""
    return (
        raw != b""
        and raw[0] != 0x2F  # "/"
        and raw[0] != 0x2E  # "."
        and raw[-1] != 0x2F
        and b"//" not in raw
        and b"/." not in raw
    )


def normalize(raw: bytes, src: str, warn: ReadResult | None = None) -> str | None:
    """An archive member name as an absolute image path; None for the root itself.

    A leading ``/`` is dropped with a warning (as GNU tar does); a ``..`` component is
    hostile and refused.
    """
    if _clean(raw):
        return "/" + raw.decode(*_FS)
    name = os.fsdecode(raw)
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise BadInput(src, "member name escapes the image with '..'", name)
    if raw.startswith(b"/") and warn is not None and parts:
        warn.warn("/" + "/".join(parts), "absolute member name, read as relative to the image")
    if not parts:
        return None
    return "/" + "/".join(parts)


class _Pending:
    """Extension records read so far that apply to the next real member."""

    __slots__ = ("global_", "link", "name", "pax")

    def __init__(self) -> None:
        self.global_: dict[str, bytes] = {}
        self.pax: _tarext.Records = []
        self.name: bytes | None = None
        self.link: bytes | None = None

    def idle(self) -> bool:
        """True when no record waits for the next member (global ones aside: see `take`)."""
        return not self.pax and not self.global_ and self.name is None and self.link is None

    def take(self) -> tuple[dict[str, bytes], _tarext.Records, bytes | None, bytes | None]:
        """The records for this member (global ones under local ones); resets the local."""
        local = self.pax
        if not local and not self.global_ and self.name is None and self.link is None:
            return {}, local, None, None
        merged = {**self.global_, **dict(local)} if self.global_ else dict(local)
        out = merged, local, self.name, self.link
        self.pax, self.name, self.link = [], None, None
        return out


class TarReader:
    """Iterate the members of one tar stream (plain or compressed)."""

    def __init__(
        self,
        fh: BinaryIO,
        name: str,
        limits: Limits,
        notes: ReadResult,
        capture: Capture | None = None,
        unpacked: Hasher | None = None,
    ) -> None:
        head = fh.read(8)
        fh.seek(0)
        self.compression = sniff_compression(head)
        self.stream = Stream(fh, name, limits, self.compression, unpacked)
        self.name = name
        self.limits = limits
        self.notes = notes  # where warnings go
        self.capture = capture
        self.kept_bytes = 0
        self.name_bytes = 0  # member name bytes so far, bounded against the input's size
        self.hole_bytes = 0  # sparse holes hashed so far, bounded the same way
        self._fh = fh

    # -- the walk ----------------------------------------------------------------------
    def members(self, *, hash_content: bool = True) -> Iterator[Member]:
        """Yield every member; regular files' content is hashed (or skipped), the rest skipped."""
        pending = _Pending()
        count = 0
        while True:
            block = self._header_block(first=count == 0)
            if block is None:
                return
            # the commonest member (see `_plain`) takes a short way; the rest the general one
            fields = self._plain(block) if hash_content and pending.idle() else None
            if fields is None:
                header = _tarheader.parse(block, self.name)
            count += 1
            if count > self.limits.max_entries:
                raise LimitExceeded(self.name, f"more than {self.limits.max_entries} members")
            if fields is not None:
                yield self._plain_member(fields)
                continue
            if self._extension(header, pending):
                continue
            member = self._member(header, block, pending, hash_content)
            if member is not None:
                yield member

    def _header_block(self, *, first: bool) -> bytes | None:
        """The next header block, or None at the end-of-archive marker."""
        stream = self.stream
        block = stream.read(BLOCK)
        if not block:
            if first:
                raise BadInput(self.name, "empty archive")
            raise BadInput(self.name, "truncated tar archive (no end-of-archive marker)")
        if len(block) < BLOCK:
            raise BadInput(self.name, "truncated tar archive (partial header)")
        if block == ZERO_BLOCK:
            stream.drain()  # second zero block, padding, and the compressed trailer
            return None
        if not _tarheader.checksum_ok(block):
            if first:
                raise BadInput(self.name, "not a tar archive (bad header checksum)")
            raise BadInput(self.name, f"corrupt tar header at byte {stream.position - BLOCK}")
        return block

    def _extension(self, header: Header, pending: _Pending) -> bool:
        """Read an extension header's data into `pending`; False for a real member."""
        flag = header.typeflag
        if flag in _PAX:
            shown = os.fsdecode(header.name)
            records = _tarext.pax_records(self._data(header.size, "PAX header"), self.name, shown)
            if flag == b"g":
                pending.global_.update(records)
            else:
                pending.pax = records
            return True
        if flag == b"L":
            pending.name = self._data(header.size, "GNU long name").split(b"\0", 1)[0]
            return True
        if flag == b"K":
            pending.link = self._data(header.size, "GNU long link").split(b"\0", 1)[0]
            return True
        if flag in (b"V", b"M"):  # a volume label, or the tail of a file from another volume
            shown = os.fsdecode(pending.take()[2] or header.name)
            self._skip(header.size, shown)
            if flag == b"M":
                self.notes.warn(shown, "continued from another volume: not read")
            return True
        return False

    def _data(self, size: int, what: str) -> bytes:
        """An extension header's data, bounded, with its padding consumed."""
        if size > self.limits.max_header_bytes:
            raise LimitExceeded(self.name, f"{what} of {size} bytes")
        data = self.stream.read(size)
        if len(data) < size:
            raise BadInput(self.name, f"truncated tar archive (in a {what})")
        self.stream.read(-size % BLOCK)
        return data

    def _skip(self, size: int, shown: str) -> None:
        """Skip `size` bytes of member data and their padding."""
        padded = size + (-size % BLOCK)
        if padded and self.stream.skip(padded) < padded:
            raise BadInput(self.name, "truncated tar archive (member content)", shown)

    # -- one member --------------------------------------------------------------------
    def _plain(self, block: bytes) -> _tarheader.Plain | None:
        """A plain header's fields (`_tarheader.plain`) when nothing about the member
        needs the general way: no bound near, no value out of range. Consumes nothing."""
        fields = _tarheader.plain(block)
        if fields is None:
            return None
        raw_name, _, uid, gid, size, _, _, _ = fields
        limits = self.limits
        if (
            len(raw_name) > limits.max_path_bytes
            or raw_name.count(b"/") > limits.max_depth
            or self.name_bytes + len(raw_name) > limits.ratio_floor
            or uid >= _tarheader.UID_LIMIT
            or gid >= _tarheader.UID_LIMIT
            or size > limits.max_member_bytes
        ):
            return None  # the general way checks again and says what is wrong
        return fields

    def _plain_member(self, fields: _tarheader.Plain) -> Member:
        """The member of a plain header (see `_plain`): what `_member` makes of it, made
        without extension records, sparse maps, devices or hard links to consider."""
        raw_name, mode, uid, gid, size, mtime, flag, linkname = fields
        self.name_bytes += len(raw_name)
        shown = raw_name.decode(*_FS)
        path = "/" + shown
        offset = self.stream.position
        mtime_ns = mtime * 1_000_000_000
        if flag == b"5":  # types 1-6 store no data, whatever the size field says
            return Member(path, EntryType.DIR, mode & 0o7777, uid, gid, 0, mtime_ns, None,
                          False, None, (), None, offset)  # fmt: skip
        if flag == b"2":
            return Member(path, EntryType.SYMLINK, 0o777, uid, gid, 0, mtime_ns,
                          linkname.decode(*_FS), False, None, (), None, offset)  # fmt: skip
        digest, head, content = self._content(size, None, self._captures(path), shown)
        return Member(path, EntryType.FILE, mode & 0o7777, uid, gid, size, mtime_ns, None,
                      False, None, (), digest, offset, content, head)  # fmt: skip

    def _member(
        self, header: Header, block: bytes, pending: _Pending, hash_content: bool
    ) -> Member | None:
        """The member a header describes, with its extension records applied."""
        src = self.name
        records, local, long_name, long_link = pending.take()
        raw_name = self._name(header, records, long_name)
        shown = _decoded(raw_name)
        flag = header.typeflag
        if flag in (b"0", b"\0") and raw_name.endswith(b"/"):
            flag = b"5"  # v7 and old GNU tars write a directory as a file named "dir/"
        etype = _TYPES.get(flag, EntryType.FILE)  # unknown types are regular files (POSIX)
        if records:
            uid, gid, mtime_ns = self._owner_and_time(header, records, shown)
        else:  # the usual member: no PAX records to apply
            uid, gid, mtime_ns = header.uid, header.gid, header.mtime * 1_000_000_000
            if uid >= _tarheader.UID_LIMIT or gid >= _tarheader.UID_LIMIT:
                raise BadInput(src, "uid or gid out of range in tar header", shown)
        stored = 0
        if flag not in _NO_DATA:
            stored = header.size
            if "size" in records:
                stored = _tarext.pax_int(records["size"], "size", src, shown)
        if stored > self.limits.max_member_bytes:
            raise LimitExceeded(src, f"member claims {stored} bytes", shown)
        path = "/" + shown if _clean(raw_name) else normalize(raw_name, src, self.notes)
        is_file = etype is EntryType.FILE and flag != b"1"
        sparse = None
        if is_file and (records or flag == b"S"):
            sparse = self._sparse_map(flag, block, records, local, stored, shown)
        offset = self.stream.position  # a 1.0 map was read: the data proper starts here
        if is_file:
            size, digest, head, content = self._file_data(path, stored, sparse, hash_content, shown)
        else:
            self._skip(stored, shown)
            size, digest, head, content = 0, None, None, None
        if path is None:  # "./" itself: the image root has no entry
            self._at_root(etype, flag, shown)
            return None
        target = self._target(header, records, long_link, etype, shown)
        rdev = None
        if etype is EntryType.CHAR or etype is EntryType.BLOCK:
            rdev = self._rdev(header, records, shown)
        xattrs = self._xattrs(records, path, shown) if records else ()
        mode = 0o777 if etype is EntryType.SYMLINK else header.mode & 0o7777
        if records and _tarext.has_acls(records, xattrs):
            xattrs, mode = self._with_acls(records, xattrs, etype, mode, path, shown)
        return Member(
            path, etype, mode, uid, gid, size, mtime_ns, target, flag == b"1",
            rdev, xattrs, digest, offset, content, head, sparse,
        )  # fmt: skip

    def _at_root(self, etype: EntryType, flag: bytes, shown: str) -> None:
        """A member naming the root ("", ".", "./"): a directory is the root itself; any
        other type cannot replace it (GNU tar: "Cannot open: File exists"), so it is
        dropped with a warning naming it, as any member extraction cannot place."""
        if etype is not EntryType.DIR:
            kind = "hard link" if flag == b"1" else etype.value
            self.notes.warn(
                "/", f"{kind} member {shown!r} names the image root: dropped, as extraction does"
            )

    def _target(
        self,
        header: Header,
        records: dict[str, bytes],
        long_link: bytes | None,
        etype: EntryType,
        shown: str,
    ) -> str | None:
        """A symlink's target as written, a hard link's normalised; None for the rest."""
        src = self.name
        linkname = long_link if long_link is not None else header.linkname
        if "linkpath" in records:
            linkname = _tarext.pax_name(records["linkpath"], "linkpath", src, shown)
        if etype is not EntryType.SYMLINK and header.typeflag != b"1":
            return None
        if etype is EntryType.SYMLINK:
            return os.fsdecode(linkname)
        target = normalize(linkname, src)
        if target is None:
            raise BadInput(src, "hard link to the image root", shown)
        return target

    def _xattrs(
        self, records: dict[str, bytes], path: str, shown: str
    ) -> tuple[tuple[str, bytes], ...]:
        """The member's xattrs, less those no extraction can set (`_tarext.unsettable`):
        GNU tar warns and bsdtar fails for each, and both leave the file without it."""
        xattrs = _tarext.xattrs_of(records, self.name, shown)
        kept = []
        for xname, value in xattrs:
            why = _tarext.unsettable(xname, value)
            if why is None:
                kept.append((xname, value))
            else:
                self.notes.warn(path, f"xattr {xname!r} {why}: dropped, as extraction does")
        return xattrs if len(kept) == len(xattrs) else tuple(kept)

    def _with_acls(
        self,
        records: dict[str, bytes],
        xattrs: tuple[tuple[str, bytes], ...],
        etype: EntryType,
        mode: int,
        path: str,
        shown: str,
    ) -> tuple[tuple[tuple[str, bytes], ...], int]:
        """Xattrs and mode with the member's POSIX ACLs applied (`_tarext.posix_acls`)."""
        acls = _tarext.posix_acls(records, xattrs, etype, self.name, shown)
        for warning in acls.warnings:
            self.notes.warn(path, warning)
        if acls.perms is not None:
            mode = mode & ~0o777 | acls.perms
        return acls.xattrs, mode

    def _name(self, header: Header, records: dict[str, bytes], long_name: bytes | None) -> bytes:
        """The member's name: GNU long name, PAX `path` or sparse name over the header's."""
        raw_name = long_name if long_name is not None else header.name
        if "path" in records:
            raw_name = _tarext.pax_name(records["path"], "path", self.name, os.fsdecode(raw_name))
        if "GNU.sparse.name" in records:  # sparse 0.1/1.0: the header names a placeholder
            placeholder = os.fsdecode(raw_name)
            raw_name = _tarext.pax_name(records["GNU.sparse.name"], "path", self.name, placeholder)
        self._check_name(raw_name)
        return raw_name

    def _file_data(
        self,
        path: str | None,
        stored: int,
        sparse: _tarext.SparseMap | None,
        hash_content: bool,
        shown: str,
    ) -> tuple[int, str | None, bytes | None, bytes | None]:
        """Logical size, digest, head and kept content of a regular member's data."""
        if not hash_content:
            if sparse is None:
                self._skip(stored, shown)
                return stored, None, None, None
            # still bounded: a reader of the blob (`_oci`) would produce these holes
            self._count_holes(sparse.real_size - sparse.stored, shown)
            self._skip(sparse.stored, shown)  # its padding is the whole member's
            return sparse.real_size, None, None, None
        keep = path is not None and self._captures(path)
        digest, head, content = self._content(stored, sparse, keep, shown)
        return (stored if sparse is None else sparse.real_size), digest, head, content

    def _check_name(self, raw_name: bytes) -> None:
        limits = self.limits
        size = len(raw_name)
        if size > limits.max_path_bytes:
            shown = _decoded(raw_name)
            raise LimitExceeded(self.name, f"member name of {size} bytes", shown[:200])
        if raw_name.count(b"/") > limits.max_depth:
            shown = _decoded(raw_name)
            raise LimitExceeded(
                self.name, f"member name deeper than {limits.max_depth}", shown[:200]
            )
        if self.name_bytes + size <= limits.ratio_floor:
            self.name_bytes += size  # what `charge_names` does, without a message to hand
        else:
            self.charge_names(size, _decoded(raw_name))

    def charge_names(self, size: int, shown: str) -> None:
        """Count `size` bytes of path names held in memory against the names bound.

        Member names and the implicit parent directories extraction adds for them both
        count: a few KB of compressed deep names would otherwise imply gigabytes of paths.
        """
        self.name_bytes += size
        limits = self.limits
        floor = limits.ratio_floor
        self._bounded(self.name_bytes, limits.max_names_ratio, "path names", shown[:200], floor)

    def _bounded(self, total: int, ratio: int, what: str, shown: str, floor: int) -> None:
        """Refuse derived data (names, holes) the archive read so far cannot justify.

        Up to `floor` anything goes; past it, `total` may be at most `ratio` times the
        bytes of the archive file consumed, so memory and time follow the input.
        """
        if total <= floor:
            return
        try:
            consumed = max(self._fh.tell(), 1)
        except (OSError, ValueError):
            consumed = 1
        allowed = max(floor, ratio * consumed)
        if total > allowed:
            raise LimitExceeded(
                self.name,
                f"{what} add up to more than {allowed} bytes after {consumed} bytes of archive",
                shown,
            )

    def _owner_and_time(
        self, header: Header, records: dict[str, bytes], shown: str
    ) -> tuple[int, int, int]:
        src = self.name
        uid = _tarext.pax_uid(records["uid"], "uid", src, shown) if "uid" in records else header.uid
        gid = _tarext.pax_uid(records["gid"], "gid", src, shown) if "gid" in records else header.gid
        if uid >= _tarheader.UID_LIMIT or gid >= _tarheader.UID_LIMIT:
            raise BadInput(src, "uid or gid out of range in tar header", shown)
        if "mtime" in records:
            mtime_ns = _tarext.pax_time(records["mtime"], src, shown)
        else:
            mtime_ns = header.mtime * 1_000_000_000
        return uid, gid, mtime_ns

    def _rdev(self, header: Header, records: dict[str, bytes], shown: str) -> tuple[int, int]:
        major, minor = header.devmajor, header.devminor
        if "SCHILY.devmajor" in records:  # star and GNU tar: numbers too big for the header
            major = _tarext.pax_int(records["SCHILY.devmajor"], "devmajor", self.name, shown)
        if "SCHILY.devminor" in records:
            minor = _tarext.pax_int(records["SCHILY.devminor"], "devminor", self.name, shown)
        return major, minor

    def _captures(self, path: str) -> bool:
        capture = self.capture
        return capture is not None and capture(path)

    # -- sparse members ----------------------------------------------------------------
    def _sparse_map(
        self,
        flag: bytes,
        block: bytes,
        records: dict[str, bytes],
        local: _tarext.Records,
        stored: int,
        shown: str,
    ) -> _tarext.SparseMap | None:
        """The sparse map of this member, or None for an ordinary one (GNU's formats)."""
        src = self.name
        if flag == b"S":
            return self._old_gnu_map(block, stored, shown)
        if "GNU.sparse.major" in records or "GNU.sparse.minor" in records:
            version = (records.get("GNU.sparse.major"), records.get("GNU.sparse.minor"))
            if version != (b"1", b"0"):
                raise Unsupported(f"{src}: {shown}: GNU sparse format {version!r} is unknown")
            real = _tarext.pax_int(records.get("GNU.sparse.realsize", b""), "realsize", src, shown)
            return self._sparse_1_0_map(stored, real, shown)
        if "GNU.sparse.map" in records:  # 0.1
            real = _tarext.pax_int(records.get("GNU.sparse.size", b""), "sparse size", src, shown)
            flat = _tarext.sparse_decimals(records["GNU.sparse.map"], src, shown)
            return _tarext.SparseMap.checked(flat, real, stored, src, shown)
        if "GNU.sparse.offset" in records or "GNU.sparse.size" in records:  # 0.0
            real = _tarext.pax_int(records.get("GNU.sparse.size", b""), "sparse size", src, shown)
            flat = [
                _tarext.pax_int(value, key, src, shown)
                for key, value in local
                if key in ("GNU.sparse.offset", "GNU.sparse.numbytes")
            ]
            return _tarext.SparseMap.checked(flat, real, stored, src, shown)
        return None

    def _old_gnu_map(self, block: bytes, stored: int, shown: str) -> _tarext.SparseMap:
        """The map in an old-GNU 'S' header: four slots, then 21 per extension block."""
        src = self.name
        flat = _tarheader.gnu_sparse_slots(block, 386, 4, src, shown)
        real = _tarheader.number(block[483:495], src, "realsize", shown)
        extended = block[482]
        while extended:
            ext = self.stream.read(BLOCK)
            if len(ext) < BLOCK:
                raise BadInput(src, "truncated tar archive (in a sparse map)", shown)
            flat += _tarheader.gnu_sparse_slots(ext, 0, 21, src, shown)
            if len(flat) > _SPARSE_LIMIT:
                raise LimitExceeded(src, "sparse map of more than a million numbers", shown)
            extended = ext[504]
        return _tarext.SparseMap.checked(flat, real, stored, src, shown)

    def _sparse_1_0_map(self, stored: int, real: int, shown: str) -> _tarext.SparseMap:
        """The 1.0 map at the start of the data, consumed from the stream with its padding."""
        src = self.name
        text = b""
        while True:
            if len(text) >= stored or len(text) > self.limits.max_header_bytes:
                raise BadInput(src, "malformed sparse map (longer than the member)", shown)
            piece = self.stream.read(BLOCK)
            if len(piece) < BLOCK:
                raise BadInput(src, "truncated tar archive (in a sparse map)", shown)
            text += piece
            end = _tarext.sparse_1_0_length(text, src, shown, _SPARSE_LIMIT)
            if end is not None:
                break
        flat = _tarext.sparse_decimals(text[: end - 1], src, shown)
        return _tarext.SparseMap.checked(flat[1:], real, stored - len(text), src, shown)

    # -- content -----------------------------------------------------------------------
    def _content(
        self, stored: int, sparse: _tarext.SparseMap | None, keep: bool, shown: str
    ) -> tuple[str, bytes | None, bytes | None]:
        """Digest, head and (if kept) bytes of a member's logical content."""
        if stored == 0 and sparse is None:
            return _EMPTY_DIGEST, None, b"" if keep else None
        if sparse is None and not keep:
            whole = self.stream.take(stored)
            if whole is not None:  # all of it already buffered: one hash call, no pieces
                first = bytes(whole[:HEAD_BYTES]) if whole.startswith(CONTENT_MAGICS) else None
                self._skip_padding(stored, shown)
                return _digest.of_bytes(whole), first, None
        hasher = _digest.new_hasher()
        kept: list[bytes] | None = [] if keep else None
        # the first HEAD_BYTES of the logical content, whatever pieces the stream gives
        # them in (a member's data may start just before a decompressor's piece ends)
        head = bytearray()
        if sparse is None:
            self._stream_into(hasher, stored, kept, head, shown)
        else:
            at = 0
            for offset, length in sparse.segments:
                self._zeros_into(hasher, offset - at, kept, head, shown)
                self._stream_into(hasher, length, kept, head, shown)
                at = offset + length
            self._zeros_into(hasher, sparse.real_size - at, kept, head, shown)
        self._skip_padding(stored, shown)
        content = self._keep(kept, shown) if kept is not None else None
        first = bytes(head) if head.startswith(CONTENT_MAGICS) else None
        return _digest.finish(hasher), first, content

    def _stream_into(
        self,
        hasher: blake3.blake3,
        size: int,
        kept: list[bytes] | None,
        head: bytearray,
        shown: str,
    ) -> None:
        """Hash `size` stored bytes, topping `head` up to `HEAD_BYTES` from them."""
        update = hasher.update
        got = 0
        for piece in self.stream.chunks(size):
            if len(head) < HEAD_BYTES:
                head += piece[: HEAD_BYTES - len(head)]
            update(piece)
            got += len(piece)
            if kept is not None:
                kept.append(bytes(piece))
        if got < size:
            raise BadInput(self.name, "truncated tar archive (member content)", shown)

    def _zeros_into(
        self,
        hasher: blake3.blake3,
        size: int,
        kept: list[bytes] | None,
        head: bytearray,
        shown: str,
    ) -> None:
        """Hash a hole of `size` zero bytes without allocating it."""
        if size <= 0:
            return
        self._count_holes(size, shown)
        if len(head) < HEAD_BYTES:
            head += _ZEROS[: min(size, HEAD_BYTES - len(head))]
        update = hasher.update
        whole, rest = divmod(size, len(_ZEROS))
        for _ in range(whole):
            update(_ZEROS)
        update(_ZEROS[:rest])
        if kept is not None:
            kept.append(bytes(size))  # kept content is bounded by the capture limit

    def _count_holes(self, size: int, shown: str) -> None:
        """Count `size` bytes of sparse holes against the holes bound (see `_bounded`)."""
        self.hole_bytes += size
        limits = self.limits
        self._bounded(self.hole_bytes, limits.max_ratio, "sparse holes", shown, limits.hole_floor)

    def _skip_padding(self, stored: int, shown: str) -> None:
        pad = -stored % BLOCK
        if pad and self.stream.skip(pad) < pad:
            raise BadInput(self.name, "truncated tar archive (member padding)", shown)

    def _keep(self, pieces: list[bytes], shown: str) -> bytes:
        data = b"".join(pieces)
        self.kept_bytes += len(data)
        if self.kept_bytes > self.limits.max_capture_bytes:
            raise LimitExceeded(self.name, "package databases larger than the capture limit", shown)
        return data


class TarImage(Image):
    """A root filesystem as a tar archive, optionally compressed (gzip, bzip2, xz, zstd)."""

    format = "tar"

    def _read(self, result: ReadResult, capture: Capture | None) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise BadInput(self.path, f"cannot open: {exc.strerror}") from None
        with fh:
            reader = TarReader(fh, self.path, self.limits, result, capture)
            if reader.compression:
                result.format = f"tar+{reader.compression}"
            tree = Extraction(self.path, result, charge=reader.charge_names)
            progress = result.progress
            for n, m in enumerate(reader.members(), 1):
                tree.add(m)
                if progress is not None and not n & 255:
                    progress(n, fh.tell())
            result.store = tree.entries

    @property
    def size(self) -> int:
        """The archive's size: reading consumes it once."""
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


__all__ = ["Member", "TarImage", "TarReader", "normalize"]
