"""One host of a fleet: what single-host `plan` says for it, from its report.

This module owns `FleetContext` (everything the update itself determines, read once from
OLD and NEW: the delta, what names configuration, unit order, units removed and newly
enabled, the policy, and the import graphs and ELF closures read from OLD) and
`plan_host`, which judges one report against it exactly as `pipeline.plan_update` judges
a saved snapshot, without reading any image. It knows nothing of Dask: `engine` ships the
context to workers and calls `plan_host` there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from imgdiff.errors import BadInput, ImgdiffError
from imgdiff.fs.imagepaths import ImagePaths
from imgdiff.impact import ConfigSources, ImageEvidence
from imgdiff.plan import Policy
from imgdiff.results import Delta, Drift, Verdict
from imgdiff.runtime.snapshot import Process, Snapshot


@attrs.frozen(eq=False)
class FleetContext:
    """What every host's verdict shares, computed once on the client."""

    delta: Delta
    configs: ConfigSources
    unit_deps: Mapping[str, Iterable[str]] | None
    removed_units: frozenset[str]
    enabling: Mapping[str, str]
    policy: Policy
    old_identity: str  # OLD's manifest identity: a report's tree state is against it or not
    image: ImageEvidence  # graphs and closures from OLD (a shareable copy on workers)
    # the planning machine's boot: a plain snapshot of it has "/" checked here, as `plan`
    # does, once for all of them (`drift_here`, set when some host needs it)
    boot_id: str = ""
    drift_here: Drift | None = None
    # what a path names in OLD and NEW, through their symlinks (as plan_update's)
    paths: ImagePaths | None = None


@attrs.frozen
class HostVerdict:
    """One host's answer: its verdict, or the error that kept it from having one."""

    snapshot: str  # the input path as given
    host: str  # the hostname the report names ("" when it could not be read)
    verdict: Verdict | None
    error: str | None = None
    # the root differs from OLD (the drift the verdict weighed), or without one the
    # report's tree differs from the image it was checked against
    drifted: bool = False
    behind: tuple[str, ...] = ()  # packages the host is behind on (missed updates)
    running: tuple[str, ...] = ()  # units with processes on the host
    machine_id: str | None = None


def prepare(
    old: str, new: str, policy: Policy | None = None, *, use_cache: bool = True
) -> tuple[FleetContext, ImageEvidence, Callable[[], Drift]]:
    """Read OLD and NEW once: the context, the image evidence still open on OLD (fill it
    with `program_keys`' keys, then ship `context_with(...)`), and the check of this
    machine's root against them (for `drift_here`, when a plain snapshot of this boot
    is among the reports)."""
    from imgdiff.drift import check_drift
    from imgdiff.packages.view import PackageView
    from imgdiff.pipeline import _read, old_evidence, plan_capture, read_units
    from imgdiff.runtime._procfs import boot_id

    policy = policy or Policy()
    om, nm, delta = _read(old, new, use_cache=use_cache, progress=None, capture=plan_capture())
    # the same reads as plan_update's, in the same order
    old_view = PackageView.read(om) if om.has_databases else None
    units = read_units(om, nm, old_view)
    paths = ImagePaths(om.entries, nm.entries)
    image = old_evidence(om, delta, policy, paths)
    ctx = FleetContext(
        delta, units.configs, units.dependencies, frozenset(units.removed), units.enabling,
        policy, om.identity, image, boot_id(), paths=paths,
    )  # fmt: skip

    def check_here() -> Drift:
        return check_drift(
            "/", om, nm, use_cache=use_cache, ignore=policy.drift_ignore, old_view=old_view
        )

    return ctx, image, check_here


def context_with(ctx: FleetContext, image: ImageEvidence) -> FleetContext:
    """The context workers get: the image evidence as computed, without the open image."""
    return attrs.evolve(ctx, image=image.shareable())


def _key_process(doc: Any) -> Process | None:
    """The fields of a process the evidence keys depend on, read leniently (a bad
    document is reported when the host is planned, not here)."""
    if not isinstance(doc, dict):
        return None
    exe, cmdline, cwd = doc.get("exe"), doc.get("cmdline"), doc.get("cwd")
    if not isinstance(exe, str) or not isinstance(cmdline, list):
        return None
    if not all(isinstance(a, str) for a in cmdline):
        return None
    return Process(
        0, 0, 0, 0, "", exe, tuple(cmdline), cwd if isinstance(cwd, str) else None,
        str(doc.get("root", "/")), None, None, "", None, (), doc.get("traced") is True,
    )  # fmt: skip


