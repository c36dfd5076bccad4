"""The stages run in order: read two images once, compare them, and (for a plan) join the
delta with the live processes and decide.

This module owns the order of the stages and what each reads: `diff` (file-level delta),
`read_update`/`package_diff` (plus the package-level delta) and `plan_update` (the whole
job, returning a `Plan`). It holds no logic of its own stages: comparing is `delta`'s,
packages are `packages.view`'s, evidence is `impact`'s, the decision is `plan`'s; it
never prints.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from imgdiff._progress import ReadCounts
from imgdiff.archive.format import as_manifest, is_delta
from imgdiff.delta import classifier, compare
from imgdiff.errors import Unsupported
from imgdiff.fs.imagepaths import ImagePaths
from imgdiff.fs.inputs import directory, fspath
from imgdiff.manifest import Manifest, ProgressFn
from imgdiff.model import ImageWarning
from imgdiff.results import (
    Delta,
    Drift,
    Impact,
    PackageDelta,
    Plan,
    ProcessImpact,
    Reason,
    ReasonCode,
    Verdict,
)

if TYPE_CHECKING:
    from imgdiff.hostreport import HostReport
    from imgdiff.impact import ConfigSources, ImageEvidence, NewResolution
    from imgdiff.packages.view import PackageView
    from imgdiff.plan import Policy
    from imgdiff.runtime.snapshot import Snapshot

__all__ = ["STAGES", "Update", "diff", "package_diff", "plan_update", "read_update"]

ImageArg = str | os.PathLike[str] | Manifest  # an image's path (any form), or its manifest


def _close_opened(given: tuple[str | Manifest, str | Manifest], read: tuple[Manifest, ...]) -> None:
    """Close the manifests read here from paths (a caller's own manifests stay open)."""
    for arg, manifest in zip(given, read, strict=True):
        if not isinstance(arg, Manifest):
            manifest.close()


def _read(
    old: str | Manifest,
    new: str | Manifest,
    *,
    use_cache: bool,
    progress: ProgressFn | None,
    capture: Callable[[str], bool] | None = None,
    classify: bool = True,
    workers: int | None = None,
    reading: ReadCounts | None = None,
) -> tuple[Manifest, Manifest, Delta]:
    """Both images read once (files `capture` selects kept from streamed archives), and
    their delta, each change's kind named unless `classify` is false. `workers` caps the
    forked processes (1: none)."""
    if isinstance(new, str) and is_delta(new) and not (isinstance(old, str) and is_delta(old)):
        # NEW is a delta archive: its files are read through OLD (see archive.image)
        from imgdiff.archive.image import delta_as_new

        om = (
            old
            if isinstance(old, Manifest)
            else Manifest.read(
                old, use_cache=use_cache, capture=capture, workers=workers, progress=reading
            )
        )
        nm = delta_as_new(new, om)
    else:
        # a delta archive as OLD stands for its NEW (its manifest: no contents)
        om, nm = Manifest.read_pair(
            as_manifest(old),
            as_manifest(new),
            use_cache=use_cache,
            capture=capture,
            workers=workers,
            progress=reading,
        )
    delta = compare(om, nm, classify=classifier(om, nm) if classify else None, progress=progress)
    return om, nm, delta


def diff(
    old: ImageArg,
    new: ImageArg,
    *,
    use_cache: bool = True,
    classify: bool = True,
    owners: bool = False,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    reading: ReadCounts | None = None,
) -> Delta:
    """Read two images (or manifests) and return their delta, classified. `owners`
    names the packages owning each changed path (as `package_diff`'s delta does, reading
    from the package databases only what that takes). `workers` caps the forked
    processes (default: the CPUs available; 1: none, for threaded callers). `progress`
    is told the bytes hashed and `reading` counts the entries read, for a display."""
    old, new = fspath(old), fspath(new)
    capture = None
    if owners:
        from imgdiff.packages.view import capture_predicate

        capture = capture_predicate()
    om, nm, delta = _read(
        old,
        new,
        use_cache=use_cache,
        progress=progress,
        capture=capture,
        classify=classify,
        workers=workers,
        reading=reading,
    )
    try:
        if not owners:
            return delta
        from imgdiff.packages.view import annotate_owners

        return annotate_owners(delta, om, nm)
    finally:
        _close_opened((old, new), (om, nm))


@attrs.frozen
class Update:
    """Both images of an update, read once: manifests, file delta, package delta."""

    old: Manifest
    new: Manifest
    delta: Delta
    packages: PackageDelta
    old_view: PackageView = attrs.field(eq=False)
    new_view: PackageView = attrs.field(eq=False)

    def close(self) -> None:
        """Release what both images hold open (`Manifest.close`)."""
        self.old.close()
        self.new.close()


def read_update(
    old: ImageArg,
    new: ImageArg,
    *,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    capture: Callable[[str], bool] | None = None,
    workers: int | None = None,
    reading: ReadCounts | None = None,
) -> Update:
    """Read two images once: the file-level delta (owners named) and the package-level
    delta. `capture` selects more files to keep from streamed archives (beside the
    package databases). A manifest saved without package databases (version 1, a delta
    archive's) gives an empty view, and a warning says so."""
    old, new = fspath(old), fspath(new)
    # the package stages are imported when used: `imgdiff diff --no-packages` starts small
    from imgdiff.packages.view import PackageView, annotate, capture_predicate, compare_views

    wants = capture_predicate()
    both = wants if capture is None else (lambda p: wants(p) or capture(p))
    om, nm, delta = _read(
        old,
        new,
        use_cache=use_cache,
        progress=progress,
        capture=both,
        workers=workers,
        reading=reading,
    )
    views = []
    notes: list[ImageWarning] = []
    for m in (om, nm):
        try:
            if not m.has_databases:
                raise Unsupported("saved manifest: no package databases read")
            views.append(PackageView.read(m))
        except Unsupported as exc:
            views.append(PackageView(()))
            notes.append(ImageWarning(m.info.path, str(exc)))
    pdelta = compare_views(views[0], views[1], delta, nm)
    return Update(
        om,
        nm,
        annotate(delta, views[0], views[1]),
        attrs.evolve(pdelta, warnings=pdelta.warnings + tuple(notes)),
        views[0],
        views[1],
    )


def package_diff(
    old: ImageArg,
    new: ImageArg,
    *,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    reading: ReadCounts | None = None,
) -> tuple[Delta, PackageDelta]:
    """The file-level delta (owners named) and the package-level delta of two images."""
    old, new = fspath(old), fspath(new)
    update = read_update(
        old, new, use_cache=use_cache, progress=progress, workers=workers, reading=reading
    )
    _close_opened((old, new), (update.old, update.new))
    return update.delta, update.packages


STAGES = (
    ("delta", "reading and comparing the images"),
    ("packages", "reading OLD's package databases"),
    ("unit-files", "reading unit files"),
    ("snapshot", "reading /proc"),
    ("impact", "joining processes with the changes"),
    ("drift", "checking the live root against OLD"),
    ("verdict", "deciding"),
)


class _Stages:
    """Seconds per stage; each stage announced as it starts, for progress displays."""

    def __init__(self, announce: Callable[[str], None] | None) -> None:
        self.seconds: dict[str, float] = {}
        self.announce = announce
        self.t = time.perf_counter()
        if announce is not None:
            announce(STAGES[0][1])

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.t
        self.t = now
        names = [name for name, _ in STAGES]
        following = names.index(stage) + 1
        if self.announce is not None and following < len(STAGES):
            self.announce(STAGES[following][1])


def plan_update(
    old: str | os.PathLike[str],
    new: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] = "/",
    snapshot: str | os.PathLike[str] | None = None,
    policy: Policy | None = None,
    spool: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    on_stage: Callable[[str], None] | None = None,
    exclude_self: bool = False,
    workers: int | None = None,
    reading: ReadCounts | None = None,
) -> Plan:
    """The whole job: delta of OLD→NEW, the processes of `root` (live, or a saved
    snapshot), their impact, and the verdict. A saved snapshot cannot be looked into: its
    processes' import graphs and ELF closures are read from OLD's files (the host runs
    them) when OLD is a directory, and otherwise those processes are uninspected (the
    policy decides); the verdict says which. `on_stage` is told what each stage does as
    it starts (for a progress display); `exclude_self` leaves the calling process out of
    the snapshot (the CLI does); `workers` caps the forked processes (1: none, for
    threaded callers). A `root` that is not a directory is `BadInput`."""
    from imgdiff.drift import check_drift
    from imgdiff.hostreport import load_host
    from imgdiff.impact import NewResolution, assess
    from imgdiff.packages.view import PackageView
    from imgdiff.plan import Policy, decide
    from imgdiff.runtime._procfs import boot_id
    from imgdiff.runtime.snapshot import Snapshot

    old, new, snapshot, spool = fspath(old), fspath(new), fspath(snapshot), fspath(spool)
    root = directory(root)
    clock = _Stages(on_stage)
    with contextlib.ExitStack() as opened:  # the images read here are closed after
        om, nm, delta = _read(
            old,
            new,
            use_cache=use_cache,
            progress=progress,
            capture=plan_capture(),
            workers=workers,
            reading=reading,
        )
        opened.callback(om.close)
        opened.callback(nm.close)
        clock.lap("delta")
        # only OLD's packages matter here (conffiles of what runs, the drift's versions): the
        # package-level delta is `imgdiff packages`' job
        old_view = PackageView.read(om) if om.has_databases else None
        clock.lap("packages")
        units = read_units(om, nm, old_view)
        unit_deps, removed_units, enabling, configs = (
            units.dependencies,
            units.removed,
            units.enabling,
            units.configs,
        )
        if units.warnings:
            delta = attrs.evolve(delta, warnings=(*delta.warnings, *units.warnings))
        clock.lap("unit-files")
        live = snapshot is None
        snap, report = (
            (Snapshot.capture(root, spool=spool, exclude_self=exclude_self, workers=workers), None)
            if live
            else load_host(str(snapshot))
        )
        clock.lap("snapshot")
        policy = policy or Policy()
        # a saved snapshot's programs are read from OLD's files, the ones the host runs
        paths = ImagePaths(om.entries, nm.entries)
        # where NEW's loader finds what the closures need: NEW's own files when it is a
        # directory, else the delta's added files by name
        new_tree = nm.info.path if nm.info.format == "dir" and nm.has_contents else None
        new_lookup = NewResolution(delta, new_tree, paths.spellings)
        opened.callback(new_lookup.close)
        from_image = None if live else old_evidence(om, delta, policy, paths, new_lookup)
        with contextlib.closing(from_image) if from_image else contextlib.nullcontext():
            impact = assess(
                delta, snap, root=root, configs=configs, import_graphs=live, elf_needed=live,
                stale=live, untraced=policy.untraced, paths=paths, new=new_lookup,
                image=from_image.redacting() if from_image and report and report.redacted
                else from_image,
            )  # fmt: skip
            impact = added_unit_config(impact, delta, snap, configs)
        clock.lap("impact")
        # with allow_drift a drift changes nothing: the tree is not walked. A snapshot saved
        # on another machine (or before a reboot) says nothing of the tree here, and a host
        # report states its own tree (against OLD or not)
        here = live or (report is None and snap.boot_id == boot_id())
        drift = (
            None
            if policy.allow_drift
            else check_drift(
                root, om, nm, use_cache=use_cache, ignore=policy.drift_ignore, old_view=old_view
            )
            if here
            else report_drift(report, om)
        )
        clock.lap("drift")
        running = {p.unit for p in snap.processes if p.unit}
        enabling = {u: link for u, link in enabling.items() if u not in running}
        verdict = hint_drift(
            decide(delta, impact, policy, drift, unit_deps, removed_units, enabling), root
        )
        clock.lap("verdict")
        if not live:
            assert from_image is not None
            notes = saved_notes(from_image, report, here, drift, policy)
            verdict = attrs.evolve(verdict, reasons=(*verdict.reasons, *notes))
        return Plan(verdict, delta, impact, drift, clock.seconds)


