"""Impact: which processes use what changed, and how: a Delta joined with a Snapshot.

For each process of a snapshot whose root is the live OLD image, every changed path it
uses becomes `Evidence` naming how it is used (`via`, docs/contract.md): its executable, a
mapped library, an open file (`config` when it is configuration), a module a traced
Python process imported, a module its static import graph reaches (`import-graph`), or a
library its executable will load at the next start (`elf-needed`, from the ELF closure).
Paths are compared inside the process's root. This module decides nothing: the verdict
(restart, reboot, reimage) is `plan`'s.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from imgdiff.cmdline import path_arguments
from imgdiff.errors import AccessDenied, ImgdiffError, NoSuchProcess
from imgdiff.fs.imagepaths import ImagePaths
from imgdiff.fs.paths import glob_head, glob_match, is_glob
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.elf import (
    ElfClosure,
    LoaderConfig,
    elf_closure,
    load_loader_config,
)
from imgdiff.model import Aspect, Change, EntryType, Kind, Status, Via
from imgdiff.packages.base import Package
from imgdiff.packages.view import PackageView
from imgdiff.results import Delta, Evidence, Impact, ProcessImpact
from imgdiff.runtime._procfs import ProcDir
from imgdiff.runtime.inspect import (
    DEFERRED_UNCERTAIN,
    Inspector,
    SameBytes,
    is_pseudo,
    is_python,
    recorded_deleted,
)
from imgdiff.runtime.snapshot import Gap, Process, Snapshot
from imgdiff.systemd import unitfiles

_CONFIG_DIRS = ("/etc/",)
PYTHON_KINDS = frozenset({Kind.PYTHON_SOURCE, Kind.PYTHON_BYTECODE, Kind.PYTHON_EXTENSION})

if TYPE_CHECKING:
    from imgdiff.loaders.elf import FactsCache
    from imgdiff.loaders.python.finder import ImportGraph

Spell = Callable[[str], tuple[str, ...]]
"""A path as a process or unit names it -> the paths whose change changes what it names."""


def _as_named(path: str) -> tuple[str, ...]:
    return (path,)


def _speller(paths: ImagePaths | None) -> Spell:
    return paths.spellings if paths is not None else _as_named


@attrs.frozen
class ConfigSources:
    """What names a file as a process's configuration, beyond the files it holds open.

    Read from the OLD image, the one the processes started from: for each unit, the paths
    its unit files name (`unitfiles.config_sources`; a path ending in "/" stands for the tree
    below it), and for each executable, the configuration files (dpkg conffiles, rpm
    %config) of the package that ships it.
    """

    units: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    packages: Mapping[str, tuple[tuple[str, str], ...]] = attrs.field(factory=dict)
    # every path some package marks as configuration: an open one is `config`, not `open`
    config_paths: frozenset[str] = frozenset()
    # unit -> its unit file or drop-in not read completely (`unitfiles.oversized`)
    unread: Mapping[str, str] = attrs.field(factory=dict)
    # unit -> where a file added later changes it (`unitfiles.override_paths`)
    overrides: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    @classmethod
    def read(
        cls,
        files: Mapping[str, bytes],
        view: PackageView | None,
        alias: Mapping[str, str] | None = None,
    ) -> ConfigSources:
        """From an image's unit files (path → bytes), its package view and its unit
        aliases (`unitfiles.aliases`)."""
        exes: dict[str, tuple[tuple[str, str], ...]] = {}
        if view is not None:
            for pkg, named in _package_configs(view.packages):
                for path in pkg.files:
                    exes[path] = exes.get(path, ()) + named
        return cls(
            unitfiles.config_sources(files, alias),
            exes,
            view.config_paths if view is not None else frozenset(),
            unitfiles.oversized(files, alias),
            unitfiles.override_paths(files, alias),
        )

    def of_unit(self, unit: str) -> tuple[str, tuple[str, ...]]:
        """(the name its unit files are known by, the paths they name) for a running
        unit: an instance with no unit file or drop-ins of its own is known by its
        template's."""
        name = unit if unit in self.units else unitfiles.unit_file_name(unit)
        return name, self.units.get(name, ())

    def later(self, unit: str) -> tuple[str, ...]:
        """Where a file added later changes a running unit's configuration: for an
        instance known by its template's name, the places of its own name too."""
        name = self.of_unit(unit)[0]
        own = unitfiles.unit_config_paths(unit) if name != unit else ()
        return (*self.overrides.get(name, ()), *own)

    def not_read(self, proc: Process) -> str | None:
        """Why what the process's unit names is not all known: a unit file or drop-in of
        it was not read completely; None when it was."""
        if proc.unit is None:
            return None
        path = self.unread.get(self.of_unit(proc.unit)[0])
        if path is None:
            return None
        size = unitfiles.MAX_UNIT_BYTES >> 20
        return f"unit file over {size} MiB, not read completely: {path}"

    def named(self, proc: Process) -> list[tuple[str, str]]:
        """(path or tree, detail) that the process's unit, package and command line name."""
        out: list[tuple[str, str]] = []
        if proc.unit is not None:
            unit, sources = self.of_unit(proc.unit)
            out += [(p, f"named by {unit}") for p in sources]
        if proc.exe is not None:
            out += self.packages.get(proc.exe, ())
        # exact files only: an argument like "/" or "/etc/" is no evidence of reading all;
        # the program as named, too: through a symlink NEW moves it is another program
        out += [
            (a, "on its command line") for a in path_arguments(proc.cmdline) if not a.endswith("/")
        ]
        return out


