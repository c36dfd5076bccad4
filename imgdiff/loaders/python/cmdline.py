"""CPython's command line: how a Python process names the program it runs.

This module owns reading an argv with CPython's own option grammar (combined flags,
attached arguments, `--`, `-`, `-m`, `-c`, the flags that change `sys.path` and `site`).
It must not look at any file or environment: what the options lead to is the
interpreter's and the finder's business.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Sequence

import attrs


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
    no_bytecode_writes: bool = False  # -B, or -X pycache_prefix= (the cache is elsewhere)
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
    "B": ("no_bytecode_writes",),
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
            no_bytecode_writes=flags.get("no_bytecode_writes", False),
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
                if ch == "X" and value.startswith("pycache_prefix="):
                    flags["no_bytecode_writes"] = True
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
