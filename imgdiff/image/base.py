"""What every image reader provides: `read` gives a `ReadResult` (entries, warnings, heads,
captured contents); the reader says how digests are made; `Limits` bound hostile input.

Readers never extract to disk and never raise `OSError` upward: malformed or hostile
input becomes `BadInput` (naming the file and entry) or a recorded `ImageWarning`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, MutableMapping
from typing import TYPE_CHECKING, NamedTuple

import attrs

from imgdiff.errors import LimitExceeded
from imgdiff.model import Entry, ImageWarning

if TYPE_CHECKING:
    from imgdiff.cache import DigestCache

HEAD_BYTES = 4096
CONTENT_MAGICS = (b"\x7fELF", b"#!")


class FileId(NamedTuple):
    """Identity of a file on a mounted filesystem, for the digest cache."""

    dev: int
    ino: int
    ctime_ns: int


@attrs.frozen
class Limits:
    """Safety bounds for untrusted input; exceeding one raises `LimitExceeded`."""

    max_entries: int = 10_000_000
    max_path_bytes: int = 16_384
    max_depth: int = 2048
    max_member_bytes: int = 1 << 40  # one tar member (1 TiB)
    max_total_bytes: int = 1 << 42  # all uncompressed bytes read from one archive (4 TiB)
    max_ratio: int = 1_000  # uncompressed/compressed, enforced once past ratio_floor
    # member names / archive bytes read, past ratio_floor: names are held in memory, and a
    # compressed archive of long similar names would otherwise cost gigabytes per megabyte
    max_names_ratio: int = 64
    # sparse holes hashed as zeros (about 7 GB/s) before max_ratio applies to them too
    hole_floor: int = 16 << 30
    ratio_floor: int = 64 << 20
    max_header_bytes: int = 1 << 20  # one PAX header or GNU long name
    max_layers: int = 1_000
    max_capture_bytes: int = 1 << 30  # file contents kept from streamed archives (package DBs)
    # A saved manifest's JSON may decompress to max_manifest_ratio times the file's size,
    # or to manifest_ratio_floor when that is more, and never past max_manifest_bytes.
    # Real roots compress 3-5x; 60,000 empty files with one mtime ~100x.
    max_manifest_ratio: int = 250
    manifest_ratio_floor: int = 64 << 20
    max_manifest_bytes: int = 4 << 30  # ~10 million entries, as max_entries


Capture = Callable[[str], bool]
"""Selects the regular files whose contents a read should keep (package databases, units)."""


@attrs.define(eq=False)
class ReadResult:
    """Everything one read of an image produced; the caller owns it once `read` returns.

    `heads` holds the leading bytes of files whose kind depends on content (ELF, "#!"),
    kept by streaming readers because their content cannot be read a second time
    cheaply; `captured` the contents of the files `capture` selected; `file_ids` the
    identity of each regular file a directory walk saw, for the digest cache and to
    notice a file replaced before it is hashed. A reader that keeps its entries compact
    (`imgdiff._entrytable`) hands them over as `store`, by path, and leaves `entries`
    empty; `all_entries` and `count` read either.
    """

    format: str
    entries: list[Entry] = attrs.Factory(list)
    warnings: list[ImageWarning] = attrs.Factory(list)
    heads: dict[str, bytes] = attrs.Factory(dict)
    captured: dict[str, bytes] = attrs.Factory(dict)
    file_ids: dict[str, FileId] = attrs.Factory(dict)
    store: MutableMapping[str, Entry] | None = None
    # (entries read, archive bytes consumed), called now and then while reading, for a display
    progress: Callable[[int, int], None] | None = None

    def all_entries(self) -> Iterable[Entry]:
        """Every entry read, from `store` or `entries` (made one by one from a store)."""
        return self.store.values() if self.store is not None else self.entries

    def count(self) -> int:
        """How many entries were read."""
        return len(self.store) if self.store is not None else len(self.entries)

    def warn(self, path: str, message: str) -> None:
        """Record something read inexactly, to be reported beside the result."""
        self.warnings.append(ImageWarning(path, message))


class Image:
    """Base class of the readers in `imgdiff.image`: each says how its digests are made.

    A reader holds no state of a read: `read` returns a fresh `ReadResult`, and the
    methods that need what a read found (`hash_file`, `head`, `read_files`) are handed it.
    """

    format = "unknown"
    # True when reading fills every regular file's digest (a stream is read once and
    # hashed on the way); False when digests are computed later, on demand, by `hash_file`
    digests_on_read = True
    # True when `open_file` gives descriptors on the image's files (a directory read in place)
    opens_files = False

    def __init__(self, path: str, *, limits: Limits | None = None) -> None:
        self.path = path
        self.limits = limits or Limits()

    def read(
        self, capture: Capture | None = None, progress: Callable[[int, int], None] | None = None
    ) -> ReadResult:
        """Every path in the image once (the root itself excluded), with what came along.
        `progress` is called now and then with (entries read, archive bytes consumed)."""
        result = ReadResult(self.format, progress=progress)
        self._read(result, capture)
        if progress is not None:
            progress(result.count(), self.size)
        return result

    @property
    def size(self) -> int:
        """The bytes a read consumes when known beforehand (an archive's size), else 0."""
        return 0

    def _read(self, result: ReadResult, capture: Capture | None) -> None:
        raise NotImplementedError

    def hash_file(self, entry: Entry, read: ReadResult) -> tuple[str | None, str | None]:
        """(digest, None) for a regular file read without one, or (None, why not).

        Records nothing, so forked workers may call it.
        """
        return entry.digest, None if entry.digest is not None else "content unavailable"

    def open_file(self, entry: Entry, read: ReadResult) -> int | None:
        """A read-only descriptor on the very regular file the read recorded (the caller
        closes it), for comparing content in place; None when this reader keeps no files
        to open, or this one cannot be opened as recorded (`hash_file` then says why).

        Records nothing, so forked workers may call it.
        """
        return None

    def prepare(self) -> None:
        """Get ready for `hash_file` calls from several workers (open what they share)."""

    def digest_cache(self) -> DigestCache | None:
        """The persistent digest cache for this image, if its files have stable identities."""
        return None

    def head(self, entry: Entry, read: ReadResult) -> bytes | None:
        """Up to `HEAD_BYTES` leading bytes of a regular file, if known or cheaply read."""
        return read.heads.get(entry.path)

    def read_files(self, paths: Collection[str], read: ReadResult) -> dict[str, bytes]:
        """Contents of the given regular files (absent or non-file paths are left out).

        Streaming readers answer from what `read` captured and stream the archive once
        more for anything else, keeping what that finds in `read.captured`.
        """
        wanted = set(paths)
        missing = wanted - read.captured.keys()
        if missing:
            again = self.read(missing.__contains__)
            # a hard link's member carries no content: capture its whole group, once more
            groups = {e.hardlink for e in again.all_entries() if e.path in missing and e.hardlink}
            if groups and not missing <= again.captured.keys():
                linked = {e.path for e in again.all_entries() if e.hardlink in groups}
                again = self.read((missing | linked).__contains__)
            read.captured.update((p, again.captured[p]) for p in missing if p in again.captured)
        return {p: read.captured[p] for p in wanted if p in read.captured}

    def close(self) -> None:
        """Release open descriptors; what was read stays valid."""

    def limit(self, message: str, entry: str | None = None) -> LimitExceeded:
        """The error for a safety bound this image exceeds."""
        return LimitExceeded(self.path, message, entry)

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
