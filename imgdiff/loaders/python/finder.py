"""The finder: the static import graph of an untraced Python process, the files it loads.

This module owns walking a program's imports breadth first the way `PathFinder` and
`FileFinder` resolve them (built-in and frozen modules, extensions, sources, bytecode,
packages and namespace packages) over the `sys.path` the interpreter module computes,
from the program's entry point and CPython's start-up imports, and caching parsed files
by identity across processes (`ImportCache`, `ProgramGraphs`). It reads files only
through `RootFS` and leaves reading the command line, the interpreter and source text to
`cmdline`, `interpreter` and `scan`; it must never compile, execute or import what it
reads, nor consult any environment. The result is evidence ``import-graph``: an
over-approximation (every import in every branch and function, except under ``if
TYPE_CHECKING:``) that still misses names computed at run time, listed in
`ImportGraph.dynamic`; traced imports are stronger evidence. Imports inside functions
may never run: what only they reach is in `ImportGraph.deferred`, and the walk follows
them last, so a module both kinds reach gets its chain through module-level imports.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import attrs

from imgdiff.fs.paths import child, join, normalise
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.cache import FileCache
from imgdiff.loaders.python.cmdline import Invocation, RunMode, parse_cmdline
from imgdiff.loaders.python.interpreter import (
    Interpreter,
    default_sys_path,
    find_interpreter,
)
from imgdiff.loaders.python.scan import NOTHING, Parsed, ParseMode, Ref, extract

VIA = "import-graph"
DEFAULT_MAX_FILE_SIZE = 16 << 20
DEFAULT_TIME_LIMIT = 30.0
DEFAULT_MAX_MODULES = 20_000


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Modules CPython 3.11+ freezes into the interpreter binary and loads from there unless run
# with `-X frozen_modules=off` (Tools/build/freeze_modules.py, FROZEN; the test-only
# `__hello__` family left out). A changed `os.py` therefore only matters through a changed
# executable; their sources are still read to follow what they import.
_FROZEN_STDLIB = _words(
    "abc codecs io _collections_abc _sitebuiltins genericpath ntpath posixpath os site stat "
    "importlib.util importlib.machinery runpy"
)
# Frozen in every CPython 3 (the import system itself), whatever -X says.
_FROZEN_ALWAYS = _words(
    "_frozen_importlib _frozen_importlib_external importlib._bootstrap "
    "importlib._bootstrap_external zipimport"
)
# Built into every CPython build: found before sys.path is searched.
_CORE_BUILTINS = _words(
    "_abc _ast _codecs _collections _functools _imp _io _locale _operator _signal _sre "
    "_stat _string _symtable _thread _tokenize _tracemalloc _warnings _weakref atexit "
    "builtins errno faulthandler gc itertools marshal posix pwd sys time xxsubtype"
)
# Built in by some distributions (Debian 12's python3.11 shown) but shipped as extension
# files by others: a file on sys.path wins, otherwise the name is taken as built in.
# `sys.builtin_module_names` of the interpreter running imgdiff is added as a fair
# approximation of the target's: the target's own list cannot be read without running it.
_DISTRO_BUILTINS = _words(
    "_bisect _blake2 _csv _datetime _elementtree _heapq _md5 _opcode _pickle "
    "_posixsubprocess _random _sha1 _sha256 _sha3 _sha512 _socket _statistics _struct array "
    "binascii cmath fcntl grp math pyexpat select spwd syslog unicodedata zlib"
) | frozenset(sys.builtin_module_names)


def _frozen_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ImportGraph:
    """What a Python program imports, found statically: evidence ``import-graph``.

    `files` holds every file that would be loaded (sources, packages' `__init__`,
    extension modules, bytecode-only modules) both as the import system names it and,
    when symlinks lead elsewhere, as the file it really is inside the root. `modules` maps
    each file-backed module to the path it is loaded from. Modules served by the
    interpreter binary itself (built in or frozen) are in `in_binary`; a change to them
    is a change to the executable.
    """

    entry: str | None  # script path, -m module, "-c", "-" or None
    mode: RunMode
    version: str | None  # "3.11"
    sys_path: tuple[str, ...]  # what was assumed, in order
    modules: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map, hash=False)
    files: frozenset[str] = frozenset()
    in_binary: tuple[str, ...] = ()
    namespace_packages: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()  # imported names found nowhere on sys_path
    dynamic: tuple[str, ...] = ()  # "path:line" of imports of names computed at run time
    notes: tuple[str, ...] = ()
    # module -> the module whose import statement first reached it ("" for start-up
    # imports: site, encodings, ...), breadth first, so chains are shortest
    importers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map, hash=False)
    # the real file (symlinks resolved) -> the path the import system named it by
    aliases: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map, hash=False)
    # why the program's own imports are unknown (its text was not read: stdin, a prompt, a
    # script not in the root, a command line not understood); None when they were read
    unknown: str | None = None
    # the site directories whose .pth files start-up reads (none under -S)
    pth_dirs: tuple[str, ...] = ()
    # files on sys.path (zip archives): not searched, so what it imports from them is unknown
    archives: tuple[str, ...] = ()
    # argv[0] when it is a bare name: the interpreter was found through a PATH search,
    # so the one assumed (from the executable) may not be the one started (a venv's link)
    searched: str | None = None
    # modules whose importer (in `importers`) imports them inside a function: nothing
    # but imports that may never run leads there
    deferred: frozenset[str] = frozenset()

    def chain(self, path: str) -> tuple[str, ...]:
        """The modules from the one loaded from `path` back to the program (or start-up):
        ("wsgiref", "wsgiref.simple_server", "__main__"). Empty if `path` is not loaded."""
        by_path = {p: m for m, p in self.modules.items()}
        name = by_path.get(path) or by_path.get(self.aliases.get(path, ""))
        out: list[str] = []
        while name and name not in out:
            out.append(name)
            name = self.importers.get(name, "")
        return tuple(out)

    def uncertain(self, path: str) -> bool:
        """Whether `path` is reached only through an import inside a function."""
        return any(name in self.deferred for name in self.chain(path))


class ImportCache(FileCache[Parsed]):
    """Import lists of parsed files (`loaders.cache`), shared across `static_imports`
    calls: one cache can serve every process of a root (or of several), and many run the
    same program."""


def static_imports(
    fs: RootFS,
    argv: Sequence[str],
    exe: str,
    cwd: str | None = None,
    *,
    max_modules: int = DEFAULT_MAX_MODULES,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    time_limit: float = DEFAULT_TIME_LIMIT,
    parse: ParseMode = "scan",
    cache: ImportCache | None = None,
) -> ImportGraph:
    """The modules the Python program `argv` imports, transitively, read from `fs` only.

    `exe` is the interpreter as /proc/PID/exe names it inside the root; argv[0], when it
    is a path, is preferred for finding a venv. `cwd` is the process's working directory
    inside the root (needed for relative script paths, -m and -c). Start-up imports
    (`encodings`, `site`, `sitecustomize`, modules named by .pth `import` lines, `runpy`
    for -m) are included. ``parse="scan"`` locates import statements lexically (fast,
    may over-report); ``parse="ast"`` parses whole files up to `FULL_PARSE_LIMIT`.
    Bounded by `max_modules`, `max_file_size` per file and `time_limit` seconds; a file
    that cannot be read or parsed becomes a note, never an exception.
    """
    inv = parse_cmdline(argv)
    if inv.mode in (RunMode.EXITS, RunMode.UNSUPPORTED):
        why = inv.problem or inv.mode.value
        unknown = why if inv.mode is RunMode.UNSUPPORTED else None
        return ImportGraph(None, inv.mode, None, (), notes=(why,), unknown=unknown)
    notes: list[str] = ["PYTHONPATH, PYTHONHOME and user site-packages not considered"]
    cwd_n = normalise(cwd) if cwd and cwd.startswith("/") else None
    invoked = normalise(exe)
    if "/" in argv[0] and (argv[0].startswith("/") or cwd_n):
        candidate = join(cwd_n or "/", argv[0])
        if fs.stat(candidate) is not None:
            invoked = candidate
    interp = find_interpreter(fs, invoked)
    notes.extend(interp.notes)
    version = interp.version
    walk = _Walk(
        fs,
        version,
        frozen=_frozen_set(version, inv.frozen_modules),
        parse=parse,
        max_file_size=max_file_size,
        max_modules=max_modules,
        deadline=time.monotonic() + time_limit,
        cache=cache if cache is not None else ImportCache(),
    )

    entry: str | None = None
    main: tuple[str, Parsed] | None = None
    path0: str | None = None
    via_runpy = inv.mode is RunMode.MODULE
    if inv.mode is RunMode.SCRIPT:
        entry, main, script_dir, is_dir = _script_entry(fs, walk, inv, cwd_n, notes)
        path0 = None if inv.safe_path else script_dir
        via_runpy = is_dir
    else:
        path0 = None if inv.safe_path else cwd_n
        if path0 is None and not inv.safe_path:
            notes.append("working directory unknown: not on sys.path")
        if inv.mode is RunMode.MODULE:
            entry = inv.target
        elif inv.mode is RunMode.COMMAND:
            entry = "-c"
            main = ("-c", walk.extract_text(inv.target or ""))
            notes.append("-c code parsed")
        elif inv.mode is RunMode.STDIN:
            entry = "-"
            notes.append(_STDIN)
        else:
            notes.append(_INTERACTIVE)
    sys_path = default_sys_path(fs, interp, path0, no_site=inv.no_site)
    archives = tuple(p for p in sys_path if fs.is_file(p))
    notes.extend(f"archive on sys.path not searched: {p}" for p in archives)
    walk.sys_path = tuple(sys_path)

    _startup_imports(walk, inv, interp, notes, via_runpy=via_runpy)
    if main is not None:
        if main[0] != "-c":
            walk.modules["__main__"] = main[0]
        walk.follow("__main__", "", main[1], main[0])
    walk.run()
    notes.extend(walk.notes)
    return ImportGraph(
        unknown=next((n for n in notes if _is_unknown(n)), None),
        pth_dirs=() if inv.no_site else interp.site_dirs,
        archives=archives,
        searched=argv[0] if "/" not in argv[0] and interp.venv is None else None,
        entry=entry,
        mode=inv.mode,
        version=f"{version[0]}.{version[1]}" if version else None,
        sys_path=tuple(sys_path),
        modules=walk.modules,
        files=frozenset(walk.files),
        in_binary=tuple(walk.in_binary),
        namespace_packages=tuple(walk.namespaces),
        unresolved=tuple(walk.unresolved),
        dynamic=tuple(walk.dynamic),
        notes=tuple(dict.fromkeys(notes)),
        importers=walk.importers,
        aliases=walk.aliases,
        deferred=frozenset(walk.deferred),
    )


_STDIN = "program read from stdin: its imports are unknown (only start-up imports known)"
_INTERACTIVE = (
    "interactive interpreter (or a program piped to it): what it imports is unknown"
    " (only start-up imports known)"
)


def _is_unknown(note: str) -> bool:
    """Whether a note says the program's own text was not read: its imports unknown."""
    return note in (_STDIN, _INTERACTIVE) or (
        note.startswith(("script ", "relative script ", "directory ", "zip application "))
        and note.endswith(
            ("not found in the root", "with unknown working directory", "no __main__.py",
             "not searched")
        )
    )  # fmt: skip


