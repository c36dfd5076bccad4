"""`check`: is this tree NEW, and does nothing running in it still use a replaced file?

The health check an orchestrator polls between hosts of a rolling update: the tree is
compared exactly with NEW (given as a delta archive, an image or a saved manifest;
imgdiff's own state directory aside, mtime alone not a difference) and the processes
whose root is the tree are checked with `stale`. It decides nothing and changes
nothing; `cli` turns "no" into exit 1.
"""

from __future__ import annotations

from imgdiff.archive.apply import describe, tree_changes, tree_manifest
from imgdiff.archive.format import as_manifest
from imgdiff.manifest import Manifest
from imgdiff.results import CheckResult
from imgdiff.runtime.snapshot import Snapshot
from imgdiff.runtime.stale import stale


def _target(source: str, use_cache: bool) -> Manifest:
    """NEW's manifest from a delta archive, an image or a saved manifest."""
    found = as_manifest(source)
    return found if isinstance(found, Manifest) else Manifest.read(found, use_cache=use_cache)


def check(
    tree: str, source: str, *, use_cache: bool = True, snapshot: Snapshot | None = None
) -> CheckResult:
    """Whether `tree` is exactly NEW and no process rooted in it runs replaced files."""
    want = _target(source, use_cache)
    with want, tree_manifest(tree, use_cache=use_cache) as live:  # closed: TREE may be unmounted
        found = tree_changes(live, want, source)
    files = describe(found)
    snap = snapshot if snapshot is not None else Snapshot.capture(tree, exclude_self=True)
    report = stale(snap, root=tree)  # the root checked, for its notes
    ok = not found and not report.processes
    return CheckResult(tree, source, ok, tuple(files), report, tuple(found))


__all__ = ["check"]
