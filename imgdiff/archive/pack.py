"""`pack`: the delta archive of two images, with only what NEW has that OLD has not.

For every regular file of NEW whose bytes OLD does not already hold at the same path,
the archive carries the smallest of: a `copy` of an OLD file with the same digest
(renamed or duplicated content costs nothing), a zstd `patch` against OLD's file at the
same path (or, for a new path, OLD's file of the same name in the most similar
directory), or the whole file, zstd-compressed. Everything else (directories, symlinks,
metadata, removals) is in the header. The output is deterministic: the same two images
give the same bytes, whatever the number of workers. This module decides what goes in a
delta; the bytes are `format`'s.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import hdiffpatch
import zstandard

from imgdiff import _digest, _parallel
from imgdiff.archive.format import Header, Record, in_state_dir, keeps_file, write_header
from imgdiff.errors import BadInput, Unsupported, escape_path
from imgdiff.fs.inputs import fspath
from imgdiff.fs.outputs import writable
from imgdiff.image import Image
from imgdiff.manifest import Manifest
from imgdiff.model import Entry, EntryType
from imgdiff.results import PackResult

WHOLE_LEVEL = 19
PATCH_LEVEL = 19
_QUICK_LEVEL = 9  # the whole file at this level says whether a patch is worth keeping
_HDIFF_FROM = 16 << 10  # below this, HDiffPatch rarely beats zstd's patch (real pair: 0.01%)
_MAX_CHAIN_LOG = 22  # see _capped
_MAX_PATCH_BASE = 1 << 30  # zstd's window (2 GiB at most) must hold base and file
_SAME_FIELDS = ("type", "mode", "uid", "gid", "size", "mtime_ns", "target", "rdev", "xattrs",
                "digest", "hardlink")  # fmt: skip


def _same(a: Entry, b: Entry) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _SAME_FIELDS)


def creates_device(old: Entry | None, new: Entry) -> bool:
    """True if turning `old` into `new` needs a device node made (metadata alone does not)."""
    if new.type not in (EntryType.CHAR, EntryType.BLOCK):
        return False
    return old is None or old.type is not new.type or old.rdev != new.rdev


def _leader(entry: Entry) -> bool:
    """The member of a hard-link group that carries its content (groups are named by it)."""
    return entry.hardlink is None or entry.hardlink == entry.path


def pack(
    old: str | os.PathLike[str] | Image | Manifest,
    new: str | os.PathLike[str] | Image | Manifest,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Write the delta archive that turns OLD into NEW to `out`; returns its digest.
    An `out` that cannot be written is `BadInput` before anything is read."""
    old, new, out = fspath(old), fspath(new), writable(out)
    om, nm = Manifest.read_pair(old, new, workers=workers)
    try:
        return _write(om, nm, out, workers, progress)
    finally:  # the images read here from paths (a caller's image or manifest stays open)
        for given, read in ((old, om), (new, nm)):
            if isinstance(given, str):
                read.close()


