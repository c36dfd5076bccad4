"""What every image reader provides: a stream of `Entry` records, warnings, limits.

Readers never extract to disk and never raise `OSError` upward: malformed or hostile
input becomes `BadInput` (naming the file and entry) or a recorded `ImageWarning`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import NamedTuple

import attrs

from imgdiff.errors import LimitExceeded
from imgdiff.model import Entry, ImageWarning

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


class Image:
    """Base class of the readers in `imgdiff.image`."""

    format = "unknown"

    def __init__(self, path: str, *, limits: Limits | None = None) -> None:
        self.path = path
        self.limits = limits or Limits()
        self.warnings: list[ImageWarning] = []
        # first bytes of files whose kind depends on content (ELF, "#!"), kept by
        # streaming readers because their content cannot be read a second time cheaply
        self.heads: dict[str, bytes] = {}
        # contents of the regular files `capture` selects, kept by streaming readers so
        # package databases can be read without a second pass over the archive
        self.capture: Callable[[str], bool] | None = None
        self.captured: dict[str, bytes] = {}

    def entries(self) -> Iterator[Entry]:
        """Every path in the image once, in no particular order (the root itself excluded)."""
        raise NotImplementedError

    def digest(self, entry: Entry) -> str | None:
        """Digest of a regular file whose entry came without one; None if unreadable."""
        return entry.digest

    def head(self, entry: Entry) -> bytes | None:
        """Up to `HEAD_BYTES` leading bytes of a regular file, if known or cheaply read."""
        return self.heads.get(entry.path)

    def read_files(self, paths: Collection[str]) -> dict[str, bytes]:
        """Contents of the given regular files (absent or non-file paths are left out).

        Streaming readers answer from what they captured on the first pass and stream
        the archive once more for anything else.
        """
        wanted = set(paths)
        missing = wanted - self.captured.keys()
        if missing:
            before = self.capture
            self.capture = lambda p: p in missing or (before is not None and before(p))
            try:
                for _ in self.entries():
                    pass
            finally:
                self.capture = before
        return {p: self.captured[p] for p in wanted if p in self.captured}

    def close(self) -> None:
        """Release open descriptors; entries already yielded stay valid."""

    def warn(self, path: str, message: str) -> None:
        """Record something read inexactly, to be reported beside the result."""
        self.warnings.append(ImageWarning(path, message))

    def limit(self, message: str, entry: str | None = None) -> LimitExceeded:
        """The error for a safety bound this image exceeds."""
        return LimitExceeded(self.path, message, entry)

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
