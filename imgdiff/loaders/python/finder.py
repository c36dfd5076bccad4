"""The finder: the static import graph of an untraced Python process, the files it loads.

This module owns answering "which files would this Python command line import" from the
command line, the interpreter's path, the working directory and the process's root alone,
reading source text only through `RootFS`: `import` statements and literal
`importlib.import_module`/`__import__` calls are located lexically and parsed with `ast`
(or, with ``parse="ast"``, whole files are parsed), never compiled to code, executed or
imported, and the target's interpreter is never run. It must not consult any environment,
neither the target process's nor imgdiff's own: PYTHONPATH, PYTHONHOME, the user site
directory and what `.pth` `import` lines would do when executed are ignored
(needrestart's CVE-2024-48990 came from running the target's interpreter with the
target's PYTHONPATH). The result is evidence ``import-graph``: an over-approximation
(every import in every branch and function, except under ``if TYPE_CHECKING:``) that
still misses names computed at run time, listed in `ImportGraph.dynamic`; traced imports
are stronger evidence.
"""

from __future__ import annotations

import ast
import bisect
import enum
import io
import os
import posixpath
import re
import stat as stat_
import sys
import time
import tokenize
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import attrs

from imgdiff.fs.paths import child, join, normalise
from imgdiff.fs.rootfs import RootFS

VIA = "import-graph"
DEFAULT_MAX_FILE_SIZE = 16 << 20
# ast.parse costs up to ~1 KiB of memory per byte of hostile source (measured: 16 MiB of
# `a\n` lines took 67 s and 14 GiB), so whole-file parsing is capped well below the read cap.
FULL_PARSE_LIMIT = 1 << 20
DEFAULT_TIME_LIMIT = 30.0
DEFAULT_MAX_MODULES = 20_000

ParseMode = Literal["scan", "ast"]

_MAX_STATEMENT = 64 << 10
_MAX_CALL = 4 << 10
_MAX_IMPORTS = 50_000  # `import` words looked at in one file (real files: a few hundred)
_MAX_PTH_SIZE = 1 << 20
_MAX_CFG_SIZE = 64 << 10


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

_VERSION_NAME = re.compile(r"python(\d)\.(\d+)")
_VERSION_VALUE = re.compile(r"\s*(\d+)\.(\d+)")
_LIB_VERSION_DIR = re.compile(r"python(\d)\.(\d+)$")


class RunMode(enum.StrEnum):
    """How a Python command line names the program it runs."""

    SCRIPT = "script"
    MODULE = "module"  # -m
    COMMAND = "command"  # -c
    STDIN = "stdin"  # `-`: program text unknown
    INTERACTIVE = "interactive"  # no program: a prompt
    EXITS = "exits"  # --version, -h: prints and exits before importing anything
    UNSUPPORTED = "unsupported"  # not a CPython command line imgdiff understands


@attrs.frozen
class Invocation:
    """A CPython command line, parsed as CPython's own option parser reads it."""

    mode: RunMode
    target: str | None = None  # script path, module name or -c code
    args: tuple[str, ...] = ()  # sys.argv[1:] of the program
    safe_path: bool = False  # -P or -I: neither the script's directory nor cwd on sys.path
    isolated: bool = False  # -I
    no_site: bool = False  # -S: no `site`, hence no site-packages and no .pth files
    no_user_site: bool = False  # -s or -I
    ignore_environment: bool = False  # -E or -I (imgdiff never reads it anyway)
    skip_first_line: bool = False  # -x
    frozen_modules: bool | None = None  # -X frozen_modules=on|off
    problem: str | None = None  # why the mode is EXITS or UNSUPPORTED


_ARG_OPTIONS = frozenset("cmWX")
_EXIT_OPTIONS = frozenset("hV?")
_LONG_EXIT = frozenset({"--help", "--version", "--help-env", "--help-xoptions", "--help-all"})
_FLAG_OPTIONS = frozenset("bBdEiIOPqRsStuvx")  # -t is accepted and ignored by CPython 3
_FLAG_EFFECTS = {
    "I": ("isolated", "safe_path", "no_user_site", "ignore_environment"),
    "P": ("safe_path",),
    "S": ("no_site",),
    "s": ("no_user_site",),
    "E": ("ignore_environment",),
    "x": ("skip_first_line",),
}