def _package_configs(
    packages: Iterable[Package],
) -> Iterator[tuple[Package, tuple[tuple[str, str], ...]]]:
    """Each package with configuration for its programs: (path, detail) of its own
    conffiles, then those of the packages built from the same source that ship no program
    of their own (Debian splits a program's configuration into `NAME-common`: nginx's
    /etc/nginx/nginx.conf is nginx-common's; systemd-timesyncd's timesyncd.conf is its own
    daemon's, not systemd's). Dependencies are not followed: libc6's conffiles are no
    program's."""
    packages = list(packages)
    by_source: dict[tuple[str, str], list[Package]] = {}
    for pkg in packages:
        # a sibling with a program of its own (systemd-timesyncd beside systemd) keeps its
        # configuration for that program: only a program-less part (nginx-common) lends it
        if pkg.source and pkg.config_files and not any(map(_is_program_path, pkg.files)):
            by_source.setdefault((pkg.manager, pkg.source), []).append(pkg)
    for pkg in packages:
        siblings = by_source.get((pkg.manager, pkg.source), []) if pkg.source else []
        named: dict[str, str] = dict.fromkeys(
            pkg.config_files, f"conffile of {pkg.manager}:{pkg.name}"
        )
        for other in siblings:
            if other.name == pkg.name:
                continue  # the same package of another arch (Multi-Arch: same), not another part
            detail = f"conffile of {other.manager}:{other.name} (same source as {pkg.name})"
            for path in other.config_files:
                named.setdefault(path, detail)
        if named:
            yield pkg, tuple(named.items())


_PROGRAM_DIR = re.compile(r"^/(?:usr/)?(?:(?:local/)?s?bin|libexec)/[^/]+$")
_SYSTEMD_HELPER = re.compile(r"^/(?:usr/)?lib/systemd/systemd-[^/]+$")


def _is_program_path(path: str) -> bool:
    """Whether a package path is where programs live: a bin, sbin or libexec directory,
    or one of systemd's own daemons (/usr/lib/systemd/systemd-*)."""
    return bool(_PROGRAM_DIR.match(path) or _SYSTEMD_HELPER.match(path))


def _of(change: Change, via: Via, detail: str = "") -> Evidence:
    """The evidence that a process uses this changed path, and how."""
    return Evidence(change.path, via, change.status, change.kind, detail)


def _deleted(stale: Evidence, changed: Mapping[str, Change]) -> Evidence:
    """A file the process uses that is no longer the one on disk, as `deleted` evidence,
    with the kind of its change when the update touches it too."""
    c = changed.get(stale.path)
    return attrs.evolve(
        stale, via=Via.DELETED, kind=c.kind if c is not None else "unchanged-by-update"
    )


def _evidence(paths: Iterable[str], via: Via, changed: dict[str, Change]) -> list[Evidence]:
    return [_of(c, via) for path in paths if (c := changed.get(path)) is not None]


def _open_via(path: str, config_paths: frozenset[str]) -> Via:
    return Via.CONFIG if path.startswith(_CONFIG_DIRS) or path in config_paths else Via.OPEN


class _Tree:
    """The changed paths, sorted, for exact, below-a-directory and wildcard lookups."""

    def __init__(self, changed: Mapping[str, Change]) -> None:
        self.changed = changed
        self.sorted = sorted(changed)

    def matches(self, path: str) -> list[str]:
        if is_glob(path):  # EnvironmentFile=/etc/x/*.env: the changed paths it matches
            head = glob_head(path)
            return [p for p in self._below(head) if glob_match(path, p)]
        if not path.endswith("/"):
            return [path] if path in self.changed else []
        return self._below(path)

    def _below(self, path: str) -> list[str]:
        found = []
        for i in range(bisect.bisect_left(self.sorted, path), len(self.sorted)):
            if not self.sorted[i].startswith(path):
                break
            found.append(self.sorted[i])
        return found


def _config_evidence(
    proc: Process, configs: ConfigSources, tree: _Tree, spell: Spell
) -> list[Evidence]:
    out = []
    for named, detail in configs.named(proc):
        for name in spell(named):
            out += [_of(tree.changed[path], Via.CONFIG, detail) for path in tree.matches(name)]
    return out


@attrs.frozen
class _Needed:
    """A changed dependency of a closure: its loading chain, and when the loader picks
    it or another file for the same name depending on the CPU (glibc-hwcaps, `$PLATFORM`),
    the paths of this candidate (`own`) and of all of them (`variants`)."""

    chain: str
    own: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()


def _needed(closure: ElfClosure, changed: Mapping[str, Change], spell: Spell) -> dict[str, _Needed]:
    """{changed path: how it is needed} of a closure's dependencies. Each is joined with
    the delta as it resolves in the images: on a usr-merged root the loader's
    /lib/x86_64-linux-gnu/libc.so.6 is the link /usr/lib/x86_64-linux-gnu/libc.so.6 and
    the file it leads to, a change to either is one to the library."""
    out: dict[str, _Needed] = {}
    groups = _variant_groups(closure)
    for path in sorted(closure.dependency_paths()):
        for name in spell(path):
            if name in changed and name not in out:
                own, variants = groups.get(path, (frozenset(), frozenset()))
                out[name] = _Needed(_needed_chain(closure, path), own, variants)
    return out


