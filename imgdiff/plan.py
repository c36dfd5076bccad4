"""The verdict: what to do about an update — nothing, restart these, reboot, or reimage.

`decide` weighs a `Delta` and its `Impact` under a `Policy` and returns a `Verdict` whose
kind callers act on, with every reason that led to it. Restart steps are grouped by unit
(bare PIDs when no unit is known); `reboot` and `reimage` still carry the restart steps
they supersede, so callers may choose. Conservative by design: processes that could not
be inspected are listed, and under the strict policy they escalate `no-action` to
`restart` rather than count as clean.
"""

from __future__ import annotations

import collections
import os
import posixpath
import shlex
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs

from imgdiff.classify import is_runtime_inert
from imgdiff.errors import BadInput
from imgdiff.impact import PYTHON_KINDS
from imgdiff.model import Change, EntryType, Kind, Via
from imgdiff.results import (
    Delta,
    Drift,
    Evidence,
    EvidenceStatus,
    Impact,
    ProcessImpact,
    Reason,
    ReasonCode,
    Step,
    StepAction,
    Verdict,
    VerdictKind,
)
from imgdiff.systemd.unitfiles import batches
from imgdiff.verify import DRIFT_IGNORE

__all__ = ["KINDS", "Policy", "decide"]

KINDS = tuple(VerdictKind)
_REBOOT_KINDS = frozenset({Kind.KERNEL, Kind.KERNEL_MODULE, Kind.BOOT, Kind.FIRMWARE})
_MAX_LISTED = 20


