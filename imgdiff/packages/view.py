"""The package view of one image, and the package-level delta between two images.

`PackageView.read` runs every manager's reader over an image (a manager the image does
not use contributes nothing); `compare_views` joins two views with the file-level delta:
which packages were added, removed, upgraded, downgraded or rebuilt at the same version,
which changed paths belong to no package (hand-made changes), and which changed files
no longer match the digest their package database records ("modified locally").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import cached_property

import attrs

from imgdiff.errors import BadInput, Unsupported
from imgdiff.manifest import Manifest
from imgdiff.model import Change, EntryType, ImageWarning, Status
from imgdiff.packages import dpkg, pip, rpm
from imgdiff.packages.base import Package, PackageDB, PathResolver, Reader
from imgdiff.results import Delta, LocalModification, PackageChange, PackageDelta


@attrs.frozen
class Manager:
    """What the view needs of one package manager's module, typed (no name lookups)."""

    name: str
    wants: Callable[[str], bool]  # the files a streaming reader should keep for it
    compare_versions: Callable[[str, str], int]
    read: Reader


REGISTRY: tuple[Manager, ...] = (
    Manager("dpkg", dpkg.wants, dpkg.compare_versions, dpkg.read_dpkg),
    Manager("rpm", rpm.wants, rpm.compare_versions, rpm.read_rpm),
    Manager("pip", pip.wants, pip.compare_versions, pip.read_pip),
)
MANAGERS = tuple(m.name for m in REGISTRY)
_BY_NAME = {m.name: m for m in REGISTRY}


def capture_predicate() -> Callable[[str], bool]:
    """True for files any package reader needs: what streaming readers should keep."""
    dpkg_wants, rpm_wants, pip_wants = (m.wants for m in REGISTRY)

    def wants(path: str) -> bool:  # called for every archive member: no generator here
        return dpkg_wants(path) or rpm_wants(path) or pip_wants(path)

    return wants


def version_order(manager: str) -> Callable[[str, str], int]:
    """The version comparison of a manager: dpkg's, rpm's or PEP 440."""
    return _BY_NAME[manager].compare_versions


class PackageView:
    """All package databases of one image, with a path → owners index."""

    def __init__(self, dbs: Sequence[PackageDB], unread: Sequence[ImageWarning] = ()) -> None:
        self.dbs = tuple(dbs)
        self.unread = tuple(unread)  # databases that could not be read at all, and why

    @classmethod
    def read(cls, manifest: Manifest, *, only: Collection[str] | None = None) -> PackageView:
        """Read every manager's database found inside the image.

        `only`: the paths whose owners will be asked (`owners` is exact for those); the
        packages then list only files among them, with no digests, and reading costs
        less (see `base.Reader`). Give a set: it is looked up once per listed path. A
        database that cannot be read at all is then a warning in `unread`, not an error.
        """
        resolver = PathResolver(manifest)
        dbs = []
        unread = []
        for manager in REGISTRY:
            try:
                db = manager.read(manifest, resolver, only=only)
            except BadInput as exc:
                if only is None:
                    raise  # the packages themselves are asked for: no answer without them
                # owners only annotate a file delta that is exact without them
                why = f"{exc.reason}: the owners it names are not known"
                unread.append(ImageWarning(exc.entry or "/", why))
                continue
            if db is not None:
                dbs.append(db)
        return cls(dbs, unread)

    @property
    def packages(self) -> Iterable[Package]:
        """Every package of every manager."""
        for db in self.dbs:
            yield from db.packages

    @property
    def warnings(self) -> tuple[ImageWarning, ...]:
        """What the readers could not read exactly."""
        return tuple(w for db in self.dbs for w in db.warnings)

    @cached_property
    def _owners(self) -> dict[str, tuple[Package, ...]]:
        index: dict[str, list[Package]] = {}
        for pkg in self.packages:
            for path in pkg.files:
                index.setdefault(path, []).append(pkg)
        return {k: tuple(v) for k, v in index.items()}

    def owners(self, path: str) -> tuple[Package, ...]:
        """The packages that list `path` (normalised image path)."""
        return self._owners.get(path, ())

    @cached_property
    def config_paths(self) -> frozenset[str]:
        """Paths some package marks as configuration."""
        return frozenset(p for pkg in self.packages for p in pkg.config_files)

    def reverse_depends(self, manager: str, name: str) -> tuple[Package, ...]:
        """Packages of the same manager that depend on `name`."""
        return tuple(p for p in self.packages if p.manager == manager and name in p.depends)


def _pairs(old: PackageView, new: PackageView) -> list[tuple[Package | None, Package | None]]:
    """Installed packages of both images, paired: by exact key first; then, among those
    left, by lineage (a site directory's Python version left out), then by name where the
    manager has an arch (dpkg amd64 -> all, rpm x86_64 -> noarch is an upgrade, as the
    managers take it): each only when each image has exactly one package of it, so
    Multi-Arch: same packages and side-by-side interpreters still pair by exact key."""
    olds = [p for p in old.packages if p.installed]
    news = [p for p in new.packages if p.installed]
    new_by = {(p.manager, p.key): p for p in news}
    pairs: list[tuple[Package | None, Package | None]] = []
    left_old = []
    for o in olds:
        n = new_by.pop((o.manager, o.key), None)
        if n is None:
            left_old.append(o)
        else:
            pairs.append((o, n))
    left_new = list(new_by.values())
    identities: tuple[Callable[[Package], str], ...] = (
        lambda p: p.lineage,
        lambda p: p.name if p.arch and not p.location else p.key,
    )
    for ident in identities:
        counts: dict[tuple[str, str, str], int] = {}
        for side, pkgs in (("o", olds), ("n", news)):
            for p in pkgs:
                counts[side, p.manager, ident(p)] = counts.get((side, p.manager, ident(p)), 0) + 1
        single_new = {
            (p.manager, ident(p)): p for p in left_new if counts["n", p.manager, ident(p)] == 1
        }
        still_old = []
        for o in left_old:
            n = (
                single_new.pop((o.manager, ident(o)), None)
                if counts["o", o.manager, ident(o)] == 1
                else None
            )
            if n is None:
                still_old.append(o)
            else:
                pairs.append((o, n))
                left_new.remove(n)
        left_old = still_old
    pairs.extend((o, None) for o in left_old)
    pairs.extend((None, n) for n in left_new)
    return pairs