def program_keys(
    paths: list[str], image: ImageEvidence
) -> tuple[set[tuple[object, ...]], set[str]]:
    """The evidence keys the processes of these reports need, and the boot ids of the
    plain snapshots among them (a quick read: JSON only)."""
    from imgdiff.hostreport import read_document
    from imgdiff.runtime.snapshot import SCHEMA as SNAPSHOT_SCHEMA

    keys: set[tuple[object, ...]] = set()
    boots: set[str] = set()
    for path in paths:
        try:
            doc = read_document(path)
        except BadInput:
            continue  # said when the host is planned
        if isinstance(doc, dict) and isinstance(doc.get("snapshot"), dict):
            doc = doc["snapshot"]
        elif isinstance(doc, dict) and doc.get("schema") == SNAPSHOT_SCHEMA:
            boots.add(str(doc.get("boot_id")))
        procs = doc.get("processes") if isinstance(doc, dict) else None
        for p in procs if isinstance(procs, list) else ():
            proc = _key_process(p)
            if proc is not None:
                keys.update(image.keys(proc))
    return keys, boots


def plan_host(ctx: FleetContext, path: str) -> HostVerdict:
    """What `imgdiff plan OLD NEW --root ROOT --snapshot PATH` says, ROOT being the
    report's root ("/" for a plain snapshot); a bad report is this host's error."""
    from imgdiff.hostreport import load_host

    try:
        snap, report = load_host(path)
    except BadInput as exc:
        return HostVerdict(path, "", None, str(exc))
    except (ImgdiffError, MemoryError, RecursionError) as exc:
        return HostVerdict(path, "", None, f"{path}: unreadable report: {exc}")
    root = report.root if report is not None else "/"
    try:
        verdict, drift = judge(ctx, snap, report, root)
    except Exception as exc:  # one odd report (or a bug it hits) never stops the fleet
        return HostVerdict(path, snap.host, None, f"{path}: cannot be planned: {exc!r}")
    tree = report.tree if report is not None else None
    # the drift the verdict weighed (this root walked here, or the report's own tree state
    # against OLD); else what the report says of its tree against another image
    if drift is not None:
        drifted, behind = bool(drift.differs), drift.behind
    else:
        drifted, behind = tree is not None and not tree.matches, tree.behind if tree else ()
    return HostVerdict(
        path,
        report.identity.hostname if report is not None else snap.host,
        verdict,
        None,
        drifted,
        behind,
        tuple(sorted({p.unit for p in snap.processes if p.unit and p.root == root})),
        report.identity.machine_id if report is not None else None,
    )


def judge(
    ctx: FleetContext, snap: Snapshot, report: Any, root: str
) -> tuple[Verdict, Drift | None]:
    """`plan_update`'s saved-snapshot path, on the shared context: the verdict, and the
    drift it weighed (None: not checked)."""
    from imgdiff.impact import assess
    from imgdiff.pipeline import added_unit_config, hint_drift, report_drift, saved_notes
    from imgdiff.plan import decide

    policy = ctx.policy
    image = ctx.image.redacting() if report is not None and report.redacted else ctx.image
    impact = assess(
        ctx.delta, snap, root=root, configs=ctx.configs, import_graphs=False,
        elf_needed=False, stale=False, untraced=policy.untraced, image=image, paths=ctx.paths,
    )  # fmt: skip
    impact = added_unit_config(impact, ctx.delta, snap, ctx.configs)
    # a plain snapshot of the planning machine's boot: its "/" was checked there
    here = report is None and snap.boot_id == ctx.boot_id
    if here and not policy.allow_drift and ctx.drift_here is None:
        raise RuntimeError("this machine's root was not checked for drift")
    drift = (
        None
        if policy.allow_drift
        else ctx.drift_here
        if here
        else report_drift(report, ctx.old_identity)
    )
    running = {p.unit for p in snap.processes if p.unit}
    enabling = {u: link for u, link in ctx.enabling.items() if u not in running}
    verdict = decide(ctx.delta, impact, policy, drift, ctx.unit_deps, ctx.removed_units, enabling)
    verdict = hint_drift(verdict, root)
    notes = saved_notes(ctx.image, report, here, drift, policy)
    return attrs.evolve(verdict, reasons=(*verdict.reasons, *notes)), drift
