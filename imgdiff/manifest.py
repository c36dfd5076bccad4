"""`Manifest`: every entry of one image, with content digests filled in on demand.

A manifest is built from any image reader (or loaded from a saved manifest file) and
computes the digests nobody has yet, in parallel and through the persistent digest cache
when the image is a directory. It owns saving/loading its compact, versioned file format;
it does not compare images (that is `imgdiff.delta`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import zstandard

from imgdiff import _digest, _parallel, _repr
from imgdiff._entrytable import EntryStore, EntryTable
from imgdiff._jsondoc import Types, check_types
from imgdiff._progress import ReadCounts
from imgdiff.cache import DigestCache
from imgdiff.errors import BadInput, LimitExceeded, Unsupported, escape_path
from imgdiff.fs.inputs import fspath, open_regular_file
from imgdiff.fs.paths import canonical
from imgdiff.image import Image, Limits, open_image
from imgdiff.image.base import CONTENT_MAGICS, Capture, FileId, ReadResult
from imgdiff.model import Entry, EntryType, ImageWarning

SCHEMA = "imgdiff.manifest/1"  # entries, heads: what a delta archive's header holds
# version 2 adds "files": the contents of the package databases and unit files, so that
# `packages` and `plan` work from saved manifests; a document without it stays version 1
SCHEMA_FILES = "imgdiff.manifest/2"
SCHEMAS = (SCHEMA, SCHEMA_FILES)
_SAVED_HEAD = 1024  # enough for the ELF header and program headers classification reads
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# An image read with at least this many entries keeps them as an `EntryTable` (about 100
# bytes a path, entries made on access) rather than a dict of `Entry` (about 450), so
# that a diff of two million-path images stays within 500 bytes a path. Smaller images
# keep the dict: dict lookups and iteration cost less than making entries on demand.
COMPACT_FROM = 200_000

ProgressFn = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while digests are computed."""


@attrs.frozen
class ImageInfo:
    """What an image was and how big it is (regular files only count towards `bytes`)."""

    path: str
    format: str
    entries: int
    files: int
    bytes: int

    __repr__ = _repr.short_repr

    def to_json(self) -> dict[str, Any]:
        """The JSON object written under "old"/"new"."""
        return attrs.asdict(self)


def _normalise_hardlinks(entries: MutableMapping[str, Entry]) -> None:
    """Name each hard-link group by its smallest path; drop groups of one."""
    groups: dict[str, list[str]] = {}
    linked = entries.whole_entries() if isinstance(entries, EntryTable) else entries.values()
    for entry in linked:
        if entry.hardlink is not None:
            groups.setdefault(entry.hardlink, []).append(entry.path)
    for members in groups.values():
        name = min(members) if len(members) > 1 else None
        for path in members:
            if entries[path].hardlink != name:
                entries[path] = attrs.evolve(entries[path], hardlink=name)


def _keyed(read: ReadResult) -> MutableMapping[str, Entry]:
    """The entries of a read by path: a dict, or an `EntryTable` from `COMPACT_FROM`
    entries on when the reader kept them compact. The read gives them up."""
    store, read.store = read.store, None
    if isinstance(store, EntryTable):
        return store
    if store is None:
        entries = {e.path: e for e in read.entries}
        read.entries = []  # the manifest holds them from here on
        return entries
    if len(store) >= COMPACT_FROM:
        return EntryTable.from_mapping(store, consume=True)
    return dict(store.items())


def _totals(entries: MutableMapping[str, Entry]) -> tuple[int, int]:
    """(regular files, their bytes)."""
    if isinstance(entries, EntryTable):
        return entries.totals()
    files = [e for e in entries.values() if e.type is EntryType.FILE]
    return len(files), sum(e.size for e in files)