def hint_drift(verdict: Verdict, root: str) -> Verdict:
    """The verdict, with a hint when the root that drifted is "/" (perhaps not the one
    meant)."""
    if root != "/" or ReasonCode.DRIFT not in verdict.reason_codes:
        return verdict
    hint = Reason(
        "OLD was compared with this host's own root (/): if OLD is live in a chroot "
        "or container, pass --root PATH; to patch a drifted root anyway, set "
        "allow_drift = true in the policy",
        ReasonCode.DRIFT_HINT,
    )
    return attrs.evolve(verdict, reasons=(*verdict.reasons, hint))


def old_evidence(
    om: Manifest,
    delta: Delta,
    policy: Policy,
    paths: ImagePaths | None = None,
    new: NewResolution | None = None,
) -> ImageEvidence:
    """Where a saved snapshot's import graphs and ELF closures come from: OLD's own files
    when OLD was read as a directory just now, else nowhere (its processes are unknown)."""
    from imgdiff.impact import ImageEvidence

    tree = om.info.format == "dir" and om.has_contents
    return ImageEvidence(
        delta,
        om.info.path if tree else None,
        untraced_strict=policy.untraced == "strict",
        why_not=f"OLD ({om.info.format}) is not a directory: its programs' files were not read",
        paths=paths,
        new=new,
    )


