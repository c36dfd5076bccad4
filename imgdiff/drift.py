"""Drift: is the live root still the OLD image the plan starts from?

A live root that matches neither OLD nor NEW is a box in an odd state: an intermediate
update was missed, or someone changed it by hand. The tree is compared with OLD through
`imgdiff.verify` (what a running system writes for itself left out), and its own package
databases say which packages it is behind or ahead on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from imgdiff.manifest import Manifest
from imgdiff.packages.view import PackageView, version_order
from imgdiff.results import MISSED_UPDATE, Drift
from imgdiff.verify import DB_DIRS, DRIFT_IGNORE, read_tree, same_paths, verify


def check_drift(
    root: str,
    old: str | Manifest,
    new: str | Manifest,
    *,
    use_cache: bool = True,
    ignore: Sequence[str] = DRIFT_IGNORE,
    old_view: PackageView | None = None,
) -> Drift:
    """Compare the live root (a directory) with OLD, and with NEW when it is not OLD.

    Paths `ignore` matches (see `Policy.drift_ignore`) do not count; its trees are not
    walked (package databases aside). When the live root differs, its installed packages
    are compared with `old_view` (OLD's package view, read from OLD when not given) to
    say whether it is behind OLD (a missed update) or ahead. Pass the manifests already
    read (as `plan_update` does) to read each image once.
    """
    # a saved manifest of that tree may be older than the tree: only a fresh read counts
    fresh = not isinstance(old, Manifest) or old.has_contents
    old_path = old.info.path if isinstance(old, Manifest) else old
    if fresh and os.path.isdir(old_path) and os.path.realpath(old_path) == os.path.realpath(root):
        return Drift((), False)  # OLD is the live tree itself, read just now
    old_m = old if isinstance(old, Manifest) else Manifest.read(old, use_cache=use_cache)
    if old_view is None and old_m.has_databases:
        old_view = PackageView.read(old_m)
    # what is installed is read whatever `ignore` skips: package databases (kept by
    # read_tree) and the site directories of OLD's pip metadata (/usr/local/...)
    sites = sorted({p.location for p in old_view.packages if p.location}) if old_view else []
    live = read_tree(root, ignore, use_cache=use_cache, keep=sites)
    found = tuple(c.path for c in verify(live, old_m, ignore=ignore).differences)
    live_view = PackageView.read(live)
    packages = _package_drift(live_view, old_view) if old_view else ()
    if packages and not found:
        # the files are OLD's but the databases say other packages are installed (a
        # database restored or updated alone): the box is not in OLD's state either
        found = _databases_differing(live, old_m)
    if not found:
        return Drift((), False)
    new_m = new if isinstance(new, Manifest) else Manifest.read(new, use_cache=use_cache)
    # the path sets settle most "is it NEW already?" questions without comparing each file
    from_new = None
    if same_paths(live, new_m, ignore):
        from_new = tuple(c.path for c in verify(live, new_m, ignore=ignore).differences)
    at_new = from_new == ()
    if at_new and new_m.has_databases:
        # NEW's files under a package database that is not NEW's (the inverse of the case
        # above): the box is not NEW either
        unlike = _package_drift(live_view, PackageView.read(new_m), _DATABASES, "NEW")
        if unlike:
            return Drift(found, False, packages, _databases_differing(live, new_m), unlike)
    if at_new:
        return Drift(found, True, packages)
    # an update applied in part: say what keeps it from NEW when that is the shorter list
    if from_new is None:
        from_new = tuple(c.path for c in verify(live, new_m, ignore=ignore).differences)
    return Drift(found, False, packages, from_new=from_new if len(from_new) < len(found) else ())


def _databases_differing(live: Manifest, image: Manifest) -> tuple[str, ...]:
    """The package databases that say other packages are installed than the image's
    (OLD's or NEW's) do (the package versions decide, not the bytes: dpkg rewrites its
    status for a hold)."""
    return tuple(d for d in DB_DIRS if d in live.entries or d in image.entries) or DB_DIRS[:1]


# the managers whose database is a directory of its own (DB_DIRS), not files among others
_DATABASES = frozenset({"dpkg", "rpm"})


def _package_drift(
    live: PackageView,
    old: PackageView,
    managers: frozenset[str] | None = None,
    image: str = "OLD",
) -> tuple[str, ...]:
    """Packages whose live version differs from `image`'s (`old`, of `managers` or all),
    behind (older) first."""
    have = {(p.manager, p.key): p.version for p in live.packages}
    want = {(p.manager, p.key): p.version for p in old.packages}
    if managers is not None:
        have = {k: v for k, v in have.items() if k[0] in managers}
        want = {k: v for k, v in want.items() if k[0] in managers}
    behind, other = [], []
    for manager, key in sorted(have.keys() | want.keys()):
        a, b = have.get((manager, key)), want.get((manager, key))
        name = f"{manager}:{key}"
        if a == b:
            continue
        if a is None:
            other.append(f"{name} {b} is in {image} but not installed live")
        elif b is None:
            other.append(f"{name} {a} is installed live but not in {image}")
        elif version_order(manager)(a, b) < 0:
            older = MISSED_UPDATE if image == "OLD" else "(live is older)"
            behind.append(f"{name} {a} live, {b} in {image} {older}")
        else:
            other.append(f"{name} {a} live, {b} in {image} (live is newer)")
    return (*behind, *other)