def _write(
    om: Manifest,
    nm: Manifest,
    out: str,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> PackResult:
    for m in (om, nm):
        _leave_out_state(m)
    if not nm.has_contents:
        raise Unsupported(f"{escape_path(nm.source)}: a saved manifest holds no contents to pack")
    om.fill_digests(om.entries)
    nm.fill_digests(nm.entries)
    old_entries = {
        p: e for p, e in om.entries.items() if p not in nm.entries or not _same(e, nm.entries[p])
    }
    added = frozenset(p for p in nm.entries if p not in om.entries)
    for p in sorted(added | (old_entries.keys() & nm.entries.keys())):
        if creates_device(old_entries.get(p), nm.entries[p]):
            raise Unsupported(
                f"{escape_path(nm.source)}: {escape_path(p)}: a delta never creates device nodes"
            )
        was = old_entries.get(p)
        if nm.entries[p].type is EntryType.SOCKET and (
            was is None or was.type is not EntryType.SOCKET
        ):
            # a socket is made by the program that listens on it: apply cannot stage one
            raise Unsupported(
                f"{escape_path(nm.source)}: {escape_path(p)}: a delta never creates sockets"
            )
    jobs = _content_jobs(om, nm)
    done = 0

    # a streamed archive is read once more per batch of files, so a worker reads its whole
    # slice at once; directories are read a file at a time, holding one file and its base
    by_file = om.info.format == nm.info.format == "dir"

    def encode(batch: list[_Job]) -> list[tuple[str, str, bytes]]:
        nonlocal done
        out: list[tuple[str, str, bytes]] = []
        for part in ([job] for job in batch) if by_file else [batch]:
            new_data = _contents(nm, [p for p, _, copy_of in part if copy_of is None])
            old_data = _contents(om, [b for _, b, copy_of in part if copy_of is None and b])
            for path, base, copy_of in part:
                reference = old_data.get(base) if base is not None else None
                out.append((path, *_encode(new_data.get(path), reference, copy_of)))
                done += 1
                if progress is not None and batch is slices[0]:
                    progress(min(len(jobs), done * len(slices)), len(jobs))
        return out

    slices = _parallel.split(jobs, workers or _parallel.workers())
    encoded = sorted(
        (r for part in _parallel.fork_map(encode, slices, size=len(jobs)) for r in part),
        key=lambda r: r[0],
    )
    by_path = {j[0]: j for j in jobs}
    records = tuple(
        Record(p, enc, _base_of(by_path[p], enc), len(data)) for p, enc, data in encoded
    )
    header = Header(om.identity, nm.identity, nm, old_entries, added, records)
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            write_header(fh, header)
            for _, _, data in encoded:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest, size = _file_digest(str(out))
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for r in records:
        counts[r.encoding] = counts.get(r.encoding, 0) + 1
        sizes[r.encoding] = sizes.get(r.encoding, 0) + r.size
    return PackResult(
        str(out), digest, size, om.identity, nm.identity, counts, sizes,
        len(old_entries) + len(added),
    )  # fmt: skip


def _leave_out_state(m: Manifest) -> None:
    """Drop imgdiff's own state directory from an image (one taken from a host an apply
    updated has it): `apply` and `check` leave it out of the tree, so a delta carrying it
    would be refused or leave a tree `check` says is not NEW."""
    gone = [p for p in m.entries if in_state_dir(p)]
    if not gone:
        return
    linked = any(m.entries[p].hardlink is not None for p in gone)
    files = [m.entries[p] for p in gone if m.entries[p].type is EntryType.FILE]
    for p in gone:
        del m.entries[p]
    if linked:  # a group with members outside: named by its smallest remaining path
        groups: dict[str, list[str]] = {}
        for p, e in m.entries.items():
            if e.hardlink is not None:
                groups.setdefault(e.hardlink, []).append(p)
        for members in groups.values():
            name = min(members) if len(members) > 1 else None
            for p in members:
                if m.entries[p].hardlink != name:
                    m.entries[p] = attrs.evolve(m.entries[p], hardlink=name)
    m.info = attrs.evolve(
        m.info,
        entries=m.info.entries - len(gone),
        files=m.info.files - len(files),
        bytes=m.info.bytes - sum(e.size for e in files),
    )


_Job = tuple[str, str | None, str | None]  # path, patch base, OLD path with the same bytes


def _base_of(job: _Job, encoding: str) -> str | None:
    if encoding == "copy":
        return job[2]
    return job[1] if encoding in ("patch", "hdiff") else None


def _content_jobs(om: Manifest, nm: Manifest) -> list[_Job]:
    """The NEW files that need content, each with its candidate base and copy source."""
    by_digest: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    for p in sorted(om.entries):
        e = om.entries[p]
        if e.type is EntryType.FILE and e.digest is not None:
            by_digest.setdefault(e.digest, p)
            by_name.setdefault(posixpath.basename(p), []).append(p)
    jobs: list[_Job] = []
    for p in sorted(nm.entries):
        e = nm.entries[p]
        if e.type is not EntryType.FILE or not _leader(e):
            continue
        o = om.entries.get(p)
        if keeps_file(o, e):
            continue  # the very file is already there
        copy_of = by_digest.get(e.digest) if e.digest is not None else None
        base = p if o is not None and o.type is EntryType.FILE else _similar(p, by_name)
        jobs.append((p, base, copy_of))
    return jobs


def _similar(path: str, by_name: dict[str, list[str]]) -> str | None:
    """OLD's file of the same name whose directory shares the longest prefix with `path`'s."""
    candidates = by_name.get(posixpath.basename(path))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (len(posixpath.commonprefix([c, path])), c))


