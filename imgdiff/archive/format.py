"""The delta archive's bytes: a header naming both images and NEW's manifest, then content.

Layout (version 1, `docs/delta-archive.md`):

    MAGIC (16 bytes) | header length, u64 little-endian | header: one zstd frame of
    canonical JSON | content records, back to back, in the header's `records` order

The header holds the identities of OLD and NEW, NEW's whole manifest (the document a
saved manifest holds, heads only for changed files), OLD's entry for every path that
differs (so the base can be checked and the change undone without OLD), the paths only
NEW has, and the content records: `[path, encoding, base, size]` where encoding is
`zstd` (the whole file), `patch` (zstd with OLD's file at `base` as a raw-content
dictionary, as `zstd --patch-from` does), `hdiff` (an HDiffPatch patch against `base`,
lzma2-compressed) or `copy` (OLD's file at `base` has these very bytes; no record data).
This module owns writing and reading those bytes and checking everything the header says
before anything is applied; it decides nothing about what to put in a delta (`pack`) or
how to apply it (`apply`).
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import attrs
import zstandard

from imgdiff.errors import BadInput, LimitExceeded
from imgdiff.fs.inputs import open_regular_file
from imgdiff.fs.paths import canonical
from imgdiff.image.base import Limits
from imgdiff.manifest import Manifest, entry_from_row, entry_row, identity_of
from imgdiff.model import Entry, EntryType

MAGIC = b"IMGDIFF-DELTA/1\n"
SCHEMA = "imgdiff.delta-archive/1"
ENCODINGS = ("zstd", "patch", "hdiff", "copy")
_LEN = struct.Struct("<Q")
_MAX_HEADER = 1 << 30  # compressed header bytes: far above any real manifest
_HEADER_LEVEL = 19


@attrs.frozen
class Record:
    """One file's content in the archive: how it is encoded and how many bytes it takes."""

    path: str
    encoding: str
    base: str | None  # OLD's file a patch or copy starts from
    size: int  # bytes of record data in the archive (0 for a copy)


@attrs.frozen
class Header:
    """Everything a delta archive says before its content."""

    old_identity: str
    new_identity: str
    new: Manifest  # NEW's whole manifest
    old_entries: dict[str, Entry]  # OLD's entry of every path that differs from NEW
    added: frozenset[str]  # paths NEW has and OLD has not
    records: tuple[Record, ...]

    @functools.cached_property
    def old_manifest(self) -> dict[str, Entry]:
        """OLD's entries, rebuilt from NEW's and the paths that differ (once: read only)."""
        entries = {p: e for p, e in self.new.entries.items() if p not in self.added}
        entries.update(self.old_entries)
        return entries

    def to_json(self) -> dict[str, Any]:
        """The header document (canonical once dumped with sorted keys)."""
        return {
            "schema": SCHEMA,
            "old": {"identity": self.old_identity},
            "new": {"identity": self.new_identity},
            # heads of the changed files only: what classifying the change needs
            "manifest": self.new.document(heads_of=self.added | self.old_entries.keys()),
            "removed": [
                entry_row(self.old_entries[p])
                for p in sorted(self.old_entries)
                if p not in self.new.entries
            ],
            "changed": self._changed_rows(),
            "added": sorted(self.added),
            "records": [[r.path, r.encoding, r.base, r.size] for r in self.records],
        }

    def _changed_rows(self) -> list[list[Any]]:
        """[steps from the previous changed path in NEW's sorted paths, {column: OLD value}]:
        a position costs a byte or two where the path would cost forty."""
        out: list[list[Any]] = []
        previous = 0
        for i, path in enumerate(sorted(self.new.entries)):
            if path in self.old_entries:
                old, new = entry_row(self.old_entries[path]), entry_row(self.new.entries[path])
                out.append([i - previous, _differences(old, new)])
                previous = i
        return out


# the columns of `entry_row`, by name: a changed path stores OLD's values where they differ
_COLUMNS = ("path", "type", "mode", "uid", "gid", "size", "mtime_ns", "target", "hardlink",
            "rdev", "xattrs", "digest", "implicit")  # fmt: skip


def _differences(old: list[Any], new: list[Any]) -> dict[str, Any]:
    old = old + [False] * (len(_COLUMNS) - len(old))
    new = new + [False] * (len(_COLUMNS) - len(new))
    return {c: o for c, o, n in zip(_COLUMNS, old, new, strict=True) if o != n}


def _with_differences(new: list[Any], changes: Any) -> list[Any]:
    if not isinstance(changes, dict) or not set(changes) <= set(_COLUMNS[1:]) or not changes:
        raise ValueError("not a non-empty object of entry columns (the path cannot change)")
    row = new + [False] * (len(_COLUMNS) - len(new))
    for i, column in enumerate(_COLUMNS):
        if column in changes:
            row[i] = changes[column]
    return row