def _startup_imports(
    walk: _Walk, inv: Invocation, interp: Interpreter, notes: list[str], *, via_runpy: bool
) -> None:
    """What the interpreter imports before the program: encodings, site and what .pth
    lines name, readline for a prompt, runpy and the package of -m."""
    walk.require("encodings")
    walk.require("encodings.utf_8")
    if not inv.no_site:
        walk.require("site")
        walk.probe("sitecustomize")
        if not inv.no_user_site:
            walk.probe("usercustomize")
        for pth, line in interp.pth_imports:
            walk.follow("", "", walk.extract_text(line), pth)
        if interp.pth_imports:
            notes.append(
                f"{len(interp.pth_imports)} .pth `import` line(s) never executed: the modules"
                " they import are parsed as start-up imports instead"
            )
    if inv.mode is RunMode.INTERACTIVE:
        walk.probe("readline")
        walk.probe("rlcompleter")
    if via_runpy:
        walk.require("runpy")
    if inv.mode is RunMode.MODULE and inv.target:
        walk.main_names |= {inv.target, inv.target + ".__main__"}
        spec = walk.require(inv.target)
        if spec is not None and spec.locations is not None:
            walk.require(inv.target + ".__main__")


def _script_entry(
    fs: RootFS, walk: _Walk, inv: Invocation, cwd: str | None, notes: list[str]
) -> tuple[str, tuple[str, Parsed] | None, str | None, bool]:
    """The script's path, its parsed imports, the directory CPython puts first on
    sys.path, and whether it is a directory run through runpy."""
    target = inv.target or ""
    if not target.startswith("/") and cwd is None:
        notes.append(f"relative script {target!r} with unknown working directory")
        return target, None, None, False
    path = join(cwd or "/", target)
    st = fs.stat(path)
    if st is None:
        notes.append(f"script {path} not found in the root")
        return path, None, None, False
    if stat_.S_ISDIR(st.st_mode):
        main = join(path, "__main__.py")
        parsed = walk.parse_file(main)
        if parsed is None:
            notes.append(f"directory {path} has no __main__.py")
            return path, None, path, True
        walk.record_file(main)
        return path, (main, parsed), path, True
    if _starts_with_zip(fs, path):
        notes.append(f"zip application {path} not searched")
        return path, None, path, True
    parsed = walk.parse_file(path, skip_first_line=inv.skip_first_line)
    walk.record_file(path)
    return path, (path, parsed or NOTHING), posixpath.dirname(fs.realpath(path)), False


