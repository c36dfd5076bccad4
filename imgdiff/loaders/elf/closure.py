"""The ELF dependency closure of programs inside a root, found the way glibc's loader would.

This module owns the static emulation of `ld.so`'s library search inside a `RootFS`: for
every DT_NEEDED name of a program and of each library it loads, DT_RPATH along the
loading chain, DT_RUNPATH of the loading object, the cache or ld.so.conf directories of
the root's `LoaderConfig` (`ldconf`), the default directories of its ABI (`abi`);
`$ORIGIN`, `$LIB` and `$PLATFORM`; glibc-hwcaps subdirectories; the ELF class and machine
check; and the reverse index from a library to the programs that will load it on their
next start. It must never execute anything it scans (no `ldd`, no `ld.so --list`: both
run the image's own loader), never read outside the root (every path goes through
`RootFS`), never trust a process environment (LD_LIBRARY_PATH, LD_PRELOAD are
deliberately ignored), and never fail on a hostile or broken file: every unreadable,
truncated or malformed object becomes a note, and every loop and list is bounded. What
`dlopen` loads at run time is out of its reach.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Literal

import attrs

from imgdiff.elf import ET_DYN, ET_EXEC, MAGIC, ElfInfo, ElfParseError, read_elf_info
from imgdiff.errors import escape_path
from imgdiff.fs.paths import child
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.cache import FileCache
from imgdiff.loaders.elf.abi import (
    CACHE_FLAGS,
    EM_X86_64,
    LEGACY_HWCAPS,
    PLATFORMS,
    Abi,
    default_search_dirs,
    lib_values,
)
from imgdiff.loaders.elf.ldcache import LD_SO_CACHE
from imgdiff.loaders.elf.ldconf import LoaderConfig

__all__ = [
    "ElfClosure",
    "FactsCache",
    "ObjectFacts",
    "elf_closure",
    "reverse_index",
]

# Safety bounds. A Debian program loads 5-40 objects from a few dozen directories;
# anything far beyond is hostile.
MAX_OBJECTS: Final = 4096  # objects in one closure, alternatives included
MAX_DEPTH: Final = 64  # links from the program to the farthest object
MAX_NOTES: Final = 256  # notes kept per closure (then one "omitted" note)
MAX_PATH_DIRS: Final = 256  # directories kept from one DT_RPATH/DT_RUNPATH
MAX_PROBES: Final = 100_000  # candidate files and directories looked at in one closure
MAX_VARIANTS: Final = 16  # glibc-hwcaps subdirectories considered per directory


# --------------------------------------------------------------------------- object facts


@attrs.frozen(slots=True)
class ObjectFacts:
    """What the loader checks in one file, independent of who loads it.

    `error` is set when the file is not ELF or its header is cut short: glibc stops the
    program with "invalid ELF header" / "file too short" when it meets such a file in a
    search directory. Otherwise `elf_class` (32, 64, or 0 for an invalid EI_CLASS),
    `endian`, `machine` and `e_type` are the header's, and `info` the dynamic-linking
    facts, or `info_error` saying why they could not be read.
    """

    elf_class: int = 0
    endian: str = ""
    machine: int = 0
    e_type: int = 0
    info: ElfInfo | None = None
    error: str | None = None
    info_error: str | None = None


class FactsCache(FileCache[ObjectFacts]):
    """Parsed facts per file identity (`loaders.cache`): the same inode reached through
    usr-merge symlinks (/lib/... and /usr/lib/...), or needed by many programs, is one
    parse."""


_EHDR_START: Final = {"little": struct.Struct("<HH"), "big": struct.Struct(">HH")}


def _read_facts(fd: int, size: int, name: str) -> ObjectFacts:
    """Facts of the open regular file `fd` of `size` bytes."""
    head = os.pread(fd, 64, 0)
    if len(head) >= 4 and head[:4] != MAGIC:
        return ObjectFacts(error="invalid ELF header")
    elf_class = {1: 32, 2: 64}.get(head[4], 0) if len(head) > 4 else 0
    if len(head) < (64 if elf_class == 64 else 52):
        return ObjectFacts(error="file too short")
    endian = {1: "little", 2: "big"}.get(head[5])
    if endian is None:
        return ObjectFacts(error=f"invalid EI_DATA {head[5]}")
    # Only e_type and e_machine are needed here; `imgdiff.elf.parse_header` would also
    # insist on the program headers lying in the first 4 KiB, which patchelf breaks.
    e_type, machine = _EHDR_START[endian].unpack_from(head, 16)
    info = info_error = None
    if e_type in (ET_DYN, ET_EXEC) and elf_class:
        try:
            with open(fd, "rb", buffering=0, closefd=False) as fh:
                info = read_elf_info(fh, size, name=name)
        except ElfParseError as exc:
            info_error = str(exc)
    return ObjectFacts(elf_class, endian, machine, e_type, info, None, info_error)


# --------------------------------------------------------------------------- the closure


@attrs.frozen(slots=True)
class ElfClosure:
    """Every file the loader maps to start `root_object`, and how they need each other.

    Paths are inside the root, spelled as the loader finds them (a RUNPATH of
    `$ORIGIN/../lib` gives `/opt/app/bin/../lib/libx.so.1`, as `ldd` prints it);
    `real_paths` maps such a path to the file it leads to with symlinks and `..` resolved
    inside the root, where they differ. `libraries` pairs each loaded DT_NEEDED name with
    its path, in loading order (breadth first, like glibc). `alternatives` are glibc-hwcaps
    (and legacy hwcap) variants the loader picks instead on a CPU that supports them, and
    files a `$PLATFORM` path leads to on another CPU model than the one `libraries`
    assumes: possible dependencies, their own needs followed too. `edges` are (needer, needed)
    path pairs. `interpreter` is PT_INTERP as written in the program. `unresolved` lists
    names the loader would not find (the program would not start); `notes` say why, and
    what was skipped or unreadable. `incomplete` says why the closure may lack files the
    loader maps (empty when it is the whole answer): the program could not be read, its
    interpreter or a needed name was not found in the root (a running program found them
    elsewhere: a relative RUNPATH, LD_LIBRARY_PATH), or a bound cut the walk short.
    """

    root_object: str
    interpreter: str | None = None
    libraries: tuple[tuple[str, str], ...] = ()
    alternatives: tuple[tuple[str, str], ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    unresolved: tuple[str, ...] = ()
    real_paths: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    incomplete: tuple[str, ...] = ()

    def dependency_paths(self) -> frozenset[str]:
        """Paths whose change affects the next start of the program, its own aside.

        The interpreter, every library and alternative, each as found and as resolved.
        """
        found = {path for _, path in (*self.libraries, *self.alternatives)}
        if self.interpreter is not None:
            found.add(self.interpreter)
        resolved = {real for path, real in self.real_paths if path in found}
        return frozenset(found | resolved)


_Status = Literal["absent", "mismatch", "fatal", "ok"]


@attrs.frozen(slots=True)
class _Probe:
    """What the loader makes of one candidate path."""

    status: _Status
    path: str
    reason: str = ""
    real_path: str = ""
    file_id: tuple[int, int] = (0, 0)
    facts: ObjectFacts | None = None


@attrs.define(slots=True)
class _Object:
    """One object of the closure being built."""

    index: int
    path: str
    info: ElfInfo
    origin: str  # what $ORIGIN expands to for this object's own strings
    loader: int | None
    depth: int
    file_id: tuple[int, int] = (0, 0)
    platform_kinds: frozenset[str] = frozenset()  # "rpath"/"runpath": entries use $PLATFORM
    # expanded DT_RPATH/DT_RUNPATH per (kind, $PLATFORM value or None if it uses none)
    search_dirs: dict[tuple[str, str | None], tuple[str, ...]] = attrs.Factory(dict)


@attrs.define(slots=True)
class _Found:
    """What the search for one needed name ends with (under one `$PLATFORM` value)."""

    primary: _Probe | None = None
    variants: list[_Probe] = attrs.Factory(list)
    fatal: _Probe | None = None
    known: int | None = None  # the name is an object already loaded: its index


_DST: Final = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return _DST.sub(lambda m: values[m.group(1) or m.group(2)], text)


def _uses_platform(text: str) -> bool:
    return "$" in text and any("PLATFORM" in m.groups() for m in _DST.finditer(text))


class _Closure:
    """One run of the search; holds the per-run memos (directory existence, probes)."""

    def __init__(self, fs: RootFS, config: LoaderConfig, facts: FactsCache) -> None:
        self.fs = fs
        self.config = config
        self.facts = facts
        self.notes: dict[str, None] = {}  # ordered, without repeats
        self.incomplete: dict[str, None] = {}  # why files may be missing, ordered
        self.unresolved: dict[str, None] = {}
        self.objects: list[_Object] = []
        self.by_name: dict[str, int] = {}
        self.by_file: dict[tuple[int, int], int] = {}
        self.variant_files: set[tuple[int, int]] = set()
        self.libraries: list[tuple[str, str]] = []
        self.alternatives: list[tuple[str, str]] = []
        self.edges: dict[tuple[str, str], None] = {}
        self.real_paths: dict[str, str] = {}
        self.probes: dict[str, _Probe] = {}
        self.dirs: dict[str, bool] = {}
        self.variant_dirs: dict[str, tuple[str, ...]] = {}
        self.probe_budget = MAX_PROBES
        self.abi: Abi = (64, "little", EM_X86_64)
        self.lib_values: tuple[str, ...] | None = None  # what $LIB expands to
        # what $PLATFORM may expand to (None: not known for this ABI), the value searched
        # with now, and whether the current search met it
        self.platforms: tuple[str | None, ...] = (None,)
        self.platform: str | None = None
        self.platform_used = False

    # ----------------------------------------------------------------- notes and files

    def gap(self, text: str) -> None:
        """Note what leaves the closure incomplete (`ElfClosure.incomplete`)."""
        if len(self.incomplete) < MAX_NOTES:
            self.incomplete[text] = None
        self.note(text)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes[text] = None
        elif len(self.notes) == MAX_NOTES:
            self.notes["further notes omitted"] = None

    def _facts(self, fd: int, st: os.stat_result, path: str) -> ObjectFacts:
        facts = self.facts.get(st)
        if facts is not None:
            return facts
        try:  # reopen the O_PATH descriptor for reading, without resolving `path` again
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            rfd = self.fs.open(path)
        try:
            check = os.fstat(rfd)
            if (check.st_dev, check.st_ino) != (st.st_dev, st.st_ino):
                raise OSError(errno.ESTALE, "file replaced while reading", path)
            facts = _read_facts(rfd, st.st_size, path)
        finally:
            os.close(rfd)
        self.facts.put(st, facts)
        return facts

    def spend(self) -> bool:
        """Charge one file or directory to the search; False once MAX_PROBES are spent."""
        self.probe_budget -= 1
        if self.probe_budget == -1:
            self.gap(f"more than {MAX_PROBES} files and directories looked at; incomplete")
        return self.probe_budget >= 0

    def probe(self, path: str) -> _Probe:
        """Look at a candidate library as `open_verify` would (memoised per run)."""
        known = self.probes.get(path)
        if known is not None:
            return known
        if not self.spend():
            return _Probe("absent", path, "search limit reached")
        result = self.probes[path] = self._probe(path, library=True)
        return result

    def _probe(self, path: str, *, library: bool) -> _Probe:
        try:
            fd = self.fs.open(path, os.O_PATH)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                self.note(f"{escape_path(path)}: {os.strerror(exc.errno or 0)}; skipped")
            return _Probe("absent", path)
        try:
            st = os.fstat(fd)
            if not stat_.S_ISREG(st.st_mode):
                # glibc opens it and fails to read an ELF header from it: fatal
                return _Probe("fatal", path, "not a regular file")
            facts = self._facts(fd, st, path)
            real = self.fs.path_of(fd) or path
        except OSError as exc:
            return _Probe("fatal", path, f"cannot read file data ({exc.strerror})")
        finally:
            os.close(fd)
        file_id = (st.st_dev, st.st_ino)
        return _Probe(self._verdict(facts, library), path, self._why(facts), real, file_id, facts)

    def _verdict(self, facts: ObjectFacts, library: bool) -> _Status:
        """glibc's open_verify order: magic, class (skip), data, machine (skip), type."""
        if facts.error is not None:
            return "fatal"
        elf_class, endian, machine = self.abi
        if facts.elf_class != elf_class:
            return "mismatch"
        if facts.endian != endian or facts.machine != machine:
            return "mismatch"
        if facts.e_type != ET_DYN and (library or facts.e_type != ET_EXEC):
            return "fatal"
        if facts.info_error is not None or facts.info is None:
            return "fatal"
        return "ok"

    def _why(self, facts: ObjectFacts) -> str:
        if facts.error is not None:
            return facts.error
        if facts.elf_class != self.abi[0]:
            return f"ELFCLASS{facts.elf_class or 'NONE'}, the program is ELFCLASS{self.abi[0]}"
        if facts.endian != self.abi[1] or facts.machine != self.abi[2]:
            return f"machine {facts.machine} ({facts.endian}-endian), not the program's"
        if facts.e_type not in (ET_DYN, ET_EXEC):
            return f"e_type {facts.e_type} cannot be loaded"
        if facts.e_type == ET_EXEC:
            return "an executable (ET_EXEC) cannot be loaded as a library"
        return facts.info_error or ""

    def is_dir(self, path: str) -> bool:
        known = self.dirs.get(path)
        if known is None:
            known = self.dirs[path] = self.fs.is_dir(path)
        return known

    # ----------------------------------------------------------------- search paths

    def expand(self, text: str, obj: _Object) -> list[str]:
        """`text` with dynamic string tokens replaced; one result per `$LIB` value."""
        if "$" not in text:
            return [text]
        tokens = {m.group(1) or m.group(2) for m in _DST.finditer(text)}
        platform = self.platform
        if "PLATFORM" in tokens:
            if platform is None:
                self.note(
                    f"{escape_path(obj.path)}: $PLATFORM is not known for this machine; "
                    f"{escape_path(text)} dropped"
                )
                return []
            self.platform_used = True
        libs = (self.lib_values or lib_values(self.abi)) if "LIB" in tokens else ("",)
        return [
            _substitute(text, {"ORIGIN": obj.origin, "PLATFORM": platform or "", "LIB": lib})
            for lib in libs
        ]

    def path_dirs(self, obj: _Object, kind: Literal["rpath", "runpath"]) -> tuple[str, ...]:
        """The directories of `obj`'s DT_RPATH or DT_RUNPATH, with the current $PLATFORM."""
        key: tuple[str, str | None] = (kind, None)
        if kind in obj.platform_kinds:
            self.platform_used = True
            key = (kind, self.platform)
        cached = obj.search_dirs.get(key)
        if cached is not None:
            return cached
        elements = obj.info.rpath if kind == "rpath" else obj.info.runpath
        dirs: dict[str, None] = {}
        for element in elements:
            if len(dirs) > MAX_PATH_DIRS:
                break
            if not element:
                self.note(
                    f"{escape_path(obj.path)}: empty {kind.upper()} entry means the "
                    "working directory; not searched"
                )
                continue
            for expanded in self.expand(element, obj):
                if not expanded.startswith("/"):
                    self.note(
                        f"{escape_path(obj.path)}: {kind.upper()} entry "
                        f"{escape_path(expanded)} is relative to the working "
                        "directory; not searched"
                    )
                    continue
                dirs[expanded.rstrip("/") or "/"] = None
        if len(dirs) > MAX_PATH_DIRS:
            self.note(
                f"{escape_path(obj.path)}: {kind.upper()} of more than {MAX_PATH_DIRS} "
                "directories; the rest not searched"
            )
        result = obj.search_dirs[key] = tuple(dirs)[:MAX_PATH_DIRS]
        return result

    def steps(self, obj: _Object) -> Iterator[str | None]:
        """glibc's search order for a name needed by `obj`; None marks the cache step."""
        if not obj.info.runpath:
            # DT_RPATH of the needing object, its loader, and so on up to the program
            did_main = False
            current: _Object | None = obj
            while current is not None:
                if current.info.rpath:
                    yield from self.path_dirs(current, "rpath")
                    did_main |= current.index == 0
                current = None if current.loader is None else self.objects[current.loader]
            main = self.objects[0]
            if not did_main and main.info.rpath:
                yield from self.path_dirs(main, "rpath")
        # LD_LIBRARY_PATH would come here: never read from a process environment.
        if obj.info.runpath:
            yield from self.path_dirs(obj, "runpath")
        yield None
        yield from default_search_dirs(*self.abi)

    def variants_of(self, directory: str) -> tuple[str, ...]:
        """glibc-hwcaps subdirectories and legacy hwcap subdirectories of `directory`."""
        known = self.variant_dirs.get(directory)
        if known is not None:
            return known
        hwcaps = child(directory, "glibc-hwcaps")
        names = sorted(self.fs.listdir(hwcaps) or ())[:MAX_VARIANTS]
        found = [child(hwcaps, name) for name in names]
        # glibc before 2.37 also searched the legacy subdirectories: each nesting of tls/,
        # the platform and the hwcap names its CPU has (tls/haswell/avx512_1/x86_64, ...,
        # x86_64 on an AVX-512 Intel CPU). Every platform is a candidate; a nesting is
        # looked for only where its parent exists.
        levels = (
            ("tls",),
            tuple(p for p in self.platforms if p is not None),
            *((name,) for name in LEGACY_HWCAPS.get(self.abi, ())),
        )
        prefixes = {directory: None}
        for level in levels:
            for prefix in list(prefixes):
                for name in level:
                    sub = child(prefix, name)
                    if sub not in prefixes and self.is_dir(sub):
                        prefixes[sub] = None
        found += list(prefixes)[1:]
        result = self.variant_dirs[directory] = tuple(found)
        return result

    def try_file(self, path: str, found: _Found, *, variant: bool = False) -> bool:
        """Probe one candidate; True when the search for this name is over."""
        result = self.probe(path)
        if result.status == "ok":
            if variant:
                found.variants.append(result)
                return False
            found.primary = result
            return True
        if result.status == "mismatch":
            self.note(f"skipped {escape_path(path)}: {result.reason}")
        elif result.status == "fatal":
            if variant:  # only fatal on a CPU that selects this subdirectory
                self.note(f"{escape_path(path)}: {result.reason} (hwcaps variant ignored)")
                return False
            found.fatal = result
            return True
        return False

    def try_dir(self, directory: str, name: str, found: _Found) -> bool:
        if not self.spend():
            return True  # out of budget: the search ends with nothing found
        if not self.is_dir(directory):
            return False
        for sub in self.variants_of(directory):
            self.try_file(child(sub, name), found, variant=True)
        return self.try_file(child(directory, name), found)

    def try_cache(self, name: str, found: _Found) -> bool:
        accepted = CACHE_FLAGS.get(self.abi)
        plain_tried = False
        for entry in self.config.cache_entries(name):
            if accepted is not None and entry.flags not in accepted:
                continue
            if accepted is None and entry.flags & 0xFF not in (1, 3):
                continue
            if entry.hwcap:
                self.try_file(entry.path, found, variant=True)
            elif not plain_tried:  # glibc takes the first matching entry, then verifies it
                plain_tried = True
                if self.try_file(entry.path, found):
                    return True
        return False

    def search(self, name: str, obj: _Object) -> _Found:
        """Find one (DST-expanded) needed name for `obj`."""
        found = _Found()
        if "/" in name:
            if name.startswith("/"):
                self.try_file(name, found)
            else:
                self.note(
                    f"{escape_path(obj.path)} needs {escape_path(name)}, a path "
                    "relative to the working directory; not resolved"
                )
            return found
        for step in self.steps(obj):
            if step is None:
                if self.config.cache is not None:
                    done = self.try_cache(name, found)
                else:
                    done = any(self.try_dir(d, name, found) for d in self.config.conf_dirs)
            else:
                done = self.try_dir(step, name, found)
            if done:
                return found
        if self.config.cache is not None and not found.variants:
            for directory in self.config.conf_dirs:  # only to explain the miss
                if self.probe(child(directory, name)).status == "ok":
                    self.note(
                        f"{escape_path(name)} is in {escape_path(directory)} "
                        f"(ld.so.conf) but not in {LD_SO_CACHE}: stale cache"
                    )
                    break
        return found

    # ----------------------------------------------------------------- the walk

    def add(self, probe: _Probe, loader: _Object | None) -> _Object:
        info = probe.facts.info if probe.facts is not None else None
        if info is None:
            raise ValueError(f"{probe.path}: only a probe judged 'ok' can be added")
        index = len(self.objects)
        if loader is None:  # the program: $ORIGIN is the kernel's path, /proc/self/exe
            origin = probe.real_path.rpartition("/")[0] or "/"
        else:
            origin = probe.path.rpartition("/")[0] or "/"
        obj = _Object(
            index=index,
            path=probe.path,
            info=info,
            origin=origin,
            loader=None if loader is None else loader.index,
            depth=0 if loader is None else loader.depth + 1,
            file_id=probe.file_id,
            platform_kinds=frozenset(
                kind
                for kind, entries in (("rpath", info.rpath), ("runpath", info.runpath))
                if any(_uses_platform(entry) for entry in entries)
            ),
        )
        self.objects.append(obj)
        if probe.real_path and probe.real_path != probe.path:
            self.real_paths[probe.path] = probe.real_path
        return obj

    def register(self, obj: _Object, probe: _Probe, name: str) -> None:
        self.by_file[probe.file_id] = obj.index
        for alias in (name, obj.info.soname, obj.path):
            if alias:
                self.by_name.setdefault(alias, obj.index)

    def edge(self, needer: _Object, needed: str) -> None:
        self.edges[needer.path, needed] = None

    def unresolved_name(self, name: str, needer: _Object, why: str) -> None:
        self.unresolved[name] = None
        self.gap(f"{escape_path(needer.path)} needs {escape_path(name)}: {why}")

    def run(self, path: str) -> ElfClosure:
        main = self._probe(path, library=False)
        facts = main.facts
        if facts is not None and facts.error is None and facts.elf_class:
            # the program fixes the ABI every other object must match
            self.abi = (facts.elf_class, facts.endian, facts.machine)
            self.platforms = PLATFORMS.get(self.abi, (None,))
            main = attrs.evolve(main, status=self._verdict(facts, False), reason=self._why(facts))
        elif facts is not None and facts.error is None:
            main = attrs.evolve(main, status="fatal", reason="invalid ELF class")
        if main.status != "ok":
            self.gap(f"{escape_path(path)}: {main.reason or 'not found'}; no closure")
            return self.result(path, None)
        root = self.add(main, None)
        self.register(root, main, path)
        interpreter = root.info.interpreter
        if interpreter is not None:
            interp = self.probe(interpreter)
            if interp.status == "ok":
                # glibc installs ld.so in its slibdir, the directory $LIB names
                where = interp.real_path.rpartition("/")[0].removeprefix("/usr").lstrip("/")
                if where in lib_values(self.abi):
                    self.lib_values = (where,)
                obj = self.add(interp, root)
                self.register(obj, interp, interpreter)
                self.edge(root, interp.path)
            else:
                self.gap(
                    f"interpreter {escape_path(interpreter)}: "
                    f"{interp.reason or 'not found'}; the program cannot start"
                )
        queue = deque(self.objects)
        while queue:
            obj = queue.popleft()
            if obj.depth >= MAX_DEPTH:
                self.gap(f"{escape_path(obj.path)}: depth limit {MAX_DEPTH}; needs not followed")
                continue
            for name in obj.info.needed:
                if not self.need(name, obj, queue):
                    return self.result(path, interpreter)
        return self.result(path, interpreter)

    def need(self, name: str, obj: _Object, queue: deque[_Object]) -> bool:
        """Resolve one DT_NEEDED name of `obj`; False when the object limit stops the walk.

        When the search met `$PLATFORM` and the ABI has several platforms, it is done
        again for each of them (what the loader does depends on the CPU model); see `merge`.
        """
        self.platform, self.platform_used = self.platforms[0], False
        found = self.resolve(name, obj)
        if self.platform_used and len(self.platforms) > 1:
            outcomes = [(self.platform, found)]
            for platform in self.platforms[1:]:
                self.platform = platform
                outcomes.append((platform, self.resolve(name, obj)))
            self.platform = self.platforms[0]
            found = self.merge(name, obj, outcomes)
        return self.take(name, obj, found, queue)

    def resolve(self, name: str, obj: _Object) -> _Found:
        """Search one DT_NEEDED name of `obj` as the loader does, with the current $PLATFORM."""
        names = self.expand(name, obj) if "$" in name else [name]
        for wanted in names:
            known = self.by_name.get(wanted)
            if known is not None:  # already loaded under this name, soname or path
                return _Found(known=known)
        found = _Found()
        for wanted in names:
            found = self.search(wanted, obj)
            if found.primary is not None or found.fatal is not None or found.variants:
                break
        return found

    def merge(self, name: str, obj: _Object, outcomes: list[tuple[str | None, _Found]]) -> _Found:
        """One answer from the searches under each `$PLATFORM` value (the first: AT_PLATFORM).

        Where they all find the same file (or all fail alike) that is the answer, as with
        one platform. Otherwise the CPU decides: the first file found, in platform order,
        stays the answer, the others' files become alternatives (possible dependencies,
        like hwcaps variants) and a note tells what each platform leads to.
        """

        def outcome(found: _Found) -> tuple[str, object]:
            if found.known is not None:
                return "file", self.objects[found.known].file_id
            if found.primary is not None:
                return "file", found.primary.file_id
            if found.fatal is not None:
                return "fatal", found.fatal.path
            return "variants", tuple(probe.path for probe in found.variants)

        def describe(found: _Found) -> str:
            if found.known is not None:
                return escape_path(self.objects[found.known].path)
            if found.primary is not None:
                return escape_path(found.primary.path)
            if found.fatal is not None:
                return f"the loader stops at {escape_path(found.fatal.path)}"
            if found.variants:
                return f"only in hwcaps subdirectories ({escape_path(found.variants[0].path)})"
            return "not found"

        results = [found for _, found in outcomes]
        chosen = next((f for f in results if f.known is not None or f.primary is not None), None)
        chosen = chosen or next((f for f in results if f.variants), results[0])
        merged = _Found(chosen.primary, [], chosen.fatal, chosen.known)
        variants: dict[str, _Probe] = {}
        for found in results:
            others = found.variants
            if found is not chosen:
                if found.known is not None and found.known != chosen.known:
                    self.edge(obj, self.objects[found.known].path)
                others = [*([found.primary] if found.primary is not None else []), *others]
            for probe in others:
                if chosen.primary is None or probe.path != chosen.primary.path:
                    variants.setdefault(probe.path, probe)
        merged.variants = list(variants.values())
        if len({outcome(found) for found in results}) > 1:
            each = "; ".join(f"{platform}: {describe(found)}" for platform, found in outcomes)
            self.note(
                f"{escape_path(obj.path)} needs {escape_path(name)}: the file depends on "
                f"the CPU model, which sets $PLATFORM ({each})"
            )
        return merged

    def take(self, name: str, obj: _Object, found: _Found, queue: deque[_Object]) -> bool:
        """Add what the search found for `name` to the closure; False at the object limit."""
        if found.known is not None:
            self.edge(obj, self.objects[found.known].path)
        elif found.primary is None and found.variants:
            found.primary = found.variants.pop(0)
            self.note(
                f"{escape_path(name)} exists only in hwcaps subdirectories: "
                f"{escape_path(found.primary.path)} on a CPU that supports it"
            )
        if found.primary is None and found.known is None:
            if found.fatal is not None:
                why = f"the loader stops at {escape_path(found.fatal.path)}: {found.fatal.reason}"
            else:
                why = "not found"
            self.unresolved_name(name, obj, why)
            return True
        primary = () if found.primary is None else (found.primary,)
        for probe in (*primary, *found.variants):
            is_variant = probe is not found.primary
            known = self.by_file.get(probe.file_id)
            if known is not None:  # the same file under another name: one object
                self.edge(obj, self.objects[known].path)
                if not is_variant:
                    self.by_name.setdefault(name, known)
                continue
            if is_variant and probe.file_id in self.variant_files:
                self.edge(obj, probe.path)
                continue
            if len(self.objects) >= MAX_OBJECTS:
                self.gap(f"more than {MAX_OBJECTS} objects; closure truncated")
                return False
            new = self.add(probe, obj)
            if is_variant:
                self.variant_files.add(probe.file_id)
                self.alternatives.append((name, probe.path))
            else:
                self.register(new, probe, name)
                self.libraries.append((name, probe.path))
            self.edge(obj, probe.path)
            queue.append(new)
        return True

    def result(self, path: str, interpreter: str | None) -> ElfClosure:
        return ElfClosure(
            root_object=path,
            interpreter=interpreter,
            libraries=tuple(self.libraries),
            alternatives=tuple(self.alternatives),
            edges=tuple(self.edges),
            unresolved=tuple(self.unresolved),
            real_paths=tuple(self.real_paths.items()),
            notes=tuple(self.notes),
            incomplete=tuple(self.incomplete),
        )


