"""The rpm reader's fallback: an sqlite rpm database read without the rpm library.

Where the rpm bindings are missing (or not wanted), the private copy of an image's
`rpmdb.sqlite` is opened read-only with the stdlib's `sqlite3`, and each `Packages.blob`
is parsed by `_rpm_header`. This module owns that path and the `Raw` record both readers
fill; it must not open anything but the private copy, and it reads nothing but sqlite
(an ndb or bdb database has no fallback: `rpm.py` says so in a warning).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import Any

import attrs

from imgdiff.errors import BadInput
from imgdiff.model import ImageWarning
from imgdiff.packages import _rpm_header as hdr

WANTED_TAGS = (hdr.NAME, hdr.VERSION, hdr.RELEASE, hdr.EPOCH, hdr.ARCH, hdr.OLDFILENAMES,
               hdr.FILEDIGESTS, hdr.FILEFLAGS, hdr.REQUIRENAME, hdr.DIRINDEXES,
               hdr.BASENAMES, hdr.DIRNAMES, hdr.FILEDIGESTALGO, hdr.SOURCERPM)  # fmt: skip


@attrs.frozen
class Raw:
    """One header's fields as either reader finds them, before normalisation."""

    hnum: int
    name: str
    version: str
    release: str
    epoch: int | None
    arch: str | None
    files: tuple[str, ...]
    flags: tuple[int, ...]
    digests: tuple[str, ...]
    digest_algo: int | None
    requires: tuple[str, ...]
    sourcerpm: str | None = None  # the source rpm's file name (`nginx-1.24.0-1.src.rpm`)


def sqlite_rows(
    tmp: str, has_wal: bool, columns: str, bad: Callable[[str], BadInput]
) -> list[tuple[Any, ...]]:
    """Rows of the private copy's `Packages` table, opened read-only.

    `immutable=1` makes SQLite skip locking and journals; with a WAL it would also ignore
    the WAL's committed pages, so a copied WAL is opened as a plain read-only database.
    """
    path = urllib.parse.quote(os.path.join(tmp, "rpmdb.sqlite"))
    uri = f"file:{path}?mode=ro" + ("" if has_wal else "&immutable=1")
    try:
        con = sqlite3.connect(uri, uri=True)
        try:
            kind = con.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchone()
            if kind is None or kind[0] != "table":
                raise bad("sqlite rpm database without a Packages table")
            query = f"SELECT {columns} FROM Packages ORDER BY hnum"  # noqa: S608 -- fixed columns
            return con.execute(query).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise bad(f"not a readable sqlite rpm database ({exc})") from None


def read_fallback(
    tmp: str,
    has_wal: bool,
    source: str,
    warnings: list[ImageWarning],
    bad: Callable[[str], BadInput],
) -> list[Raw]:
    raws = []
    for hnum, blob in sqlite_rows(tmp, has_wal, "hnum, blob", bad):
        if not isinstance(hnum, int) or not isinstance(blob, bytes):
            warnings.append(ImageWarning(source, f"package #{hnum!r}: not a header blob; skipped"))
            continue
        try:
            raws.append(raw_from_blob(hnum, blob))
        except hdr.HeaderError as exc:
            warnings.append(ImageWarning(source, f"package #{hnum}: {exc}; skipped"))
    return raws


def raw_from_blob(hnum: int, blob: bytes) -> Raw:
    h = hdr.Header(blob, WANTED_TAGS)
    name = h.first_string(hdr.NAME)
    version = h.first_string(hdr.VERSION)
    release = h.first_string(hdr.RELEASE)
    if name is None or version is None or release is None:
        raise hdr.HeaderError("no name, version or release")
    return Raw(
        hnum,
        name,
        version,
        release,
        h.first_int(hdr.EPOCH),
        h.first_string(hdr.ARCH),
        h.file_names(),
        h.ints(hdr.FILEFLAGS),
        h.strings(hdr.FILEDIGESTS),
        h.first_int(hdr.FILEDIGESTALGO),
        h.strings(hdr.REQUIRENAME),
        h.first_string(hdr.SOURCERPM),
    )


__all__ = ["WANTED_TAGS", "Raw", "raw_from_blob", "read_fallback", "sqlite_rows"]