def parse_cmdline(argv: Sequence[str]) -> Invocation:
    """Read `argv` (argv[0] the interpreter) with CPython's option grammar.

    Combined flags (`-Bu`, `-Im mod`), attached arguments (`-Wignore`, `-cCODE`), `--` and
    `-` are handled; forms CPython rejects, and command lines whose argv[0] is not a
    python command (a title rewritten by setproctitle, an embedding program), come back
    as `RunMode.UNSUPPORTED` with the reason in `problem`.
    """
    if not argv:
        return Invocation(RunMode.UNSUPPORTED, problem="empty command line")
    name = posixpath.basename(argv[0])
    if "python" not in name and not name.startswith("pypy"):
        return Invocation(
            RunMode.UNSUPPORTED,
            problem=f"argv[0] {argv[0]!r} is not a python command (rewritten title or embedder?)",
        )
    flags: dict[str, bool] = {}
    frozen_modules: bool | None = None

    def make(mode: RunMode, target: str | None = None, args: Sequence[str] = ()) -> Invocation:
        return Invocation(
            mode,
            target,
            tuple(args),
            safe_path=flags.get("safe_path", False),
            isolated=flags.get("isolated", False),
            no_site=flags.get("no_site", False),
            no_user_site=flags.get("no_user_site", False),
            ignore_environment=flags.get("ignore_environment", False),
            skip_first_line=flags.get("skip_first_line", False),
            frozen_modules=frozen_modules,
        )

    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "-" or not arg.startswith("-"):
            break
        if arg.startswith("--"):
            if arg in _LONG_EXIT:
                return Invocation(RunMode.EXITS, problem=f"{arg} prints and exits")
            if arg == "--check-hash-based-pycs" and i + 1 < len(argv):
                i += 2
                continue
            return Invocation(RunMode.UNSUPPORTED, problem=f"unknown option {arg}")
        j = 1
        while j < len(arg):
            ch = arg[j]
            if ch in _ARG_OPTIONS:
                attached = arg[j + 1 :]
                if not attached and i + 1 >= len(argv):
                    return Invocation(
                        RunMode.UNSUPPORTED, problem=f"argument expected for the -{ch} option"
                    )
                value = attached or argv[i + 1]
                after = i + 1 if attached else i + 2
                if ch == "c":
                    return make(RunMode.COMMAND, value, argv[after:])
                if ch == "m":
                    return make(RunMode.MODULE, value, argv[after:])
                if ch == "X" and value.startswith("frozen_modules="):
                    frozen_modules = value.partition("=")[2] != "off"
                i = after - 1
                break
            if ch in _EXIT_OPTIONS:
                return Invocation(RunMode.EXITS, problem=f"-{ch} prints and exits")
            if ch not in _FLAG_OPTIONS:
                return Invocation(RunMode.UNSUPPORTED, problem=f"unknown option -{ch}")
            for flag in _FLAG_EFFECTS.get(ch, ()):
                flags[flag] = True
            j += 1
        i += 1
    if i >= len(argv):
        return make(RunMode.INTERACTIVE)
    return make(RunMode.STDIN if argv[i] == "-" else RunMode.SCRIPT, argv[i], argv[i + 1 :])


@attrs.frozen
class Interpreter:
    """A CPython installation inside a root, as its own start-up code would find it."""

    executable: str  # as invoked (a venv's bin/python, not what it links to)
    real_executable: str  # symlinks resolved inside the root
    version: tuple[int, int] | None
    prefix: str | None  # the base installation (sys.base_prefix)
    venv: str | None  # sys.prefix when a pyvenv.cfg was found
    debian: bool  # Debian's site.py: dist-packages layout
    stdlib: tuple[str, ...]  # zip (when present), the stdlib directory, lib-dynload
    site: tuple[str, ...]  # site directories and .pth path lines, in sys.path order
    pth_imports: tuple[tuple[str, str], ...]  # (.pth file, `import` line): never executed
    notes: tuple[str, ...]


def find_interpreter(fs: RootFS, executable: str) -> Interpreter:
    """Locate the version, prefix, venv and default sys.path of `executable` in `fs`.

    `executable` should be the path the program was started as (argv[0] made absolute)
    when it has one: a venv is recognised by the `pyvenv.cfg` next to it or one level up,
    which its resolved target (/proc/PID/exe) does not show. Follows CPython's
    `getpath.py` (landmark `lib/pythonX.Y/os.py` searched upwards from the executable's
    directory) and `site.py` (Debian's dist-packages when its site.py says so, .pth files).
    """
    notes: list[str] = []
    exe = normalise(executable)
    real = fs.realpath(exe)
    version = _version_of_name(posixpath.basename(real)) or _version_of_name(
        posixpath.basename(exe)
    )
    if version is None:
        version = _version_of_hardlink(fs, real)
    venv, home, system_site, cfg_version = _read_pyvenv(fs, exe)
    version = version or cfg_version
    search_from = normalise(home) if venv and home else posixpath.dirname(real)
    if version is None:
        version = _version_of_tree(fs, search_from, notes)
    if version is None:
        notes.append(f"python version of {exe} not found: no stdlib assumed")
        return Interpreter(exe, real, None, None, venv, False, (), (), (), tuple(notes))
    pyver = f"python{version[0]}.{version[1]}"
    found = _find_prefix(fs, search_from, pyver)
    if found is None:
        notes.append(f"no lib/{pyver}/os.py above {search_from}: prefix /usr assumed")
        found = ("/usr", "lib")
    prefix, platlib = found
    stdlib_dir = join(prefix, f"{platlib}/{pyver}")
    stdlib = [
        p
        for p in (
            join(prefix, f"{platlib}/python{version[0]}{version[1]}.zip"),
            stdlib_dir,
            join(stdlib_dir, "lib-dynload"),
        )
        if fs.stat(p) is not None
    ]
    site_py = fs.read(join(stdlib_dir, "site.py"), limit=_MAX_PTH_SIZE) or b""
    debian = b"dist-packages" in site_py
    prefixes: list[tuple[str, bool]] = []
    if venv:
        prefixes.append((venv, True))
    if not venv or system_site:
        # Fedora's site.py puts /usr/local first for the system interpreter
        if not venv and prefix == "/usr" and re.search(rb"""["']/usr/local["']""", site_py):
            prefixes.append(("/usr/local", False))
        prefixes.append((prefix, bool(venv)))
    known = set(stdlib)
    site: list[str] = []
    pth_imports: list[tuple[str, str]] = []
    for pfx, in_venv in prefixes:
        for sitedir in _site_dirs(pfx, pyver, platlib, debian=debian, in_venv=in_venv):
            if sitedir not in known and fs.is_dir(sitedir):
                known.add(sitedir)
                site.append(sitedir)
                _add_pth_files(fs, sitedir, known, site, pth_imports)
    return Interpreter(
        exe,
        real,
        version,
        prefix,
        venv,
        debian,
        tuple(stdlib),
        tuple(site),
        tuple(pth_imports),
        tuple(notes),
    )


