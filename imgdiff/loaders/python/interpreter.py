"""A CPython installation inside a root, and the default `sys.path` it starts with.

This module owns what CPython's start-up code (`getpath.py`, `site.py`) would compute for
an interpreter found in a root: its version (from its name, a hard-linked sibling, or the
`lib/pythonX.Y` beside it), its prefix, a venv's `pyvenv.cfg`, Debian's dist-packages
layout, site directories and `.pth` path lines, read through `RootFS` only. It must never
run the interpreter, execute a `.pth` `import` line (they are only recorded), nor consult
any environment: PYTHONPATH, PYTHONHOME and the user site directory are ignored
(needrestart's CVE-2024-48990 came from running the target's interpreter with the
target's PYTHONPATH).
"""

from __future__ import annotations

import posixpath
import re

import attrs

from imgdiff.fs.paths import join, normalise
from imgdiff.fs.rootfs import RootFS

_MAX_PTH_SIZE = 1 << 20
_MAX_CFG_SIZE = 64 << 10
_VERSION_NAME = re.compile(r"python(\d)\.(\d+)")
_VERSION_VALUE = re.compile(r"\s*(\d+)\.(\d+)")
_LIB_VERSION_DIR = re.compile(r"python(\d)\.(\d+)$")


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
    site_dirs: tuple[str, ...] = ()  # the directories site reads .pth files from


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
    site_dirs: list[str] = []
    pth_imports: list[tuple[str, str]] = []
    for pfx, in_venv in prefixes:
        for sitedir in _site_dirs(pfx, pyver, platlib, debian=debian, in_venv=in_venv):
            if sitedir not in known and fs.is_dir(sitedir):
                known.add(sitedir)
                site.append(sitedir)
                site_dirs.append(sitedir)
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
        tuple(site_dirs),
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
    return tuple(default_sys_path(fs, interp, _path0(fs, cwd, script, safe_path), no_site=no_site))


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


def default_sys_path(
    fs: RootFS, interp: Interpreter, path0: str | None, *, no_site: bool
) -> list[str]:
    """CPython's initial sys.path: `path0` (the script's directory or the working
    directory, None when -P or unknown), the stdlib, then the site directories unless
    `no_site` (-S), without repeats."""
    out: list[str] = [] if path0 is None else [path0]
    out.extend(interp.stdlib)
    if not no_site:
        out.extend(interp.site)
    return list(dict.fromkeys(out))


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
    """`start` and every directory above it to `/`. A relative start (a pyvenv.cfg may
    say `home = bin`) is read from the root: it cannot walk up forever."""
    out = [normalise("/" + start if not start.startswith("/") else start)]
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
