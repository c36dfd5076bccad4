"""The part of the import tracer that runs inside the traced program: hooks, and the spool writer.

It owns the in-process recording — hooks in frozen importlib that see every module the import
system loads or reloads, whatever asked for it (`import`, `__import__`,
`importlib.import_module`, parent packages; see `_hook_importlib`), a look at `__main__`, an
at-fork handler, a wrapper around `os.execv`/`os.execve` — and the spool format's writing side:
file naming, header and record lines, `/proc/self/stat` start time, boot id.
`imgdiff.trace.spool` reads what this module writes and takes its constants from here. Each
record is written (one `write` to an `O_APPEND` file) as soon as its module has loaded, so a
snapshot of a running service sees it; buffering would leave records unwritten for as long as
an import that never returns (a module body that serves forever) and no timer can be had
without a thread. The spool descriptor is checked (fstat: device and inode) before each
write: a program may have closed it and got its number back for a file of its own. An audit
hook is used only where importlib cannot be hooked: a Python audit hook slows every id(),
open() and .pyc load of the program for its whole life. This module must
stay cheap to load and run inside someone else's program: standard library only (no attrs, no
json, no imgdiff package import — `_sitehook` loads this file by path), no threads, no imports
while a hook runs, and it never raises into the traced program: an error disables tracing with
one line on stderr.
"""

from __future__ import annotations

import _thread  # builtin
import _weakref  # builtin, loaded at start-up (weakref.py is not)
import os
import stat
import sys

TYPE_CHECKING = False  # typing and collections.abc cost milliseconds to import; mypy only
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeAlias

    Identity: TypeAlias = "tuple[int, int, int, int]"  # dev, ino, size, mtime_ns
    Origin: TypeAlias = "tuple[str, str, str | None]"  # path, kind, zip member
    Found: TypeAlias = "tuple[str, str, str | None, Identity | None]"

FORMAT_VERSION = 1
DEFAULT_SPOOL_DIR = "/run/imgdiff/trace"
SPOOL_DIR_ENV = "IMGDIFF_TRACE_DIR"
SPOOL_SUFFIX = ".jsonl"
# where a module's code came from; one record per file (several for a namespace package)
KINDS = frozenset(
    {
        "source",  # .py read by SourceFileLoader (its cached .pyc may be what ran)
        "bytecode",  # .pyc without source (SourcelessFileLoader)
        "extension",  # shared object (ExtensionFileLoader)
        "zip",  # member of a zip archive on sys.path: path is the archive, member the name
        "namespace",  # one directory of a namespace package
        "frozen",  # compiled into the interpreter; path is the .py it was frozen from
        "file",  # any other loader that names a file
    }
)

_OTHER_COPY_NAMES = ("imgdiff.trace.tracer", "_imgdiff_trace_tracer")
_PENDING_MAX = 256  # loads begun and not (yet) finished that are kept track of
# the spool descriptor is moved to the lowest free number from here: out of the way of programs
# that close or reuse the low ones (daemons close every descriptor they did not open)
_HIGH_FD = 512


def spool_file_name(pid: int, start: int) -> str:
    """The spool file of the process (pid, start): start is clock ticks after boot."""
    return f"{pid}-{start}{SPOOL_SUFFIX}"


def parse_start_time(stat: bytes) -> int:
    """Field 22 (starttime) of a `/proc/PID/stat` line.

    The command name (field 2, in parentheses) may contain spaces and ")", so the fields are
    counted from the last ")": field 3 is the first after it, field 22 the twentieth.
    """
    rest = stat[stat.rindex(b")") + 1 :].split()
    return int(rest[19])


def read_start_time(pid: int | str = "self", proc: str = "/proc") -> int:
    with open(f"{proc}/{pid}/stat", "rb") as f:
        return parse_start_time(f.read())