def interpreter_paths(
    fs: RootFS,
    exe: str,
    cwd: str | None = None,
    *,
    script: str | None = None,
    safe_path: bool = False,
    no_site: bool = False,
) -> tuple[str, ...]:
    """The default sys.path of the interpreter `exe` inside `fs`, for a program run there.

    The first entry is the script's directory (symlinks resolved, as CPython does) when
    `script` is given, else `cwd` (as for -m and -c), and is left out when `safe_path`
    (-P, -I) or when neither is known. `no_site` (-S) leaves out site-packages.
    """
    interp = find_interpreter(fs, exe)
    return tuple(_sys_path(fs, interp, _path0(fs, cwd, script, safe_path), no_site=no_site))


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

    def chain(self, path: str) -> tuple[str, ...]:
        """The modules from the one loaded from `path` back to the program (or start-up):
        ("wsgiref", "wsgiref.simple_server", "__main__"). Empty if `path` is not loaded."""
        by_path = {p: m for m, p in self.modules.items()}
        name = by_path.get(path)
        out: list[str] = []
        while name and name not in out:
            out.append(name)
            name = self.importers.get(name, "")
        return tuple(out)


@attrs.frozen
class _Ref:
    """One import found in source: `from ..module import names` or `import module`."""

    module: str  # without the leading dots; "" for `from . import x`
    level: int
    names: tuple[str, ...]  # the from-list; () for `import a.b`
    line: int
    anchor: str | None = None  # explicit package of import_module(".x", "pkg")
    # under a top-level `if __name__ == "__main__":`: runs only when the module is the
    # program itself, never when it is imported
    main_only: bool = False


@attrs.frozen
class _Parsed:
    refs: tuple[_Ref, ...] = ()
    dynamic: tuple[int, ...] = ()  # lines importing a name computed at run time
    all_names: tuple[str, ...] | None = None  # a literal module-level __all__
    problems: tuple[str, ...] = ()


_NOTHING = _Parsed()


class ImportCache:
    """Import lists of parsed files, shared across `static_imports` calls.

    Keyed by file identity (device, inode, size, mtime, ctime) and parse mode, so one
    cache can serve every process of a root (or of several): many run the same program.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[object, ...], _Parsed] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[object, ...]) -> _Parsed | None:
        """The parsed imports stored under `key`, if any."""
        return self._entries.get(key)

    def put(self, key: tuple[object, ...], value: _Parsed) -> None:
        """Remember `value`; a full cache is emptied rather than grown."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = value


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
        return ImportGraph(None, inv.mode, None, (), notes=(inv.problem or inv.mode.value,))
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
    main: tuple[str, _Parsed] | None = None
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
            notes.append("program read from stdin: only start-up imports known")
        else:
            notes.append("interactive interpreter: only start-up imports known")
    sys_path = _sys_path(fs, interp, path0, no_site=inv.no_site)
    notes.extend(f"archive on sys.path not searched: {p}" for p in sys_path if fs.is_file(p))
    walk.sys_path = tuple(sys_path)

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
    if main is not None:
        if main[0] != "-c":
            walk.modules["__main__"] = main[0]
        walk.follow("__main__", "", main[1], main[0])
    walk.run()
    notes.extend(walk.notes)
    return ImportGraph(
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
    )


def _script_entry(
    fs: RootFS, walk: _Walk, inv: Invocation, cwd: str | None, notes: list[str]
) -> tuple[str, tuple[str, _Parsed] | None, str | None, bool]:
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
    return path, (path, parsed or _NOTHING), posixpath.dirname(fs.realpath(path)), False


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


def _path0(fs: RootFS, cwd: str | None, script: str | None, safe_path: bool) -> str | None:
    if safe_path:
        return None
    cwd_n = normalise(cwd) if cwd and cwd.startswith("/") else None
    if script is None:
        return cwd_n
    if not script.startswith("/") and cwd_n is None:
        return None
    path = join(cwd_n or "/", script)
    if fs.is_dir(path):
        return path
    return posixpath.dirname(fs.realpath(path))


def _sys_path(fs: RootFS, interp: Interpreter, path0: str | None, *, no_site: bool) -> list[str]:
    out: list[str] = [] if path0 is None else [path0]
    out.extend(interp.stdlib)
    if not no_site:
        out.extend(interp.site)
    return list(dict.fromkeys(out))