def report_drift(report: HostReport | None, old: Manifest | str) -> Drift | None:
    """A host report's tree state as the drift from OLD (a manifest, or its identity),
    when it was taken against OLD (same identity); None when it says nothing of OLD."""
    tree = report.tree if report is not None else None
    if tree is None or tree.identity != (old if isinstance(old, str) else old.identity):
        return None
    return Drift(tree.differs, False, tree.packages)


def saved_notes(
    from_image: ImageEvidence,
    report: HostReport | None,
    here: bool,
    drift: Drift | None,
    policy: Policy,
) -> list[Reason]:
    """The verdict's notes on a saved snapshot or host report: where its graphs and
    closures came from, and whether its root was checked for drift (and how)."""
    if from_image.root is not None or from_image.shared:
        text = "saved snapshot: import graphs and ELF closures were read from OLD's files"
    else:
        text = (
            "saved snapshot: import graphs and ELF closures were not computed "
            f"({from_image.why_not}); processes that need them are uninspected"
        )
    notes = [Reason(text, ReasonCode.SAVED_SNAPSHOT)]
    if report is not None and report.redacted:
        notes.append(
            Reason(
                "host report redacted: configuration named only on command lines is not seen",
                ReasonCode.SAVED_SNAPSHOT,
            )
        )
    if here or policy.allow_drift or drift is not None:
        return notes
    if report is None:
        why = "saved snapshot of another machine or boot: its root was not checked for drift"
    elif report.tree is None:
        why = "host report without a tree state (report --against): drift not checked"
    else:
        why = (
            f"host report's tree state is against {report.tree.against}, not OLD: drift not checked"
        )
    notes.append(Reason(why, ReasonCode.DRIFT_NOT_CHECKED))
    return notes


