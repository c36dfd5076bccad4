"""Decoding one content record of a delta archive, checked against NEW's entry.

Shared by `apply` (bases read from the tree being updated) and `DeltaImage` (bases read
from the OLD image), so a record means the same bytes wherever it is read.
"""

from __future__ import annotations

from collections.abc import Callable

import hdiffpatch
import zstandard

from imgdiff import _digest
from imgdiff.archive.format import Record
from imgdiff.archive.pack import window_log
from imgdiff.errors import BadInput
from imgdiff.model import Entry

MAX_BASE = 1 << 30  # the largest base file a record may be decoded against


def decode(
    record: Record, data: bytes, entry: Entry, base: Callable[[str], bytes], delta: str
) -> bytes:
    """A record's bytes (`base` gives OLD's file a patch or copy starts from), decoded
    and checked against NEW's size and digest; a bad record is `BadInput` naming `delta`."""
    try:
        if record.encoding == "copy":
            assert record.base is not None
            out = base(record.base)
        elif record.encoding == "zstd":
            out = _bounded(zstandard.ZstdDecompressor(), data, entry.size)
        elif record.encoding == "hdiff":
            assert record.base is not None
            ref = base(record.base)
            if hdiff_sizes(data) != (entry.size, len(ref)):
                raise BadInput(
                    delta, "patch sizes do not match NEW's file and its base", record.path
                )
            out = hdiffpatch.apply(ref, data)
        else:
            assert record.base is not None
            ref = base(record.base)
            raw = zstandard.ZstdCompressionDict(ref, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            dec = zstandard.ZstdDecompressor(
                dict_data=raw, max_window_size=1 << window_log(len(ref), entry.size)
            )
            out = _bounded(dec, data, entry.size)
    except (zstandard.ZstdError, hdiffpatch.HDiffPatchError, MemoryError) as exc:
        raise BadInput(delta, f"corrupt content record: {exc}", record.path) from None
    if len(out) != entry.size or _digest.of_bytes(out) != entry.digest:
        raise BadInput(delta, "content does not match NEW's digest", record.path)
    return out


def _bounded(dec: zstandard.ZstdDecompressor, data: bytes, size: int) -> bytes:
    """At most `size` + 1 bytes of a zstd record: a bomb is cut off, never inflated whole."""
    pieces = []
    wanted = size + 1
    with dec.stream_reader(data) as reader:
        while wanted > 0 and (piece := reader.read(min(wanted, 1 << 20))):
            pieces.append(piece)
            wanted -= len(piece)
    return b"".join(pieces)


def hdiff_sizes(patch: bytes) -> tuple[int, int] | None:
    """(new size, old size) an HDiffPatch patch declares, read before it is applied (so a
    patch that lies about its output is refused before anything is allocated for it)."""
    magic, sep, rest = patch[:64].partition(b"\0")
    if not sep or not magic.startswith(b"HDIFF13&"):
        return None
    sizes = []
    pos = 0
    for _ in range(2):
        value = 0
        for _ in range(10):
            if pos >= len(rest):
                return None
            byte = rest[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            return None
        sizes.append(value)
    return sizes[0], sizes[1]


__all__ = ["MAX_BASE", "decode", "hdiff_sizes"]
