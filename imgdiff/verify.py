"""Is this tree the image it should be? A live tree compared with an image or manifest.

The check behind `imgdiff verify TREE IMAGE`, the plan's drift check (is the live root
still OLD?), and the last step of the plan → act → verify loop (after the update, is the
tree NEW, and do the planned units run it: `verify_restarted`). Paths a running system
changes by itself (`DRIFT_IGNORE`: state, local data, machine identity) are neither walked
nor counted, except the package databases below them, which are read so a caller can
tell which update the tree is at. It decides nothing about what to do: that is `plan`'s.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence

from imgdiff.archive.format import STATE_DIR, as_manifest
from imgdiff.delta import compare
from imgdiff.fs.inputs import fspath
from imgdiff.image._dir import DirImage
from imgdiff.manifest import Manifest
from imgdiff.model import Status
from imgdiff.results import StepAction, Verdict, Verification
from imgdiff.runtime.snapshot import Snapshot
from imgdiff.runtime.stale import stale

# state and local data (FHS), and the files a booted system writes for itself
DRIFT_IGNORE = (
    "/var/", "/tmp/", "/run/", "/home/", "/root/", "/srv/", "/mnt/", "/media/",  # noqa: S108
    "/usr/local/", "/lost+found/", "/proc/", "/sys/", "/dev/",
    "/etc/machine-id", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/adjtime",
    "/etc/mtab", "/etc/ssh/ssh_host_*",
)  # fmt: skip

# package databases under ignored trees are still read: they say which update a tree is at
DB_DIRS = ("/var/lib/dpkg", "/var/lib/rpm", "/usr/lib/sysimage/rpm")

# imgdiff's own state (`apply`'s journal, history, undo data) is never part of a tree,
# `--exact` or not; nor are the parents apply made for it where the image has none
_STATE_PARENTS = tuple(STATE_DIR[:i] for i, c in enumerate(STATE_DIR) if c == "/" and i)


class Ignore:
    """Matches paths against ignore patterns: "/dir/" a tree, a pattern with * ? [ an
    fnmatch pattern, anything else one path."""

    def __init__(self, patterns: Sequence[str], keep: Sequence[str] = ()) -> None:
        # directories walked even inside an ignored tree: package databases, and the
        # site directories holding an image's pip metadata (`keep`)
        self.keep = (*DB_DIRS, *(k.rstrip("/") for k in keep))
        self.trees = tuple(p for p in patterns if p.endswith("/"))
        self.globs = tuple(
            p for p in patterns if not p.endswith("/") and any(c in p for c in "*?[")
        )
        self.paths = frozenset(p for p in patterns if not p.endswith("/")) - set(self.globs)

    def __call__(self, path: str) -> bool:
        return (
            path in self.paths
            or path.startswith(self.trees)
            or path + "/" in self.trees
            or any(fnmatch.fnmatchcase(path, g) for g in self.globs)
        )

    def prune(self, path: str) -> bool:
        """True for a directory not worth walking: in an ignored tree, and no package
        database below. One path or a pattern ignores the directory, not what it holds."""
        in_tree = path.startswith(self.trees) or path + "/" in self.trees
        return in_tree and not any(
            d == path or d.startswith(path + "/") or path.startswith(d + "/") for d in self.keep
        )


def _own(ignore: Sequence[str], keep: Sequence[str] = ()) -> Ignore:
    return Ignore((*ignore, STATE_DIR + "/"), keep)


def read_tree(
    tree: str,
    ignore: Sequence[str] = DRIFT_IGNORE,
    *,
    use_cache: bool = True,
    keep: Sequence[str] = (),
) -> Manifest:
    """A live tree's manifest, without the trees `ignore` names (package databases, and
    the directories `keep` names, are walked all the same: they say what is installed)."""
    return Manifest.read(DirImage(tree, prune=_own(ignore, keep).prune), use_cache=use_cache)


def verify(
    tree: str | os.PathLike[str] | Manifest,
    image: str | os.PathLike[str] | Manifest,
    *,
    ignore: Sequence[str] = DRIFT_IGNORE,
    use_cache: bool = True,
) -> Verification:
    """Compare a directory `tree` with `image` (any image form, or a saved manifest).

    `tree` may be a manifest `read_tree` made, to compare one tree with several images.
    """
    tree, skip = fspath(tree), _own(ignore)
    image = as_manifest(fspath(image))  # a delta archive stands for its NEW
    if isinstance(tree, str) and isinstance(image, str):  # both read at once (forked)
        live, want = Manifest.read_pair(
            DirImage(tree, prune=skip.prune), image, use_cache=use_cache
        )
    else:
        live = tree if isinstance(tree, Manifest) else read_tree(tree, ignore, use_cache=use_cache)
        want = image if isinstance(image, Manifest) else Manifest.read(image, use_cache=use_cache)
    made = STATE_DIR in live.entries  # its parents, when the image lacks them, are apply's
    try:
        changes = compare(want, live, links=True).changes
    finally:  # what was opened here is closed (a tree on its own mount can be unmounted)
        for given, read in ((tree, live), (image, want)):
            if not isinstance(given, Manifest):
                read.close()
    differences = tuple(
        c
        for c in changes
        if not skip(c.path) and not (made and c.status is Status.ADDED and c.path in _STATE_PARENTS)
    )
    # the image as given (a saved manifest: its file, not the image it was made from)
    return Verification(live.info.path, want.source, differences, tuple(ignore), live)


def same_paths(tree: Manifest, image: Manifest, ignore: Sequence[str] = DRIFT_IGNORE) -> bool:
    """A quick necessary condition for `verify(...).matches`: the same paths exist."""
    skip = _own(ignore)
    return {p for p in tree.entries if not skip(p)} == {p for p in image.entries if not skip(p)}


def verify_restarted(verdict: Verdict, snapshot: Snapshot) -> tuple[str, ...]:
    """After acting on a plan: what still runs stale code among the planned steps.

    The loop is plan → act (restart the steps' units) → take a new live snapshot →
    `verify_restarted`; an empty answer means every planned unit and process now uses
    what is on disk. Each problem names the unit or pid and a stale path.
    """
    restart, stop = StepAction.RESTART, StepAction.STOP
    restarted = {s.unit for s in verdict.steps if s.unit and s.action is restart}
    stopped = {s.unit for s in verdict.steps if s.unit and s.action is stop}
    bare = {pid for s in verdict.steps if s.unit is None and s.action is restart for pid in s.pids}
    problems = [
        f"{p.unit}: pid {p.pid} still runs, though NEW has no such unit"
        for p in snapshot.processes
        if p.unit in stopped
    ]
    for proc in stale(snapshot).processes:
        if (proc.unit in restarted) or (proc.unit is None and proc.pid in bare):
            first = proc.reasons[0]
            problems.append(
                f"{proc.unit or f'pid {proc.pid}'}: pid {proc.pid} still uses {first.path} "
                f"({first.via}: {first.detail})"
            )
    return tuple(problems)
