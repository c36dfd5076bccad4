"""A delta archive read as its NEW image, with contents, on top of its OLD image.

NEW's manifest is in the header; the bytes of every NEW file are either in a record
(decoded against OLD's file it names) or are the bytes of a file of OLD with the same
digest. So `plan OLD DELTA` reads NEW's unit files and package databases as
`plan OLD NEW` does, with no NEW image at hand. Every file handed out is checked against
NEW's digest: an OLD that is not the delta's base gives `BadInput`, never wrong bytes.
"""

from __future__ import annotations

from collections.abc import Collection

from imgdiff import _digest
from imgdiff.archive.codec import MAX_BASE, decode
from imgdiff.archive.format import Header, Record, read_header
from imgdiff.errors import BadInput
from imgdiff.image.base import Image, ReadResult
from imgdiff.manifest import ImageInfo, Manifest
from imgdiff.model import Entry, EntryType


class DeltaImage(Image):
    """NEW, as a delta archive and the OLD image it applies to describe it."""

    format = "delta"

    def __init__(self, path: str, header: Header, data_start: int, old: Manifest) -> None:
        super().__init__(path)
        self.header = header
        self.old = old
        self._records: dict[str, tuple[Record, int]] = {}  # path -> (record, its offset)
        offset = data_start
        for record in header.records:
            self._records[record.path] = (record, offset)
            offset += record.size

    def _read(self, result: ReadResult, capture: object) -> None:
        result.entries = list(self.header.new.entries.values())

    def head(self, entry: Entry, read: ReadResult) -> bytes | None:
        saved = self.header.new.head(entry.path)
        if saved is not None:
            return saved
        old = self.old.entries.get(entry.path)
        if old is not None and old.type is EntryType.FILE and old.digest == entry.digest:
            return self.old.head(entry.path)
        return None

    def read_files(self, paths: Collection[str], read: ReadResult) -> dict[str, bytes]:
        """NEW's bytes of the given regular files, checked against NEW's digest (a hard-link
        group once, by its leader).

        A hard-link group's bytes are its leader's. A leader has a record, or else the
        delta left OLD's file at its path as it was (that is what `pack` writes).
        """
        new = self.header.new.entries
        leaders = {}
        for p in paths:
            entry = new.get(p)
            if entry is not None and entry.type is EntryType.FILE:
                leaders[p] = entry.hardlink or p
        records = [self._records[q][0] for q in sorted(set(leaders.values())) if q in self._records]
        bases = {r.base for r in records if r.base is not None}
        kept = {q for q in leaders.values() if q not in self._records}
        olds = self.old.read_files(sorted(kept | bases))

        def base(path: str) -> bytes:
            data = olds.get(path)
            if data is None or len(data) > MAX_BASE:
                raise BadInput(self.path, f"{self.old.info.path} has no such base file", path)
            return data

        contents: dict[str, bytes] = {}
        for q in sorted(kept):  # OLD's file, left as it was: it must be NEW's
            data = olds.get(q)
            if data is None or _digest.of_bytes(data) != new[q].digest:
                raise BadInput(
                    self.path, f"{self.old.info.path} is not this delta's base: its file differs", q
                )
            contents[q] = data
        if records:
            with open(self.path, "rb") as fh:
                for record in records:
                    fh.seek(self._records[record.path][1])
                    data = fh.read(record.size)
                    if len(data) < record.size:
                        raise BadInput(self.path, "truncated delta archive", record.path)
                    # decode checks the bytes against NEW's digest
                    contents[record.path] = decode(record, data, new[record.path], base, self.path)
        # a hard-link group shares its leader's digest (`check_tree` holds NEW to that)
        return {p: contents[q] for p, q in leaders.items()}


def delta_as_new(path: str, old: Manifest) -> Manifest:
    """NEW's manifest from the delta at `path`; its files read through `old` when that
    has contents (an image), and none can be read when it is a saved manifest."""
    with open(path, "rb") as fh:
        header = read_header(fh, path)
        start = fh.tell()
    if not old.has_contents:
        return header.new
    image = DeltaImage(path, header, start, old)
    info = header.new.info
    entries = dict(header.new.entries)
    return Manifest(
        entries,
        ImageInfo(path, "delta", info.entries, info.files, info.bytes),
        header.new.warnings,
        image=image,
        read=ReadResult("delta"),
    )


__all__ = ["DeltaImage", "delta_as_new"]
