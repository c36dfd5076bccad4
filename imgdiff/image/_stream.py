"""Decompressing byte streams that are verified to their very end, in bounded memory.

The compression is recognised by its magic bytes, never by the file name. Every format
is read to the end of its last member/frame and checked there (gzip CRC and length,
xz/bz2 stream ends, zstd frame ends); truncation, corrupt data and trailing garbage are
`BadInput`. Output is produced in bounded pieces and counted against `Limits`, so a
decompression bomb costs neither unbounded memory nor unbounded time.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

import zstandard

from imgdiff.errors import BadInput, LimitExceeded
from imgdiff.image.base import Limits

_IN = 1 << 16
_OUT = 1 << 20
_ZSTD_IN = 1 << 12  # zstd's decompressobj has no output bound: feed it small pieces

_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = b"\x2a\x4d\x18"  # after a byte 0x50-0x5f: magic 0x184D2A5? (RFC 8878)
MAGICS: tuple[tuple[bytes, str], ...] = (
    (_GZIP, "gzip"),
    (_BZIP2, "bzip2"),
    (_XZ, "xz"),
    (_ZSTD, "zstd"),
)


def sniff_compression(head: bytes) -> str | None:
    """The compression whose magic `head` starts with, or None for plain data."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    if len(head) >= 4 and _zstd_starts(head):  # pzstd's output opens with a skippable frame
        return "zstd"
    return None


def _starts_with(magic: bytes) -> Callable[[bytes], bool]:
    """Whether bytes (perhaps fewer than the magic's) may begin a member with `magic`."""
    return lambda head: head.startswith(magic[: len(head)])


def _zstd_starts(head: bytes) -> bool:
    """Whether bytes (perhaps fewer than four) may begin a zstd frame or a skippable frame
    (metadata the format says to skip: pzstd writes one before each frame, zstd:chunked
    layers after their frames)."""
    n = min(len(head), 4)
    if head[:n] == _ZSTD[:n]:
        return True
    return head[0] & 0xF0 == 0x50 and head[1:n] == _ZSTD_SKIPPABLE[: n - 1]


class _Decomp(Protocol):
    """What zlib, bz2, lzma and zstandard decompression objects have in common."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def _pieces(fh: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        data = fh.read(size)
        if not data:
            return
        yield data


def _members(
    fh: BinaryIO,
    src: str,
    name: str,
    make: Callable[[], Any],
    step: Callable[[Any, bytes], tuple[bytes, bytes]],
    starts: Callable[[bytes], bool],
    in_size: int = _IN,
) -> Iterator[bytes]:
    """Decompress a concatenation of members; `step` returns (output, input still owed),
    `starts` says whether bytes after a member (perhaps only its first few) may begin
    another. Errors name `src`."""
    pieces = _pieces(fh, in_size)
    dec: _Decomp = make()
    pending = b""
    done = False  # no input left to read
    while True:
        if dec.eof:  # the next member starts in what this one left over, if anywhere
            rest = dec.unused_data + pending
            if not rest:
                if done:
                    return
                pending = next(pieces, b"")
                done = not pending
                continue
            if not starts(rest):
                if name == "xz" and not rest.strip(b"\0") and _zeros_to_end(pieces):
                    return  # xz allows stream padding of zero bytes
                raise BadInput(src, f"trailing garbage after {name} data")
            dec, pending = make(), rest
        if not pending and not done:
            pending = next(pieces, b"")
            done = not pending
        out, pending = step(dec, pending)
        if out:
            yield out
        elif done and not pending and not dec.eof:
            raise BadInput(src, f"truncated {name} data")


def _zeros_to_end(pieces: Iterator[bytes]) -> bool:
    """True if every byte left is zero."""
    return all(not piece.strip(b"\0") for piece in pieces)


def _gzip_step(dec: Any, data: bytes) -> tuple[bytes, bytes]:
    out: bytes = dec.decompress(data, _OUT)
    return out, dec.unconsumed_tail


def _bz_xz_step(dec: Any, data: bytes) -> tuple[bytes, bytes]:
    # bz2/lzma buffer input internally: feed more only once they ask for it
    if not dec.needs_input:
        return dec.decompress(b"", _OUT), data
    out: bytes = dec.decompress(data, _OUT)
    return out, b""


def _zstd_step(dec: Any, data: bytes) -> tuple[bytes, bytes]:
    out: bytes = dec.decompress(data)
    return out, b""


def _raw(fh: BinaryIO) -> Iterator[bytes]:
    yield from _pieces(fh, _OUT)


def decompressed(fh: BinaryIO, compression: str | None, src: str | None = None) -> Iterator[bytes]:
    """Yield the decompressed content of `fh` in pieces of bounded size; errors name `src`
    (by default the file's name, which is a number for a file opened from a descriptor)."""
    src = src if src is not None else str(getattr(fh, "name", "?"))
    if compression is None:
        return _raw(fh)
    if compression == "gzip":
        gz = lambda: zlib.decompressobj(31)  # noqa: E731
        return _members(fh, src, "gzip", gz, _gzip_step, _starts_with(_GZIP))
    if compression == "bzip2":
        return _members(fh, src, "bzip2", bz2.BZ2Decompressor, _bz_xz_step, _starts_with(_BZIP2))
    if compression == "xz":
        make = lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)  # noqa: E731
        return _members(fh, src, "xz", make, _bz_xz_step, _starts_with(_XZ))
    if compression == "zstd":
        # zstandard reads a skippable frame as a frame of no output
        zd = zstandard.ZstdDecompressor()
        return _members(fh, src, "zstd", zd.decompressobj, _zstd_step, _zstd_starts, _ZSTD_IN)
    raise BadInput(src, f"unknown compression {compression}")