def _frozen_set(version: tuple[int, int] | None, frozen_modules: bool | None) -> frozenset[str]:
    if version is not None and version >= (3, 11) and frozen_modules is not False:
        return _FROZEN_ALWAYS | _FROZEN_STDLIB
    return _FROZEN_ALWAYS


# ---------------------------------------------------------------------------------------
# paths inside the root


def _version_of_name(name: str) -> tuple[int, int] | None:
    m = _VERSION_NAME.search(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _version_of_hardlink(fs: RootFS, real: str) -> tuple[int, int] | None:
    """`python3` hard-linked to `python3.11`: the versioned sibling with the same inode."""
    st = fs.stat(real)
    names = fs.listdir(posixpath.dirname(real)) if st is not None else None
    if st is None or names is None:
        return None
    for name in sorted(names):
        version = _version_of_name(name)
        if version is None or not name.startswith("python"):
            continue
        other = fs.stat(join(posixpath.dirname(real), name))
        if other is not None and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return version
    return None


def _version_of_tree(fs: RootFS, start: str, notes: list[str]) -> tuple[int, int] | None:
    """The X.Y of the `lib/pythonX.Y/os.py` nearest above `start` (highest if several)."""
    for d in _ancestors(start):
        found: list[tuple[int, int]] = []
        for libdir in ("lib", "lib64"):
            for name in fs.listdir(join(d, libdir)) or ():
                m = _LIB_VERSION_DIR.match(name)
                if m and fs.is_file(join(d, f"{libdir}/{name}/os.py")):
                    found.append((int(m.group(1)), int(m.group(2))))
        if found:
            if len(set(found)) > 1:
                notes.append(f"several pythonX.Y under {d}: the highest assumed")
            return max(found)
    return None


def _ancestors(start: str) -> list[str]:
    out = [normalise(start)]
    while out[-1] != "/":
        out.append(posixpath.dirname(out[-1]))
    return out


def _find_prefix(fs: RootFS, start: str, pyver: str) -> tuple[str, str] | None:
    """getpath.py's search: the nearest ancestor holding `{lib,lib64}/pythonX.Y/os.py`."""
    for d in _ancestors(start):
        for libdir in ("lib", "lib64"):
            base = join(d, f"{libdir}/{pyver}")
            if fs.is_file(join(base, "os.py")) or fs.is_file(join(base, "os.pyc")):
                return d, libdir
    return None


def _read_pyvenv(
    fs: RootFS, exe: str
) -> tuple[str | None, str | None, bool, tuple[int, int] | None]:
    """(venv prefix, home, include-system-site-packages, version) from a pyvenv.cfg."""
    exe_dir = posixpath.dirname(exe)
    for d in (exe_dir, posixpath.dirname(exe_dir)):
        raw = fs.read(join(d, "pyvenv.cfg"), limit=_MAX_CFG_SIZE)
        if raw is None:
            continue
        home: str | None = None
        system_site = True
        version: tuple[int, int] | None = None
        for line in raw.decode("utf-8", "surrogateescape").splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key, value = key.strip().lower(), value.strip()
            if key == "home":
                home = value
            elif key == "include-system-site-packages":
                system_site = value.lower() == "true"
            elif key in ("version", "version_info") and version is None:
                m = _VERSION_VALUE.match(value)
                version = (int(m.group(1)), int(m.group(2))) if m else None
        # site.py takes the venv prefix as the executable directory's parent, wherever
        # the cfg was found
        return posixpath.dirname(exe_dir), home, system_site, version
    return None, None, True, None


def _site_dirs(prefix: str, pyver: str, platlib: str, *, debian: bool, in_venv: bool) -> list[str]:
    """site.getsitepackages() for one prefix (Debian's patched variant when `debian`)."""
    libdirs = [platlib] if platlib == "lib" else [platlib, "lib"]
    if not debian:
        return [join(prefix, f"{ld}/{pyver}/site-packages") for ld in libdirs]
    out = [join(prefix, f"lib/{pyver}/site-packages")] if in_venv else []
    out.append(join(prefix, f"local/lib/{pyver}/dist-packages"))
    out.append(join(prefix, "lib/python3/dist-packages"))
    out.extend(join(prefix, f"{ld}/{pyver}/dist-packages") for ld in libdirs)
    return out


def _add_pth_files(
    fs: RootFS,
    sitedir: str,
    known: set[str],
    site: list[str],
    pth_imports: list[tuple[str, str]],
) -> None:
    """site.addsitedir's .pth handling: path lines added, `import` lines only recorded."""
    names = sorted(n for n in fs.listdir(sitedir) or () if n.endswith(".pth"))
    for name in names:
        if name.startswith("."):
            continue
        pth = join(sitedir, name)
        raw = fs.read(pth, limit=_MAX_PTH_SIZE)
        if raw is None:
            continue
        for line in raw.decode("utf-8", "surrogateescape").splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line.startswith(("import ", "import\t")):
                pth_imports.append((pth, line))
                continue
            path = join(sitedir, line.rstrip())
            if path not in known and fs.stat(path) is not None:
                known.add(path)
                site.append(path)


# ---------------------------------------------------------------------------------------
# finding imports in source text


class _SourceError(ValueError):
    """Source text CPython would refuse to compile (the reason is the message)."""


def _decode(data: bytes) -> str:
    """Source bytes as CPython reads them (PEP 263 cookie, BOM, UTF-8 default)."""
    if b"\0" in data:
        raise _SourceError("contains a null byte (CPython refuses the source)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise _SourceError(f"bad encoding declaration: {exc.msg}") from None
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise _SourceError(f"not decodable as {encoding}: {exc}") from None
    if "\r" in text:  # the tokenizer reads \r\n and \r as \n
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _extract(data: bytes, parse: ParseMode, *, newer_syntax: bool) -> _Parsed:
    """The imports of one source file given as bytes."""
    if b"import" not in data and b"__all__" not in data:
        return _NOTHING
    if parse == "ast":
        if len(data) <= FULL_PARSE_LIMIT:
            try:
                tree = ast.parse(data)
            except SyntaxError as exc:
                if not newer_syntax:
                    return _Parsed(problems=(f"not parsed: {_syntax_reason(exc)}",))
            except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
                return _Parsed(problems=(f"not parsed: {type(exc).__name__}",))
            else:
                return _refs_from_tree(tree)
        note = "over the whole-file parse limit" if len(data) > FULL_PARSE_LIMIT else "newer syntax"
        scanned = _extract_scan(data)
        return attrs.evolve(scanned, problems=(*scanned.problems, f"{note}: scanned instead"))
    return _extract_scan(data)


def _extract_scan(data: bytes) -> _Parsed:
    try:
        text = _decode(data)
    except _SourceError as exc:
        return _Parsed(problems=(f"not read: {exc}",))
    return _scan(text)


def _syntax_reason(exc: SyntaxError) -> str:
    return f"SyntaxError at line {exc.lineno}: {exc.msg}"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = (test.left, test.comparators[0])
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _refs_from_tree(tree: ast.Module) -> _Parsed:
    """Every import in a module's tree (walked iteratively: trees can be very deep)."""
    refs: list[_Ref] = []
    dynamic: list[int] = []
    guarded: list[ast.If] = [n for n in tree.body if isinstance(n, ast.If) and _is_main_guard(n)]
    for block in guarded:
        inner = _refs_from_tree(ast.Module(body=list(block.body), type_ignores=[]))
        refs.extend(attrs.evolve(r, main_only=True) for r in inner.refs)
        dynamic.extend(inner.dynamic)
    skip = {id(n) for n in guarded}
    stack: list[ast.AST] = [n for n in tree.body if id(n) not in skip]
    for block in guarded:
        stack.extend(block.orelse)  # `else:` of the guard runs on import
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            refs.extend(_refs_of_statement(node))
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body never runs; only typing tools read it
            continue
        if isinstance(node, ast.Call):
            found = _ref_of_call(node)
            if isinstance(found, _Ref):
                refs.append(found)
            elif found == "dynamic":
                dynamic.append(node.lineno)
        stack.extend(ast.iter_child_nodes(node))
    refs.sort(key=lambda r: r.line)
    return _Parsed(tuple(refs), tuple(sorted(dynamic)), _all_names(tree.body))


def _refs_of_statement(node: ast.Import | ast.ImportFrom) -> list[_Ref]:
    if isinstance(node, ast.Import):
        return [_Ref(alias.name, 0, (), node.lineno) for alias in node.names]
    names = tuple(alias.name for alias in node.names)
    return [_Ref(node.module or "", node.level, names, node.lineno)]


def _literal_str(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _ref_of_call(node: ast.Call) -> _Ref | Literal["dynamic"] | None:
    """`__import__("a.b", fromlist=[...])` or `import_module(".b", "a")` as an import."""
    func = node.func
    fname = func.id if isinstance(func, ast.Name) else None
    if isinstance(func, ast.Attribute):
        fname = func.attr
    if fname not in ("__import__", "import_module"):
        return None
    kw = {k.arg: k.value for k in node.keywords if k.arg}
    first = node.args[0] if node.args else kw.get("name")
    name = _literal_str(first)
    if name is None:
        return "dynamic" if first is not None else None
    if fname == "__import__":
        fromlist = node.args[3] if len(node.args) > 3 else kw.get("fromlist")
        level_node = node.args[4] if len(node.args) > 4 else kw.get("level")
        level = 0
        if level_node is not None:
            if not (isinstance(level_node, ast.Constant) and type(level_node.value) is int):
                return "dynamic"
            level = level_node.value
        names: tuple[str, ...] = ()
        if isinstance(fromlist, ast.List | ast.Tuple):
            names = tuple(s for s in map(_literal_str, fromlist.elts) if s is not None)
        if level < 0 or (not name and level == 0):
            return None
        return _Ref(name, level, names, node.lineno)
    level = len(name) - len(name.lstrip("."))
    if level == 0:
        return _Ref(name, 0, (), node.lineno)
    package = node.args[1] if len(node.args) > 1 else kw.get("package")
    anchor = _literal_str(package)
    if anchor is None and not (
        isinstance(package, ast.Name) and package.id in ("__name__", "__package__")
    ):
        return "dynamic"
    return _Ref(name[level:], level, (), node.lineno, anchor)


def _all_names(body: Sequence[ast.stmt]) -> tuple[str, ...] | None:
    """A module-level `__all__ = [...]` of string literals."""
    for stmt in body:
        value: ast.expr | None = None
        targets: list[ast.expr] = []
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if isinstance(value, ast.List | ast.Tuple):
            return tuple(s for s in map(_literal_str, value.elts) if s is not None)
    return None


# The lexical scanner. `import` is searched as plain text (fast), then each hit is kept
# only if it starts a statement (line start, or after `:`/`;`, with an optional
# `from X` before it) outside triple-quoted strings and comments, or is a call of
# `__import__`/`import_module`; the statement or call is then cut out and parsed with
# `ast`. Strings that merely look like statements at a line start can over-report.
_TYPE_CHECKING_IF = re.compile(
    r"^([ \t]*)(?:el)?if[ \t]+(?:[A-Za-z_][\w.]*\.)?TYPE_CHECKING[ \t]*:[ \t]*(?:#[^\n]*)?$", re.M
)
_MAIN_GUARD_IF = re.compile(
    r"^()if[ \t]+(?:__name__[ \t]*==[ \t]*(['\"])__main__\2|(['\"])__main__\3[ \t]*==[ \t]*"
    r"__name__)[ \t]*:[ \t]*(?:#[^\n]*)?$",
    re.M,
)
_PREFIX = re.compile(r"(?P<head>[ \t]*|[^\n]*[:;][ \t]*)(?P<from>from(?!\w)[\w. \t]*)?")
_DEF_BEFORE = re.compile(r"\bdef[ \t]+$")
_ALL_ASSIGN = re.compile(r"__all__[ \t]*(?::[^=\n]*)?=[ \t]*")
# Plain statements, the vast majority, are read without ast.parse (3x faster).
_AS = r"(?:[ \t]+as[ \t]+\w+)?"
_SIMPLE_IMPORT = re.compile(rf"import[ \t]+([\w.]+{_AS}(?:[ \t]*,[ \t]*[\w.]+{_AS})*)[ \t\r]*")
_SIMPLE_FROM = re.compile(
    rf"from[ \t]*(\.*)[ \t]*([\w.]*)[ \t]+import[ \t]+"
    rf"(\*|\w+{_AS}(?:[ \t]*,[ \t]*\w+{_AS})*)[ \t\r]*"
)


def _word(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch == "_")


def _code_state(seg: str) -> int:
    """0 if the end of one line's segment is code, 1 inside a string, 2 in a comment."""
    i = 0
    quote = ""
    while i < len(seg):
        ch = seg[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if seg.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        elif ch == "#":
            return 2
        elif ch in "'\"":
            quote = ch * 3 if seg.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        i += 1
    return 1 if quote else 0


def _string_end(text: str, i: int, quote: str, limit: int) -> int:
    """Index just past the string whose body starts at `i` (len(text) if unterminated)."""
    while True:
        k = text.find(quote, i, limit)
        if k < 0:
            return limit
        b = k
        while b > i and text[b - 1] == "\\":
            b -= 1
        if (k - b) % 2 == 0:
            return k + len(quote)
        i = k + 1


def _triple_spans(text: str) -> list[tuple[int, int]]:
    """Spans of triple-quoted strings (docstrings): where `import` is only text."""
    spans: list[tuple[int, int]] = []
    floor = 0
    i = 0
    n = len(text)
    double, single = text.find('"""'), text.find("'''")
    while True:
        if 0 <= double < i:
            double = text.find('"""', i)
        if 0 <= single < i:
            single = text.find("'''", i)
        if double < 0 and single < 0:
            return spans
        start = double if single < 0 or 0 <= double < single else single
        line_start = max(text.rfind("\n", 0, start) + 1, floor)
        seg = text[line_start:start]
        if ("#" in seg or "'" in seg or '"' in seg) and _code_state(seg) != 0:
            i = start + 3  # a quote inside a one-line string or a comment
            continue
        end = _string_end(text, start + 3, text[start : start + 3], n)
        spans.append((start, end))
        floor = i = end


def _inside(spans: list[tuple[int, int]], starts: list[int], pos: int) -> bool:
    k = bisect.bisect_right(starts, pos) - 1
    return k >= 0 and pos < spans[k][1]


def _type_checking_blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int]
) -> list[tuple[int, int]]:
    """Bodies of `if TYPE_CHECKING:` blocks, by indentation."""
    if "TYPE_CHECKING" not in text:
        return []
    return _blocks(text, spans, starts, _TYPE_CHECKING_IF)


def _main_guard_blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int]
) -> list[tuple[int, int]]:
    """Bodies of top-level `if __name__ == "__main__":` blocks (an `else:` is not in them)."""
    if "__main__" not in text:
        return []
    return _blocks(text, spans, starts, _MAIN_GUARD_IF)