def _share(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be a number in (0, 1], not {value!r}")


def _one_of(*choices: str) -> Callable[[object, attrs.Attribute[str], object], None]:
    def check(_: object, attribute: attrs.Attribute[str], value: object) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be {'|'.join(choices)}, not {value!r}")

    return check


def _flag(_: object, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be true or false, not {value!r}")


def _tuple(value: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A list given for a tuple of strings (as TOML gives one, or a caller) as the tuple;
    anything else as given, for the validator to refuse."""
    return tuple(value) if isinstance(value, list) else value


def _strings(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{attribute.name} must be a list of strings, not {value!r}")


def _abs_paths(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    """Absolute paths (a relative one never matches, an empty one matches everything); a
    pattern may also start with a wildcard."""
    _strings(_, attribute, value)
    for v in cast(tuple[str, ...], value):
        if not v.startswith("/") and not (
            attribute.name == "drift_ignore" and v[:1] in ("*", "?", "[")
        ):
            raise ValueError(f"{attribute.name}: {v!r} is not an absolute path")


UNIT_TYPES = (".service", ".socket", ".timer", ".mount", ".target", ".scope", ".slice", ".path",
              ".device", ".swap", ".automount")  # fmt: skip


def _units(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    """Unit names with their type (a bare "nginx" is no unit name: it would never match)."""
    _strings(_, attribute, value)
    for v in cast(tuple[str, ...], value):
        name, dot, suffix = v.rpartition(".")
        if not name or f"{dot}{suffix}" not in UNIT_TYPES:
            raise ValueError(
                f"{attribute.name}: {v!r} is not a unit name (NAME{'|'.join(UNIT_TYPES)})"
            )


# the fleet's keys (`imgdiff.fleet.waves.RolloutPolicy`), which one policy file may hold
# beside the plan's: a single-host plan leaves them alone
ROLLOUT_KEYS = frozenset({"max_unavailable", "canaries"})


def read_policy_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A policy file's TOML table (its keys are checked by whoever reads them)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(os.fspath(path), f"not a readable policy: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (tomllib decodes before it parses)
        raise BadInput(os.fspath(path), f"not a readable policy: not UTF-8: {exc}") from None


@attrs.frozen
class Policy:
    """How cautious the verdict is; every field has a documented default. Values are
    checked on construction (ValueError or TypeError), so a policy is valid or absent;
    a list of strings may be given where a tuple is kept."""

    # share of the new image's files added or modified above which patching in place is
    # riskier than shipping the whole image
    reimage_share: float = attrs.field(default=0.5, validator=_share)
    # paths whose change needs a reboot (prefixes), beyond the kernel/boot/firmware kinds
    reboot_paths: tuple[str, ...] = attrs.field(
        default=("/boot/", "/efi/", "/usr/lib/modules/", "/lib/modules/"),
        converter=_tuple,
        validator=_abs_paths,
    )
    # "strict": an uninspected process may be affected (no-action becomes restart);
    # "lenient": it is only listed
    unknown: Literal["strict", "lenient"] = attrs.field(
        default="strict", validator=_one_of("strict", "lenient")
    )
    # units that must not be restarted in place (their restart means a reboot)
    never_restart: tuple[str, ...] = attrs.field(default=(), converter=_tuple, validator=_units)
    # when the host's PID 1 is systemd and only its own files changed, plan
    # `systemctl daemon-reexec` (systemd re-executes itself in place) instead of a reboot
    reexec_pid1: bool = attrs.field(default=False, validator=_flag)
    # a live root that matches neither OLD nor NEW (a missed or local update) is patched
    # anyway instead of reimaged
    allow_drift: bool = attrs.field(default=False, validator=_flag)
    # what a running system changes by itself, left out of the drift check: "/dir/" is a
    # tree (not even walked), a pattern with * ? [ is matched with fnmatch, anything else
    # is one path
    drift_ignore: tuple[str, ...] = attrs.field(
        default=DRIFT_IGNORE, converter=_tuple, validator=_abs_paths
    )
    # untraced Python processes: "graph": their static import graph decides (imports of
    # names computed at run time are not seen; the verdict says how many were judged so);
    # "strict": every changed module on their sys.path counts as possibly imported
    untraced: Literal["graph", "strict"] = attrs.field(
        default="graph", validator=_one_of("graph", "strict")
    )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """A policy from a TOML file with the same keys (all optional)."""
        name = os.fspath(path)
        doc = read_policy_file(path)
        fields = {f.name for f in attrs.fields(cls)}
        unknown = set(doc) - fields - ROLLOUT_KEYS
        if unknown:
            raise BadInput(name, f"unknown policy keys: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in doc.items() if k in fields
        }
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise BadInput(name, f"bad policy: {exc}") from None


def _steps(
    affected: Sequence[ProcessImpact], deps: Mapping[str, Iterable[str]] | None
) -> list[Step]:
    by_unit: dict[str, list[ProcessImpact]] = {}
    bare: list[ProcessImpact] = []
    for p in affected:
        if p.pid == 1 or p.init:
            continue  # an init (the host's, a container's) is not restarted: the verdict reboots
        # systemd cannot restart a scope (it did not start its processes): they are bare
        unit = p.unit if p.unit and not p.unit.endswith(".scope") else None
        (by_unit.setdefault(unit, []) if unit else bare).append(p)
    steps = []
    for number, batch in enumerate(batches(by_unit, deps or {}), 1):
        for unit in batch:
            procs = by_unit[unit]
            evidence = {(e.path, e.via): e for p in procs for e in p.evidence}
            steps.append(
                Step(
                    unit=unit,
                    pids=tuple(p.pid for p in procs),
                    reasons=tuple(evidence.values()),
                    commands=tuple(p.command for p in procs),
                    batch=number,
                    processes=tuple(procs),
                )
            )
    last = len(steps) and steps[-1].batch
    for top, procs in _trees(bare):
        evidence = {(e.path, e.via): e for p in procs for e in p.evidence}
        steps.append(
            Step(
                None, tuple(p.pid for p in procs), tuple(evidence.values()),
                tuple(p.command for p in procs), batch=last + 1, processes=tuple(procs),
                main_pid=top.pid, command=shlex.join(top.cmdline) if top.cmdline else top.command,
            )
        )  # fmt: skip
    return steps


def _trees(bare: Sequence[ProcessImpact]) -> list[tuple[ProcessImpact, list[ProcessImpact]]]:
    """Processes with no unit, grouped by process tree: a process whose parent runs the
    same executable (a master and its workers) joins its parent's group. Each group with
    its top process, in pid order."""
    by_pid = {p.pid: p for p in bare}
    groups: dict[int, list[ProcessImpact]] = {}
    for p in sorted(bare, key=lambda p: p.pid):
        top, seen = p, {p.pid}
        while p.exe is not None and (parent := by_pid.get(top.ppid)) is not None:
            if parent.exe != p.exe or parent.pid in seen:
                break
            top = parent
            seen.add(top.pid)
        groups.setdefault(top.pid, []).append(p)
    return [(by_pid[pid], procs) for pid, procs in sorted(groups.items())]


def decide(
    delta: Delta,
    impact: Impact,
    policy: Policy | None = None,
    drift: Drift | None = None,
    unit_deps: Mapping[str, Iterable[str]] | None = None,
    removed_units: Collection[str] = (),
    enabled_units: Mapping[str, str] | None = None,
) -> Verdict:
    """The verdict for updating from the delta's old image to its new one.

    `unit_deps` (unit → units it comes after, from the NEW image's unit files) orders the
    restart steps in batches, dependencies first. A step for one of `removed_units`
    (units OLD has and NEW has not) stops the unit instead: it cannot restart.
    `enabled_units` (unit → the `.wants`/`.requires` link that enables it in NEW, for
    units NEW newly enables and that do not run) get a `start` step last. Pure: reads
    nothing, so callers may weigh the same delta and impact under other policies.
    """
    policy = policy or Policy()
    unit_files = tuple(c for c in delta.changes if c.kind is Kind.SYSTEMD_UNIT)  # removals too
    reexec = tuple(
        p for p in impact.affected
        if p.pid == 1 and policy.reexec_pid1 and posixpath.basename(p.exe or "") == "systemd"
    )  # fmt: skip
    steps = _all_steps(impact, unit_deps, unit_files, reexec)
    uninspected = tuple(f"pid {g.pid}: {g.reason}" for g in impact.uninspected)
    kind, reasons = (
        _reimage(delta, policy, drift)
        or _reboot(delta, impact, policy, reexec)
        or _restart(delta, impact, policy, steps, unit_files, reexec, uninspected)
    )
    verdict = Verdict(
        kind, tuple(reasons), steps if kind is not VerdictKind.NO_ACTION else (), uninspected
    )
    verdict = _stop_removed(verdict, removed_units)
    verdict = _start_enabled(verdict, enabled_units or {})
    if drift is not None and drift.differs and drift.matches_new:
        note = Reason(
            "the live root already matches NEW: only running processes can lag behind",
            ReasonCode.ALREADY_NEW,
        )
        verdict = attrs.evolve(verdict, reasons=(note, *verdict.reasons))
    return verdict


def _all_steps(
    impact: Impact,
    unit_deps: Mapping[str, Iterable[str]] | None,
    unit_files: Sequence[Change],
    reexec: Sequence[ProcessImpact],
) -> tuple[Step, ...]:
    """PID 1's re-exec (it also reloads unit files), then a daemon-reload for changed
    unit files, then the restart batches."""
    steps = [
        Step(None, (1,), p.evidence, (p.exe or "",), StepAction.DAEMON_REEXEC, 0, (p,))
        for p in reexec
    ]
    if unit_files:
        reload = tuple(Evidence(c.path, Via.CONFIG, c.status, c.kind) for c in unit_files)
        steps.append(Step(None, (), reload, action=StepAction.DAEMON_RELOAD))
    return (*steps, *_steps(impact.affected, unit_deps))


_Found = tuple[VerdictKind, list[Reason]] | None  # (verdict kind, reasons), or None: further


def _reimage(delta: Delta, policy: Policy, drift: Drift | None) -> _Found:
    """A live root that drifted from OLD, or an update too large to patch in place."""
    if drift is not None and drift.differs and not drift.matches_new and not policy.allow_drift:
        n = len(drift.differs)
        nearer = ""
        if drift.from_new:
            m = len(drift.from_new)
            nearer = (
                f"; it is nearer NEW ({_n(m, 'path')} {'differs' if m == 1 else 'differ'} "
                f"from NEW: {_where(drift.from_new)})"
            )
        reasons = [
            Reason(
                f"the live root matches neither OLD nor NEW ({_n(n, 'path')} "
                f"{'differs' if n == 1 else 'differ'} from OLD: {_where(drift.differs)}"
                f"{nearer}): a missed or local update; patching it would start from an "
                "unknown state",
                ReasonCode.DRIFT,
            )
        ]
        if drift.packages:
            more = len(drift.packages) - 3
            reasons.append(
                Reason(
                    "installed packages differ from OLD: "
                    + "; ".join(drift.packages[:3])
                    + (f"; and {more} more" if more > 0 else ""),
                    ReasonCode.PACKAGE_DRIFT,
                )
            )
        if drift.databases:
            more = len(drift.database_packages) - 3
            reasons.append(
                Reason(
                    f"the package database ({', '.join(drift.databases)}) disagrees with the "
                    "files, which are NEW's: "
                    + "; ".join(drift.database_packages[:3])
                    + (f"; and {more} more" if more > 0 else ""),
                    ReasonCode.PACKAGE_DRIFT,
                )
            )
        return VerdictKind.REIMAGE, reasons
    share = delta.stats.share_files
    if share > policy.reimage_share:
        return VerdictKind.REIMAGE, [
            Reason(
                f"{share:.0%} of the image's files changed (policy: reimage above "
                f"{policy.reimage_share:.0%})",
                ReasonCode.SHARE_OVER_THRESHOLD,
            )
        ]
    return None


def _reboot(
    delta: Delta, impact: Impact, policy: Policy, reexec: Sequence[ProcessImpact]
) -> _Found:
    """Boot files changed, or something that cannot restart in place uses a change."""
    reasons = [
        Reason(
            f"{c.path} ({c.kind}) {c.status.value}: needs a reboot",
            ReasonCode.REBOOT_FILE_CHANGED,
        )
        for c in delta.changes
        if (c.kind in _REBOOT_KINDS or c.path.startswith(policy.reboot_paths))
        and not _directory(c)  # a directory alone boots nothing: what is in it may
    ]
    for p in impact.affected:
        if p.pid == 1:
            if not reexec:
                # a PID 1 that could not be read is a guess: say so
                who = f"assumed from {p.assumed_from}: {p.exe}" if p.assumed_from else p.exe
                reasons.append(
                    Reason(
                        f"PID 1 ({who}) uses changed files: {_paths(p.evidence)}",
                        ReasonCode.PID1_USES_CHANGED,
                    )
                )
        elif p.init:
            reasons.append(
                Reason(
                    f"pid {p.pid} ({p.exe}) is PID 1 of its pid namespace (a container's init: "
                    f"restart the container) and uses changed files: {_paths(p.evidence)}",
                    ReasonCode.CONTAINER_INIT_USES_CHANGED,
                )
            )
        if p.unit in policy.never_restart:
            reasons.append(
                Reason(
                    f"{p.unit} uses changed files and may not be restarted in place",
                    ReasonCode.NEVER_RESTART,
                )
            )
    if not reasons:
        return None
    reasons = list(dict.fromkeys(reasons))
    if len(reasons) > _MAX_LISTED:
        more = Reason(
            f"… and {len(reasons) - _MAX_LISTED} more such changes", ReasonCode.MORE_REASONS
        )
        reasons[_MAX_LISTED:] = [more]
    return VerdictKind.REBOOT, reasons


def _restart(
    delta: Delta,
    impact: Impact,
    policy: Policy,
    steps: Sequence[Step],
    unit_files: Sequence[Change],
    reexec: Sequence[ProcessImpact],
    uninspected: Sequence[str],
) -> tuple[VerdictKind, list[Reason]]:
    """Restart steps, reloads, or (strict policy) uninspected processes; else nothing."""
    reasons = []
    if reexec:
        reasons.append(
            Reason(
                f"PID 1 ({reexec[0].exe}) uses changed files: systemd re-executes itself in "
                "place (policy reexec_pid1)",
                ReasonCode.PID1_REEXEC,
            )
        )
    restart_steps = [s for s in steps if s.action is StepAction.RESTART]
    if restart_steps:
        reasons.append(
            Reason(
                "changed files are in use by "
                f"{_n(sum(len(s.pids) for s in restart_steps), 'process', 'processes')} in "
                f"{_n(len(restart_steps), 'unit or group', 'units or groups')}",
                ReasonCode.IN_USE,
            )
        )
    if unit_files:
        reasons.append(
            Reason(
                f"{_n(len(unit_files), 'unit file')} changed or removed: systemd must reload them",
                ReasonCode.UNIT_FILES_CHANGED,
            )
        )
    relevant = any(not is_runtime_inert(c.kind) for c in delta.changes)
    strict_unknown = bool(uninspected) and policy.unknown == "strict" and relevant
    if strict_unknown:
        reasons.append(
            Reason(
                f"{_n(len(uninspected), 'process', 'processes')} could not be inspected "
                "(policy: strict treats them as possibly affected)",
                ReasonCode.UNINSPECTED,
            )
        )
    python_changed = any(c.kind in PYTHON_KINDS for c in delta.changes)
    if impact.untraced_python and python_changed and policy.untraced == "graph":
        count = _n(
            len(impact.untraced_python), "untraced Python process", "untraced Python processes"
        )
        reasons.append(
            Reason(
                f'{count} judged by static import graphs (policy untraced = "graph"), '
                'which miss imports computed at run time; untraced = "strict" would count '
                "every changed module on their sys.path, and `python -m imgdiff.trace` makes "
                "it exact",
                ReasonCode.UNTRACED_PYTHON,
            )
        )
    acting = (StepAction.RESTART, StepAction.DAEMON_REEXEC)
    if any(s.action in acting for s in steps) or unit_files or strict_unknown:
        return VerdictKind.RESTART, reasons
    unused = (
        f"none of the {impact.considered} running processes uses any of the {len(delta)} changes"
        if impact.considered
        else f"no process runs in {impact.root}: none uses any of the {len(delta)} changes"
    )
    why = (
        Reason(unused, ReasonCode.UNUSED)
        if relevant
        else Reason(
            f"all {len(delta)} changes are documentation, manuals or translations",
            ReasonCode.INERT_ONLY,
        )
        if len(delta)
        else Reason("OLD and NEW hold the same files: nothing changes", ReasonCode.NO_CHANGES)
    )
    return VerdictKind.NO_ACTION, [why, *reasons]


def _stop_removed(verdict: Verdict, removed_units: Collection[str]) -> Verdict:
    """A running unit NEW no longer defines cannot restart: it is stopped."""
    gone = [s for s in verdict.steps if s.unit in removed_units and s.action is StepAction.RESTART]
    if not gone:
        return verdict
    steps = tuple(
        attrs.evolve(s, action=StepAction.STOP) if s in gone else s for s in verdict.steps
    )
    note = Reason(
        f"{_n(len(gone), 'unit')} no longer in NEW: stopped, not restarted",
        ReasonCode.UNIT_REMOVED,
    )
    return _escalate(verdict, note, steps)


def _escalate(verdict: Verdict, note: Reason, steps: tuple[Step, ...]) -> Verdict:
    """`verdict` with `steps` and one more reason; a `no-action` (whose only reason said
    nothing was to do) becomes a `restart` for that reason alone."""
    if verdict.verdict is VerdictKind.NO_ACTION:
        return attrs.evolve(verdict, verdict=VerdictKind.RESTART, steps=steps, reasons=(note,))
    return attrs.evolve(verdict, steps=steps, reasons=(*verdict.reasons, note))


def _start_enabled(verdict: Verdict, enabled_units: Mapping[str, str]) -> Verdict:
    """Units NEW newly enables and that do not run are started, last."""
    if not enabled_units or verdict.verdict not in (VerdictKind.NO_ACTION, VerdictKind.RESTART):
        return verdict
    last = max((s.batch for s in verdict.steps), default=0)
    starts = tuple(
        Step(
            unit,
            (),
            (
                Evidence(
                    link, Via.CONFIG, EvidenceStatus.ADDED, Kind.SYSTEMD_UNIT, "enabled in NEW"
                ),
            ),
            action=StepAction.START,
            batch=last + 1,
        )
        for unit, link in sorted(enabled_units.items())
    )
    note = Reason(
        f"{_n(len(starts), 'unit')} newly enabled in NEW and not running: start",
        ReasonCode.UNIT_ENABLED,
    )
    return _escalate(verdict, note, (*verdict.steps, *starts))


def _directory(change: Change) -> bool:
    """A change only to a directory (its entries are changes of their own)."""
    sides = [e for e in (change.old, change.new) if e is not None]
    return bool(sides) and all(e.type is EntryType.DIR for e in sides)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _where(paths: Sequence[str], most: int = 4) -> str:
    """Where differing paths are: a few examples when they are few, else counts by top
    directory."""
    if len(paths) <= most:
        return ", ".join(paths)
    tops = collections.Counter("/" + p.split("/")[1] for p in paths)
    shown = ", ".join(f"{top} {count}" for top, count in tops.most_common(most))
    rest = len(tops) - most
    return f"by top directory {shown}" + (f" and {rest} more" if rest > 0 else "")


def _paths(evidence: Sequence[Evidence], most: int = 3) -> str:
    shown = ", ".join(e.path for e in evidence[:most])
    return shown + (f" (+{len(evidence) - most} more)" if len(evidence) > most else "")