def write_header(fh: BinaryIO, header: Header) -> None:
    """Write the magic, the header length and the compressed header."""
    text = json.dumps(header.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    packed = zstandard.ZstdCompressor(level=_HEADER_LEVEL).compress(text.encode("ascii"))
    fh.write(MAGIC + _LEN.pack(len(packed)) + packed)


def read_header(fh: BinaryIO, source: str, limits: Limits | None = None) -> Header:
    """Read and check the header at the start of `fh`, which is left at the first record.

    Every field is checked: NEW's manifest as a saved manifest is, OLD's entries row by
    row, paths unique and inside the image, records naming files of NEW in path order,
    and both identities recomputed from what the header holds.
    """
    limits = limits or Limits()
    head = fh.read(len(MAGIC) + _LEN.size)
    if len(head) < len(MAGIC) + _LEN.size or not head.startswith(MAGIC):
        raise BadInput(source, "not an imgdiff delta archive")
    (size,) = _LEN.unpack(head[len(MAGIC) :])
    if size > _MAX_HEADER:
        raise LimitExceeded(source, f"delta header of {size} bytes")
    packed = fh.read(size)
    if len(packed) < size:
        raise BadInput(source, "truncated delta archive (in the header)")
    limit = max(limits.manifest_ratio_floor, limits.max_manifest_ratio * size)
    text = _inflate(packed, source, min(limit, limits.max_manifest_bytes))
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadInput(source, f"malformed delta header: {exc}") from None
    return _parse(doc, source, limits)


def _inflate(packed: bytes, source: str, limit: int) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(packed)
        text = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BadInput(source, f"corrupt delta header: {exc}") from None
    if len(text) > limit:
        raise LimitExceeded(source, f"delta header expands past {limit} bytes")
    return text


def _parse(doc: Any, source: str, limits: Limits) -> Header:
    def bad(why: str) -> BadInput:
        return BadInput(source, f"malformed delta header: {why}")

    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BadInput(source, f"not an {SCHEMA} archive")
    keys = {"schema", "old", "new", "manifest", "removed", "changed", "added", "records"}
    if set(doc) != keys:
        raise bad(f"keys {sorted(set(doc) ^ keys)} missing or unknown")
    ids = []
    for side in ("old", "new"):
        part = doc[side]
        if not isinstance(part, dict) or set(part) != {"identity"}:
            raise bad(f"{side} must hold exactly an identity")
        if not isinstance(part["identity"], str):
            raise bad(f"{side} identity is not a string")
        ids.append(part["identity"])
    new = Manifest.from_document(doc["manifest"], source, limits, kind="delta")
    old_entries = _old_entries(doc, new, limits, bad)
    added = doc["added"]
    if not isinstance(added, list) or not all(isinstance(p, str) for p in added):
        raise bad("added is not a list of paths")
    if len(set(added)) != len(added) or not set(added) <= new.entries.keys():
        raise bad("added names a path twice or one NEW does not have")
    if set(added) & old_entries.keys():
        raise bad("a path is both added and in OLD")
    for path in (*new.entries, *old_entries):
        if not canonical(path):
            raise bad(f"{path!r} is not a plain absolute path")
    records = _records(doc["records"], new.entries, bad, limits)
    header = Header(ids[0], ids[1], new, old_entries, frozenset(added), records)
    check_tree(new.entries, "NEW", bad)
    check_tree(header.old_manifest, "OLD", bad)
    if new.identity != ids[1]:
        raise bad("NEW's manifest does not have the identity the header names")
    if _identity(header.old_manifest) != ids[0]:
        raise bad("OLD rebuilt from the header does not have the identity it names")
    return header


def _old_entries(
    doc: dict[str, Any], new: Manifest, limits: Limits, bad: Callable[[str], BadInput]
) -> dict[str, Entry]:
    """OLD's entry of every path that differs: removed rows, and changed columns applied
    to NEW's row."""
    old_entries: dict[str, Entry] = {}
    for key in ("removed", "changed"):
        if not isinstance(doc[key], list):
            raise bad(f"{key} is not a list")
    for i, row in enumerate(doc["removed"]):
        try:
            entry = entry_from_row(row, limits)
        except (TypeError, ValueError) as exc:
            raise bad(f"removed[{i}]: {exc}") from None
        if entry.path in old_entries or entry.path in new.entries:
            raise bad(f"removed[{i}]: a path NEW has, or one named twice")
        old_entries[entry.path] = entry
    paths = sorted(new.entries)
    position = 0
    for i, item in enumerate(doc["changed"]):
        try:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)):
                raise ValueError("not [steps to a path of NEW, {column: OLD value}]")
            step = item[0]
            if isinstance(step, bool) or step < (1 if i else 0) or position + step >= len(paths):
                raise ValueError("steps past NEW's paths, or not forward")
            position += step
            path = paths[position]
            row = _with_differences(entry_row(new.entries[path]), item[1])
            old_entries[path] = entry_from_row(row, limits)
        except (TypeError, ValueError) as exc:
            raise bad(f"changed[{i}]: {exc}") from None
    return old_entries