def _blocks(
    text: str, spans: list[tuple[int, int]], starts: list[int], header: re.Pattern[str]
) -> list[tuple[int, int]]:
    """(start, end) of the bodies of the `header` lines found outside strings, by
    indentation: a body ends at the first code line indented no deeper than its header."""
    blocks: list[tuple[int, int]] = []
    n = len(text)
    for m in header.finditer(text):
        if (blocks and m.start() < blocks[-1][1]) or _inside(spans, starts, m.start()):
            continue  # nested in a block already found: keeps this linear
        indent = len(m.group(1).expandtabs(8))
        pos = m.end() + 1
        end = n
        while pos < n:
            nl = text.find("\n", pos)
            nl = n if nl < 0 else nl
            line = text[pos:nl]
            body = line.lstrip(" \t")
            if (
                body
                and not body.startswith("#")
                and not _inside(spans, starts, pos)
                and len(line[: len(line) - len(body)].expandtabs(8)) <= indent
            ):
                end = pos
                break
            pos = nl + 1
        blocks.append((m.end(), end))
    return blocks


def _statement_end(text: str, start: int) -> int:
    """End of the logical line of an import statement starting at `start`."""
    nl = text.find("\n", start)
    nl = len(text) if nl < 0 else nl
    if not any(c in text[start:nl] for c in "(\\;#"):
        return nl
    depth = 0
    i = start
    limit = min(len(text), start + _MAX_STATEMENT)
    while i < limit:
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "#":
            nl = text.find("\n", i, limit)
            i = limit if nl < 0 else nl
            continue
        elif ch == "\\":
            i += 2
            continue
        elif ch in "\n;" and depth <= 0:
            return i
        i += 1
    return i


