"""Compact storage for many entries: packed records instead of one `Entry` object per path.

A million paths held as `Entry` objects cost about 500 bytes each (the object, its path,
digest and mtime objects, a dict slot). Here a plain entry (no link target, hard-link
group, device numbers or xattrs; a canonical digest or none) is a 59-byte record and an
`Entry` is made only when asked for. `EntryStore` is the mutable, insertion-ordered form a
reader fills as members arrive (one small bytes object per path); `EntryTable` the frozen,
path-sorted columns a large manifest keeps (no Python object per path at all), which
`delta` merges with another table without making entries for unchanged paths. Entries
that are not plain are kept whole, as `Entry`. Both behave as mappings of path to `Entry`.

This module owns the record layout and nothing else: no reading, no comparing.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from itertools import accumulate
from typing import Any

from imgdiff import _digest
from imgdiff.model import Entry, EntryType

# flags (type index in the low 3 bits), mode, uid, gid, mtime_ns, size, raw digest
_REC = struct.Struct("<BHIIqQ32s")
RECORD = _REC.size
_TYPES = tuple(EntryType)
_INDEX = {t: i for i, t in enumerate(_TYPES)}
_IMPLICIT = 0x08
_DIGEST = 0x10
_WHOLE = 0x20  # the row's entry is kept whole (not plain); the record holds its type only
_FILE_FLAGS = _INDEX[EntryType.FILE]
_PREFIX = _digest.PREFIX
_DIGEST_LEN = len(_PREFIX) + 64
_NO_DIGEST = bytes(32)
_JOIN = 1 << 14  # records joined at a time while a table is built
_ENC = "utf-8"
_ERRORS = "surrogateescape"  # os.fsencode/os.fsdecode: any file name round-trips


def pack(
    etype: EntryType,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime_ns: int,
    digest: str | None,
    implicit: bool,
) -> bytes | None:
    """The record of a plain entry with these fields, or None when one does not fit."""
    flags = _INDEX.get(etype)
    if flags is None or type(etype) is not EntryType:
        return None
    raw = _NO_DIGEST
    if digest is not None:
        if len(digest) != _DIGEST_LEN or not digest.startswith(_PREFIX):
            return None
        try:
            raw = bytes.fromhex(digest[7:])
        except ValueError:
            return None
        if len(raw) != 32 or raw.hex() != digest[7:]:  # only the canonical spelling
            return None
        flags |= _DIGEST
    if implicit is True:
        flags |= _IMPLICIT
    elif implicit is not False:
        return None
    try:
        return _REC.pack(flags, mode, uid, gid, mtime_ns, size, raw)
    except struct.error:  # a value out of the record's range: kept whole instead
        return None


def compact(entry: Entry) -> bytes | Entry:
    """`entry` as a record when it is plain, else itself."""
    if (
        entry.target is not None
        or entry.hardlink is not None
        or entry.rdev is not None
        or entry.xattrs
    ):
        return entry
    rec = pack(
        entry.type, entry.mode, entry.uid, entry.gid, entry.size, entry.mtime_ns,
        entry.digest, entry.implicit,
    )  # fmt: skip
    return entry if rec is None else rec


def entry_of(path: str, rec: bytes) -> Entry:
    """The entry a plain record stands for."""
    flags, mode, uid, gid, mtime_ns, size, raw = _REC.unpack(rec)
    digest = _PREFIX + raw.hex() if flags & _DIGEST else None
    return Entry(
        path, _TYPES[flags & 7], mode, uid, gid, size, mtime_ns, None, None, None, (),
        digest, bool(flags & _IMPLICIT),
    )  # fmt: skip


def _type_only(etype: EntryType) -> bytes:
    return _REC.pack(_INDEX[etype] | _WHOLE, 0, 0, 0, 0, 0, _NO_DIGEST)


_TYPE_ONLY = {t: _type_only(t) for t in _TYPES}


class EntryStore(MutableMapping[str, Entry]):
    """A mutable mapping of path to entry, insertion-ordered like a dict, that keeps each
    plain entry as a record (`pack`) and any other as its `Entry`."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, bytes | Entry] = {}

    def __getitem__(self, path: str) -> Entry:
        value = self._rows[path]
        return entry_of(path, value) if type(value) is bytes else value  # type: ignore[return-value]

    def __setitem__(self, path: str, entry: Entry) -> None:
        self._rows[path] = compact(entry) if entry.path == path else entry

    def __delitem__(self, path: str) -> None:
        del self._rows[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, path: object) -> bool:
        return path in self._rows

    def items(self) -> ItemsView[str, Entry]:
        """(path, entry) pairs, each entry made as it is reached."""
        return _Items(self)

    def values(self) -> ValuesView[Entry]:
        """The entries, each made as it is reached."""
        return _Values(self)

    def _pairs(self) -> Iterator[tuple[str, Entry]]:
        for path, value in self._rows.items():
            yield path, entry_of(path, value) if type(value) is bytes else value  # type: ignore[misc]

    def type_of(self, path: str) -> EntryType | None:
        """The type of the entry at `path` (None if absent), without making the entry."""
        value = self._rows.get(path)
        if value is None:
            return None
        if type(value) is bytes:
            return _TYPES[value[0] & 7]
        return value.type  # type: ignore[union-attr]

    def put(
        self,
        path: str,
        etype: EntryType,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime_ns: int,
        digest: str | None = None,
        implicit: bool = False,
    ) -> None:
        """Store a plain entry given by its fields (no `Entry` is made unless it must be)."""
        rec = pack(etype, mode, uid, gid, size, mtime_ns, digest, implicit)
        if rec is None:
            self._rows[path] = Entry(path, etype, mode, uid, gid, size, mtime_ns,
                                     digest=digest, implicit=implicit)  # fmt: skip
        else:
            self._rows[path] = rec