def read_boot_id(proc: str = "/proc") -> str:
    """This boot's random id; spool files written under another boot are not this boot's."""
    with open(f"{proc}/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def _json_str(s: str) -> str:
    """A JSON string literal in ASCII; lone surrogates (os.fsdecode of non-UTF-8 bytes) escaped
    as \\udcXX, which json.loads gives back unchanged."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = ['"']
    for c in s:
        o = ord(c)
        if 0x20 <= o < 0x7F:
            out.append("\\" + c if c in '"\\' else c)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
    out.append('"')
    return "".join(out)


def encode_header(
    pid: int,
    start: int,
    boot_id: str,
    exe: str,
    argv: Sequence[str],
    orig_argv: Sequence[str],
    root: tuple[int, int] | None = None,
) -> str:
    """The first line of a spool file (with its newline); `root` is the (st_dev, st_ino) of
    the process's root directory when the records that follow were made."""
    return (
        f'{{"v": {FORMAT_VERSION}, "pid": {pid}, "start": {start}, '
        f'"boot_id": {_json_str(boot_id)}, "exe": {_json_str(exe)}, '
        f'"argv": [{", ".join(_json_str(a) for a in argv)}], '
        f'"orig_argv": [{", ".join(_json_str(a) for a in orig_argv)}]'
        + ("" if root is None else f', "root": [{root[0]:d}, {root[1]:d}]')
        + "}\n"
    )


def encode_root(root: tuple[int, int]) -> str:
    """The line that says the records after it were made under another root directory (the
    process chroot'ed): paths in them are seen from there."""
    return f'{{"root": [{root[0]:d}, {root[1]:d}]}}\n'


def encode_record(
    module: str,
    path: str,
    identity: Identity | None,
    kind: str,
    member: str | None = None,
    by: str | None = None,
) -> str:
    """One module line (with its newline); identity is (dev, ino, size, mtime_ns) or None when
    the file could not be stat'ed; `by` the module whose import statement loaded it ("": the
    program or start-up; None: not known)."""
    if identity is None:
        ident = '"dev": null, "ino": null, "size": null, "mtime_ns": null'
    else:
        dev, ino, size, mtime_ns = identity
        ident = f'"dev": {dev:d}, "ino": {ino:d}, "size": {size:d}, "mtime_ns": {mtime_ns:d}'
    tail = "" if member is None else f', "member": {_json_str(member)}'
    if by is not None:
        tail += f', "by": {_json_str(by)}'
    return (
        f'{{"m": {_json_str(module)}, "p": {_json_str(path)}, {ident}, "kind": "{kind}"{tail}}}\n'
    )


# encode_record's output for a record without anything to escape, in one formatting step
_PLAIN_RECORD = (
    '{"m": "%s", "p": "%s", "dev": %d, "ino": %d, "size": %d, "mtime_ns": %d, "kind": "%s", '
    '"by": "%s"}\n'
)


def _identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _loader_classes() -> tuple[type, type, type]:
    ext = sys.modules["_frozen_importlib_external"]
    return (ext.SourceFileLoader, ext.SourcelessFileLoader, ext.ExtensionFileLoader)


_SOURCE_LOADER, _SOURCELESS_LOADER, _EXTENSION_LOADER = _loader_classes()
_PLAIN_LOADERS = {
    _SOURCE_LOADER: "source",
    _EXTENSION_LOADER: "extension",
    _SOURCELESS_LOADER: "bytecode",
}


def describe_spec(spec: Any) -> list[Origin]:
    """The files a module spec names, classified; [] for built-in modules and unknown loaders
    without a location."""
    origin = spec.origin
    locations = spec.submodule_search_locations
    if origin is None and locations is not None:
        # namespace package (3.11: NamespaceLoader; earlier: loader None)
        return [(d, "namespace", None) for d in list(locations) if isinstance(d, str)]
    if not isinstance(origin, str):
        return []
    loader = spec.loader
    if not spec.has_location:
        if origin == "frozen":
            filename = getattr(spec.loader_state, "filename", None)
            if isinstance(filename, str):
                return [(filename, "frozen", None)]
        return []
    archive = getattr(loader, "archive", None)
    if isinstance(archive, str) and origin.startswith(archive + os.sep):
        return [(archive, "zip", origin[len(archive) + 1 :])]
    if isinstance(loader, _SOURCE_LOADER):
        return [(origin, "source", None)]
    if isinstance(loader, _EXTENSION_LOADER):
        return [(origin, "extension", None)]
    if isinstance(loader, _SOURCELESS_LOADER):
        return [(origin, "bytecode", None)]
    return [(origin, "file", None)]


def _describe_module(module: object) -> list[Origin]:
    """What `describe_spec` says of a module already loaded, read without attribute hooks (a
    lazily loaded module must not be forced to load by being looked at)."""
    try:
        namespace = object.__getattribute__(module, "__dict__")
    except Exception:
        return []
    spec = namespace.get("__spec__")
    if spec is not None:
        try:
            found = describe_spec(spec)
        except Exception:
            found = []
        if found:
            return found
    filename = namespace.get("__file__")
    if not isinstance(filename, str):
        # __main__ of a script once it has finished: the interpreter deletes its __file__ (before
        # atexit) but leaves the loader it made for it
        loader = namespace.get("__loader__")
        if isinstance(loader, (_SOURCE_LOADER, _SOURCELESS_LOADER)):
            filename = getattr(loader, "path", None)
    if isinstance(filename, str):  # __main__ of a script (no spec), or a hand-made module
        return [(filename, "source" if filename.endswith(".py") else "file", None)]
    return []


def _no_main() -> None:
    return None


class _State:
    """Everything the hooks share; one per copy of this module, one copy active per process."""

    def __init__(self) -> None:
        self.installed = False  # install() ran in this process (hooks stay; `active` gates them)
        self.active = False
        self.complained = False
        self.spool_dir = ""
        self.fd = -1
        self.path = ""  # the spool file, and its (st_dev, st_ino): `fd` is written only when
        self.ident = (-1, -1)  # it still is that file (`_spool_fd`)
        self.fcntl: Any = None  # the module, imported at install (never while a hook runs)
        self.lines: list[str] = []  # every record of this process, kept for fork and exec
        self.root: tuple[int, int] | None = None  # "/" (dev, ino) when `lines` begin
        # the __main__ module looked at last, weakly: a strong reference would keep __main__,
        # and every module it imported, alive past the interpreter's first clean-up pass at
        # exit (each is then cleared one by one: +5% of the finalisation's work)
        self.main: Callable[[], object] = _no_main
        self.main_paths: set[str] = set()  # files recorded as __main__
        self.hooks = ""  # how loads are seen: "transient", "wrap" or "audit" (`_hook_importlib`)
        # record lines of loads begun, and the thread loading, by module name
        self.loading: dict[str, tuple[str, int]] = {}
        self.running: dict[int, list[str]] = {}  # "wrap": modules whose body runs, by thread
        self.pending: list[str] = []  # "audit": imports announced, not yet finished


_state = _State()


def is_installed() -> bool:
    """Whether install() ran in this process for this copy of the tracer (tracing may have been
    disabled since by an error)."""
    return _state.installed


def is_active() -> bool:
    """Whether this process's imports are being recorded right now."""
    return _state.active


def hooks() -> str:
    """How loads are seen in this process: "transient", "wrap", "audit", or "" (not tracing)."""
    return _state.hooks if _state.active else ""


def install(spool_dir: str | None = None) -> None:
    """Start recording this process's imports into `spool_dir` (default: $IMGDIFF_TRACE_DIR,
    else /run/imgdiff/trace). Idempotent, also across a second copy of this module loaded under
    another name; never raises."""
    _install(spool_dir)


def _install(spool_dir: str | None, hooks: str = "transient") -> None:
    """install(), choosing the hooks: "transient", "wrap" or "audit" (each falls back to the
    next where importlib lacks what it needs; see `_hook_importlib`)."""
    if _state.installed or _other_copy_installed():
        return
    _state.installed = True
    try:
        import atexit  # builtin module: no file read

        try:
            import fcntl  # an extension module in some builds: loaded once, here

            _state.fcntl = fcntl
        except ImportError:
            pass

        # absolute: a forked child opens its own file after the program may have chdir'ed
        _state.spool_dir = os.path.abspath(
            spool_dir or os.environ.get(SPOOL_DIR_ENV) or DEFAULT_SPOOL_DIR
        )
        st = os.stat("/")
        _state.root = (st.st_dev, st.st_ino)
        _open_spool()
        _state.active = True
        _record_loaded_modules()
        _state.hooks = _hook_importlib(hooks)
        if not _state.hooks:
            # Only then: with any audit hook installed CPython builds every event's arguments
            # (copying each .pyc for "marshal.loads") and calls the hook for every id(), open(),
            # ... for the life of the process: id() 6x and copy.deepcopy 2x slower.
            sys.addaudithook(_audit)
            _state.hooks = "audit"
        _wrap_exec()
        _wrap_chroot()
        os.register_at_fork(after_in_child=_after_fork_child)
        atexit.register(_at_exit)
    except Exception as exc:
        _disable(exc)


def _other_copy_installed() -> bool:
    me = sys.modules.get(__name__)
    for name in _OTHER_COPY_NAMES:
        other = sys.modules.get(name)
        if other is None or other is me:
            continue
        try:
            if other.is_installed():
                return True
        except Exception:  # noqa: S112 - an unrelated module of that name: not a tracer
            continue
    return False


def _disable(exc: BaseException) -> None:
    _state.active = False
    try:  # noqa: SIM105 - contextlib is not loaded at start-up; this module stays lean
        _close_spool()
    except OSError:
        pass
    if not _state.complained:
        _state.complained = True
        try:  # noqa: SIM105 - as above
            sys.stderr.write(f"imgdiff.trace: import tracing disabled: {exc!r}\n")
        except Exception:  # noqa: S110 - no stderr to complain to: stay silent
            pass


def _ensure_dir(path: str) -> None:
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return
    if os.geteuid() == 0:
        # a shared system spool: services of any user add their own files; the sticky bit keeps
        # them from removing each other's, and the reader trusts a file only from its owner
        os.chmod(path, 0o1777)  # noqa: S103 - like /tmp, on purpose (see above)


def _open_spool() -> None:
    """Open (pid, start)'s file, emptied, header written, then every record kept so far."""
    pid = os.getpid()
    start = read_start_time()
    path = os.path.join(_state.spool_dir, spool_file_name(pid, start))
    _ensure_dir(_state.spool_dir)
    try:
        fd = os.open(path, _SPOOL_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # this process image replaced an earlier one by exec (same pid and start time), or the
        # name was planted: reuse only a regular file of our own
        fd = os.open(path, _SPOOL_FLAGS | os.O_NONBLOCK)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            raise PermissionError(
                f"{path}: not a regular file owned by uid {os.geteuid()}"
            ) from None
        os.ftruncate(fd, 0)
    _close_spool()  # a forked child's copy of its parent's
    st = os.fstat(fd)
    _state.fd, _state.path, _state.ident = _move_high(fd), path, (st.st_dev, st.st_ino)
    header = encode_header(
        pid,
        start,
        read_boot_id(),
        sys.executable or "",
        [str(a) for a in getattr(sys, "argv", [])],
        [str(a) for a in getattr(sys, "orig_argv", [])],
        _state.root,
    )
    _write(header + "".join(_state.lines))


_SPOOL_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW


def _move_high(fd: int) -> int:
    """`fd` moved to the lowest free number from _HIGH_FD on (as it is when that fails)."""
    fcntl = _state.fcntl
    if fcntl is None:
        return fd
    try:
        high: int = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    except OSError:  # a descriptor limit below _HIGH_FD
        return fd
    os.close(fd)
    return high


def _is_spool(fd: int) -> bool:
    """Whether `fd` is still the spool file: a program may close it (daemons close every
    descriptor) and get its number back for a file of its own."""
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return st.st_ino == _state.ident[1] and st.st_dev == _state.ident[0]


def _spool_fd() -> int:
    """The spool file's descriptor: `_state.fd` when it still is that file (one fstat), else
    the file reopened by its path, as it was opened; raises when the path no longer leads to
    that very file (removed, replaced, or out of reach after a chroot)."""
    if _is_spool(_state.fd):
        return _state.fd
    _state.fd = -1  # another file's number now: never written, truncated or closed by us
    fd = os.open(_state.path, _SPOOL_FLAGS | os.O_NONBLOCK)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != _state.ident:
        os.close(fd)
        raise OSError(f"{_state.path}: spool file closed by the program and replaced")
    _state.fd = _move_high(fd)
    return _state.fd


def _close_spool() -> None:
    fd, _state.fd = _state.fd, -1
    if fd >= 0 and _is_spool(fd):
        os.close(fd)


def _write(text: str) -> None:
    data = text.encode("ascii")
    fd = _spool_fd()
    while data:
        written = os.write(fd, data)
        if not written:
            raise OSError("spool write wrote nothing")
        data = data[written:]


def _encode(name: str, found: list[Found], by: str | None = None) -> list[str]:
    return [
        encode_record(name, path, ident, kind, member, by) for path, kind, member, ident in found
    ]


def _importer() -> str:
    """The module whose body is running in this thread, so whose import statement asks for
    this load: the innermost load begun and not finished ("transient": `loading`, in order; a
    failed load leaves sys.modules), else the wrapper's stack; "" for the program itself or
    start-up."""
    thread = _get_ident()
    for name, (_, loader) in reversed(_state.loading.items()):
        if loader == thread and name in sys.modules:
            return name
    running = _state.running.get(thread)
    return running[-1] if running else ""


_get_ident = _thread.get_ident


def _append(lines: list[str]) -> None:
    if lines:
        _state.lines.extend(lines)
        _write("".join(lines))


def _with_identity(origins: list[Origin]) -> list[Found]:
    # relative sys.path entries give relative origins; the cwd of the import resolves them
    return [
        (path if path.startswith("/") else os.path.abspath(path), kind, member, _identity(path))
        for path, kind, member in origins
    ]


def _record_loaded_modules() -> None:
    """Modules loaded before install(): identity as of now (they are in memory already)."""
    lines: list[str] = []
    for key, module in list(sys.modules.items()):
        if not isinstance(key, str):
            continue
        found = _with_identity(_describe_module(module))
        if key == "__main__" and found:
            _state.main = _weakref.ref(module)
            _state.main_paths.update(f[0] for f in found)
            # a launcher run by -m (python -m imgdiff.trace) under its own name: the program
            # it runs becomes __main__ later
            spec = getattr(module, "__spec__", None)
            key = getattr(spec, "name", None) or key  # noqa: PLW2901 - the name to record
        lines += _encode(key, found)
    _append(lines)


def record_main(spec_or_path: Any) -> None:
    """Record the file of a `__main__` the import system does not load (a launcher running a
    script or module with runpy): a module spec, or a path. Never raises."""
    if not _state.active:
        return
    try:
        if isinstance(spec_or_path, str):
            found: list[Origin] = [(spec_or_path, "source", None)]
        else:
            found = describe_spec(spec_or_path)
        _record_main(found)
    except Exception as exc:
        _disable(exc)


def _record_main(found: list[Origin]) -> None:
    new = [f for f in _with_identity(found) if f[0] not in _state.main_paths]
    _state.main_paths.update(f[0] for f in new)
    _append(_encode("__main__", new))


def _check_main() -> None:
    """Record `__main__` once it names its file. The interpreter (`python app.py`, `-m`) and
    runpy fill it in after start-up hooks ran, and runpy replaces it, so it is looked at again
    before each load and at exit (a program that loads nothing new is recorded at exit)."""
    main = sys.modules.get("__main__")
    if main is None or main is _state.main():
        return
    found = _describe_module(main)
    if found:
        _state.main = _weakref.ref(main)
        _record_main(found)


def _hook_importlib(how: str) -> str:
    """Place the recording hooks in frozen importlib; returns how ("", "wrap" or "transient").

    "transient" (preferred): importlib's `_load_unlocked` calls `module_from_spec(spec)` before
    running a module and `_verbose_message("import {!r} # {!r}", name, ...)` once it loaded;
    both are module globals looked up at each call, so replacing them reaches every load (the
    import statement, `__import__`, `importlib.import_module`, parent packages). A program
    that loads a module itself (`importlib.util.module_from_spec`, then the loader's
    `exec_module`: plugins) gets no such message: its record is written at `module_from_spec`.
    Nothing of this module stays on the stack while a module body runs: CPython 3.11 allocates
    frames in 16 KiB chunks and frees a chunk when its first frame returns, so one more frame
    per import level can make a program's import-time calls allocate and free a chunk again
    and again (the benchmark's program: 1,100 to 2,500 more mmap/munmap pairs for most frame
    sizes tried, about +2% of its time).
    "wrap": a wrapper around `_load_unlocked` itself, where the two are not found.
    Reloads (`_exec`) are always wrapped; they are rare.
    """
    bootstrap = sys.modules["_frozen_importlib"]
    load_unlocked = getattr(bootstrap, "_load_unlocked", None)
    exec_ = getattr(bootstrap, "_exec", None)
    if how == "audit" or not callable(load_unlocked) or not callable(exec_):
        return ""
    code = getattr(load_unlocked, "__code__", None)
    loaded = [c for c in getattr(code, "co_consts", ()) if c == _LOADED_MESSAGE]
    names = getattr(code, "co_names", ())
    if how == "transient" and loaded and {"module_from_spec", "_verbose_message"} <= set(names):
        before = getattr(bootstrap, "module_from_spec")  # noqa: B009 - a private name
        after = getattr(bootstrap, "_verbose_message")  # noqa: B009 - as above
        hook = _before_hook(before, load_unlocked.__code__)
        setattr(bootstrap, "module_from_spec", hook)  # noqa: B010 - as above
        util = sys.modules.get("importlib.util")  # its copy of the name, if loaded already
        if getattr(util, "module_from_spec", None) is before:
            setattr(util, "module_from_spec", hook)  # noqa: B010 - as above
        setattr(bootstrap, "_verbose_message", _after_hook(after, loaded[0]))  # noqa: B010
        how = "transient"
    else:
        setattr(bootstrap, "_load_unlocked", _around_hook(load_unlocked))  # noqa: B010
        how = "wrap"
    setattr(bootstrap, "_exec", _around_hook(exec_))  # noqa: B010 - importlib.reload
    return how


_LOADED_MESSAGE = "import {!r} # {!r}"


def _as_importlib(hook: Callable[..., Any], original: Callable[..., Any]) -> None:
    """Dress a hook as the importlib function it replaces. The interpreter trims importlib's
    frames from the traceback of an error in a module body or an extension's init, one run of
    "<frozen importlib._bootstrap>" frames at a time; a frame from this file inside that run
    would keep half of it (and itself) in every such traceback."""
    hook.__code__ = hook.__code__.replace(
        co_filename="<frozen importlib._bootstrap>", co_name=original.__name__
    )
    hook.__name__ = hook.__qualname__ = original.__name__
    hook.__wrapped__ = original  # type: ignore[attr-defined]


def _before_load(spec: Any) -> str:
    """The record lines of the files `spec` names, stat'ed now: before the loader reads them,
    so that a file an update replaces in between is recorded as the old one, which errs
    towards "this process uses a changed file". Written once the module has loaded."""
    if sys.modules.get("__main__") is not _state.main():
        _check_main()
    kind = _PLAIN_LOADERS.get(type(spec.loader))
    origin = spec.origin
    name = spec.name
    by = _importer()
    if kind is not None and type(origin) is str and origin[:1] == "/":
        # the common case, without the walk: a file loader, an absolute path
        both = name + origin + by
        if both.isascii() and both.isprintable() and '"' not in both and "\\" not in both:
            try:
                st = os.stat(origin)
            except (OSError, ValueError):
                pass
            else:
                return _PLAIN_RECORD % (
                    name,
                    origin,
                    st.st_dev,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    kind,
                    by,
                )
    return "".join(_encode(name, _with_identity(describe_spec(spec)), by))


def _before_hook(original: Callable[..., Any], load_unlocked: Any) -> Callable[..., Any]:
    loading = _state.loading
    getframe = sys._getframe

    def module_from_spec(spec: Any) -> Any:
        if _state.active:
            try:
                lines = _before_load(spec)
                if not lines:
                    pass
                elif getframe(1).f_code is load_unlocked:  # written once it has loaded
                    if len(loading) > _PENDING_MAX:  # specs made and never loaded
                        loading.clear()
                    loading[spec.name] = (lines, _get_ident())
                else:  # the program loads it itself: no end of the load will be seen
                    _state.lines.append(lines)
                    _write(lines)
            except Exception as exc:
                _disable(exc)
        return original(spec)

    _as_importlib(module_from_spec, original)
    return module_from_spec


def _after_hook(original: Callable[..., Any], loaded: str) -> Callable[..., Any]:
    loading = _state.loading
    flags = sys.flags

    # importlib calls this ten times per load ("trying {}" for each candidate file); the
    # original only prints under -v, so it is called only then
    def _verbose_message(message: str, *args: Any, verbosity: int = 1) -> Any:
        if message is loaded and _state.active:
            try:
                begun = loading.pop(args[0], None)
                if begun:
                    _state.lines.append(begun[0])
                    _write(begun[0])
            except Exception as exc:
                _disable(exc)
        if flags.verbose >= verbosity:
            return original(message, *args, verbosity=verbosity)
        return None

    _as_importlib(_verbose_message, original)
    return _verbose_message


def _around_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    def _load_unlocked(spec: Any, *args: Any) -> Any:
        if not _state.active:
            return original(spec, *args)
        try:
            lines = _before_load(spec)
        except Exception as exc:
            _disable(exc)
            return original(spec, *args)
        thread = _get_ident()
        running = _state.running.setdefault(thread, [])
        running.append(spec.name)
        try:
            module = original(spec, *args)
        finally:
            running.pop()
            if not running:
                del _state.running[thread]
        if lines and _state.active:
            try:
                _state.lines.append(lines)
                _write(lines)
            except Exception as exc:
                _disable(exc)
        return module

    _as_importlib(_load_unlocked, original)
    return _load_unlocked


def _wrap_exec() -> None:
    """os.execv/execve (every os.exec* goes through one of them): the new image is another
    program, which records itself into the same file (same pid and start time) if it traces;
    so the file is emptied first, and refilled if the exec fails."""
    for name in ("execv", "execve"):
        original = getattr(os, name)

        def exec_(*args: Any, _original: Callable[..., Any] = original, **kw: Any) -> Any:
            if _state.active:
                try:
                    os.ftruncate(_spool_fd(), 0)
                except Exception as exc:
                    _disable(exc)
            try:
                return _original(*args, **kw)
            except BaseException:
                if _state.active:
                    try:
                        _open_spool()
                    except Exception as exc:
                        _disable(exc)
                raise

        exec_.__name__ = exec_.__qualname__ = name
        exec_.__doc__ = original.__doc__
        exec_.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(os, name, exec_)


def _wrap_chroot() -> None:
    """os.chroot: the records made after it name paths as seen from the new root; a line
    says so (a reader looks them up there, and the earlier ones outside it)."""
    original = os.chroot

    def chroot(*args: Any, **kw: Any) -> Any:
        result = original(*args, **kw)
        if _state.active:
            try:
                st = os.stat("/")
                _append([encode_root((st.st_dev, st.st_ino))])
            except Exception as exc:
                _disable(exc)
        return result

    chroot.__name__ = chroot.__qualname__ = "chroot"
    chroot.__doc__ = original.__doc__
    chroot.__wrapped__ = original  # type: ignore[attr-defined]
    os.chroot = chroot


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "import" and _state.active:
        try:
            _check_main()
            _fallback_import(args[0])
        except Exception as exc:
            _disable(exc)


def _fallback_import(name: object) -> None:
    """Without the loader wrapper: resolve names announced by earlier "import" events once
    their modules finished loading (name None: the program is exiting, resolve what can be).
    Misses what `importlib.import_module` loads (it raises no event)."""
    still = []
    for pending in _state.pending:
        module = sys.modules.get(pending)
        if module is None:  # not loaded yet (its parent goes first), or failed: keep a while
            if name is not None:
                still.append(pending)
            continue
        spec = object.__getattribute__(module, "__dict__").get("__spec__")
        if spec is not None and getattr(spec, "_initializing", False):
            still.append(pending)
        else:
            _append(_encode(pending, _with_identity(_describe_module(module))))
    if isinstance(name, str) and name not in sys.modules and name not in still:
        still.append(name)  # (an extension module raises two events)
    _state.pending = still[-_PENDING_MAX:]


def _at_exit() -> None:
    if _state.active:
        try:
            _check_main()
            _fallback_import(None)
        except Exception as exc:
            _disable(exc)


def _after_fork_child() -> None:
    if not _state.active:
        return
    try:
        forker = sys._getframe(1)
        if forker.f_code.co_name == "_execute_child" and forker.f_code.co_filename.endswith(
            "subprocess.py"
        ):
            # subprocess's fork (preexec_fn given), about to exec another program: no spool
            # file for it, and its preexec_fn must not write into the parent's
            _state.active = False
            _close_spool()
            return
        _open_spool()  # header for the child, then every module it inherited
    except Exception as exc:
        _disable(exc)