def _variant_groups(closure: ElfClosure) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Path (as found and as resolved) -> (its own spellings, those of every candidate
    for its name), for the names whose file depends on the CPU."""
    real = dict(closure.real_paths)
    by_name: dict[str, dict[str, None]] = {}
    for name, path in (*closure.libraries, *closure.alternatives):
        by_name.setdefault(name, {})[path] = None
    out: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for candidates in by_name.values():
        if len(candidates) < 2:
            continue
        spelt = {path: frozenset({path, real.get(path, path)}) for path in candidates}
        every = frozenset().union(*spelt.values())
        for own in spelt.values():
            for path in own:
                out[path] = (own, every)
    return out


_CPU_DEPENDENT = "which of its variants the loader picks depends on the CPU"


def _needed_evidence(
    needed: Mapping[str, _Needed], changed: Mapping[str, Change], mapped: frozenset[str]
) -> list[Evidence]:
    """Evidence of a closure's changed dependencies for a process mapping `mapped` (its
    files' paths; empty when not known). A dependency the CPU chooses among variants is
    settled by what the process maps: the variant it maps is its, the others are not
    (its next start, on the same CPU, picks the same one); when it maps none of them,
    the evidence is unconfirmed and says so."""
    out = []
    for path, how in needed.items():
        e = _of(changed[path], Via.ELF_NEEDED, how.chain)
        if how.variants:
            if not mapped.isdisjoint(how.own):
                pass  # the variant this process runs
            elif not mapped.isdisjoint(how.variants):
                continue  # it runs another variant of this library
            else:
                detail = f"{how.chain}; {_CPU_DEPENDENT}" if how.chain else _CPU_DEPENDENT
                e = attrs.evolve(e, detail=detail, confirmed=False)
        out.append(e)
    return out


def assess(
    delta: Delta,
    snapshot: Snapshot,
    *,
    root: str = "/",
    configs: ConfigSources | None = None,
    procfs: str = "/proc",
    import_graphs: bool = True,
    elf_needed: bool = True,
    stale: bool = True,
    untraced: Literal["graph", "strict"] = "graph",
    image: ImageEvidence | None = None,
    paths: ImagePaths | None = None,
    new: NewResolution | None = None,
) -> Impact:
    """Join a delta with the processes of a live snapshot whose root is `root`.

    `configs` names the files a process's unit, package and command line make its
    configuration (evidence `config` when one changed, even if it is not open now).
    Import graphs, ELF closures and the `stale` check (a mapped or open file that is no
    longer the one on disk: evidence `deleted`, whether or not the delta touches it) are
    read inside each process's root through `/proc/PID/root`: the snapshot must be of
    this host, taken now. For the host's root, when PID 1 could not be read, its program
    is judged from the files (`init_evidence`). `untraced="strict"` counts every changed
    Python module on an untraced interpreter's sys.path as possibly imported by it.

    `image` (for a saved snapshot, with `import_graphs` and `elf_needed` off) reads import
    graphs and ELF closures from the OLD image's files instead; a process whose evidence
    it could not compute is listed as uninspected, never taken as clean.

    `paths` (OLD's and NEW's entries) resolves the paths closures and configuration name
    through the images' symlinks before they are joined with the delta; without it they
    are joined as spelled. `new` says where NEW's loader finds what each closure needs
    (a library NEW adds that shadows the one in use); without it that is not looked at.
    """
    spell = _speller(paths)
    changed = _changed(delta)
    configs = configs or ConfigSources()
    # what a unit or command line names is read at the next start: an added one counts
    tree = _Tree({c.path: c for c in delta.changes})
    want = os.path.realpath(root) if root != "/" else "/"
    live = _LiveReader(
        changed, procfs, import_graphs, elf_needed, stale, untraced == "strict", spell, new
    )
    code = live.code  # the changes that count for code a process runs
    live.startup = startup_changes(delta)
    untraced_python: list[int] = []
    affected: list[ProcessImpact] = []
    gaps = list(snapshot.gaps)
    considered = 0
    init_seen = False
    for proc in snapshot.processes:
        if proc.root != want:
            continue
        considered += 1
        if is_python(proc) and not proc.traced:
            untraced_python.append(proc.pid)
        found = _file_evidence(proc, configs, changed, code, spell)
        found += _config_evidence(proc, configs, tree, spell)
        if (why := configs.not_read(proc)) is not None:  # what it names is not all known
            gaps.append(Gap(proc.pid, why))
        if not stale:  # no /proc to look into: what the snapshot recorded
            for use in proc.files:
                if (r := recorded_deleted(use)) is not None:
                    found.append(_deleted(r, changed))
        try:
            found += live.evidence(proc)
        except NoSuchProcess:
            continue
        except AccessDenied as exc:
            gaps.append(Gap(proc.pid, f"root not readable: {exc}"))
        found += _from_image(image, proc, gaps)
        if proc.is_init:
            init_seen = True
        if found:
            affected.append(
                ProcessImpact(
                    proc.pid, proc.start_time, proc.unit, proc.exe, proc.cmdline,
                    _strongest(found), init=proc.is_init, ppid=proc.ppid,
                )
            )  # fmt: skip
    if want == "/" and elf_needed and not init_seen:
        guessed = _init_evidence(changed, "/", spell)
        if guessed is not None:
            affected.append(guessed)
    elif want == "/" and image is not None and not init_seen:
        affected += filter(None, [image.init_impact()])  # the host's PID 1 runs OLD's init
    gaps += live.unknown  # not computed is unknown, never clean
    # a process whose evidence was not computed was not judged by an import graph either
    unknown = {g.pid for g in gaps}
    judged = tuple(pid for pid in untraced_python if pid not in unknown)
    return Impact(tuple(affected), considered, tuple(gaps), judged, root)


def _file_evidence(
    proc: Process,
    configs: ConfigSources,
    changed: dict[str, Change],
    code: dict[str, Change],
    spell: Spell,
) -> list[Evidence]:
    """Evidence from the files the snapshot recorded the process using (code evidence
    only from `code`'s changes)."""
    found: list[Evidence] = []
    for use in proc.files:
        if use.outside_root:
            continue
        via = _open_via(use.path, configs.config_paths) if use.via == "open" else Via(use.via)
        detail = "held open" if via == "config" else use.detail
        # the kernel names mapped and open files as they really are; an import as the
        # import system spelled it, through links NEW may repoint
        names = spell(use.path) if via is Via.IMPORTED else (use.path,)
        found += [
            attrs.evolve(e, detail=detail if e.path == use.path else _through(detail, use.path))
            if detail or e.path != use.path
            else e
            for e in _evidence(names, via, code if via in CODE_VIAS else changed)
        ]
    return found


def _from_image(image: ImageEvidence | None, proc: Process, gaps: list[Gap]) -> list[Evidence]:
    """The process's graph and closure evidence read from OLD; a gap when unknown."""
    if image is None:
        return []
    found = image.evidence(proc)
    if isinstance(found, str):
        gaps.append(Gap(proc.pid, found))
        return []
    return list(found)


def _graph_evidence(
    graph: ImportGraph,
    changed: dict[str, Change],
    python_changes: Sequence[str],
    spell: Spell = _as_named,
    startup: Mapping[str, Change] | None = None,
) -> list[Evidence]:
    """Changed modules a static import graph reaches (each with its import chain), and,
    under untraced = strict, changed modules anywhere on its sys.path (`python_changes`
    is empty otherwise). Each file is joined with the delta through the images' symlinks:
    a package switched by a link NEW repoints (`dist-packages/app -> releases/2/app`) is
    a change to what the process imported."""
    out = []
    for path in sorted(graph.files):
        chain = _import_chain(graph, path)
        for name in spell(path):
            if (c := changed.get(name)) is None:
                continue
            detail = chain if name == path else _through(chain, path)
            out.append(_of(c, Via.IMPORT_GRAPH, detail))
    out += _startup_evidence(graph, startup or {})
    # an archive's modules are not searched: whether it imports from it is unknown
    out += [
        _of(c, Via.IMPORT_GRAPH, _ARCHIVE)
        for path in graph.archives
        for name in spell(path)
        if (c := changed.get(name)) is not None
    ]
    dirs = tuple(d.rstrip("/") + "/" for d in graph.sys_path)
    out += [
        attrs.evolve(e, detail="on its sys.path (untraced: policy untraced = strict)")
        for e in _evidence(
            (p for p in python_changes if p.startswith(dirs) and p not in graph.files),
            Via.IMPORT_GRAPH,
            changed,
        )
    ]
    return out


_ARCHIVE = "an archive on its sys.path, not searched: may be imported from (uncertain)"


def startup_changes(delta: Delta) -> dict[str, Change]:
    """Changes that alter an interpreter's next start without being a module it loaded:
    .pth files (added, removed or changed) and Python modules NEW adds."""
    return {
        c.path: c
        for c in delta.changes
        if c.path.endswith(".pth") or (c.status is Status.ADDED and c.kind in PYTHON_KINDS)
    }


def _startup_evidence(graph: ImportGraph, startup: Mapping[str, Change]) -> list[Evidence]:
    """A .pth file in a site directory the interpreter reads at every start (its path
    lines make sys.path, its `import` lines run), and an added module that a restart
    would import instead of the one found (earlier on sys.path, or first in FileFinder's
    order in the same directory) or where nothing was found."""
    out = []
    pth_dirs = set(graph.pth_dirs)
    for path, c in sorted(startup.items()):
        where, base = posixpath.split(path)
        if base.endswith(".pth") and not base.startswith(".") and where in pth_dirs:
            out.append(_of(c, Via.IMPORT_GRAPH, f"(start-up): a .pth file site reads from {where}"))
        elif c.status is Status.ADDED and (why := _shadows(graph, path)) is not None:
            out.append(_of(c, Via.IMPORT_GRAPH, why))
    return out


_RANK = {"package": 0, "extension": 1, "source": 2, "bytecode": 3}


def _module_rank(path: str) -> tuple[str, str, int] | None:
    """(directory searched, module name's last part, FileFinder's order) of a module file."""
    where, base = posixpath.split(path)
    stem, _, suffix = base.partition(".")
    if stem == "__init__":
        where, stem = posixpath.split(where)
        return where, stem, _RANK["package"]
    if suffix.endswith("so"):
        return where, stem, _RANK["extension"]
    if suffix == "py":
        return where, stem, _RANK["source"]
    if suffix == "pyc":
        return where, stem, _RANK["bytecode"]
    return None


def _shadows(graph: ImportGraph, path: str) -> str | None:
    """Why an added module file changes what the program imports at its next start."""
    new = _module_rank(path)
    if new is None:
        return None
    where, stem, rank = new
    by_dir: list[str] = []  # the module names this directory is searched for
    if where in graph.sys_path:
        by_dir.append(stem)
    by_dir += [
        f"{name}.{stem}"
        for name, init in graph.modules.items()
        if posixpath.basename(init).startswith("__init__.") and posixpath.dirname(init) == where
    ]
    for name in by_dir:
        loaded = graph.modules.get(name)
        if loaded is None:
            if name in graph.unresolved:
                return f"added: the import of {name}, found nowhere before, would load it"
            continue
        old = _module_rank(loaded)
        if old is None:
            continue
        if old[0] == where:
            earlier = rank < old[2]
        else:
            order = graph.sys_path
            earlier = "." not in name and where in order and old[0] in order
            earlier = earlier and order.index(where) < order.index(old[0])
        if earlier:
            chain = _import_chain(graph, loaded)
            return f"added: shadows {name}, imported from {loaded} ({chain})"
    return None


def _through(chain: str, imported: str) -> str:
    """The detail of a changed path that is not the module's own but on its way: a
    symlink resolving `imported` crosses, or the file it leads to in OLD or NEW."""
    return f"{chain} (imported as {imported})" if chain else f"imported as {imported}"


INIT_PROGRAM = "/sbin/init"


def init_evidence(delta: Delta, root: str = "/") -> ProcessImpact | None:
    """PID 1 as the root's files say it would be, for when it cannot be read.

    The kernel starts `/sbin/init` (systemd's, on most distributions): its executable and
    ELF closure inside `root` are matched against the delta. None when nothing of it
    changed (or there is no such program).
    """
    return _init_evidence(_changed(delta), root)


def _changed(delta: Delta) -> dict[str, Change]:
    """Changes a running process can be using (what was added, nothing had), by path."""
    return {c.path: c for c in delta.changes if c.status is not Status.ADDED}


_CODE_ASPECTS = frozenset({Aspect.CONTENT, Aspect.TYPE, Aspect.TARGET})
CODE_VIAS = frozenset({Via.EXE, Via.MAPPED, Via.ELF_NEEDED})


def _code(changed: Mapping[str, Change]) -> dict[str, Change]:
    """The changes that change code a process runs or will load (`CODE_VIAS`): other
    bytes, another file type or symlink target. A mode, owner or xattr change alone
    leaves the mapped bytes what they were: no evidence for code."""
    return {
        p: c
        for p, c in changed.items()
        if c.status is not Status.MODIFIED or not _CODE_ASPECTS.isdisjoint(c.aspects)
    }


def _init_evidence(
    changed: dict[str, Change], root: str, spell: Spell = _as_named
) -> ProcessImpact | None:
    with RootFS(root) as fs:
        if not fs.is_file(INIT_PROGRAM):
            return None
        closure = elf_closure(fs, INIT_PROGRAM, load_loader_config(fs))
    real = dict(closure.real_paths).get(INIT_PROGRAM, INIT_PROGRAM)
    detail = f"PID 1 not readable: assumed from {INIT_PROGRAM}"
    code = _code(changed)
    found = _evidence(dict.fromkeys([*spell(INIT_PROGRAM), real]), Via.EXE, code)
    found += _needed_evidence(_needed(closure, code, spell), code, frozenset())
    if not found:
        return None
    # a guess, not an observation: the evidence is unconfirmed and says what it assumed
    evidence = tuple(
        attrs.evolve(e, detail=f"{detail}; {e.detail}" if e.detail else detail, confirmed=False)
        for e in _strongest(found)
    )
    return ProcessImpact(
        1, 0, None, real, (INIT_PROGRAM,), evidence, init=True, assumed_from=INIT_PROGRAM
    )


def _strongest(found: list[Evidence]) -> tuple[Evidence, ...]:
    best: dict[str, Evidence] = {}
    for e in found:
        held = best.get(e.path)
        if held is None or e.via.strength < held.via.strength:
            best[e.path] = e
    return tuple(sorted(best.values(), key=lambda e: (e.via.strength, e.path)))


def _import_chain(graph: ImportGraph, path: str) -> str:
    """ "wsgiref ← wsgiref.simple_server ← __main__" (start-up imports say so). A module
    that imports the next inside a function says so, and a chain with such an import
    ends saying it is uncertain: the function may never have run."""
    chain = graph.chain(path)
    if not chain:
        return ""
    hops = [*chain] if chain[-1] == "__main__" else [*chain, "(start-up)"]
    uncertain = False
    for i, name in enumerate(chain):
        if name in graph.deferred:
            hops[i + 1] += " (in a function)"
            uncertain = True
    text = " ← ".join(hops)
    return f"{text} {DEFERRED_UNCERTAIN}" if uncertain else text


def _needed_chain(closure: ElfClosure, path: str) -> str:
    """ "needed by libcurl.so.4 ← curl": the shortest loading chain to the program."""
    real = dict(closure.real_paths)
    program = posixpath.basename(real.get(closure.root_object, closure.root_object))
    if closure.interpreter is not None and path in (
        closure.interpreter,
        real.get(closure.interpreter),
    ):
        return f"the loader (PT_INTERP) of {program}"
    parent: dict[str, str] = {}
    for needer, needed in closure.edges:  # breadth-first loading order: first is shortest
        for name in {needed, real.get(needed, needed)}:
            parent.setdefault(name, needer)
    hops: list[str] = []
    node = parent.get(path)
    while node is not None and node not in hops and len(hops) < 64:
        hops.append(node)
        node = parent.get(node)
    names = (program if h == closure.root_object else posixpath.basename(h) for h in hops)
    return "needed by " + " ← ".join(names) if hops else ""


def _closure_unknown(closure: ElfClosure) -> str | None:
    """Why a closure cannot clear a process (what its program loads is not all known)."""
    if not closure.incomplete:
        return None
    more = len(closure.incomplete) - 1
    also = f" (and {more} more)" if more else ""
    return f"ELF closure not known: {closure.incomplete[0]}{also}"


_LD_SO_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf")
_LIBRARY_NAME = re.compile(r"\.so(?:\.|$)")


def _touches_resolution(changes: Iterable[Change]) -> bool:
    """Whether the delta can make a needed name resolve to another file: the loader's
    cache or configuration changed, or a library-like path, or a symlink in a library
    directory, was added, removed, or changed type or target."""
    for c in changes:
        if c.path.startswith(_LD_SO_FILES):
            return True
        moved = c.status is not Status.MODIFIED or not {Aspect.TYPE, Aspect.TARGET}.isdisjoint(
            c.aspects
        )
        if not moved:
            continue
        name = posixpath.basename(c.path)
        if _LIBRARY_NAME.search(name) or "/glibc-hwcaps/" in c.path:
            return True
        links = (e for e in (c.old, c.new) if e is not None and e.type is EntryType.SYMLINK)
        if any(links) and any(part.startswith("lib") for part in c.path.split("/")):
            return True
    return False


class NewResolution:
    """Where NEW's loader finds what a program's closure needs, where the delta can move
    it: a needed name that resolves to another file in NEW (a library NEW adds that
    shadows the one in use: a glibc-hwcaps variant, a directory its ld.so.conf and cache
    add) is loaded at the next start even though no file in use changed.

    NEW is read as a tree when it is a directory (`new_root`): each program's closure is
    computed there once, through the same search (`elf_closure`), and compared by name
    with the closure in use. Otherwise only the delta is known: a file NEW adds with the
    base name of a needed name, elsewhere than where it is found now, is unconfirmed
    evidence (whether NEW's loader picks it is not known).
    """

    def __init__(self, delta: Delta | None, new_root: str | None, spell: Spell = _as_named) -> None:
        changes = delta.changes if delta is not None else ()
        self.changes = {c.path: c for c in changes}
        self.wanted = _touches_resolution(changes)
        self.new_root = new_root if self.wanted else None
        self.spell = spell
        self.added: dict[str, list[str]] = {}
        for c in changes:
            if c.status is Status.ADDED and c.entry.type is not EntryType.DIR:
                self.added.setdefault(posixpath.basename(c.path), []).append(c.path)
        self._fs: RootFS | None = None
        self._config: LoaderConfig | None = None
        self._facts: FactsCache | None = None
        self.closures: dict[str, ElfClosure] = {}  # program -> its closure in NEW
        self.digests = SameBytes()  # per inode: OLD's and NEW's files compared once

    def evidence(self, closure: ElfClosure, fs: RootFS) -> list[Evidence]:
        """What NEW's resolution of `closure`'s names (computed in `fs`) changes."""
        if not self.wanted or not closure.libraries:
            return []
        if self.new_root is None:
            return self._by_name(closure)
        new = self._closure(closure.root_object)
        if not new.libraries:
            return []  # not in NEW, or not a program there: its own change says so
        real_old, real_new = dict(closure.real_paths), dict(new.real_paths)
        old_found = _candidates(closure)
        new_found = _candidates(new)
        out: list[Evidence] = []
        for name, (old_path, old_variants) in old_found.items():
            if name not in new_found:
                continue  # not found in NEW: the removal that caused it is in the delta
            new_path, new_variants = new_found[name]
            known = {real_old.get(p, p) for p in (old_path, *old_variants)}
            was = real_old.get(old_path, old_path)
            chain = _needed_chain(closure, old_path)
            now = real_new.get(new_path, new_path)
            if now != was and not self._same(fs, was, now):
                detail = f"{name} resolves to {new_path} in NEW, no longer to {old_path}"
                out += self._of(new_path, now, f"{detail}; {chain}" if chain else detail, True)
            for variant in new_variants:
                now = real_new.get(variant, variant)
                if now in known or self._same(fs, was, now):
                    continue
                detail = (
                    f"NEW adds {variant}, a variant of {name} the loader picks instead of "
                    f"{old_path} on a CPU that supports it"
                )
                out += self._of(variant, now, detail, False)
        return out

    def _by_name(self, closure: ElfClosure) -> list[Evidence]:
        known = closure.dependency_paths()
        out: list[Evidence] = []
        for name, path in closure.libraries:
            for added in self.added.get(posixpath.basename(name), ()):
                if added in known:
                    continue
                detail = (
                    f"NEW adds {added} with the name of {name} (found at {path}); NEW was "
                    "not read as a tree: whether its loader picks it is not known"
                )
                out += self._of(added, added, detail, False)
        return out

    def _of(self, path: str, real: str, detail: str, confirmed: bool) -> list[Evidence]:
        """Evidence on the change that moves the name: the file NEW finds, else the
        loader's cache or configuration."""
        spelt = [*self.spell(path), real]
        cache = [p for p in sorted(self.changes) if p.startswith(_LD_SO_FILES)]
        for candidate in (*spelt, *cache):
            c = self.changes.get(candidate)
            if c is not None:
                return [attrs.evolve(_of(c, Via.ELF_NEEDED, detail), confirmed=confirmed)]
        return []

    def _closure(self, program: str) -> ElfClosure:
        known = self.closures.get(program)
        if known is None:
            from imgdiff.loaders.elf import FactsCache

            assert self.new_root is not None
            if self._fs is None:
                self._fs = RootFS(self.new_root)
                self._config = load_loader_config(self._fs)
                self._facts = FactsCache()
            assert self._config is not None
            known = self.closures[program] = elf_closure(
                self._fs, program, self._config, cache=self._facts
            )
        return known

    def _same(self, fs: RootFS, old: str, new: str) -> bool:
        """Whether OLD's file (in `fs`) and NEW's have the same bytes."""
        if self._fs is None:
            return False
        digest = self._digest(fs, old)
        return digest is not None and digest == self._digest(self._fs, new)

    def _digest(self, fs: RootFS, path: str) -> str | None:
        st = fs.stat(path)
        return self.digests.now(fs, path, st) if st is not None else None

    def close(self) -> None:
        """Close NEW's root, if open."""
        if self._fs is not None:
            self._fs.close()
            self._fs = None


def _candidates(closure: ElfClosure) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Needed name -> (the file found for it, the CPU-dependent variants)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, path in closure.libraries:
        out.setdefault(name, (path, ()))
    for name, path in closure.alternatives:
        if name in out:
            found, variants = out[name]
            out[name] = (found, (*variants, path))
    return out


class _LiveReader:
    """Evidence read inside a live process's root, through one `Inspector` (its caches
    are shared across processes of the same root and mount namespace); `closures` keeps
    each program's changed dependencies with their loading chains."""

    def __init__(
        self,
        changed: dict[str, Change],
        procfs: str,
        import_graphs: bool,
        elf_needed: bool,
        stale: bool,
        untraced_strict: bool,
        spell: Spell = _as_named,
        new: NewResolution | None = None,
    ) -> None:
        self.changed, self.spell = changed, spell
        self.startup: Mapping[str, Change] = {}  # .pth files and added modules
        self.import_graphs, self.elf_needed, self.stale = import_graphs, elf_needed, stale
        self.python_changes = (
            sorted(p for p, c in changed.items() if c.kind in PYTHON_KINDS)
            if untraced_strict
            else []
        )
        self.code = _code(changed)
        self.inspector = Inspector(procfs)
        self.unknown: list[Gap] = []  # processes whose graph or closure is not known
        # (space, exe) -> its changed dependencies, or why its closure is incomplete
        self.closures: dict[tuple[object, ...], dict[str, _Needed] | str] = {}
        self.new = new or NewResolution(None, None)
        self.resolved: dict[tuple[object, ...], list[Evidence]] = {}

    def evidence(self, proc: Process) -> list[Evidence]:
        want_graph = self.import_graphs and is_python(proc) and not proc.traced
        if not (want_graph or self.stale or (self.elf_needed and proc.exe)):
            return []
        with self.inspector.open(proc) as (d, fs):
            return self._read(proc, d, fs, want_graph)

    def _read(self, proc: Process, d: ProcDir, fs: RootFS, want_graph: bool) -> list[Evidence]:
        out: list[Evidence] = []
        if self.stale:
            out += [_deleted(e, self.changed) for e in self.inspector.stale_uses(proc, d, fs)]
        if want_graph and proc.exe is not None:
            graph = self.inspector.graph(proc, fs)
            if (why := self.inspector.graph_unknown(proc, fs)) is not None:
                self.unknown.append(Gap(proc.pid, why))
            out += _graph_evidence(
                graph, self.changed, self.python_changes, self.spell, self.startup
            )
        # a program run from a memfd (runc re-executes itself so) has no file to read:
        # what it maps is matched as `mapped`, and no update changes what it runs
        if (
            self.elf_needed
            and proc.exe is not None
            and not is_pseudo(proc.exe)
            and (self.code or self.new.wanted)
        ):
            ckey = ((proc.root, proc.mnt_ns), proc.exe)
            if ckey not in self.closures:
                closure = self.inspector.closure(proc, fs)
                self.closures[ckey] = _closure_unknown(closure) or _needed(
                    closure, self.code, self.spell
                )
                self.resolved[ckey] = self.new.evidence(closure, fs)
            needed = self.closures[ckey]
            if isinstance(needed, str):  # not computed is unknown, never clean
                self.unknown.append(Gap(proc.pid, needed))
            else:
                mapped = frozenset(u.path for u in proc.files if u.via in ("exe", "mapped"))
                out += _needed_evidence(needed, self.code, mapped)
            out += self.resolved[ckey]
        return out


class ImageEvidence:
    """Import graphs and ELF closures read from the OLD image's files, for a saved
    snapshot: the host runs OLD's files, so what a program loads depends only on the
    program, its arguments (and working directory) and the image.

    Kept per (image identity, program, arguments) as the evidence it gives on the delta's
    changes, so many processes and hosts share one computation; `dict(...)` of the
    computed entries travels to other processes (a fleet's workers) with `known`, and a
    copy without the image (`root` None) answers only from it. Where OLD is not a
    directory (an archive, a saved manifest) nothing can be read: the answer is the
    reason, and `assess` lists the process as uninspected.
    """

    def __init__(
        self,
        delta: Delta,
        image: str | None,
        *,
        untraced_strict: bool = False,
        why_not: str = "OLD is not a directory",
        paths: ImagePaths | None = None,
        new: NewResolution | None = None,
    ) -> None:
        self.changed = _changed(delta)
        self.code = _code(self.changed)
        # where NEW's loader finds the names (a NEW that is no directory: by the delta)
        self.new = new if new is not None else NewResolution(delta, None, _speller(paths))
        self.startup = startup_changes(delta)
        self.paths = paths  # closures joined through the images' symlinks (not shared)
        self.root = image
        self.identity = _image_identity(image) if image is not None else why_not
        self.why_not = why_not
        self.python_changes = (
            sorted(p for p, c in self.changed.items() if c.kind in PYTHON_KINDS)
            if untraced_strict
            else []
        )
        # a changed symlink may be on the way to a module (a release switched by a link)
        self.wants_python = bool(self.startup) or any(
            c.kind in PYTHON_KINDS or _is_link_change(c) for c in self.changed.values()
        )
        relevant = any(c.kind != Kind.DOCS for c in self.code.values())
        self.wants_elf = relevant or self.new.wanted
        # key -> evidence, or the reason it could not be computed
        self.known: dict[tuple[object, ...], tuple[Evidence, ...] | str] = {}
        self._inspector: Inspector | None = None
        self._fs: RootFS | None = None
        self.shared = False
        self.redacted = False  # the snapshot's command lines were cut to argv[0]
        self._init: ProcessImpact | bool | None = False  # False: not computed yet

    def keys(self, proc: Process) -> list[tuple[object, ...]]:
        """The cache keys this process's evidence is made of (none when it needs none)."""
        out: list[tuple[object, ...]] = []
        if proc.exe is None or not proc.exe.startswith("/") or is_pseudo(proc.exe):
            return out  # no program to read (a snapshot's paths are absolute)
        if self.wants_python and is_python(proc) and not proc.traced:
            out.append((self.identity, "graph", proc.exe, proc.cmdline, proc.cwd))
        if self.wants_elf:
            out.append((self.identity, "closure", proc.exe))
        return out

    def compute(self, key: tuple[object, ...]) -> tuple[Evidence, ...] | str:
        """The evidence of one key, computed from the image once."""
        if key in self.known:
            return self.known[key]
        if self.root is None:
            result: tuple[Evidence, ...] | str = f"evidence not computed: {self.why_not}"
            if self.shared:  # a worker's copy: the image is not open here
                return f"evidence not computed: {key[1]} of {key[2]} missing from the cache"
        else:
            try:
                result = self._compute(key)
            except (OSError, ValueError, RecursionError, ImgdiffError) as exc:
                # a hostile snapshot's odd program or arguments: unknown, never a crash
                result = f"evidence not computed from OLD's files: {exc}"
        self.known[key] = result
        return result

    def evidence(self, proc: Process) -> tuple[Evidence, ...] | str:
        """This process's graph and closure evidence, or why it is unknown."""
        out: list[Evidence] = []
        for key in self.keys(proc):
            if self.redacted and key[1] == "graph":
                return "command line redacted in the host report: its import graph is unknown"
            got = self.compute(key)
            if isinstance(got, str):
                return got
            out += got
        return tuple(out)

    def _compute(self, key: tuple[object, ...]) -> tuple[Evidence, ...] | str:
        assert self.root is not None
        if self._fs is None:
            self._fs = RootFS(self.root)
            self._inspector = Inspector()
        fs, inspector = self._fs, self._inspector
        assert inspector is not None
        space = ("image", self.identity)
        if key[1] == "closure":
            exe = str(key[2])
            ckey = (space, exe)
            if ckey not in inspector.closures:
                if space not in inspector.loaders:
                    inspector.loaders[space] = load_loader_config(fs)
                inspector.closures[ckey] = elf_closure(
                    fs, exe, inspector.loaders[space], cache=inspector.facts
                )
            closure = inspector.closures[ckey]
            unknown = _closure_unknown(closure)
            if unknown is not None:  # not computed is unknown, never clean
                return unknown
            # the process's own maps are not asked here (the evidence is per program): a
            # dependency the CPU chooses is unconfirmed
            needed = dict(sorted(_needed(closure, self.code, _speller(self.paths)).items()))
            found = _needed_evidence(needed, self.code, frozenset())
            return (*found, *self.new.evidence(closure, fs))
        _, _, program, argv, cwd = key
        assert isinstance(program, str)
        assert isinstance(argv, tuple)
        graph = inspector.graphs.graph(
            fs, space, argv, program, cwd if isinstance(cwd, str) else None
        )
        if graph.unknown is not None:  # a program OLD does not have, stdin, a prompt, ...
            return f"evidence not computed from OLD's files: {graph.unknown}"
        if graph.searched is not None:  # a saved snapshot has no PATH to look at
            return (
                f"evidence not computed: started as {graph.searched!r} through PATH, which a"
                " saved snapshot does not hold: which interpreter (a venv's?) is unknown"
            )
        return tuple(
            _graph_evidence(
                graph, self.changed, self.python_changes, _speller(self.paths), self.startup
            )
        )

    def init_impact(self) -> ProcessImpact | None:
        """PID 1 as OLD's files say it would be (`init_evidence` inside OLD), for a
        snapshot of a host's root that could not read it; computed once."""
        if self._init is False:
            self._init = (
                _init_evidence(self.changed, self.root, _speller(self.paths)) if self.root else None
            )
        return self._init if isinstance(self._init, ProcessImpact) else None

    def shareable(self) -> ImageEvidence:
        """A copy holding only what was computed (no open image), for other processes."""
        self.init_impact()  # computed here, where OLD is
        copy = ImageEvidence.__new__(ImageEvidence)
        copy.__dict__.update(self.__dict__)
        copy.root, copy._fs, copy._inspector = None, None, None
        copy.new = NewResolution(None, None)  # NEW's tree stays here: the cache answers
        copy.shared = self.root is not None
        copy.known = dict(self.known)
        return copy

    def redacting(self) -> ImageEvidence:
        """This cache (shared, not copied) for a snapshot whose command lines were cut to
        the program: an untraced Python program's graph is then unknown, not computed
        from a wrong command line."""
        if self.root is not None and self._fs is None:  # opened here: closed with this one
            self._fs, self._inspector = RootFS(self.root), Inspector()
        view = ImageEvidence.__new__(ImageEvidence)
        view.__dict__.update(self.__dict__)
        view.redacted = True
        return view

    def close(self) -> None:
        """Close the image's root, if open."""
        if self._fs is not None:
            self._fs.close()
            self._fs = None


def _is_link_change(change: Change) -> bool:
    """A symlink repointed, or a path that is a symlink in OLD or NEW."""
    return Aspect.TARGET in change.aspects or any(
        e is not None and e.type is EntryType.SYMLINK for e in (change.old, change.new)
    )


def _image_identity(path: str) -> str:
    """Which image the cache is of: its real path and the root directory's identity."""
    st = os.stat(path)
    return f"{os.path.realpath(path)}@{st.st_dev}:{st.st_ino}"