def elf_closure(
    fs: RootFS, path: str, config: LoaderConfig, *, cache: FactsCache | None = None
) -> ElfClosure:
    """The objects the loader maps to start the program at `path` inside the root `fs`.

    Emulates glibc's `ld.so` without running it. The program's PT_INTERP is loaded first,
    so a DT_NEEDED naming its soname (libc's ld-linux-x86-64.so.2) is that file. Then the
    DT_NEEDED names of each object are resolved breadth first; a name already loaded (as
    requested name, soname or path) or a file already mapped (same inode) is reused. A
    name containing '/' is a path. Any other name, needed by object X, is searched in:

    1. DT_RPATH of X, of the object that loaded X, and so on up to the program - only if
       X has no DT_RUNPATH;
    2. (LD_LIBRARY_PATH: deliberately ignored. A process environment is no evidence about
       the next start, and trusting it would let any user steer the answer);
    3. DT_RUNPATH of X itself (never inherited);
    4. the ld.so.cache, or without a usable cache the ld.so.conf directories (see
       `LoaderConfig`);
    5. the default directories of the program's architecture (`default_search_dirs`).

    `$ORIGIN` is the directory of the object inside the root (for the program, with
    symlinks resolved, as /proc/self/exe gives it). `$LIB` is a build choice of each
    distribution: the directory the root's loader lives in (glibc installs ld.so in the
    slibdir `$LIB` names: lib/x86_64-linux-gnu on Debian, lib64 on Fedora), else every
    plausible value. `$PLATFORM` depends on the CPU model on x86 (glibc 2.26 and later,
    2.37+ included, replace AT_PLATFORM by "haswell" or "xeon_phi" on Intel CPUs that
    have their features: see `abi.PLATFORMS`), so a search that meets it is done for every
    value the ABI allows; where they lead to different files, the one of the first
    platform found stays in `libraries`, the others go to `alternatives`, and a note says
    the answer depends on the CPU model. An ABI whose platform is not known (32-bit ARM,
    ...) drops the entries that use it, with a note.

    Every directory searched is also searched through its glibc-hwcaps subdirectories (and
    the legacy tls/, platform and hwcap ones of glibc < 2.37, for every platform). Which
    one the loader takes depends on the CPU that will run the program, unknown here, so
    every existing variant is recorded in `alternatives` (the plain library stays the
    answer in `libraries`).
    A candidate of another ELF class or machine is skipped, as `ld.so` skips it; one that
    is not ELF or is corrupt stops the search, as it stops `ld.so`: the name is then
    unresolved, with a note naming the file. DF_1_NODEFLIB, secure-execution (setuid)
    rules, LD_PRELOAD and /etc/ld.so.preload are not modelled.

    `cache` keeps parsed facts per file identity (`loaders.cache`) across calls, so
    programs sharing libc parse it once: pass one `FactsCache` for all the programs of an
    image scan. Never raises for file content; bounded by MAX_OBJECTS,
    MAX_DEPTH and MAX_PROBES.
    """
    return _Closure(fs, config, FactsCache() if cache is None else cache).run(path)


def reverse_index(closures: Iterable[ElfClosure]) -> dict[str, set[str]]:
    """Library path → the programs (`root_object`) whose next start maps it.

    Keys are every path of `ElfClosure.dependency_paths`: as the loader found it and as
    it resolves inside the root, so a change reported under either spelling finds them.
    """
    index: dict[str, set[str]] = {}
    for closure in closures:
        for path in closure.dependency_paths():
            index.setdefault(path, set()).add(closure.root_object)
    return index