def _call_end(text: str, open_paren: int, cap: int = _MAX_CALL) -> int | None:
    """Index just past the `)` matching `open_paren`, strings skipped; None if too far."""
    depth = 0
    i = open_paren
    limit = min(len(text), open_paren + cap)
    while i < limit:
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i = _string_end(text, i + len(quote), quote, limit)
            continue
        elif ch == "#":
            nl = text.find("\n", i, limit)
            i = limit if nl < 0 else nl
            continue
        i += 1
    return None


def _scan(text: str) -> _Parsed:
    spans = _triple_spans(text)
    starts = [s for s, _ in spans]
    guarded = _type_checking_blocks(text, spans, starts)
    guarded_starts = [s for s, _ in guarded]
    main_only = _main_guard_blocks(text, spans, starts)
    main_starts = [s for s, _ in main_only]
    refs: list[_Ref] = []
    dynamic: list[int] = []
    problems: list[str] = []
    line, line_pos = 1, 0
    pos = 0
    budget = _MAX_IMPORTS
    while (p := text.find("import", pos)) >= 0:
        pos = p + 6
        budget -= 1
        if budget < 0:
            problems.append(f"over {_MAX_IMPORTS} import-like words: the rest not read")
            break
        k = bisect.bisect_right(starts, p) - 1
        if k >= 0 and p < spans[k][1]:
            pos = spans[k][1]
            continue
        if _inside(guarded, guarded_starts, p):
            continue
        line += text.count("\n", line_pos, p)
        line_pos = p
        floor = spans[k][1] if k >= 0 else 0
        if p >= 2 and text.startswith("__import__", p - 2):
            if not _word(text[p - 3 : p - 2]) and not _word(text[p + 8 : p + 9]):
                _scan_call(text, p - 2, p + 8, floor, line, refs, dynamic)
            continue
        if text.startswith("import_module", p):
            if not _word(text[p - 1 : p]) and not _word(text[p + 13 : p + 14]):
                _scan_call(text, p, p + 13, floor, line, refs, dynamic)
            continue
        if _word(text[p - 1 : p]) or _word(text[p + 6 : p + 7]):
            continue
        found = _scan_statement(text, p, floor, line, problems)
        if found is not None:
            if _inside(main_only, main_starts, p):
                found = [attrs.evolve(r, main_only=True) for r in found]
            refs.extend(found)
    return _Parsed(tuple(refs), tuple(dynamic), _scan_all(text, spans, starts), tuple(problems))