def _starts_with_zip(fs: RootFS, path: str) -> bool:
    try:
        fd = fs.open(path)
    except OSError:
        return False
    try:
        return os.pread(fd, 4, 0) == b"PK\x03\x04"
    except OSError:
        return False
    finally:
        os.close(fd)


def _frozen_set(version: tuple[int, int] | None, frozen_modules: bool | None) -> frozenset[str]:
    if version is not None and version >= (3, 11) and frozen_modules is not False:
        return _FROZEN_ALWAYS | _FROZEN_STDLIB
    return _FROZEN_ALWAYS


# ---------------------------------------------------------------------------------------
# resolving imports the way PathFinder/FileFinder do


@attrs.frozen
class _Spec:
    kind: Literal["source", "extension", "bytecode", "namespace", "builtin", "frozen"]
    path: str | None  # the file loaded, if any
    source: str | None  # the file whose imports are followed
    locations: tuple[str, ...] | None  # submodule search locations of a package


class _Walk:
    """One breadth-first resolution of imports over one assumed sys.path."""

    def __init__(
        self,
        fs: RootFS,
        version: tuple[int, int] | None,
        *,
        frozen: frozenset[str],
        parse: ParseMode,
        max_file_size: int,
        max_modules: int,
        deadline: float,
        cache: ImportCache,
    ) -> None:
        self.fs = fs
        self.sys_path: tuple[str, ...] = ()
        self.frozen = frozen
        self.parse = parse
        self.newer_syntax = version is not None and version > sys.version_info[:2]
        self.ext_tag = f"cpython-{version[0]}{version[1]}-" if version else "cpython-"
        self.max_file_size = max_file_size
        self.max_modules = max_modules
        self.deadline = deadline
        self.cache = cache
        self.modules: dict[str, str] = {}
        self.files: set[str] = set()
        self.in_binary: dict[str, None] = {}
        self.namespaces: dict[str, None] = {}
        self.unresolved: dict[str, None] = {}
        self.dynamic: list[str] = []
        self.notes: list[str] = []
        self._specs: dict[str, _Spec | None] = {}
        self._loaded: dict[str, _Spec] = {}
        self._queue: deque[tuple[str, _Spec]] = deque()
        self._index: dict[str, dict[str, list[str]] | None] = {}
        self._real_dirs: dict[str, str] = {}
        self._full = False
        self.importers: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self._importer = ""  # the module whose imports are being resolved
        self._in_function = False  # whether the import being resolved is in a function
        self.deferred: set[str] = set()  # modules first reached by imports in functions
        # imports in functions, followed once module-level imports reach nothing more:
        # (module, its package, the import, its file)
        self._later: deque[tuple[str, str, Ref, str]] | None = deque()
        self.main_names = {"__main__"}  # modules that run as the program (-m target)

    # -- files ----------------------------------------------------------------------

    def record_file(self, path: str) -> None:
        """Add `path` and, when symlinks lead elsewhere, the real file to `files`."""
        self.files.add(path)
        parent, name = posixpath.split(path)
        real_dir = self._real_dirs.get(parent)
        if real_dir is None:
            real_dir = self._real_dirs[parent] = self.fs.realpath(parent)
        target = self.fs.readlink(child(real_dir, name))
        if target is None:
            real = join(real_dir, name)
        else:
            real = self.fs.realpath(target if target.startswith("/") else f"{real_dir}/{target}")
        self.files.add(real)
        if real != path:
            self.aliases.setdefault(real, path)

    def parse_file(self, path: str, *, skip_first_line: bool = False) -> Parsed | None:
        """The imports in the file at `path` (None if it is not a readable regular file)."""
        try:
            fd = self.fs.open(path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_.S_ISREG(st.st_mode):
                return None
            how = (self.parse, skip_first_line, self.newer_syntax, st.st_size > self.max_file_size)
            parsed = self.cache.get(st, how)
            if parsed is not None:
                return parsed
            if st.st_size > self.max_file_size:
                parsed = Parsed(problems=(f"over {self.max_file_size} bytes: not read",))
            else:
                data = _read_all(fd, st.st_size)
                if skip_first_line:  # -x: keep the newline so line numbers still match
                    nl = data.find(b"\n")
                    data = data[nl:] if nl >= 0 else b""
                parsed = extract(data, self.parse, newer_syntax=self.newer_syntax)
        except OSError as exc:
            self.notes.append(f"{path}: not read: {exc.strerror}")
            return None
        finally:
            os.close(fd)
        self.cache.put(st, parsed, how)
        return parsed

    def extract_text(self, code: str) -> Parsed:
        """The imports in program text given on the command line or in a .pth line."""
        return extract(
            code.encode("utf-8", "surrogateescape"), self.parse, newer_syntax=self.newer_syntax
        )

    def _listing(self, d: str) -> dict[str, list[str]] | None:
        """Names in `d` grouped by their part before the first dot."""
        if d in self._index:
            return self._index[d]
        names = self.fs.listdir(d)
        index: dict[str, list[str]] | None = None
        if names is not None:
            index = {}
            for name in names:
                index.setdefault(name.partition(".")[0], []).append(name)
        self._index[d] = index
        return index

    # -- finding modules ------------------------------------------------------------

    def _module_file(
        self, d: str, stem: str
    ) -> tuple[Literal["source", "extension", "bytecode"], str] | None:
        """FileFinder's loader order in one directory: extensions, source, bytecode."""
        index = self._listing(d)
        names = index.get(stem) if index else None
        if not names:
            return None
        prefix = stem + "."
        ext = sorted(
            n
            for n in names
            if n.startswith(prefix)
            and n.endswith(".so")
            and (n[len(prefix) :] in ("so", "abi3.so") or n[len(prefix) :].startswith(self.ext_tag))
        )
        ext.sort(key=lambda n: n.endswith((".abi3.so", f"{prefix}so")))  # tagged ones first
        candidates: list[tuple[Literal["source", "extension", "bytecode"], str]] = [
            ("extension", n) for n in ext
        ]
        candidates += [("source", prefix + "py"), ("bytecode", prefix + "pyc")]
        for kind, name in candidates:
            if name in names and self.fs.is_file(join(d, name)):
                return kind, join(d, name)
        return None

    def _search(self, locations: tuple[str, ...], last: str) -> _Spec | None:
        """PathFinder: the first location with a loader wins; otherwise a namespace
        package made of every directory named `last`."""
        portions: list[str] = []
        for d in locations:
            index = self._listing(d)
            if not index or last not in index:
                continue
            base = join(d, last)
            namespace = False
            if last in index[last] and self.fs.is_dir(base):
                init = self._module_file(base, "__init__")
                if init is not None:
                    kind, path = init
                    return _Spec(kind, path, path if kind == "source" else None, (base,))
                namespace = True
            found = self._module_file(d, last)
            if found is not None:
                kind, path = found
                return _Spec(kind, path, path if kind == "source" else None, None)
            if namespace:
                portions.append(base)
        if portions:
            return _Spec("namespace", None, None, tuple(portions))
        return None

    def _spec(self, name: str) -> _Spec | None:
        if name in self._specs:
            return self._specs[name]
        parent, _, last = name.rpartition(".")
        spec: _Spec | None = None
        if not parent and name in _CORE_BUILTINS:
            spec = _Spec("builtin", None, None, None)
        else:
            if parent:
                parent_spec = self._spec(parent)
                locations = parent_spec.locations if parent_spec is not None else None
            else:
                locations = self.sys_path
            if locations is not None:
                spec = self._search(locations, last)
            if name in self.frozen:
                source = spec.path if spec is not None and spec.kind == "source" else None
                spec = _Spec("frozen", None, source, spec.locations if spec else None)
            elif spec is None and not parent and name in _DISTRO_BUILTINS:
                spec = _Spec("builtin", None, None, None)
        self._specs[name] = spec
        return spec

    # -- loading --------------------------------------------------------------------

    def _load(self, name: str) -> _Spec | None:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        spec = self._spec(name)
        if spec is None:
            return None
        if len(self._loaded) >= self.max_modules:
            if not self._full:
                self._full = True
                self.notes.append(f"stopped at {self.max_modules} modules")
            return None
        self._loaded[name] = spec
        self.importers.setdefault(name, self._importer)
        if self._in_function:
            self.deferred.add(name)
        if spec.kind in ("builtin", "frozen"):
            self.in_binary[name] = None
        elif spec.kind == "namespace":
            self.namespaces[name] = None
        elif spec.path is not None:
            self.modules[name] = spec.path
            self.record_file(spec.path)
            if spec.kind == "bytecode":
                self.notes.append(f"{spec.path}: bytecode only, its imports not followed")
        if spec.source is not None:
            self._queue.append((name, spec))
        return spec

    def require(self, name: str) -> _Spec | None:
        """`import name`: every parent package, then the module; misses are unresolved."""
        if name == "os.path":  # set by `os` in sys.modules, never searched for
            self.require("os")
            return self.require("posixpath")
        parts = name.split(".")
        if not all(part.isidentifier() for part in parts) or parts[0] == "__main__":
            return None  # `import __main__` finds the running program, always present
        spec: _Spec | None = None
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            spec = self._load(sub)
            if spec is None:
                if not self._full:
                    self.unresolved[sub] = None
                return None
        return spec

    def probe(self, name: str) -> None:
        """An import whose failure is expected and silent (sitecustomize, `from p import x`)."""
        if all(part.isidentifier() for part in name.split(".")) and self._spec(name) is not None:
            self.require(name)

    def follow(self, name: str, package: str, parsed: Parsed, path: str) -> None:
        """Resolve what the module `name` (in `package`) read from `path` imports;
        imports inside its functions wait until module-level ones reach nothing more."""
        self.dynamic.extend(f"{path}:{line}" for line in parsed.dynamic)
        self.notes.extend(f"{path}: {problem}" for problem in parsed.problems)
        as_main = name in self.main_names
        for ref in parsed.refs:
            if ref.main_only and not as_main:
                continue  # `if __name__ == "__main__":` of an imported module never runs
            if ref.deferred and self._later is not None:
                self._later.append((name, package, ref, path))
            else:
                self._resolve(name, package, ref, path)

    def _resolve(self, name: str, package: str, ref: Ref, path: str) -> None:
        self._importer = name
        self._in_function = ref.deferred
        target = self._absolute(ref, package, path)
        if not target:
            return
        if not ref.names:
            self.require(target)
            return
        spec = self.require(target)
        if spec is None or spec.locations is None:
            return
        for item in ref.names:
            subs = self._star(spec) if item == "*" else (item,)
            for sub in subs:
                self.probe(f"{target}.{sub}")

    def _absolute(self, ref: Ref, package: str, path: str) -> str | None:
        if ref.level == 0:
            return ref.module
        anchor = ref.anchor if ref.anchor is not None else package
        if not anchor:
            self.notes.append(f"{path}:{ref.line}: relative import outside a package")
            return None
        bits = anchor.split(".")
        if ref.level - 1 >= len(bits):
            self.notes.append(f"{path}:{ref.line}: relative import beyond the top-level package")
            return None
        base = ".".join(bits[: len(bits) - (ref.level - 1)])
        return f"{base}.{ref.module}" if ref.module else base

    def _star(self, spec: _Spec) -> tuple[str, ...]:
        """`from package import *` also imports the submodules its `__all__` lists."""
        if spec.source is None:
            return ()
        parsed = self.parse_file(spec.source)
        return parsed.all_names or () if parsed is not None else ()

    def run(self) -> None:
        """Parse queued modules until none is left (or the time is up): first what
        module-level imports reach, then what imports inside functions add (all of it
        uncertain, so followed at once)."""
        if not self._drain():
            return
        later, self._later = self._later, None
        while later:
            self._resolve(*later.popleft())
        self._drain()

    def _drain(self) -> bool:
        """Follow the queue to its end (False if the time ran out first)."""
        while self._queue:
            if time.monotonic() > self.deadline:
                waiting = len(self._later or ())
                also = f" and {waiting} import(s) in functions not followed" if waiting else ""
                self.notes.append(
                    f"time limit reached: {len(self._queue)} module(s) not read{also}"
                )
                return False
            name, spec = self._queue.popleft()
            assert spec.source is not None  # only queued with a source
            parsed = self.parse_file(spec.source)
            if parsed is None:
                continue
            package = name if spec.locations is not None else name.rpartition(".")[0]
            self.follow(name, package, parsed, spec.source)
        return True


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class ProgramGraphs:
    """The import graph files of many processes, computed once per program.

    Processes that share a root (`space`: root and mount namespace, as the caller names
    it), a command line, an interpreter and a working directory run the same program; the
    parsed files behind the graphs are shared too (`ImportCache`).
    """

    def __init__(self) -> None:
        self.parsed = ImportCache()
        self._graphs: dict[tuple[object, ...], ImportGraph] = {}

    def graph(
        self, fs: RootFS, space: object, argv: Sequence[str], exe: str, cwd: str | None
    ) -> ImportGraph:
        """`static_imports(...)` for this program, from the cache when seen before."""
        key = (space, tuple(argv), exe, cwd)
        found = self._graphs.get(key)
        if found is None:
            found = self._graphs[key] = static_imports(fs, argv, exe, cwd, cache=self.parsed)
        return found

    def files(
        self, fs: RootFS, space: object, argv: Sequence[str], exe: str, cwd: str | None
    ) -> frozenset[str]:
        """`static_imports(...).files` for this program, from the cache when seen before."""
        return self.graph(fs, space, argv, exe, cwd).files