def compare_views(
    old: PackageView, new: PackageView, delta: Delta, new_manifest: Manifest | None = None
) -> PackageDelta:
    """Join two package views with the file-level delta between their images."""
    changed = {c.path for c in delta.changes}
    changes = []
    pairs = _pairs(old, new)
    pairs.sort(key=lambda pair: _order(pair[1] or pair[0]))
    for o, n in pairs:
        pkg = n or o
        assert pkg is not None
        files = set(o.files if o else ()) | set(n.files if n else ())
        paths = tuple(sorted(files & changed))
        if o is None:
            kind = "added"
        elif n is None:
            kind = "removed"
        else:
            order = version_order(pkg.manager)(o.version, n.version)
            kind = "upgraded" if order < 0 else "downgraded" if order > 0 else "rebuilt"
            if kind == "rebuilt" and not paths:
                continue  # same version, same files: unchanged
        rdeps = tuple(sorted({p.key for p in new.reverse_depends(pkg.manager, pkg.name)}))
        changes.append(
            PackageChange(
                manager=pkg.manager,
                name=pkg.name,
                arch=pkg.arch,
                change=kind,
                old_version=o.version if o else None,
                new_version=n.version if n else None,
                paths=paths,
                reverse_depends=rdeps,
                location=pkg.location,
            )
        )
    unowned = tuple(
        c.path
        for c in delta.changes
        if c.entry.type is not EntryType.DIR and not old.owners(c.path) and not new.owners(c.path)
    )
    local: tuple[LocalModification, ...] = ()
    unchecked: tuple[ImageWarning, ...] = ()
    if new_manifest is not None:
        local, unchecked = _modified_locally(new, delta, new_manifest)
    return PackageDelta(tuple(changes), unowned, local, old.warnings + new.warnings + unchecked)


def _order(pkg: Package | None) -> tuple[str, str, str]:
    assert pkg is not None
    return pkg.manager, pkg.lineage, pkg.key


_HASHES = {
    "md5": hashlib.md5,
    "sha256": hashlib.sha256,
    "sha1": hashlib.sha1,
    "sha512": hashlib.sha512,
}


def _modified_locally(
    view: PackageView, delta: Delta, manifest: Manifest
) -> tuple[tuple[LocalModification, ...], tuple[ImageWarning, ...]]:
    """The changed files whose content is not what their package records; a saved
    manifest holds no such content, and a warning says they were not checked."""
    recorded: dict[str, list[tuple[Package, str]]] = {}
    for pkg in view.packages:
        for path, digest in pkg.file_digests:
            recorded.setdefault(path, []).append((pkg, digest))
    paths = [
        c.path
        for c in delta.changes
        if c.status is not Status.REMOVED and c.entry.type is EntryType.FILE and c.path in recorded
    ]
    if paths and not manifest.has_contents:
        files = f"{len(paths)} changed file" + ("" if len(paths) == 1 else "s")
        why = f"{files} not checked against their packages' digests (it keeps no contents)"
        return (), (ImageWarning(manifest.info.path, f"saved manifest: {why}"),)
    contents = manifest.read_files(paths) if paths else {}
    out = []
    for path in paths:
        data = contents.get(path)
        if data is None:
            continue
        for pkg, digest in recorded[path]:
            algo, _, want = digest.partition(":")
            make = _HASHES.get(algo)
            if make is None:
                continue
            if make(data, usedforsecurity=False).hexdigest() != want:
                out.append(LocalModification(path, pkg.manager, pkg.key, digest))
    return tuple(out), ()


def annotate_owners(delta: Delta, old: Manifest, new: Manifest) -> Delta:
    """The delta with each change naming the packages that own its path, reading from
    each image's databases only what that takes (`PackageView.read`'s `only`). An image
    without readable databases (a saved manifest without them) names no owners, as
    `pipeline.read_update` does."""
    removed = {c.path for c in delta.changes if c.new is None}
    present = {c.path for c in delta.changes if c.new is not None}
    views = []
    for manifest, only in ((old, removed), (new, present)):
        try:
            if not manifest.has_databases:
                raise Unsupported("saved manifest: no package databases read")
            views.append(PackageView.read(manifest, only=only))
        except Unsupported:
            views.append(PackageView(()))
    annotated = annotate(delta, views[0], views[1])
    unread = views[0].unread + views[1].unread
    return attrs.evolve(annotated, warnings=annotated.warnings + unread) if unread else annotated


def annotate(delta: Delta, old: PackageView, new: PackageView) -> Delta:
    """The delta with each change naming the packages that own its path."""

    def owners(change: Change) -> tuple[str, ...]:
        view = new if change.new is not None else old
        return tuple(f"{p.manager}:{p.key}" for p in view.owners(change.path))

    def named(change: Change) -> Change:
        found = owners(change)  # unchanged: the same record (a million unowned cost none)
        return change if found == change.packages else attrs.evolve(change, packages=found)

    changes = tuple(named(c) for c in delta.changes)
    return attrs.evolve(delta, changes=changes, owners=True)