def _line_prefix(text: str, p: int, floor: int) -> tuple[int, str]:
    """Start of the logical line holding `p` (backslash continuations joined) and the
    text from there to `p`, the same length, continuations blanked."""
    ls = max(text.rfind("\n", 0, p) + 1, floor)
    while ls >= 2 and ls > floor and text[ls - 2] == "\\":
        ls = max(text.rfind("\n", 0, ls - 1) + 1, floor)
    return ls, text[ls:p].replace("\\\n", "  ")


def _scan_statement(
    text: str, p: int, floor: int, line: int, problems: list[str]
) -> list[_Ref] | None:
    ls, prefix = _line_prefix(text, p, floor)
    start = p
    at_line_start = not prefix or prefix.isspace()
    if not at_line_start:
        if any(c in prefix for c in "#'\"") and _code_state(prefix) != 0:
            return None  # in a comment, or text in a string after a `;` or `:`
        m = _PREFIX.fullmatch(prefix)
        if m is None or "TYPE_CHECKING" in m.group("head"):
            return None
        if m.group("from") is None and prefix.endswith("."):
            return None
        if m.group("from") is not None:
            start = ls + m.start("from")
        at_line_start = not m.group("head").strip()
    snippet = text[start : _statement_end(text, p)]
    simple = _simple_statement(snippet, line)
    if simple is not None:
        return simple
    try:
        body = ast.parse(snippet).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        if at_line_start:
            problems.append(f"line {line}: import statement not understood")
        return None
    if len(body) != 1 or not isinstance(body[0], ast.Import | ast.ImportFrom):
        return None
    return [_Ref(r.module, r.level, r.names, line) for r in _refs_of_statement(body[0])]