class Hasher(Protocol):
    """What a `hashlib` object offers: `Stream` updates one with every byte it delivers."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class Stream:
    """A decompressed byte stream with exact reads, counted against `Limits`; `unpacked`,
    if given, is updated with every decompressed byte (nothing is skipped by seeking)."""

    def __init__(
        self,
        fh: BinaryIO,
        name: str,
        limits: Limits,
        compression: str | None,
        unpacked: Hasher | None = None,
    ) -> None:
        self.name = name
        self._unpacked = unpacked
        self._fh = fh
        self._limits = limits
        self._pieces = decompressed(fh, compression, name)
        self._buf = b""
        self._pos = 0
        self.total = 0  # decompressed bytes delivered so far
        self.compression = compression

    def _fill(self) -> bool:
        try:
            piece = next(self._pieces)
        except StopIteration:
            return False
        except (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
            if isinstance(exc, BadInput):
                raise
            raise BadInput(
                self.name, f"corrupt {self.compression or 'archive'} data: {exc}"
            ) from None
        self.total += len(piece)
        if self._unpacked is not None:
            self._unpacked.update(piece)
        limits = self._limits
        if self.total > limits.max_total_bytes:
            raise LimitExceeded(self.name, f"more than {limits.max_total_bytes} bytes uncompressed")
        if self.compression is not None and self.total > limits.ratio_floor:
            consumed = max(self._fh.tell(), 1)
            if self.total > consumed * limits.max_ratio:
                raise LimitExceeded(
                    self.name, f"expands more than {limits.max_ratio}x: a decompression bomb?"
                )
        self._buf = self._buf[self._pos :] + piece if self._pos < len(self._buf) else piece
        self._pos = 0
        return True

    @property
    def position(self) -> int:
        """Offset of the next byte in the decompressed stream."""
        return self.total - (len(self._buf) - self._pos)

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or fewer only at the end of the stream."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                break
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def take(self, n: int) -> bytes | None:
        """The next `n` bytes if they are all buffered already (consumed), else None."""
        pos = self._pos
        if len(self._buf) - pos < n:
            return None
        self._pos = pos + n
        return self._buf[pos : pos + n]

    def chunks(self, n: int) -> Iterator[bytes]:
        """The next `n` bytes as pieces (zero-copy where possible); short at end of stream."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                return
            avail = len(self._buf) - self._pos
            take = min(avail, n)
            if self._pos == 0 and take == len(self._buf):
                out = self._buf
            else:
                out = self._buf[self._pos : self._pos + take]
            self._pos += take
            n -= take
            yield out

    def skip(self, n: int) -> int:
        """Skip `n` bytes (seeking when the data is not compressed); returns bytes skipped."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return n
        if self.compression is None and self._unpacked is None and self._fh.seekable():
            here = self._fh.tell()
            end = self._fh.seek(0, 2)
            target = min(here + n - avail, end)
            self._fh.seek(target)
            self._buf, self._pos = b"", 0
            skipped = avail + target - here
            self.total += target - here
            return skipped
        return sum(len(p) for p in self.chunks(n))

    def drain(self) -> bool:
        """Read to the end (verifying compressed data); True if all of it was zero bytes."""
        zero = not self._buf[self._pos :].strip(b"\0")
        self._buf, self._pos = b"", 0
        while self._fill():
            if zero and self._buf.strip(b"\0"):
                zero = False
            self._buf, self._pos = b"", 0
        return zero