class _Items(ItemsView[str, Entry]):
    _mapping: Any

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return self._mapping._pairs()  # type: ignore[no-any-return]


class _Values(ValuesView[Entry]):
    _mapping: Any

    def __iter__(self) -> Iterator[Entry]:
        return (e for _, e in self._mapping._pairs())


class EntryTable(MutableMapping[str, Entry]):
    """Entries as columns sorted by path: encoded paths in one bytes object with their
    offsets, a 59-byte record per path, and whole `Entry` objects only for the rows that
    are not plain. Lookups are binary searches. Changes after building are applied in
    place (an existing path) or kept beside the columns (deleted rows, added paths)."""

    __slots__ = ("_added", "_blob", "_deleted", "_fixed", "_off", "_whole")

    def __init__(self, rows: Mapping[str, bytes | Entry], *, consume: bool = False) -> None:
        """Columns of `rows`: path -> record (`pack`) or whole entry (taken as given);
        with `consume`, `rows` (a dict) is emptied on the way, to hold less at once."""
        added: dict[str, Entry] = {}
        keys = sorted(rows)
        values = [rows[k] for k in keys]
        if consume and isinstance(rows, dict):
            rows.clear()  # its table goes before the columns are made
        if all(map(str.isascii, keys)):  # the usual case: str order is byte order
            blob = "".join(keys).encode("ascii")
            lengths: Iterable[int] = map(len, keys)
        else:
            encoded = []
            for path, value in zip(keys, values, strict=True):
                try:
                    encoded.append((path.encode(_ENC, _ERRORS), value))
                except UnicodeEncodeError:  # a lone surrogate no file name has: kept aside
                    added[path] = value if type(value) is Entry else entry_of(path, value)  # type: ignore[arg-type]
            encoded.sort(key=_first)
            values = [value for _, value in encoded]
            blob = b"".join(key for key, _ in encoded)
            lengths = [len(key) for key, _ in encoded]
            del encoded
        self._blob = blob
        self._off = array("Q", accumulate(lengths, initial=0))
        del keys, lengths
        whole: dict[int, Entry] = {}
        for row, value in enumerate(values):
            if type(value) is not bytes:
                whole[row] = value  # type: ignore[assignment]
                values[row] = _TYPE_ONLY[value.type]  # type: ignore[union-attr]
        # joined a slice at a time: a join holds an 80-byte buffer record per item meanwhile
        fixed = bytearray(len(values) * RECORD)
        for at in range(0, len(values), _JOIN):
            piece = b"".join(values[at : at + _JOIN])  # type: ignore[arg-type]
            fixed[at * RECORD : at * RECORD + len(piece)] = piece
        del values
        self._fixed = fixed
        self._whole = whole
        self._deleted: set[int] = set()
        self._added = added

    @classmethod
    def from_mapping(
        cls, entries: EntryStore | MutableMapping[str, Entry], *, consume: bool = False
    ) -> EntryTable:
        """A table of the entries of a store (records taken as they are) or any mapping;
        with `consume`, a store is emptied as the table is built (less memory at once)."""
        if isinstance(entries, EntryStore):
            return cls(entries._rows, consume=consume)
        return cls({p: compact(e) if e.path == p else e for p, e in entries.items()})

    # -- lookup ------------------------------------------------------------------------
    def _row(self, path: str) -> int:
        """The row of `path` in the columns, or -1."""
        try:
            key = path.encode(_ENC, _ERRORS)
        except (UnicodeEncodeError, AttributeError):
            return -1
        blob, off = self._blob, self._off
        lo, hi = 0, len(off) - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if blob[off[mid] : off[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(off) - 1 and blob[off[lo] : off[lo + 1]] == key and lo not in self._deleted:
            return lo
        return -1

    def _entry(self, row: int, path: str) -> Entry:
        found = self._whole.get(row)
        if found is not None:
            return found
        return entry_of(path, bytes(self._fixed[row * RECORD : (row + 1) * RECORD]))

    def __getitem__(self, path: str) -> Entry:
        row = self._row(path)
        if row >= 0:
            return self._entry(row, path)
        return self._added[path]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (self._row(path) >= 0 or path in self._added)

    def __len__(self) -> int:
        return len(self._off) - 1 - len(self._deleted) + len(self._added)

    def __iter__(self) -> Iterator[str]:
        blob, off, deleted = self._blob, self._off, self._deleted
        if blob.isascii():
            text = blob.decode("ascii")
            for row in range(len(off) - 1):
                if not deleted or row not in deleted:
                    yield text[off[row] : off[row + 1]]
        else:
            for row in range(len(off) - 1):
                if not deleted or row not in deleted:
                    yield blob[off[row] : off[row + 1]].decode(_ENC, _ERRORS)
        yield from list(self._added)

    def items(self) -> ItemsView[str, Entry]:
        """(path, entry) pairs in path order, each entry made as it is reached."""
        return _Items(self)

    def values(self) -> ValuesView[Entry]:
        """The entries in path order, each made as it is reached."""
        return _Values(self)

    def _pairs(self) -> Iterator[tuple[str, Entry]]:
        fixed, whole, deleted = self._fixed, self._whole, self._deleted
        for row, path in enumerate(self._paths()):
            if deleted and row in deleted:
                continue
            found = whole.get(row)
            if found is None:
                found = entry_of(path, bytes(fixed[row * RECORD : (row + 1) * RECORD]))
            yield path, found
        yield from list(self._added.items())

    def _paths(self) -> Iterator[str]:
        """Every path of the columns, deleted rows included, in row order."""
        blob, off = self._blob, self._off
        if blob.isascii():
            text = blob.decode("ascii")
            return (text[off[r] : off[r + 1]] for r in range(len(off) - 1))
        return (blob[off[r] : off[r + 1]].decode(_ENC, _ERRORS) for r in range(len(off) - 1))

    # -- changes -----------------------------------------------------------------------
    def __setitem__(self, path: str, entry: Entry) -> None:
        row = self._row(path)
        if row < 0:
            try:
                row = self._row_even_deleted(path)
            except KeyError:
                self._added[path] = entry
                return
            self._deleted.discard(row)
        value = compact(entry) if entry.path == path else entry
        if type(value) is bytes:
            self._fixed[row * RECORD : (row + 1) * RECORD] = value
            self._whole.pop(row, None)
        else:
            self._fixed[row * RECORD : (row + 1) * RECORD] = _TYPE_ONLY[entry.type]
            self._whole[row] = entry

    def _row_even_deleted(self, path: str) -> int:
        deleted, self._deleted = self._deleted, set()
        try:
            row = self._row(path)
        finally:
            self._deleted = deleted
        if row < 0:
            raise KeyError(path)
        return row

    def __delitem__(self, path: str) -> None:
        row = self._row(path)
        if row >= 0:
            self._deleted.add(row)
            self._whole.pop(row, None)
        else:
            del self._added[path]

    def whole_entries(self) -> Iterator[Entry]:
        """The entries kept whole (links, devices, xattrs, odd values): every entry with
        a hard-link group is among them."""
        yield from (e for r, e in self._whole.items() if r not in self._deleted)
        yield from self._added.values()

    def totals(self) -> tuple[int, int]:
        """(regular files, their bytes) over every entry, without making entries."""
        files = size = 0
        deleted, whole = self._deleted, self._whole
        for row, (flags, _m, _u, _g, _t, nbytes, _d) in enumerate(_REC.iter_unpack(self._fixed)):
            if flags & 7 != _FILE_FLAGS or (deleted and row in deleted):
                continue
            files += 1
            size += whole[row].size if flags & _WHOLE else nbytes
        for e in self._added.values():
            if e.type is EntryType.FILE:
                files += 1
                size += e.size
        return files, size

    def unchanged_since_built(self) -> bool:
        """True while no path has been added or deleted (digests filled in place are fine)."""
        return not self._deleted and not self._added

    def mergeable(self, other: EntryTable) -> bool:
        """True when `merge` can pair this table with `other`."""
        return self.unchanged_since_built() and other.unchanged_since_built()

    def merge(self, other: EntryTable) -> Merged:
        """Pair the rows of this table (OLD) with `other`'s (NEW) by path, counting the
        pairs whose records prove them equal (or equal but for mtime) without making
        entries; the rest come back as entries. Both tables must be unchanged since built."""
        if not self.mergeable(other):
            raise ValueError("merge needs tables with no path added or deleted since built")
        out = Merged()
        ablob, aoff, afix, awhole = self._blob, self._off, self._fixed, self._whole
        bblob, boff, bfix, bwhole = other._blob, other._off, other._fixed, other._whole
        na, nb = len(aoff) - 1, len(boff) - 1
        same_paths = na == nb and aoff == boff and ablob == bblob
        size = RECORD
        i = j = 0
        while i < na and j < nb:
            if same_paths:
                key = b""
                step = 0
            else:
                key = ablob[aoff[i] : aoff[i + 1]]
                kb = bblob[boff[j] : boff[j + 1]]
                step = 0 if key == kb else -1 if key < kb else 1
            if step == 0:
                ra = afix[i * size : i * size + size]
                rb = bfix[j * size : j * size + size]
                flags = ra[0]
                if (
                    not (flags | rb[0]) & _WHOLE
                    and ra[:11] == rb[:11]
                    and ra[19:] == rb[19:]
                    and (flags & 7 != _FILE_FLAGS or flags & _DIGEST)
                ):
                    if ra[11:19] == rb[11:19]:
                        out.unchanged += 1
                    else:
                        out.mtime_only += 1
                else:
                    path = (key or ablob[aoff[i] : aoff[i + 1]]).decode(_ENC, _ERRORS)
                    a = awhole.get(i) or entry_of(path, bytes(ra))
                    b = bwhole.get(j) or entry_of(path, bytes(rb))
                    out.both.append((path, a, b))
                i += 1
                j += 1
            elif step < 0:
                path = key.decode(_ENC, _ERRORS)
                out.removed.append((path, self._entry(i, path)))
                i += 1
            else:
                path = bblob[boff[j] : boff[j + 1]].decode(_ENC, _ERRORS)
                out.added.append((path, other._entry(j, path)))
                j += 1
        for r in range(i, na):
            path = ablob[aoff[r] : aoff[r + 1]].decode(_ENC, _ERRORS)
            out.removed.append((path, self._entry(r, path)))
        for r in range(j, nb):
            path = bblob[boff[r] : boff[r + 1]].decode(_ENC, _ERRORS)
            out.added.append((path, other._entry(r, path)))
        return out


class Merged:
    """What `EntryTable.merge` found: counts of equal pairs and the entries of the rest."""

    __slots__ = ("added", "both", "mtime_only", "removed", "unchanged")

    def __init__(self) -> None:
        self.unchanged = 0
        self.mtime_only = 0
        self.both: list[tuple[str, Entry, Entry]] = []  # in both: still to compare
        self.removed: list[tuple[str, Entry]] = []
        self.added: list[tuple[str, Entry]] = []


def _first(item: tuple[bytes, bytes | Entry]) -> bytes:
    return item[0]


__all__ = ["RECORD", "EntryStore", "EntryTable", "Merged", "compact", "entry_of", "pack"]