class Manifest:
    """The entries of one image, keyed by absolute path.

    `entries` is a dict, or for a large image an `EntryTable` that behaves as one (a
    mapping of path to `Entry`) but makes each entry when it is asked for."""

    def __init__(
        self,
        entries: MutableMapping[str, Entry],
        info: ImageInfo,
        warnings: Sequence[ImageWarning] = (),
        *,
        image: Image | None = None,
        read: ReadResult | None = None,
        cache: DigestCache | None = None,
        workers: int | None = None,
    ) -> None:
        self.entries = entries
        self.info = info
        # what was read, for messages: the file a saved manifest was loaded from (its
        # `info.path` is the image it was made from, which a reader was not given)
        self.source = info.path
        self.warnings = list(warnings)
        self._image = image
        # what reading `image` found beside the entries: heads, captured contents, file ids
        self._read = read if read is not None else ReadResult(info.format)
        self._heads: dict[str, bytes] = {}  # from a saved manifest: no image to read them from
        # a saved manifest's kept contents (None: it kept none); a None value is a file
        # that was meant to be kept but could not be read when it was saved
        self._kept: dict[str, bytes | None] | None = None
        self._cache = cache
        self._cache_retained = False  # the cache has dropped files this read did not find
        self.hashed_files = 0  # files whose content was read (cache misses), for callers/tests
        # processes hashing may use (None: the CPUs available; 1: no fork, for threaded callers)
        self.workers = workers

    def close(self) -> None:
        """Release what the image holds open (a directory's descriptor), so a mounted
        image can be unmounted; reading on (a digest, a file) opens it again."""
        if self._image is not None:
            self._image.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def read(
        cls,
        source: str | os.PathLike[str] | Image,
        *,
        use_cache: bool = True,
        limits: Limits | None = None,
        capture: Capture | None = None,
        workers: int | None = None,
        progress: ReadCounts | None = None,
    ) -> Manifest:
        """Read an image (directory, tar, OCI, docker-save) or a saved manifest file.

        `capture` selects files whose contents streaming readers keep on the way (see
        `read_files`), so package databases cost no second pass over an archive.
        `workers` caps the processes later hashing uses (1: none is forked). `progress`
        counts the entries read (its image 0), for a display to poll.
        """
        opened = _open(source, limits)  # a Manifest comes back only for a saved file
        if isinstance(opened, Manifest):
            opened.workers = workers
            return opened
        report = progress.reporter(0, opened.size) if progress is not None else None
        return cls._build(opened, opened.read(capture, report), use_cache, workers)

    @classmethod
    def read_pair(
        cls,
        old: str | os.PathLike[str] | Image | Manifest,
        new: str | os.PathLike[str] | Image | Manifest,
        *,
        use_cache: bool = True,
        limits: Limits | None = None,
        capture: Capture | None = None,
        workers: int | None = None,
        progress: ReadCounts | None = None,
    ) -> tuple[Manifest, Manifest]:
        """Read two images; with `workers` over 1 (default: the CPUs available), the old
        one is read in a forked worker while this process reads the new one. `workers`
        also caps the processes later hashing uses (1: none is ever forked). `progress`
        counts the entries read (image 0 OLD, 1 NEW), a forked reader's too."""
        pair = [_open(old, limits), _open(new, limits)]
        images = [x for x in pair if isinstance(x, Image)]
        reports = {
            id(x): progress.reporter(n, x.size)
            for n, x in enumerate(pair)
            if progress is not None and isinstance(x, Image)
        }
        if len(images) == 2 and (workers or _parallel.workers()) > 1:
            parent = os.getpid()

            def read(image: Image) -> ReadResult | _Portable:
                got = image.read(capture, reports.get(id(image)))
                # a worker's read crosses the pipe as builtins; this process keeps its own
                return got if os.getpid() == parent else _portable(got)

            reads = _parallel.fork_map(read, images[::-1], size=_parallel.MIN_ITEMS)[::-1]
            built = [
                cls._build(
                    img, r if isinstance(r, ReadResult) else _restored(r), use_cache, workers
                )
                for img, r in zip(images, reads, strict=True)
            ]
            return built[0], built[1]
        out = [
            x
            if isinstance(x, Manifest)
            else cls._build(x, x.read(capture, reports.get(id(x))), use_cache, workers)
            for x in pair
        ]
        for x in out:
            x.workers = workers
        return out[0], out[1]

    @classmethod
    def _build(
        cls, image: Image, read: ReadResult, use_cache: bool, workers: int | None
    ) -> Manifest:
        entries = _keyed(read)
        _normalise_hardlinks(entries)
        files, size = _totals(entries)
        info = ImageInfo(image.path, read.format, len(entries), files, size)
        cache = image.digest_cache() if use_cache else None
        manifest = cls(entries, info, image=image, read=read, cache=cache, workers=workers)
        manifest.warnings = read.warnings  # one list: readers of contents warn into it too
        return manifest

    def __repr__(self) -> str:
        """The image, its counts and its first paths: short whatever its size."""
        i = self.info
        kept = "contents" if self.has_contents else "databases" if self.has_databases else "none"
        return (
            f"Manifest(path={_repr.text(i.path)}, format={i.format!r}, entries={i.entries}, "
            f"files={i.files}, bytes={i.bytes}, paths={_repr.items(self.entries.keys())}, "
            f"warnings={len(self.warnings)}, readable={kept!r})"
        )

    # -- mapping access ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def __getitem__(self, path: str) -> Entry:
        return self.entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    @property
    def has_contents(self) -> bool:
        """False for a manifest loaded from a file: metadata, digests and at most the
        package databases and unit files (see `has_databases`)."""
        return self._image is not None

    @property
    def has_databases(self) -> bool:
        """True when `read_files` gives the package databases and unit files: always for
        an image, and for a manifest saved with them (`imgdiff.manifest/2`)."""
        return self._image is not None or self._kept is not None

    def read_files(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Contents of regular files of the image (package databases, unit files, …);
        a path that is not a readable regular file is left out.

        Raises `Unsupported` for a manifest loaded from a file when it did not keep the
        contents of one of `paths` (it keeps at most those `saved_files` selects).
        """
        if self._image is not None:
            return self._image.read_files(list(paths), self._read)
        if self._kept is None:
            raise Unsupported(
                f"{escape_path(self.source)}: a saved manifest holds no file contents"
            )
        out = {}
        for path in paths:
            if path in self._kept:
                data = self._kept[path]
                if data is not None:
                    out[path] = data
            elif (e := self.entries.get(path)) is not None and e.type is EntryType.FILE:
                raise Unsupported(
                    f"{escape_path(self.source)}: {escape_path(path)}: a saved manifest keeps the "
                    "contents of package databases and unit files only"
                )
        return out

    def head(self, path: str) -> bytes | None:
        """Leading bytes of a regular file, for classification; None when unknown."""
        if self._image is None:
            return self._heads.get(path)
        return self._image.head(self.entries[path], self._read)

    def _content_heads(self) -> dict[str, bytes]:
        """Heads of the files whose kind depends on content, for saving."""
        if self._image is None:
            return dict(self._heads)
        out = {}
        for path, e in self.entries.items():
            if e.type is EntryType.FILE and e.size >= 4:
                head = self._image.head(e, self._read)
                if head is not None and head.startswith(CONTENT_MAGICS):
                    out[path] = head[:_SAVED_HEAD]
        return out

    # -- digests -----------------------------------------------------------------------
    def known_digest(self, path: str) -> str | None:
        """The content digest of a regular file when it is known without reading the file
        (the entry's own, or the digest cache's); None otherwise. Stores nothing."""
        e = self.entries[path]
        if e.digest is not None or self._cache is None:
            return e.digest
        fid = self._read.file_ids.get(path)
        if fid is None:
            return None
        return self._cache.get(fid.dev, fid.ino, e.size, e.mtime_ns, fid.ctime_ns)

    def file_id(self, path: str) -> FileId | None:
        """The identity (dev, ino, ctime) the read recorded for a regular file read in
        place; None for anything else."""
        return self._read.file_ids.get(path)

    @property
    def reads_in_place(self) -> bool:
        """True when `open_file` gives files' content and no digest cache keeps digests:
        comparing such files byte for byte costs less than hashing both."""
        return self._image is not None and self._cache is None and self._image.opens_files

    def open_file(self, path: str) -> int | None:
        """A read-only descriptor on the regular file the image read recorded at `path`
        (the caller closes it); None when it cannot be opened as recorded or the image
        keeps no files to open (`fill_digests` then records why)."""
        if self._image is None:
            return None
        return self._image.open_file(self.entries[path], self._read)

    def digest(self, path: str) -> str | None:
        """The content digest of a regular file (computed now if needed)."""
        self.fill_digests([path])
        return self.entries[path].digest

    def fill_digests(
        self,
        paths: Iterable[str],
        *,
        workers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Compute the missing digests of the given regular files, in parallel.

        `workers` (default: the manifest's own, else the CPUs available) caps the forked
        processes; 1 hashes in this process only.
        """
        todo = [
            e for p in paths if (e := self.entries[p]).type is EntryType.FILE and e.digest is None
        ]
        if not todo or self._image is None:
            return
        image, read = self._image, self._read
        cache = self._cache
        file_ids = read.file_ids
        if cache is not None:
            missing = []
            for e in todo:
                fid = file_ids.get(e.path)
                hit = fid and cache.get(fid.dev, fid.ino, e.size, e.mtime_ns, fid.ctime_ns)
                if hit:
                    self.entries[e.path] = e.with_digest(hit)
                else:
                    missing.append(e)
            todo = missing
        if not todo:
            self._save_cache()
            return
        total = sum(e.size for e in todo)
        if progress:
            progress(0, total)
        nworkers = workers or self.workers or _parallel.workers()
        slices = _parallel.split(todo, nworkers)
        scale = total / max(1, sum(e.size for e in slices[0]))  # the parent's share stands for all
        done = 0

        def run(batch: list[Entry]) -> list[tuple[str, str | None, str | None]]:
            nonlocal done
            out = []
            for e in batch:
                digest, problem = hasher(e)
                out.append((e.path, digest, problem))
                if progress and batch is slices[0]:
                    done += e.size
                    progress(min(total, int(done * scale)), total)
            return out

        def hasher(entry: Entry) -> tuple[str | None, str | None]:
            return image.hash_file(entry, read)

        image.prepare()
        started = time.time_ns()  # before any byte is read: the digest cache's settle rule
        for results in _parallel.fork_map(run, slices, size=len(todo)):
            for path, digest, problem in results:
                self.hashed_files += 1
                if problem is not None:
                    read.warn(path, problem)
                if digest is None:
                    continue
                e = self.entries[path]
                self.entries[path] = e.with_digest(digest)
                fid = file_ids.get(path)
                if cache is not None and fid is not None:
                    cache.put(
                        fid.dev, fid.ino, e.size, e.mtime_ns, fid.ctime_ns, digest,
                        read_after_ns=started,
                    )  # fmt: skip
        if progress:
            progress(total, total)
        self._save_cache()

    def _save_cache(self) -> None:
        """Write the digest cache, without the files this read of the tree did not find."""
        cache = self._cache
        if cache is None:
            return
        if not self._cache_retained:
            cache.retain({(f.dev, f.ino) for f in self._read.file_ids.values()})
            self._cache_retained = True
        cache.save()

    @property
    def identity(self) -> str:
        """A digest of the whole image's content and metadata (computes every digest)."""
        self.fill_digests(self.entries)
        return identity_of(entry_row(self.entries[p]) for p in sorted(self.entries))

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path, *, keep: Capture | None = None) -> None:
        """Write the manifest (every digest computed) as zstd-compressed JSON, with the
        contents of the regular files `keep` selects (default: `saved_files()`, the
        package databases and unit files, so `packages` and `plan` can read them)."""
        front, back = self._parts(files=keep if keep is not None else saved_files())
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                # streamed a row at a time, the identity hashed as the rows go by (after
                # the entries, so one pass makes both): never the whole text in memory
                out = zstandard.ZstdCompressor(level=6).stream_writer(fh, closefd=False)
                with out:
                    out.write(_dumps(front)[:-1].encode("ascii") + b',"entries":[')
                    identity = _Identity()
                    for n, key in enumerate(sorted(self.entries)):
                        row = entry_row(self.entries[key])
                        out.write((b"," if n else b"") + _dumps(row).encode("ascii"))
                        identity.add(row)
                    tail = {"identity": identity.digest(), **back}
                    out.write(b"]," + _dumps(tail)[1:].encode("ascii"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def document(
        self, heads_of: Collection[str] | None = None, *, files: Capture | None = None
    ) -> dict[str, Any]:
        """The manifest as the JSON document `save` writes (every digest computed).

        `heads_of` limits the saved heads to those paths (a delta archive keeps only the
        changed files' heads); by default every file whose kind depends on content.
        `files` selects regular files whose contents the document carries (under
        "files", which makes it `imgdiff.manifest/2`); None carries none (version 1).
        """
        front, back = self._parts(heads_of, files)
        rows = [entry_row(self.entries[p]) for p in sorted(self.entries)]
        return {
            "schema": front["schema"],
            "info": front["info"],
            "identity": identity_of(rows),
            "warnings": front["warnings"],
            "entries": rows,
            **back,
        }

    def _parts(
        self, heads_of: Collection[str] | None = None, files: Capture | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A document's keys before its entries (schema, info, warnings) and after them
        (heads, files), every digest computed first; see `document`."""
        self.fill_digests(self.entries)
        heads = self._content_heads()
        if heads_of is not None:
            heads = {p: h for p, h in heads.items() if p in heads_of}
        kept = self._kept_for(files) if files is not None else None
        front = {
            "schema": SCHEMA if kept is None else SCHEMA_FILES,
            "info": self.info.to_json(),
            "warnings": [[w.path, w.message] for w in self.warnings],
        }
        back: dict[str, Any] = {
            "heads": {p: base64.b64encode(h).decode() for p, h in heads.items()}
        }
        if kept is not None:
            back["files"] = {p: _kept_json(data) for p, data in kept.items()}
        return front, back

    def _kept_for(self, files: Capture) -> dict[str, bytes | None] | None:
        """The contents of the regular files `files` selects, checked against their
        digests (None: unreadable, or changed since it was hashed); None when this is a
        saved manifest that kept no contents."""
        if self._image is None:
            if self._kept is None:
                return None
            return {p: data for p, data in self._kept.items() if files(p)}
        paths = [
            p for p, e in sorted(self.entries.items()) if e.type is EntryType.FILE and files(p)
        ]
        found = self.read_files(paths) if paths else {}
        kept: dict[str, bytes | None] = {}
        for path in paths:
            data = found.get(path)
            if data is not None and _digest.of_bytes(data) != self.entries[path].digest:
                self.warnings.append(ImageWarning(path, "changed while saved: contents not kept"))
                data = None
            kept[path] = data
        return kept

    @classmethod
    def load(cls, path: str | Path, limits: Limits | None = None) -> Manifest:
        """Read a manifest written by `save`.

        The file is untrusted: every field is type-checked (malformed files raise
        `BadInput` naming the key or row) and its size once decompressed is bounded by
        `limits` (`LimitExceeded`), so a small file cannot claim unbounded memory.
        """
        name = os.fspath(path)
        limits = limits or Limits()
        raw = _inflate(name, limits)
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadInput(name, f"not a readable manifest: {exc}") from None
        del raw  # the parsed document is all that is needed from here on
        return cls.from_document(doc, name, limits)

    @classmethod
    def from_document(
        cls, doc: Any, source: str, limits: Limits | None = None, *, kind: str = "manifest"
    ) -> Manifest:
        """A manifest from a parsed `document`, every field checked (`BadInput` naming
        `source` and the key or row at fault); `kind` names the container in `info.format`."""
        limits = limits or Limits()
        if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
            raise BadInput(source, f"not an {' or '.join(SCHEMAS)} file")
        try:
            entries, info, warnings, heads = _parse(doc, limits)
            kept = _parse_files(doc, entries, limits)
        except _OverLimit as exc:
            raise LimitExceeded(source, str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise BadInput(source, f"malformed manifest: {exc}") from None
        info = attrs.evolve(info, format=f"{kind}({info.format})")
        manifest = cls(entries, info, warnings)
        manifest.source = source
        manifest._heads = heads
        manifest._kept = kept
        return manifest


def _kept_json(data: bytes | None) -> str | dict[str, str] | None:
    """A kept file as JSON: its text when it is UTF-8 (most databases are, and text
    compresses better than base64 of it), else {"base64": …}; null if unreadable."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def saved_files() -> Capture:
    """The regular files whose contents `Manifest.save` keeps by default: those the
    package readers and the unit-file reader read, so `packages` and `plan` work from
    saved manifests as from the images."""
    # the later stages own what they read: asked here, when a manifest is saved
    from imgdiff.packages.view import capture_predicate
    from imgdiff.systemd.unitfiles import is_unit_file

    wants = capture_predicate()
    return lambda path: wants(path) or is_unit_file(path)


def _open(
    source: str | os.PathLike[str] | Image | Manifest, limits: Limits | None
) -> Image | Manifest:
    source = fspath(source)
    if not isinstance(source, str):
        return source
    if is_manifest_file(source):
        return Manifest.load(source, limits)
    return open_image(source, limits=limits)


_Portable = tuple[list[tuple[Any, ...]] | MutableMapping[str, Entry], tuple[Any, ...]]


def _portable(read: ReadResult) -> _Portable:
    """A read as builtin tuples (they pickle 5x faster than attrs instances), or its
    compact store (a large one as an `EntryTable`: a few bytes objects), for a worker to
    send back through a pipe."""
    warnings = [(w.path, w.message) for w in read.warnings]
    ids = [(p, *i) for p, i in read.file_ids.items()]
    rest = (read.format, warnings, read.heads, read.captured, ids)
    store = read.store
    if store is not None:
        if isinstance(store, EntryStore) and len(store) >= COMPACT_FROM:
            read.store = None  # converted here, so the store is freed before a pipe is read
            store = EntryTable.from_mapping(store, consume=True)
        return store, rest
    rows = [
        (e.path, e.type.value, e.mode, e.uid, e.gid, e.size, e.mtime_ns, e.target,
         e.hardlink, e.rdev, e.xattrs, e.digest, e.implicit)
        for e in read.entries
    ]  # fmt: skip
    return rows, rest


def _restored(portable: _Portable) -> ReadResult:
    rows, (fmt, warnings, heads, captured, ids) = portable
    if not isinstance(rows, list):
        read = _restored(([], (fmt, warnings, heads, captured, ids)))
        read.store = rows
        return read
    types = {t.value: t for t in EntryType}
    return ReadResult(
        fmt,
        [Entry(r[0], types[r[1]], *r[2:]) for r in rows],
        [ImageWarning(p, m) for p, m in warnings],
        heads,
        captured,
        {p: FileId(d, i, c) for p, d, i, c in ids},
    )


def identity_of(rows: Iterable[list[Any]]) -> str:
    """The identity digest of an image given its entry rows in path order."""
    identity = _Identity()
    for row in rows:
        identity.add(row)
    return identity.digest()


class _Identity:
    """`identity_of`, a row at a time: the digest of `json.dumps(rows)` (its default
    separators: rows joined by ", " inside brackets) without the whole text."""

    def __init__(self) -> None:
        self._hasher = _digest.new_hasher()
        self._hasher.update(b"[")
        self._first = True

    def add(self, row: list[Any]) -> None:
        text = json.dumps(row).encode("utf-8", "surrogateescape")
        self._hasher.update(text if self._first else b", " + text)
        self._first = False

    def digest(self) -> str:
        """The digest of the rows added (call once)."""
        self._hasher.update(b"]")
        return _digest.finish(self._hasher)


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # compact, as manifests are saved


def is_manifest_file(path: str) -> bool:
    """True if `path` is a file written by `Manifest.save`."""
    try:
        with open(open_regular_file(path), "rb") as fh:  # never a FIFO or a device
            if fh.read(4) != _ZSTD_MAGIC:
                return False
            fh.seek(0)
            head = zstandard.ZstdDecompressor().stream_reader(fh).read(32)
    except (OSError, zstandard.ZstdError):
        return False
    return head.startswith(b'{"schema":"imgdiff.manifest/')  # any version: load says which


def entry_row(e: Entry) -> list[Any]:
    """An entry as its saved row (`entry_from_row` reads it back)."""
    return [
        e.path,
        e.type.value,
        e.mode,
        e.uid,
        e.gid,
        e.size,
        e.mtime_ns,
        e.target,
        e.hardlink,
        list(e.rdev) if e.rdev else None,
        [[k, v.hex()] for k, v in e.xattrs],
        e.digest,
    ] + ([True] if e.implicit else [])  # a 13th column only where set: older files stay valid


# -- loading: a saved manifest is untrusted input ---------------------------------------

_CHUNK = 1 << 20  # decompressed bytes read at a time
_TOP_TYPES: Types = {
    "schema": str, "info": dict, "identity": str, "warnings": list, "entries": list,
    "heads": dict, "files": dict,
}  # fmt: skip
_INFO_TYPES: Types = {"path": str, "format": str, "entries": int, "files": int, "bytes": int}
_ENTRY_TYPES = {t.value: t for t in EntryType}
_DIGEST_RE = re.compile(re.escape(_digest.PREFIX) + "[0-9a-f]{64}")  # lower case, as written
_HEX_RE = re.compile("(?:[0-9a-fA-F]{2})*")
_MAX_ID = 1 << 32  # uid, gid
_MAX_SIZE = 1 << 63


class _OverLimit(Exception):
    """A bound of `Limits` exceeded while parsing; `load` raises it as `LimitExceeded`."""


def _inflate(name: str, limits: Limits) -> bytearray:
    """The decompressed JSON, read a bounded piece at a time and refused once it grows
    past what the compressed size justifies (or the absolute cap)."""
    try:
        with open(name, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            by_ratio = limits.max_manifest_ratio * size
            cap = min(limits.max_manifest_bytes, max(limits.manifest_ratio_floor, by_ratio))
            reader = zstandard.ZstdDecompressor().stream_reader(fh)
            out = bytearray()
            while chunk := reader.read(min(_CHUNK, cap + 1 - len(out))):
                out += chunk
                if len(out) > cap:
                    why = (
                        "the limit for any manifest"
                        if cap == limits.max_manifest_bytes
                        else f"the larger of {limits.manifest_ratio_floor} bytes and "
                        f"{limits.max_manifest_ratio} times its {size} compressed bytes: "
                        "a likely decompression bomb"
                    )
                    raise LimitExceeded(
                        name, f"manifest decompresses to more than {cap} bytes ({why})"
                    )
    except (OSError, zstandard.ZstdError) as exc:
        raise BadInput(name, f"not a readable manifest: {exc}") from None
    return out


def _parse(
    doc: dict[str, Any], limits: Limits
) -> tuple[dict[str, Entry], ImageInfo, list[ImageWarning], dict[str, bytes]]:
    """The contents of a manifest document, every field checked.

    Raises `TypeError`/`ValueError` naming the key or row at fault, `_OverLimit` for a
    bound of `limits`. ("heads" is optional: files written before it existed lack it;
    "warnings" and "identity" were never required either.)
    """
    check_types(doc, _TOP_TYPES, "top-level", required=("schema", "info", "entries"))
    if "identity" in doc and not _DIGEST_RE.fullmatch(doc["identity"]):
        raise ValueError("identity is not a blake3 digest")
    check_types(doc["info"], _INFO_TYPES, "info", required=_INFO_TYPES)
    for key in ("entries", "files", "bytes"):
        if doc["info"][key] < 0:
            raise ValueError(f"info key {key!r} is negative")
    info = ImageInfo(**doc["info"])
    rows: list[Any] = doc["entries"]
    if len(rows) > limits.max_entries:
        raise _OverLimit(f"more than {limits.max_entries} entries")
    entries: dict[str, Entry] = {}
    for i, row in enumerate(rows):
        try:
            entry = entry_from_row(row, limits)
            if entry.path in entries:
                raise ValueError("duplicate path")
        except (TypeError, ValueError, _OverLimit) as exc:
            where = f"entries[{i}]"
            if isinstance(row, list) and row and isinstance(row[0], str):
                where += f" ({_shown(row[0])})"
            kind = _OverLimit if isinstance(exc, _OverLimit) else ValueError
            raise kind(f"{where}: {exc}") from None
        entries[entry.path] = entry
    warnings = []
    for i, pair in enumerate(doc.get("warnings", [])):
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError(f"warnings[{i}] is not a [path, message] pair")
        path = _text(pair[0], f"warnings[{i}] path")
        warnings.append(ImageWarning(path, _text(pair[1], f"warnings[{i}] message")))
    heads = {}
    for path, text in doc.get("heads", {}).items():
        where = f"heads[{_shown(path)}]"
        if path not in entries:
            raise ValueError(f"{where} names no entry")
        _text(text, where)
        try:
            head = base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII string
            raise ValueError(f"{where} is not base64") from None
        if len(head) > _SAVED_HEAD:
            raise ValueError(f"{where} holds more than {_SAVED_HEAD} bytes")
        heads[path] = head
    return entries, info, warnings, heads


def _parse_files(
    doc: dict[str, Any], entries: dict[str, Entry], limits: Limits
) -> dict[str, bytes | None] | None:
    """The kept contents of an `imgdiff.manifest/2` document, each checked against its
    entry (a regular file of that size and digest); their total is bounded by
    `limits.max_capture_bytes`. None for version 1, which keeps none."""
    if doc["schema"] == SCHEMA:
        if "files" in doc:
            raise ValueError(f"an {SCHEMA} document has no 'files' (version 2 has)")
        return None
    if "files" not in doc:
        raise ValueError("top-level key 'files' is missing")
    kept: dict[str, bytes | None] = {}
    total = 0
    for path, value in doc["files"].items():
        where = f"files[{_shown(path)}]"
        entry = entries.get(path)
        if entry is None or entry.type is not EntryType.FILE:
            raise ValueError(f"{where} names no regular file of the entries")
        if value is None:
            kept[path] = None
            continue
        data = _kept_bytes(value, where)
        total += len(data)
        if total > limits.max_capture_bytes:
            raise _OverLimit(f"files hold more than {limits.max_capture_bytes} bytes")
        if len(data) != entry.size or _digest.of_bytes(data) != entry.digest:
            raise ValueError(f"{where} is not the content its entry's size and digest name")
        kept[path] = data
    return kept


def _kept_bytes(value: Any, where: str) -> bytes:
    """A kept file's bytes from its JSON: UTF-8 text, or {"base64": …}."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} holds a lone surrogate") from None
    if not isinstance(value, dict) or set(value) != {"base64"}:
        raise TypeError(f'{where} is neither null, a string nor {{"base64": string}}')
    text = _text(value["base64"], where)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII string
        raise ValueError(f"{where} is not base64") from None


def entry_from_row(row: Any, limits: Limits) -> Entry:
    """An entry from its saved row (see `entry_row`), every column checked."""
    if not isinstance(row, list):
        raise TypeError(f"a row is {_kind(row)}, not a list")
    if len(row) not in (12, 13):
        raise ValueError(f"a row of {len(row)} columns (12 or 13 expected)")
    path, etype, mode, uid, gid, size, mtime, target, hardlink, rdev, xattrs, digest = row[:12]
    most = limits.max_path_bytes
    if (
        # the common row, checked in one expression; anything else takes the long way,
        # which checks the same and says what is wrong
        (len(row) == 12 or type(row[12]) is bool)
        and type(path) is str
        and path.isascii()  # one byte per character, and no surrogate
        and len(path) <= most
        and canonical(path)
        and "\0" not in path
        and type(etype) is str
        and etype in _ENTRY_TYPES
        and type(mode) is int
        and 0 <= mode <= 0o7777
        and type(uid) is int
        and 0 <= uid < _MAX_ID
        and type(gid) is int
        and 0 <= gid < _MAX_ID
        and type(size) is int
        and 0 <= size < _MAX_SIZE
        and type(mtime) is int
        and (target is None or (type(target) is str and target.isascii() and len(target) <= most))
        and (
            hardlink is None
            or (type(hardlink) is str and hardlink.isascii() and len(hardlink) <= most)
        )
        and rdev is None
        and xattrs == []
        and (digest is None or (type(digest) is str and _DIGEST_RE.fullmatch(digest)))
    ):
        return Entry(path, _ENTRY_TYPES[etype], mode, uid, gid, size, mtime, target, hardlink,
                     None, (), digest, len(row) == 13 and row[12])  # fmt: skip
    if not _text(path, "path", most).startswith("/"):
        raise ValueError("path is not absolute")
    if "\0" in path:
        raise ValueError("path holds a NUL")
    if not canonical(path):
        raise ValueError("path is not a plain absolute path (an empty, '.' or '..' component)")
    if not isinstance(etype, str) or etype not in _ENTRY_TYPES:
        raise ValueError(f"type is not one of {', '.join(_ENTRY_TYPES)}")
    _int(mode, "mode", 0, 0o7777)
    _int(uid, "uid", 0, _MAX_ID - 1)
    _int(gid, "gid", 0, _MAX_ID - 1)
    _int(size, "size", 0, _MAX_SIZE - 1)
    _int(mtime, "mtime")  # any: before 1970 and far in the future both occur
    if target is not None:
        _text(target, "target", most)
    if hardlink is not None:
        _text(hardlink, "hardlink", most)
    if rdev is not None:
        if not isinstance(rdev, list) or len(rdev) != 2:
            raise TypeError("rdev is neither null nor a [major, minor] pair")
        _int(rdev[0], "rdev major", 0)
        _int(rdev[1], "rdev minor", 0)
        rdev = (rdev[0], rdev[1])
    if not isinstance(xattrs, list):
        raise TypeError(f"xattrs is {_kind(xattrs)}, not a list")
    pairs = []
    for j, pair in enumerate(xattrs):
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError(f"xattrs[{j}] is not a [name, hex value] pair")
        key = _text(pair[0], f"xattrs[{j}] name")
        if not isinstance(pair[1], str) or not _HEX_RE.fullmatch(pair[1]):
            raise ValueError(f"xattrs[{j}] value is not a hex string")
        pairs.append((key, bytes.fromhex(pair[1])))
    if digest is not None and not (isinstance(digest, str) and _DIGEST_RE.fullmatch(digest)):
        raise ValueError(f"digest is neither null nor {_digest.PREFIX}<64 hex digits>")
    implicit = False  # a 13th column is written only where it is true
    if len(row) == 13:
        if not isinstance(row[12], bool):
            raise TypeError(f"implicit (column 13) is {_kind(row[12])}, not a bool")
        implicit = row[12]
    return Entry(
        path,
        _ENTRY_TYPES[etype],
        mode,
        uid,
        gid,
        size,
        mtime,
        target,
        hardlink,
        rdev,
        tuple(sorted(pairs)),
        digest,
        implicit,
    )


def _kind(value: object) -> str:
    """What a JSON value is, for messages: "an integer", "null", …"""
    names = {bool: "a bool", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return "null" if value is None else names.get(type(value), "an object")


def _shown(text: str) -> str:
    """A string from the file, made safe and short for a one-line message."""
    safe = escape_path(text).encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return safe if len(safe) <= 120 else safe[:117] + "..."


def _int(value: Any, what: str, low: int | None = None, high: int | None = None) -> int:
    if type(value) is not int:  # JSON integers only: a bool is no int here
        raise TypeError(f"{what} is {_kind(value)}, not an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        shown = str(value) if abs(value) < 10**30 else "(huge)"
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{what} {shown} is out of range ({bounds})")
    return value


def _text(value: Any, what: str, max_bytes: int | None = None) -> str:
    """A string a file name (or message) can be: lone surrogates other than the
    `os.fsdecode` escapes of undecodable bytes are refused; `max_bytes` is a limit."""
    if not isinstance(value, str):
        raise TypeError(f"{what} is {_kind(value)}, not a string")
    try:
        encoded = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds a lone surrogate (no file name can)") from None
    if max_bytes is not None and len(encoded) > max_bytes:
        raise _OverLimit(f"{what} is longer than {max_bytes} bytes")
    return value
