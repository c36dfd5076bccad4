"""`Delta`: the exact file-level difference between two manifests.

A path is added, removed or modified; a modification names the aspects that differ
(content, mode, owner, type, target, xattrs). A different mtime alone is not a change and
is only counted. Content is compared exactly: sizes first (a different size is a
different content, no hashing), then the same-size pairs by digest or byte for byte, in
parallel (`_samecontent`). Two files whose content could not be read are never reported
equal: the pair is reported modified and the reason is kept as a warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import attrs

from imgdiff._entrytable import EntryTable, Merged
from imgdiff._samecontent import differing
from imgdiff.manifest import Manifest, ProgressFn
from imgdiff.model import Aspect, Change, Entry, EntryType, ImageWarning, Status, unread_paths
from imgdiff.results import Delta, DeltaStats

Classifier = Callable[[Change], str]


def _meta_aspects(a: Entry, b: Entry, links: bool = False) -> list[Aspect]:
    aspects = []
    if a.type is not b.type:
        aspects.append(Aspect.TYPE)
    if a.mode != b.mode and EntryType.SYMLINK not in (a.type, b.type):
        aspects.append(Aspect.MODE)  # a symlink's mode means nothing on Linux (always 0777)
    if a.uid != b.uid or a.gid != b.gid:
        aspects.append(Aspect.OWNER)
    if a.type is b.type:
        if a.type is EntryType.SYMLINK and a.target != b.target:
            aspects.append(Aspect.TARGET)
        elif a.type is EntryType.FILE and a.size != b.size:
            aspects.append(Aspect.CONTENT)
        elif a.rdev != b.rdev:
            aspects.append(Aspect.CONTENT)  # device numbers are a device node's content
    if a.xattrs != b.xattrs:
        aspects.append(Aspect.XATTRS)
    if links and a.type is b.type is EntryType.FILE and a.hardlink != b.hardlink:
        aspects.append(Aspect.HARDLINK)  # groups are named by their smallest path
    return aspects


def _order(aspects: list[Aspect]) -> tuple[Aspect, ...]:
    rank = list(Aspect)
    return tuple(sorted(set(aspects), key=rank.index))


def compare(
    old: Manifest,
    new: Manifest,
    *,
    classify: Classifier | None = None,
    progress: ProgressFn | None = None,
    links: bool = False,
) -> Delta:
    """The delta from `old` to `new`; `classify` names the kind of each change. `links`
    also counts a file whose hard-link group differs (`Aspect.HARDLINK`), as a check that
    a tree is exactly an image needs; a delta of images does not (same bytes, metadata)."""
    pending: dict[str, list[Aspect]] = {}
    modified: dict[str, tuple[list[Aspect], Entry, Entry]] = {}
    unchanged = mtime_only = 0
    olds, news = old.entries, new.entries

    def settle(path: str, aspects: list[Aspect], a: Entry, b: Entry) -> None:
        """Count a pair whose aspects are all known: modified, mtime only, or the same."""
        nonlocal unchanged, mtime_only
        if aspects:
            modified[path] = aspects, a, b
        elif a.mtime_ns != b.mtime_ns:
            mtime_only += 1
        else:
            unchanged += 1

    merged = _merged(olds, news)
    if merged is not None:
        unchanged, mtime_only = merged.unchanged, merged.mtime_only
    both: Iterable[tuple[str, Entry, Entry]] = (
        merged.both
        if merged is not None
        else ((path, a, b) for path, a in olds.items() if (b := news.get(path)) is not None)
    )
    for path, a, b in both:
        aspects = _meta_aspects(a, b, links)
        same_size_files = a.type is EntryType.FILE and b.type is EntryType.FILE and a.size == b.size
        if same_size_files and (a.digest is None or b.digest is None or a.digest != b.digest):
            pending[path] = aspects  # content still to compare
            continue
        settle(path, aspects, a, b)
    if pending:
        # same-size pairs: by digest, or byte for byte (`_samecontent`); unreadable is
        # never "equal". The pairs reported show both digests: those are filled in.
        differ = differing(old, new, list(pending), progress)
        for path, aspects in pending.items():
            if path in differ:
                aspects.append(Aspect.CONTENT)
            settle(path, aspects, olds[path], news[path])
        shown = [path for path in pending if path in modified]
        old.fill_digests(shown)
        new.fill_digests(shown)
        for path in shown:  # the entries now with their digests
            modified[path] = modified[path][0], olds[path], news[path]

    unchanged, mtime_only = _unread_pairs(old, new, modified, unchanged, mtime_only)

    changes: list[Change] = []
    if merged is not None:
        changes += (Change(p, Status.REMOVED, (), a, None) for p, a in merged.removed)
        changes += (Change(p, Status.ADDED, (), None, b) for p, b in merged.added)
    else:
        for path, a in olds.items():
            if path not in news:
                changes.append(Change(path, Status.REMOVED, (), a, None))
        for path, b in news.items():
            if path not in olds:
                changes.append(Change(path, Status.ADDED, (), None, b))
    for path, (aspects, a, b) in modified.items():
        changes.append(Change(path, Status.MODIFIED, _order(aspects), a, b))
    changes.sort(key=lambda c: c.path)
    if classify is not None:
        for i, c in enumerate(changes):  # in place: never two changes of a path held at once
            changes[i] = attrs.evolve(c, kind=classify(c))
    stats = _stats(old, new, changes, unchanged, mtime_only)
    # each side's once: a file that cannot be read is warned about at each attempt
    warnings = tuple(dict.fromkeys(old.warnings)) + tuple(dict.fromkeys(new.warnings))
    warnings += tuple(
        ImageWarning(c.path, "ELF headers are malformed: classified elf-unparseable")
        for c in changes
        if c.kind == "elf-unparseable"
    )
    return Delta(old.info, new.info, tuple(changes), stats, warnings)


def _unread_pairs(
    old: Manifest,
    new: Manifest,
    modified: dict[str, tuple[list[Aspect], Entry, Entry]],
    unchanged: int,
    mtime_only: int,
) -> tuple[int, int]:
    """Pairs a reader could not see whole (a directory's entries, a symlink's target) are
    never proven the same, as unreadable files are not: each becomes modified. Returns the
    counts of unchanged and mtime-only pairs without them."""
    for path in sorted(unread_paths(old.warnings) | unread_paths(new.warnings)):
        a, b = old.entries.get(path), new.entries.get(path)
        if a is None or b is None:
            continue  # added or removed: reported as such
        aspect = Aspect.TARGET if a.type is b.type is EntryType.SYMLINK else Aspect.CONTENT
        if path in modified:
            aspects = modified[path][0]
            if Aspect.CONTENT not in aspects and Aspect.TARGET not in aspects:
                aspects.append(aspect)
            continue
        if a.mtime_ns != b.mtime_ns:
            mtime_only -= 1
        else:
            unchanged -= 1
        modified[path] = [aspect], a, b
    return unchanged, mtime_only


def _merged(olds: Mapping[str, Entry], news: Mapping[str, Entry]) -> Merged | None:
    """Both sides' sorted columns merged (equal records counted, not made into entries),
    or None when they are not both `EntryTable`s that can be merged."""
    if isinstance(olds, EntryTable) and isinstance(news, EntryTable) and olds.mergeable(news):
        return olds.merge(news)
    return None


def _top(path: str) -> str:
    parts = path.split("/", 2)
    return "/" + parts[1] if len(parts) > 2 else "/"


def _stats(
    old: Manifest, new: Manifest, changes: list[Change], unchanged: int, mtime_only: int
) -> DeltaStats:
    count: Counter[Status] = Counter()
    nbytes: Counter[Status] = Counter()
    by_top: dict[str, Counter[str]] = {}
    by_kind: Counter[str] = Counter()
    changed_files = changed_bytes = 0
    for c in changes:
        e = c.entry
        size = e.size if e.type is EntryType.FILE else 0
        count[c.status] += 1
        nbytes[c.status] += size
        by_top.setdefault(_top(c.path), Counter())[c.status.value] += 1
        by_kind[c.kind] += 1
        if c.status is not Status.REMOVED and c.new is not None and c.new.type is EntryType.FILE:
            changed_files += 1
            changed_bytes += c.new.size
    files = max(new.info.files, 1)
    size = max(new.info.bytes, 1)
    return DeltaStats(
        added=count[Status.ADDED],
        removed=count[Status.REMOVED],
        modified=count[Status.MODIFIED],
        unchanged=unchanged,
        mtime_only=mtime_only,
        added_bytes=nbytes[Status.ADDED],
        removed_bytes=nbytes[Status.REMOVED],
        modified_bytes=nbytes[Status.MODIFIED],
        share_files=round(changed_files / files, 6),
        share_bytes=round(changed_bytes / size, 6),
        by_top={k: dict(v) for k, v in sorted(by_top.items())},
        by_kind=dict(sorted(by_kind.items())),
    )


def classifier(old: Manifest, new: Manifest) -> Classifier:
    """Name each change's kind from its path, type and (new, else old) leading bytes."""
    from imgdiff.classify import classify

    def kind(change: Change) -> str:
        side = new if change.new is not None else old
        entry = change.entry
        head = side.head(entry.path) if entry.type is EntryType.FILE else None
        return classify(entry.path, entry.type.value, head)

    return kind