def _records(
    raw: Any, entries: Mapping[str, Entry], bad: Callable[[str], BadInput], limits: Limits
) -> tuple[Record, ...]:
    if not isinstance(raw, list):
        raise bad("records is not a list")
    out = []
    last = ""
    for i, item in enumerate(raw):
        if not (isinstance(item, list) and len(item) == 4):
            raise bad(f"records[{i}] is not [path, encoding, base, size]")
        path, encoding, base, size = item
        if not isinstance(path, str) or path <= last:
            raise bad(f"records[{i}]: paths must be strings in strictly increasing order")
        last = path
        entry = entries.get(path)
        if entry is None or entry.type is not EntryType.FILE:
            raise bad(f"records[{i}]: {path!r} is not a regular file of NEW")
        if encoding not in ENCODINGS:
            raise bad(f"records[{i}]: unknown encoding {encoding!r}")
        if (base is None) != (encoding == "zstd") or not (base is None or isinstance(base, str)):
            raise bad(f"records[{i}]: a base path goes with patch and copy records only")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"records[{i}]: size is not a byte count")
        if size > limits.max_member_bytes:
            raise bad(f"records[{i}]: {size} bytes is over the member limit")
        if encoding == "copy" and size:
            raise bad(f"records[{i}]: a copy carries no data")
        out.append(Record(path, encoding, base, size))
    return tuple(out)


def _identity(entries: dict[str, Entry]) -> str:
    return identity_of(entry_row(entries[p]) for p in sorted(entries))


STATE_DIR = "/var/lib/imgdiff"  # where `apply` keeps its journal, history, staging and undo


def in_state_dir(path: str) -> bool:
    """True for imgdiff's own state directory and what it holds: never part of an image
    for a delta (`pack` leaves it out of both, `apply` and `check` of the tree)."""
    return path == STATE_DIR or path.startswith(STATE_DIR + "/")


def keeps_file(old: Entry | None, new: Entry) -> bool:
    """True if NEW's file at a path is OLD's very file (same bytes, same hard-link group):
    nothing to write there. A changed group needs a new inode, even with the same bytes."""
    return (
        old is not None
        and old.type is EntryType.FILE
        and new.type is EntryType.FILE
        and old.digest == new.digest
        and old.hardlink == new.hardlink
    )


def check_tree(entries: Mapping[str, Entry], what: str, bad: Callable[[str], BadInput]) -> None:
    """Refuse a manifest no tree can be: a path under a non-directory (a symlink above a
    write is how archives escape), or a hard link that does not name a file of the same
    image leading its own group with the same bytes."""
    for path, entry in entries.items():
        parent = path.rpartition("/")[0]
        if parent and (parent not in entries or entries[parent].type is not EntryType.DIR):
            raise bad(f"{what}: {path!r} lies under {parent!r}, which is not a directory")
        group = entry.hardlink
        if group is None:
            continue
        leader = entries.get(group)
        if (
            entry.type is not EntryType.FILE
            or leader is None
            or leader.type is not EntryType.FILE
            or leader.hardlink != group
            or leader.digest != entry.digest
        ):
            raise bad(f"{what}: {path!r} is hard-linked to {group!r}, not a file of its group")


def is_delta(path: str) -> bool:
    """True if `path` is a delta archive (by its magic, never its name)."""
    try:
        with open(open_regular_file(path), "rb") as fh:  # never a FIFO or a device
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def as_manifest(source: str | Manifest, limits: Limits | None = None) -> str | Manifest:
    """NEW's manifest when `source` names a delta archive; `source` itself otherwise.

    So `diff`, `plan`, `verify` and `check` take a delta where they take NEW.
    """
    if isinstance(source, str) and is_delta(source):
        with open(source, "rb") as fh:
            return read_header(fh, source, limits).new
    return source


def record_data(fh: BinaryIO, header: Header, source: str) -> Iterator[tuple[Record, bytes]]:
    """Each record with its data, read front to back (a truncated archive is `BadInput`)."""
    for record in header.records:
        data = fh.read(record.size) if record.size else b""
        if len(data) < record.size:
            raise BadInput(source, "truncated delta archive (in a content record)", record.path)
        yield record, data
    if fh.read(1):
        raise BadInput(source, "trailing data after the last content record")


__all__ = [
    "ENCODINGS",
    "MAGIC",
    "SCHEMA",
    "STATE_DIR",
    "Header",
    "Record",
    "as_manifest",
    "canonical",
    "check_tree",
    "in_state_dir",
    "is_delta",
    "keeps_file",
    "read_header",
    "record_data",
    "write_header",
]
