"""Every listing result as plain records: one per line, tab-separated, never wrapped.

This is the output for pipes and scripts (`--format plain`, the default of the listing
verbs when stdout is not a terminal). Each line's first field says what the record is
(a change's status, a package change, `reason`, `step`, ...), so `grep`/`cut`/`awk` need
no parsing of a table. Fields are escaped as names are on the console (`\\xNN` for tab,
newline and other control or undecodable bytes), so a field never holds a tab or a
newline; an empty value is `-`. Warnings are not records: `warnings` gives them, and the
CLI writes them on stderr. Only presentation lives here, no logic and no printing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

from imgdiff.errors import escape_path
from imgdiff.results import (
    CheckResult,
    Delta,
    Evidence,
    PackageDelta,
    Plan,
    StaleReport,
    Verdict,
    Verification,
)
from imgdiff.runtime.snapshot import Snapshot


def _row(*fields: object) -> str:
    return "\t".join(escape_path(str(f)) if f not in (None, "") else "-" for f in fields)


@functools.singledispatch
def lines(result: object) -> Iterator[str]:
    """The records of a result, one line each (no trailing newline)."""
    raise TypeError(f"no plain rendering for {type(result).__name__}")


@lines.register
def _delta(delta: Delta) -> Iterator[str]:
    """`STATUS KIND PATH` per change, in path order."""
    for c in delta.changes:
        yield _row(c.status.value, c.kind, c.path)


@lines.register
def _packages(pdelta: PackageDelta) -> Iterator[str]:
    """`CHANGE MANAGER PACKAGE OLD NEW` per package; `unowned PATH` per changed path no
    package owns; `modified-locally PATH MANAGER:PACKAGE` per changed file that differs
    from its package's record."""
    for c in pdelta.changes:
        name = f"{c.name}:{c.arch}" if c.arch else c.name
        yield _row(c.change.value, c.manager, name, c.old_version, c.new_version)
    for path in pdelta.unowned:
        yield _row("unowned", path)
    for m in pdelta.modified_locally:
        yield _row("modified-locally", m.path, f"{m.manager}:{m.package}")


@lines.register
def _snapshot(snap: Snapshot) -> Iterator[str]:
    """`PID UNIT EXE` per process."""
    for p in snap.processes:
        yield _row(p.pid, p.unit, p.exe or p.comm)


@lines.register
def _stale(report: StaleReport) -> Iterator[str]:
    """`PID UNIT EXE VIA CONFIRMED PATH` per reason of each stale process (CONFIRMED:
    `confirmed` or `unconfirmed`, as the JSON's `confirmed`)."""
    for p in report.processes:
        for r in p.reasons:
            yield _row(p.pid, p.unit, p.exe or p.comm, r.via.value, _confirmed(r), r.path)


def _confirmed(reason: Any) -> str:
    return "confirmed" if reason.confirmed else "unconfirmed"


def brief(report: StaleReport) -> Iterator[str]:
    """`PID UNIT EXE` per stale process, space-separated, as checkrestart users read it
    (a unit name has no space; the executable, last, may)."""
    for p in report.processes:
        exe = escape_path(p.exe or p.comm)
        yield f"{p.pid} {p.unit or '-'} {exe}"


@lines.register
def _verification(result: Verification) -> Iterator[str]:
    """`STATUS ASPECTS PATH` per difference (status reads from the image to the tree)."""
    for c in result.differences:
        yield _row(c.status.value, ",".join(a.value for a in c.aspects), c.path)


def _evidence(step: int, pid: int | None, evidence: Iterable[Evidence]) -> Iterator[str]:
    for e in evidence:
        yield _row("evidence", step, pid, e.via.value, e.status.value, _confirmed(e), e.path)


@lines.register
def _verdict(verdict: Verdict) -> Iterator[str]:
    """`verdict KIND`; `reason CODE TEXT` per reason; `step N ACTION UNIT PIDS` per step
    (PIDS comma-separated); `evidence N PID VIA STATUS CONFIRMED PATH` per changed path a step's
    process uses (PID `-` for a step's own reasons); `uninspected TEXT`."""
    yield _row("verdict", verdict.verdict.value)
    for r in verdict.reasons:
        yield _row("reason", r.code.value, r)
    for n, step in enumerate(verdict.steps, 1):
        yield _row("step", n, step.action.value, step.unit, ",".join(map(str, step.pids)))
        if step.processes:
            for proc in step.processes:
                yield from _evidence(n, proc.pid, proc.evidence)
        else:
            yield from _evidence(n, None, step.reasons)
    for u in verdict.uninspected:
        yield _row("uninspected", u)


@lines.register
def _plan(plan: Plan) -> Iterator[str]:
    return _verdict(plan.verdict)


@lines.register
def _check(result: CheckResult) -> Iterator[str]:
    """`ok TREE` or `not-new WHAT` per path that is not NEW's and `stale PID UNIT EXE VIA
    CONFIRMED PATH` per file a process rooted in the tree still uses."""
    if result.ok:
        yield _row("ok", result.tree)
        return
    for f in result.files:
        yield "not-new\t" + f  # a message already: its path escaped once (`describe`)
    for line in _stale(result.stale):
        yield "stale\t" + line


@functools.singledispatch
def notes(result: object) -> Iterator[str]:
    """What a result says beside its records (read warnings, processes not inspected), one
    line each, for stderr."""
    yield from ()


@functools.singledispatch
def warnings(result: object) -> Iterator[str]:
    """What a reader could not read exactly, one line each: on stderr in every format
    but JSON (whose document holds them)."""
    yield from ()


@warnings.register
def _read_warnings(result: Delta | PackageDelta) -> Iterator[str]:
    for w in result.warnings:
        yield f"{escape_path(w.path)}: {w.message}"


@warnings.register
def _plan_warnings(plan: Plan) -> Iterator[str]:
    return _read_warnings(plan.delta)


@notes.register
def _delta_notes(result: Delta | PackageDelta | Plan) -> Iterator[str]:
    return warnings(result)


@notes.register
def _gaps(result: Snapshot | StaleReport) -> Iterator[str]:
    if isinstance(result, StaleReport) and result.considered == 0:
        yield f"no process runs in {result.root}: nothing was checked"
    for g in result.gaps:
        yield f"not inspected: pid {g.pid}: {g.reason}"


@notes.register
def _check_notes(result: CheckResult) -> Iterator[str]:
    return _gaps(result.stale)