def _simple_statement(snippet: str, line: int) -> list[_Ref] | None:
    """A one-line statement without parentheses, read by regular expression."""
    m = _SIMPLE_IMPORT.fullmatch(snippet)
    if m is not None:
        return [_Ref(part.split()[0], 0, (), line) for part in m.group(1).split(",")]
    m = _SIMPLE_FROM.fullmatch(snippet)
    if m is None or not (m.group(1) or m.group(2)):
        return None
    names = tuple(part.split()[0] for part in m.group(3).split(","))
    return [_Ref(m.group(2), len(m.group(1)), names, line)]


def _scan_call(
    text: str,
    start: int,
    name_end: int,
    floor: int,
    line: int,
    refs: list[_Ref],
    dynamic: list[int],
) -> None:
    open_paren = name_end
    while open_paren < len(text) and text[open_paren] in " \t":
        open_paren += 1
    if text[open_paren : open_paren + 1] != "(":
        return
    _, prefix = _line_prefix(text, start, floor)
    if any(c in prefix for c in "#'\"") and _code_state(prefix) != 0:
        return
    if _DEF_BEFORE.search(prefix):
        return
    end = _call_end(text, open_paren)
    if end is None:
        dynamic.append(line)
        return
    try:
        expr = ast.parse(text[start:end], mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        dynamic.append(line)
        return
    if not isinstance(expr, ast.Call):
        return
    found = _ref_of_call(expr)
    if isinstance(found, _Ref):
        refs.append(_Ref(found.module, found.level, found.names, line, found.anchor))
    elif found == "dynamic":
        dynamic.append(line)


def _scan_all(text: str, spans: list[tuple[int, int]], starts: list[int]) -> tuple[str, ...] | None:
    pos = 0
    while (k := text.find("__all__", pos)) >= 0:
        pos = k + 7
        if (k and text[k - 1] != "\n") or _inside(spans, starts, k):
            continue
        m = _ALL_ASSIGN.match(text, k)
        if m is None:
            continue
        if text[m.end() : m.end() + 1] in ("[", "("):
            end = _call_end(text, m.end(), _MAX_STATEMENT)
        else:  # `__all__ = "a", "b"`
            end = text.find("\n", m.end())
            end = len(text) if end < 0 else end
        if end is None:
            return None
        try:
            value = ast.literal_eval(text[m.end() : end])
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
            return None
        if isinstance(value, list | tuple):
            return tuple(v for v in value if isinstance(v, str))
        return None
    return None


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
        self._importer = ""  # the module whose imports are being resolved
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

    def parse_file(self, path: str, *, skip_first_line: bool = False) -> _Parsed | None:
        """The imports in the file at `path` (None if it is not a readable regular file)."""
        try:
            fd = self.fs.open(path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_.S_ISREG(st.st_mode):
                return None
            key = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                self.parse,
                skip_first_line,
                self.newer_syntax,
                st.st_size > self.max_file_size,
            )
            parsed = self.cache.get(key)
            if parsed is not None:
                return parsed
            if st.st_size > self.max_file_size:
                parsed = _Parsed(problems=(f"over {self.max_file_size} bytes: not read",))
            else:
                data = _read_all(fd, st.st_size)
                if skip_first_line:  # -x: keep the newline so line numbers still match
                    nl = data.find(b"\n")
                    data = data[nl:] if nl >= 0 else b""
                parsed = _extract(data, self.parse, newer_syntax=self.newer_syntax)
        except OSError as exc:
            self.notes.append(f"{path}: not read: {exc.strerror}")
            return None
        finally:
            os.close(fd)
        self.cache.put(key, parsed)
        return parsed

    def extract_text(self, code: str) -> _Parsed:
        """The imports in program text given on the command line or in a .pth line."""
        return _extract(
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

    def follow(self, name: str, package: str, parsed: _Parsed, path: str) -> None:
        """Resolve what the module `name` (in `package`) read from `path` imports."""
        self.dynamic.extend(f"{path}:{line}" for line in parsed.dynamic)
        self.notes.extend(f"{path}: {problem}" for problem in parsed.problems)
        self._importer = name
        as_main = name in self.main_names
        for ref in parsed.refs:
            if ref.main_only and not as_main:
                continue  # `if __name__ == "__main__":` of an imported module never runs
            target = self._absolute(ref, package, path)
            if not target:
                continue
            if not ref.names:
                self.require(target)
                continue
            spec = self.require(target)
            if spec is None or spec.locations is None:
                continue
            for item in ref.names:
                subs = self._star(spec) if item == "*" else (item,)
                for sub in subs:
                    self.probe(f"{target}.{sub}")

    def _absolute(self, ref: _Ref, package: str, path: str) -> str | None:
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
        """Parse queued modules until none is left (or the time is up)."""
        while self._queue:
            if time.monotonic() > self.deadline:
                self.notes.append(f"time limit reached: {len(self._queue)} module(s) not read")
                return
            name, spec = self._queue.popleft()
            assert spec.source is not None  # only queued with a source
            parsed = self.parse_file(spec.source)
            if parsed is None:
                continue
            package = name if spec.locations is not None else name.rpartition(".")[0]
            self.follow(name, package, parsed, spec.source)


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