@attrs.frozen
class Units:
    """What the plan reads from both images' unit files (and OLD's package view)."""

    dependencies: dict[str, set[str]] | None  # NEW's order (`unitfiles.dependencies`)
    removed: set[str]  # units OLD defines and NEW does not
    enabling: dict[str, str]  # unit -> the link by which NEW newly enables it
    configs: ConfigSources  # what the processes were started from (OLD's)
    warnings: tuple[ImageWarning, ...] = ()  # unit files not read (completely)


def read_units(om: Manifest, nm: Manifest, old_view: PackageView | None) -> Units:
    """Unit files of both images, read as `plan_update` reads them (the fleet shares it)."""
    from imgdiff.impact import ConfigSources
    from imgdiff.systemd import unitfiles

    deps = None
    removed: set[str] = set()
    enabling: dict[str, str] = {}
    old_u, new_u = unitfiles.ImageUnits.of(om), unitfiles.ImageUnits.of(nm)
    if om.has_databases and nm.has_databases:
        removed = old_u.names() - new_u.names()
        before = old_u.enabled()
        enabling = {u: link for u, link in new_u.enabled().items() if u not in before}
    big: dict[str, None] = {}
    notes: list[ImageWarning] = []
    if nm.has_databases:
        (files, unread), alias = new_u.read(), unitfiles.aliases(new_u.alias_links())
        deps = unitfiles.dependencies(files, alias)
        big.update(dict.fromkeys(unitfiles.oversized(files, alias).values()))
        notes += unread
    # what the processes were started from
    old_files, unread = old_u.read() if om.has_databases else ({}, ())
    configs = ConfigSources.read(old_files, old_view, unitfiles.aliases(old_u.alias_links()))
    notes += unread
    big.update(dict.fromkeys(configs.unread.values()))
    size = unitfiles.MAX_UNIT_BYTES >> 20
    notes += [
        ImageWarning(p, f"unit file over {size} MiB: only its first {size} MiB were read")
        for p in big
    ]
    return Units(deps, removed, enabling, configs, tuple(notes))


