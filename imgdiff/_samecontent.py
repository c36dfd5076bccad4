"""Whether files of the same size in two manifests hold the same bytes.

This module owns the choice of how: digests both sides already know (an archive's, the
digest cache's) are compared as they are; one inode both walks saw unchanged (a file
hard-linked into both trees) is the same content; files both read in place with no
digest cache to fill are compared byte for byte, the differing ones hashed from the bytes
just read (their digests are shown); everything else is hashed through
`Manifest.fill_digests`, which also records why a file could not be read. Otherwise a
pair is never called equal unless both sides were read in full as the walk recorded
them. It must not decide what a difference means (that is `delta`'s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from imgdiff import _digest, _parallel
from imgdiff.manifest import Manifest, ProgressFn

_WHOLE = 8 << 20  # files up to this size are read with one call per side
_CHUNK = 1 << 20
# the outcome of one pair read in place: (path, differs, old digest, new digest); differs
# None means "not compared" (unopenable, replaced, or its size changed): hashed instead
_Outcome = tuple[str, bool | None, str | None, str | None]


def differing(
    old: Manifest, new: Manifest, paths: Sequence[str], progress: ProgressFn | None = None
) -> set[str]:
    """The `paths` (regular files of the same size on both sides) whose content differs,
    or could not be read on either side (never equal by default)."""
    out: set[str] = set()
    unknown: list[str] = []
    for path in paths:
        a, b = old.known_digest(path), new.known_digest(path)
        if a is not None and b is not None:
            if a != b:
                out.add(path)
        elif (fid := old.file_id(path)) is None or fid != new.file_id(path):
            unknown.append(path)
        # else: one inode seen by both walks, unchanged between them (dev, ino and ctime
        # alike): the same bytes, as `diff -r` says of a file hard-linked into both trees
    if unknown and old.reads_in_place and new.reads_in_place:
        unknown = _compare_in_place(old, new, unknown, out, progress)
        progress = None  # the bar counted the bytes compared; the rest is a few files
    if unknown:
        old.fill_digests(unknown, progress=_half(progress, 0))
        new.fill_digests(unknown, progress=_half(progress, 1))
        for path in unknown:
            a, b = old.entries[path].digest, new.entries[path].digest
            if a is None or b is None or a != b:
                out.add(path)
    return out


def _compare_in_place(
    old: Manifest, new: Manifest, paths: list[str], out: set[str], progress: ProgressFn | None
) -> list[str]:
    """Compare pairs byte for byte (in forked workers, as hashing is); add the differing
    ones to `out` with their digests filled in. Returns the pairs not compared."""
    sizes = [old.entries[p].size for p in paths]
    total = sum(sizes) * 2
    work = sorted(zip(paths, sizes, strict=True), key=lambda ps: ps[1], reverse=True)
    slices = _parallel.split(work, old.workers or new.workers or _parallel.workers())
    share = total / max(1, 2 * sum(size for _, size in slices[0]))
    done = 0
    if progress:
        progress(0, total)

    def run(batch: list[tuple[str, int]]) -> list[_Outcome]:
        nonlocal done
        results = []
        for path, size in batch:
            results.append(_compare_pair(old, new, path, size))
            if progress and batch is slices[0]:
                done += 2 * size
                progress(min(total, int(done * share)), total)
        return results

    left = []
    for results in _parallel.fork_map(run, slices, size=len(paths)):
        for path, differs, a, b in results:
            if differs is None:
                left.append(path)
                continue
            old.hashed_files += 1
            new.hashed_files += 1
            if differs:
                out.add(path)
                if a is not None and b is not None:
                    old.entries[path] = old.entries[path].with_digest(a)
                    new.entries[path] = new.entries[path].with_digest(b)
    if progress:
        progress(total, total)
    return sorted(left)


def _compare_pair(old: Manifest, new: Manifest, path: str, size: int) -> _Outcome:
    """One pair, read from offset 0 to one byte past `size` on each side."""
    fa = old.open_file(path)
    if fa is None:
        return path, None, None, None
    try:
        fb = new.open_file(path)
        if fb is None:
            return path, None, None, None
        try:
            return _compare_fds(path, fa, fb, size)
        except OSError:
            return path, None, None, None  # hashing says what went wrong
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _compare_fds(path: str, fa: int, fb: int, size: int) -> _Outcome:
    if size <= _WHOLE:
        a, b = os.pread(fa, size + 1, 0), os.pread(fb, size + 1, 0)
        if len(a) != size or len(b) != size:
            return path, None, None, None  # changed since the walk
        if a == b:
            return path, False, None, None
        return path, True, _digest.of_bytes(a), _digest.of_bytes(b)
    offset = 0
    while True:
        a, b = os.pread(fa, _CHUNK, offset), os.pread(fb, _CHUNK, offset)
        if a != b:
            break
        if not a:  # the end of both: equal if it is where the walk saw it
            return (path, False, None, None) if offset == size else (path, None, None, None)
        offset += len(a)
        if offset > size:
            return path, None, None, None  # grew since the walk
    da, na = _digest.of_fd(fa, size)
    db, nb = _digest.of_fd(fb, size)
    if na != size or nb != size:
        return path, None, None, None
    return path, True, da, db


def _half(progress: ProgressFn | None, which: int) -> Callable[[int, int], None] | None:
    """One side's share of a bar that counts both sides' bytes."""
    if progress is None:
        return None
    totals = [0, 0]
    dones = [0, 0]

    def report(done: int, total: int) -> None:
        dones[which], totals[which] = done, total
        progress(sum(dones), sum(totals))

    return report