def _encode(data: bytes | None, reference: bytes | None, copy_of: str | None) -> tuple[str, bytes]:
    """The smallest encoding of a file's bytes: (encoding, record data).

    With a base, the zstd patch is compared with the whole file at a fast level, and the
    whole file is compressed hard only when it wins (on the real Debian pair: the same
    bytes within 0.02%, in 60% of the time of trying both hard); an HDiffPatch patch is
    tried too for files from 16 KiB, where it pays (executables and libraries).
    """
    if copy_of is not None:
        return "copy", b""
    assert data is not None  # _contents checked every file it was asked for
    if not reference or len(reference) > _MAX_PATCH_BASE or len(data) > _MAX_PATCH_BASE:
        return "zstd", whole_compressor(len(data)).compress(data)
    best = ("patch", patch_compressor(reference, len(data)).compress(data))
    if len(data) >= _HDIFF_FROM:
        binary = hdiffpatch.diff(reference, data, compression="lzma2", validate=False)
        if len(binary) < len(best[1]):
            best = ("hdiff", binary)
    if len(best[1]) > len(zstandard.ZstdCompressor(level=_QUICK_LEVEL).compress(data)):
        whole = whole_compressor(len(data)).compress(data)
        if len(whole) < len(best[1]):
            best = ("zstd", whole)
    return best


def _contents(m: Manifest, paths: list[str]) -> dict[str, bytes]:
    """The bytes of regular files, checked against the manifest's digests."""
    found = m.read_files(paths) if paths else {}
    for path in paths:
        data = found.get(path)
        entry = m.entries[path]
        if data is None or len(data) != entry.size or _digest.of_bytes(data) != entry.digest:
            raise BadInput(m.source, "changed or unreadable while the delta was made", path)
    return found


def window_log(base_size: int, size: int) -> int:
    """The zstd window that lets a patch reach back over the whole base."""
    return max(10, (base_size + size).bit_length())


def _capped(level: int, size: int, **extra: Any) -> zstandard.ZstdCompressionParameters:
    """`level`'s parameters for `size` bytes, with its match-finder tables capped.

    Level 19 sizes its chain and hash tables by the input: 64 + 16 MiB for a 7 MB file
    patched against its old version, most of a worker's peak memory. Capped at 4M and 2M
    entries (16 + 8 MiB) they cost nothing measurable on the real pair (the same bytes):
    where they bind (files over 1 MiB, executables and libraries) HDiffPatch's patch is
    15 to 55% smaller than zstd's anyway and is the one kept.
    """
    params = zstandard.ZstdCompressionParameters.from_level(level, source_size=size, **extra)
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=size,
        chain_log=min(params.chain_log, _MAX_CHAIN_LOG),
        hash_log=min(params.hash_log, _MAX_CHAIN_LOG - 1),
        **extra,
    )


def whole_compressor(size: int) -> zstandard.ZstdCompressor:
    """A compressor for a whole file of `size` bytes."""
    return zstandard.ZstdCompressor(compression_params=_capped(WHOLE_LEVEL, size))


def patch_compressor(reference: bytes, size: int) -> zstandard.ZstdCompressor:
    """A compressor that encodes a file against `reference` (a raw-content dictionary)."""
    params = _capped(
        PATCH_LEVEL, size, window_log=window_log(len(reference), size), enable_ldm=True
    )
    ref = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(dict_data=ref, compression_params=params)


def _file_digest(path: str) -> tuple[str, int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _digest.of_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


__all__ = ["PackResult", "creates_device", "pack", "patch_compressor", "window_log"]