def added_unit_config(
    impact: Impact, delta: Delta, snap: Snapshot, configs: ConfigSources
) -> Impact:
    """`impact` with the processes of units whose configuration gained a file: a drop-in
    or an override NEW adds (`unitfiles.config_sources` names where one would go).
    `assess` weighs only what a process could be using, so an added file is never its
    evidence; the unit's next start reads it, so it is restarted after the reload."""
    from imgdiff.model import Kind, Status, Via
    from imgdiff.results import Evidence

    added = [c for c in delta.changes if c.status is Status.ADDED and c.kind is Kind.SYSTEMD_UNIT]
    if not added:
        return impact
    affected = {p.pid: p for p in impact.affected}
    want = os.path.realpath(impact.root) if impact.root != "/" else "/"
    for proc in snap.processes:
        if proc.unit is None or proc.root != want:
            continue
        name, named = configs.of_unit(proc.unit)
        sources = (*named, *configs.later(proc.unit))
        found = tuple(
            Evidence(c.path, Via.CONFIG, c.status, c.kind, f"applies to {name}")
            for c in added
            if any(c.path == s or (s.endswith("/") and c.path.startswith(s)) for s in sources)
        )
        if not found:
            continue
        before = affected.get(proc.pid)
        affected[proc.pid] = (
            attrs.evolve(before, evidence=(*before.evidence, *found))
            if before is not None
            else ProcessImpact(
                proc.pid, proc.start_time, proc.unit, proc.exe, proc.cmdline, found,
                init=proc.is_init, ppid=proc.ppid,
            )
        )  # fmt: skip
    return attrs.evolve(impact, affected=tuple(affected.values()))


def plan_capture() -> Callable[[str], bool]:
    """The files a plan reads beside the entries, kept from a streamed archive on its one
    pass: package databases and unit files."""
    from imgdiff.packages.view import capture_predicate
    from imgdiff.systemd import unitfiles

    wants = capture_predicate()
    return lambda p: wants(p) or unitfiles.is_unit_file(p)
