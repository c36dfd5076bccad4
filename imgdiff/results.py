"""The results every stage hands on: frozen records, and nothing else.

`Delta` (compare), `PackageDelta` (package view), `Evidence`/`Impact` (impact), `Verdict`
(plan), `Drift`, `Verification` (verify), `StaleReport` (stale) and `Plan` (the whole
pipeline) live here, so stages depend on this module rather than on each other. Records
do no I/O and never format anything: each one renders through one protocol (`to_json`,
`__rich_console__`, `_repr_html_`) whose implementations are `report.json`,
`report.console` and `report.notebook`, imported when first used; that lazy import is the
only circle the package allows. Image-side vocabulary (`Entry`, `Change`, statuses) stays
in `model`: image readers use it on hot paths and must not load the result side. A record
holding a dict (`DeltaStats`, `Delta`, `Plan`, `DemoRun`) is unhashable by design
(`unsafe_hash=False`); every other record hashes by value.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from imgdiff import _repr
from imgdiff.model import Change, ImageWarning, Kind, Status, Via

if TYPE_CHECKING:
    from imgdiff.manifest import ImageInfo, Manifest
    from imgdiff.runtime.snapshot import Gap

__all__ = [
    "ApplyResult",
    "CheckResult",
    "Delta",
    "DeltaStats",
    "DemoRun",
    "Drift",
    "Evidence",
    "EvidenceStatus",
    "Impact",
    "LocalModification",
    "PackResult",
    "PackageChange",
    "PackageChangeKind",
    "PackageDelta",
    "Plan",
    "ProcessImpact",
    "Reason",
    "ReasonCode",
    "Rendered",
    "StaleProcess",
    "StaleReport",
    "Step",
    "StepAction",
    "Verdict",
    "VerdictKind",
    "Verification",
]  # fmt: skip


class PackageChangeKind(enum.StrEnum):
    """How a package differs between the images (docs/contract.md's `change`)."""

    ADDED = "added"
    REMOVED = "removed"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    REBUILT = "rebuilt"  # same version, different files


class EvidenceStatus(enum.StrEnum):
    """What happened to a path a process uses: the change's status, or `stale` when the
    file on disk is no longer the one the process uses, whatever the update does."""

    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"
    STALE = "stale"


class StepAction(enum.StrEnum):
    """What a step of the verdict does (`systemctl ACTION [UNIT]`)."""

    RESTART = "restart"
    STOP = "stop"  # a running unit NEW no longer has
    START = "start"  # a unit NEW newly enables and that does not run
    DAEMON_RELOAD = "daemon-reload"  # unit files changed
    DAEMON_REEXEC = "daemon-reexec"  # systemd as PID 1 re-executes itself (policy)


class VerdictKind(enum.StrEnum):
    """What callers act on (docs/contract.md's verdict kinds), mildest first."""

    NO_ACTION = "no-action"
    RESTART = "restart"
    REBOOT = "reboot"
    REIMAGE = "reimage"


class ReasonCode(enum.StrEnum):
    """The stable code of a verdict's reason, for callers to branch on; the English text
    is its rendering (docs/plan.md has the table)."""

    # reimage
    DRIFT = "drift"
    DRIFT_HINT = "drift-hint"  # beside `drift` on the host's own root: what was likely meant
    PACKAGE_DRIFT = "package-drift"
    SHARE_OVER_THRESHOLD = "share-over-threshold"
    # reboot
    REBOOT_FILE_CHANGED = "reboot-file-changed"
    PID1_USES_CHANGED = "pid1-uses-changed"
    CONTAINER_INIT_USES_CHANGED = "container-init-uses-changed"
    NEVER_RESTART = "never-restart"
    MORE_REASONS = "more-reasons"
    # restart
    PID1_REEXEC = "pid1-reexec"
    IN_USE = "in-use"
    UNIT_FILES_CHANGED = "unit-files-changed"
    UNINSPECTED = "uninspected"
    UNIT_REMOVED = "unit-removed"
    UNIT_ENABLED = "unit-enabled"
    # no-action
    UNUSED = "unused"
    INERT_ONLY = "inert-only"
    NO_CHANGES = "no-changes"  # additive: OLD and NEW hold the same files
    # notes beside any verdict
    UNTRACED_PYTHON = "untraced-python"
    ALREADY_NEW = "already-new"
    SAVED_SNAPSHOT = "saved-snapshot"
    DRIFT_NOT_CHECKED = "drift-not-checked"
    # a reason given as plain text by a caller that built the verdict itself; imgdiff
    # never produces it
    OTHER = "other"


class Reason(str):
    """One reason of a verdict: the English text (the string itself, which the JSON and
    the console show) with a stable `code`. A `str`, so callers that read reasons as text
    keep working; compares and hashes as its text. (`code` lives in the instance dict:
    a `str` subtype takes no slots.)"""

    code: ReasonCode

    def __new__(cls, text: str, code: ReasonCode | str) -> Reason:
        reason = super().__new__(cls, text)
        reason.__dict__["code"] = ReasonCode(code)
        return reason

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reason is immutable: cannot set {name}")

    def __reduce__(self) -> tuple[type[Reason], tuple[str, str]]:
        return (Reason, (str(self), self.code.value))

    def __repr__(self) -> str:
        return f"Reason({str(self)!r}, {self.code.value!r})"


def _reasons(values: Iterable[str]) -> tuple[Reason, ...]:
    """Reasons as given; plain text (a caller's own) is coded `other`."""
    return tuple(r if isinstance(r, Reason) else Reason(r, ReasonCode.OTHER) for r in values)


class Rendered:
    """The rendering protocol every result shares: JSON, terminal, notebook."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """The result's JSON document (`report.json`)."""
        from imgdiff.report.json import document

        return document(self)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from imgdiff.report.console import render, render_warnings

        yield render(self)
        yield from render_warnings(self)  # the CLI writes them on stderr instead

    def _repr_html_(self) -> str:
        from imgdiff.report.notebook import to_html

        return to_html(self)


def _counts(value: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only view of a copy: a frozen record's counts stay what they were."""
    return MappingProxyType(dict(value))


def _counts_by(value: Mapping[str, Mapping[str, int]]) -> Mapping[str, Mapping[str, int]]:
    return MappingProxyType({k: _counts(v) for k, v in value.items()})


@attrs.frozen(unsafe_hash=False)  # holds mappings: unhashable by design, not by accident
class DeltaStats:
    """Counts and bytes by status; shares of the new image that changed. `by_top` and
    `by_kind` are read-only mappings (given as dicts)."""

    added: int
    removed: int
    modified: int
    unchanged: int
    mtime_only: int
    added_bytes: int
    removed_bytes: int
    modified_bytes: int
    share_files: float
    share_bytes: float
    by_top: Mapping[str, Mapping[str, int]] = attrs.field(converter=_counts_by)
    by_kind: Mapping[str, int] = attrs.field(converter=_counts)

    __repr__ = _repr.short_repr

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its fields, the mappings as dicts (a read-only view pickles not)."""
        values = attrs.astuple(self, recurse=False)
        by_top = {k: dict(v) for k, v in self.by_top.items()}
        return DeltaStats, (*values[:-2], by_top, dict(self.by_kind))

    def _summary(self) -> str:
        return f"DeltaStats(added={self.added}, removed={self.removed}, modified={self.modified})"

    def to_json(self) -> dict[str, Any]:
        """The JSON object written under "stats"."""
        from imgdiff.report.json import stats_json

        return stats_json(self)


@attrs.frozen(unsafe_hash=False)  # holds dicts: unhashable by design, not by accident
class Delta(Rendered):
    """The changes from `old` to `new`, sorted by path, with statistics."""

    old: ImageInfo
    new: ImageInfo
    changes: tuple[Change, ...]
    stats: DeltaStats
    warnings: tuple[ImageWarning, ...] = ()
    # True once each change's `packages` names its owners; False: they were not looked up
    # (`diff --no-packages`), and the JSON leaves `packages` out rather than say "none"
    owners: bool = False

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        changes = _repr.count(len(self.changes), "change")
        return f"Delta({changes}, {_repr.text(self.old.path)} -> {_repr.text(self.new.path)})"

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    @property
    def changed_paths(self) -> frozenset[str]:
        """Every path that was added, removed or modified."""
        return frozenset(c.path for c in self.changes)

    def by_status(self, status: Status | str) -> tuple[Change, ...]:
        """The changes with the given status (ValueError for one that is no `Status`)."""
        status = Status(status)
        return tuple(c for c in self.changes if c.status is status)

    def by_kind(self, *kinds: Kind | str) -> tuple[Change, ...]:
        """The changes whose kind is one of `kinds` (ValueError for one that is no `Kind`:
        a misspelt kind would otherwise find nothing, as if none had changed)."""
        wanted = {Kind(k) for k in kinds}
        return tuple(c for c in self.changes if c.kind in wanted)

    def to_pandas(self) -> Any:
        """A `pandas.DataFrame`, one row per change (pandas is not a dependency)."""
        from imgdiff.report.notebook import delta_frame

        return delta_frame(self)


@attrs.frozen
class PackageChange:
    """One package that differs between the images, with its changed paths."""

    manager: str
    name: str
    arch: str
    change: PackageChangeKind = attrs.field(converter=PackageChangeKind)
    old_version: str | None
    new_version: str | None
    paths: tuple[str, ...]
    reverse_depends: tuple[str, ...] = ()  # packages of the new image that need this one
    location: str = ""  # a pip distribution's site directory (NEW's when it moved)

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return (
            f"PackageChange({self.manager}:{self.name}, {self.change.value}, "
            f"{self.old_version} -> {self.new_version})"
        )


@attrs.frozen
class LocalModification:
    """A changed file whose content differs from the digest its package records."""

    path: str
    manager: str
    package: str
    recorded: str

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"LocalModification({_repr.text(self.path)}, {self.package!r})"


@attrs.frozen
class PackageDelta(Rendered):
    """The package-level difference between two images."""

    changes: tuple[PackageChange, ...]
    unowned: tuple[str, ...]
    modified_locally: tuple[LocalModification, ...]
    warnings: tuple[ImageWarning, ...] = ()

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        changes = _repr.count(len(self.changes), "change")
        return f"PackageDelta({changes}, {len(self.unowned)} unowned)"


@attrs.frozen
class Evidence:
    """A path a process uses that changed (in the update, or on disk since it started),
    and how: the one evidence record of `impact`, `stale` and the verdict's steps."""

    path: str
    via: Via = attrs.field(converter=Via)
    # of the change; `stale` when the live file is no longer the one the process uses
    status: EvidenceStatus = attrs.field(converter=EvidenceStatus)
    kind: str  # of the change: elf-library, python-source, config, ...; "" from `stale`
    detail: str = ""  # where the link comes from, for `config`: "unit file", "conffile of …"
    # the bytes are known to differ and the process is known to use the file; False when
    # the evidence rests on an inference imgdiff could not check: a ctime or a new inode
    # whose bytes were not compared, or a program assumed for a process it could not read
    confirmed: bool = True

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"Evidence({_repr.text(self.path)}, {self.via.value}, {self.status.value})"


@attrs.frozen
class ProcessImpact:
    """One process that uses changed paths, with the evidence."""

    pid: int
    start_time: int
    unit: str | None
    exe: str | None
    cmdline: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    init: bool = False  # PID 1 of the host or of its pid namespace: not restartable in place
    ppid: int = 0  # its parent, to group a process tree with no unit into one step
    # the program it was taken to run when it could not be read ("/sbin/init" for PID 1)
    assumed_from: str | None = None

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"ProcessImpact(pid={self.pid}, unit={self.unit!r}, {len(self.evidence)} evidence)"

    @property
    def command(self) -> str:
        """What runs, for people: the executable, else the command line."""
        return self.exe or " ".join(self.cmdline)


@attrs.frozen
class Impact(Rendered):
    """The processes an update touches, and what could not be inspected."""

    affected: tuple[ProcessImpact, ...]
    considered: int  # processes whose root is the image
    uninspected: tuple[Gap, ...]
    # untraced Python processes: judged by their static import graph, which cannot see
    # imports of names computed at run time
    untraced_python: tuple[int, ...] = ()
    root: str = "/"  # where the image is live: the root of the processes considered

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"Impact({len(self.affected)} affected of {self.considered} processes)"


@attrs.frozen
class StaleProcess:
    """A process that needs a restart to use what is on disk now."""

    pid: int
    start_time: int
    unit: str | None
    comm: str
    exe: str | None
    reasons: tuple[Evidence, ...]  # status `stale`

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        reasons = _repr.count(len(self.reasons), "reason")
        return f"StaleProcess(pid={self.pid}, unit={self.unit!r}, {reasons})"


@attrs.frozen
class StaleReport(Rendered):
    """The stale processes of a snapshot, and what could not be checked."""

    processes: tuple[StaleProcess, ...]
    gaps: tuple[Gap, ...] = ()
    root: str = "/"  # the root whose processes were checked
    considered: int | None = None  # processes running in that root (None: not counted)
    against: str | None = None  # the image given as the tree before the update, if any

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        processes = _repr.count(len(self.processes), "process")
        return f"StaleReport({processes}, {_repr.count(len(self.gaps), 'gap')})"


@attrs.frozen
class Drift:
    """How the live root differs from the OLD image the plan assumes."""

    differs: tuple[str, ...]  # paths whose live state is not OLD's
    matches_new: bool  # the live root is already the NEW image
    # installed packages whose live version is not OLD's, e.g. "dpkg:openssl:amd64 3.0.11
    # live, 3.0.13 in OLD (live is older: a missed update)"
    packages: tuple[str, ...] = ()
    # the files are NEW's but these package databases (dpkg, rpm) say other packages are
    # installed (a database restored, or not updated with the files): e.g. /var/lib/dpkg
    databases: tuple[str, ...] = ()
    # how they disagree with NEW's, e.g. "dpkg:foo:amd64 1.0 live, 2.0 in NEW"
    database_packages: tuple[str, ...] = ()
    # paths whose live state is not NEW's, when the live root is nearer NEW than OLD (an
    # update applied in part): what is missing from NEW, where `differs` is most of it
    from_new: tuple[str, ...] = ()

    __repr__ = _repr.short_repr

    @property
    def behind(self) -> tuple[str, ...]:
        """The packages the live root is behind OLD on (missed updates)."""
        return tuple(p for p in self.packages if p.endswith(MISSED_UPDATE))

    def _summary(self) -> str:
        return f"Drift({len(self.differs)} paths differ, matches_new={self.matches_new})"


# how a package the live root is behind the image on ends (`drift`, host reports' `behind`)
MISSED_UPDATE = "(live is older: a missed update)"


@attrs.frozen
class Verification(Rendered):
    """How a tree differs from the image it should be (nothing: it is that image)."""

    tree: str
    image: str
    # from the image (expected) to the tree (found): "added" is in the tree only
    differences: tuple[Change, ...]
    ignored: tuple[str, ...]  # the patterns left out of the comparison
    manifest: Manifest = attrs.field(eq=False, repr=False)  # the tree as read

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"Verification({_repr.count(len(self.differences), 'difference')})"

    @property
    def matches(self) -> bool:
        """True when the tree is the image, ignored paths aside."""
        return not self.differences


@attrs.frozen
class Step:
    """Restart one unit (or, with no unit, these processes), because of these paths."""

    unit: str | None
    pids: tuple[int, ...]
    reasons: tuple[Evidence, ...]
    commands: tuple[str, ...] = ()  # exe or cmdline of each process, for people
    action: StepAction = attrs.field(default=StepAction.RESTART, converter=StepAction)
    batch: int = 0  # steps of one batch are independent; a batch runs after the previous
    processes: tuple[ProcessImpact, ...] = ()  # each process with its own evidence
    # a step with no unit: the process at the top of its tree, and its command line
    main_pid: int | None = None
    command: str = ""

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return (
            f"Step({self.action.value} {self.unit or 'pids'}, pids={_repr.items(self.pids)}, "
            f"{_repr.count(len(self.reasons), 'reason')})"
        )


@attrs.frozen
class Verdict(Rendered):
    """What to do, why, and in which steps. Each reason is a `Reason`: its text, with a
    stable `code` (plain strings given here are coded `other`)."""

    verdict: VerdictKind = attrs.field(converter=VerdictKind)
    reasons: tuple[Reason, ...] = attrs.field(converter=_reasons)
    steps: tuple[Step, ...] = ()
    uninspected: tuple[str, ...] = ()

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return (
            f"Verdict({self.verdict.value!r}, {_repr.count(len(self.reasons), 'reason')}, "
            f"{_repr.count(len(self.steps), 'step')})"
        )

    @property
    def reason_codes(self) -> tuple[ReasonCode, ...]:
        """The code of each reason, in the same order."""
        return tuple(r.code for r in self.reasons)

    def rows(self) -> list[dict[str, Any]]:
        """One flat record per piece of evidence of each step (for CSV or data frames)."""
        from imgdiff.report.notebook import verdict_rows

        return verdict_rows(self)

    def to_pandas(self) -> Any:
        """A `pandas.DataFrame` of `rows()` (pandas is not a dependency)."""
        from imgdiff.report.notebook import verdict_frame

        return verdict_frame(self)


@attrs.frozen(unsafe_hash=False)  # holds dicts: unhashable by design, not by accident
class Plan(Rendered):
    """What `plan_update` found: the verdict, and the delta, impact and drift it weighed,
    with the seconds each stage took (in `pipeline.STAGES` order). It renders as its
    verdict."""

    verdict: Verdict
    delta: Delta
    impact: Impact
    drift: Drift | None
    timings: Mapping[str, float]

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        changes = _repr.count(len(self.delta.changes), "change")
        return f"Plan({self.verdict.verdict.value!r}, {changes})"


@attrs.frozen(unsafe_hash=False)  # holds dicts: unhashable by design, not by accident
class DemoRun(Rendered):
    """`imgdiff demo`: where the example was built, the services' pids, the verdict."""

    workdir: str
    pids: Mapping[str, int]
    verdict: Verdict

    __repr__ = _repr.short_repr


@attrs.frozen(unsafe_hash=False)  # holds dicts: unhashable by design
class PackResult(Rendered):
    """What `pack` wrote: the archive's digest and size, and how its content is made."""

    path: str
    digest: str
    size: int
    old_identity: str
    new_identity: str
    records: dict[str, int]  # encoding -> number of records
    record_bytes: dict[str, int]  # encoding -> bytes of record data
    changed: int  # paths whose entry differs, plus paths only one side has

    __repr__ = _repr.short_repr


@attrs.frozen
class ApplyResult(Rendered):
    """What an apply (or a rollback) did to a tree."""

    tree: str
    delta_digest: str
    old_identity: str
    new_identity: str
    operations: int
    resumed: bool  # an interrupted commit was finished
    rolled_back: bool = False

    __repr__ = _repr.short_repr


@attrs.frozen
class CheckResult(Rendered):
    """Whether a tree is NEW with nothing running old files in it, and if not, why."""

    tree: str
    image: str
    ok: bool
    # "path (how it differs)" for each path that is not NEW's: text, its path escaped
    # (`escape_path`) as in a message; renderers show it as it is
    files: tuple[str, ...]
    stale: StaleReport  # processes rooted in the tree that still use replaced files
    # the same paths as records, from the image to the tree as `Verification` reads them
    differences: tuple[Change, ...] = ()

    __repr__ = _repr.short_repr

    def _summary(self) -> str:
        return f"CheckResult(ok={self.ok}, {_repr.count(len(self.files), 'file')})"
