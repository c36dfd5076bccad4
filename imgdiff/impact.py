"""Impact: which processes use what changed, and how: a Delta joined with a Snapshot.

For each process of a snapshot whose root is the live OLD image, every changed path it
uses becomes `Evidence` naming how it is used (DESIGN.md's `via`): its executable, a
mapped library, an open file (`config` when it is configuration), a module a traced
Python process imported, a module its static import graph reaches (`import-graph`), or a
library its executable will load at the next start (`elf-needed`, from the ELF closure).
Paths are compared inside the process's root. This module decides nothing: the verdict
(restart, reboot, reimage) is `plan`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import attrs

from imgdiff.delta import Delta
from imgdiff.elfdeps import FactsCache, LoaderConfig, elf_closure, load_loader_config
from imgdiff.model import Change, Status
from imgdiff.rootfs import RootFS
from imgdiff.runtime._procfs import AccessDenied, NoSuchProcess, ProcDir
from imgdiff.runtime.snapshot import Gap, Process, Snapshot
from imgdiff.runtime.stale import is_python
from imgdiff.trace.importgraph import ProgramGraphs

_CONFIG_DIRS = ("/etc/",)
# how strong each kind of evidence is, strongest first (a path used several ways keeps the
# strongest)
STRENGTH = ("exe", "mapped", "imported", "open", "config", "import-graph", "elf-needed")


@attrs.frozen
class Evidence:
    """A changed path a process uses, and how."""

    path: str
    via: str
    status: str  # of the change: added | removed | modified
    kind: str  # of the change: elf-library, python-source, config, ...


@attrs.frozen
class ProcessImpact:
    """One process that uses changed paths, with the evidence."""

    pid: int
    start_time: int
    unit: str | None
    exe: str | None
    cmdline: tuple[str, ...]
    evidence: tuple[Evidence, ...]


@attrs.frozen
class Impact:
    """The processes an update touches, and what could not be inspected."""

    affected: tuple[ProcessImpact, ...]
    considered: int  # processes whose root is the image
    uninspected: tuple[Gap, ...]

    def to_json(self) -> dict[str, Any]:
        """A plain document (the verdict's JSON is `plan`'s)."""
        return attrs.asdict(self)


def _evidence(paths: Iterable[str], via: str, changed: dict[str, Change]) -> list[Evidence]:
    out = []
    for path in paths:
        c = changed.get(path)
        if c is not None:
            out.append(Evidence(path, via, c.status.value, c.kind))
    return out


def _open_via(path: str, config_paths: frozenset[str]) -> str:
    return "config" if path.startswith(_CONFIG_DIRS) or path in config_paths else "open"


def assess(
    delta: Delta,
    snapshot: Snapshot,
    *,
    root: str = "/",
    config_paths: frozenset[str] = frozenset(),
    procfs: str = "/proc",
    import_graphs: bool = True,
    elf_needed: bool = True,
) -> Impact:
    """Join a delta with the processes of a live snapshot whose root is `root`.

    `config_paths` are the paths packages mark as configuration (conffiles, %config).
    Import graphs and ELF closures are read inside each process's root through
    `/proc/PID/root`: the snapshot must be of this host, taken now.
    """
    changed = {c.path: c for c in delta.changes if c.status is not Status.ADDED}
    want = os.path.realpath(root) if root != "/" else "/"
    affected: list[ProcessImpact] = []
    gaps = list(snapshot.gaps)
    considered = 0
    graphs = ProgramGraphs()
    facts: FactsCache = {}
    closures: dict[tuple[object, ...], frozenset[str]] = {}
    configs: dict[tuple[object, ...], LoaderConfig] = {}
    for proc in snapshot.processes:
        if proc.root != want:
            continue
        considered += 1
        found: list[Evidence] = []
        for use in proc.files:
            if use.outside_root:
                continue
            via = _open_via(use.path, config_paths) if use.via == "open" else use.via
            found += _evidence([use.path], via, changed)
        if import_graphs or elf_needed:
            try:
                found += _static_evidence(
                    proc, changed, procfs, import_graphs, elf_needed,
                    graphs, facts, closures, configs,
                )  # fmt: skip
            except NoSuchProcess:
                continue
            except AccessDenied as exc:
                gaps.append(Gap(proc.pid, f"root not readable: {exc}"))
        if found:
            affected.append(
                ProcessImpact(
                    proc.pid, proc.start_time, proc.unit, proc.exe, proc.cmdline, _strongest(found)
                )
            )
    return Impact(tuple(affected), considered, tuple(gaps))


def _strongest(found: list[Evidence]) -> tuple[Evidence, ...]:
    best: dict[str, Evidence] = {}
    for e in found:
        held = best.get(e.path)
        if held is None or STRENGTH.index(e.via) < STRENGTH.index(held.via):
            best[e.path] = e
    return tuple(sorted(best.values(), key=lambda e: (STRENGTH.index(e.via), e.path)))


def _static_evidence(
    proc: Process,
    changed: dict[str, Change],
    procfs: str,
    import_graphs: bool,
    elf_needed: bool,
    graphs: ProgramGraphs,
    facts: FactsCache,
    closures: dict[tuple[object, ...], frozenset[str]],
    configs: dict[tuple[object, ...], LoaderConfig],
) -> list[Evidence]:
    want_graph = import_graphs and is_python(proc) and not proc.traced
    if not want_graph and not (elf_needed and proc.exe):
        return []
    with ProcDir(proc.pid, procfs) as d:
        root_fd = d.open_root()
    out: list[Evidence] = []
    try:
        with RootFS(root_fd) as fs:
            space = (proc.root, proc.mnt_ns)
            if want_graph and proc.exe is not None:
                files = graphs.files(fs, space, proc.cmdline, proc.exe, proc.cwd)
                out += _evidence(files, "import-graph", changed)
            if elf_needed and proc.exe is not None:
                ckey = (space, proc.exe)
                if ckey not in closures:
                    if space not in configs:
                        configs[space] = load_loader_config(fs)
                    closure = elf_closure(fs, proc.exe, configs[space], cache=facts)
                    closures[ckey] = closure.dependency_paths()
                out += _evidence(closures[ckey], "elf-needed", changed)
    finally:
        os.close(root_fd)
    return out
