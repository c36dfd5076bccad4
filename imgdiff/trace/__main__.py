"""`python -m imgdiff.trace`: run a program with its Python imports recorded, or place the opt-in
start-up hook for system services.

    python -m imgdiff.trace [--spool DIR] -- script.py [args...]     traced in this process
    python -m imgdiff.trace [--spool DIR] -- -m module [args...]     traced in this process
    python -m imgdiff.trace [--spool DIR] -- program [args...]       exec'd; Python 3.9+ processes
                                                                     it starts trace themselves
    python -m imgdiff.trace --install-pth SITEDIR [--spool DIR]      every start-up there traces
    python -m imgdiff.trace --uninstall-pth SITEDIR

This module owns the command line only: argument parsing, messages and exit codes. Recording is
`tracer`'s, hooks are `hooks`'s. A traced program keeps its own exit status; this wrapper exits
2 on usage errors, 126/127 when the program cannot be run (as a shell does), 3 on a bad site
directory. Descendant processes are traced too: PYTHONPATH carries the start-up hook.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from imgdiff.trace import hooks, tracer

USAGE = """\
python -m imgdiff.trace [--spool DIR] -- script.py|-m module|program [args...]
       python -m imgdiff.trace --install-pth SITEDIR [--spool DIR]
       python -m imgdiff.trace --uninstall-pth SITEDIR"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m imgdiff.trace",
        usage=USAGE,
        description="Record which Python modules (files, with their identity at import) a "
        "program imports, one spool file per process, for `imgdiff snapshot`.",
    )
    ap.add_argument(
        "--spool",
        metavar="DIR",
        help=f"spool directory (default ${tracer.SPOOL_DIR_ENV}, else {tracer.DEFAULT_SPOOL_DIR})",
    )
    hook = ap.add_mutually_exclusive_group()
    hook.add_argument(
        "--install-pth",
        metavar="SITEDIR",
        help=f"opt-in, system-wide: write {hooks.PTH_NAME} into this site-packages directory so "
        "every Python start-up that processes it records its imports",
    )
    hook.add_argument("--uninstall-pth", metavar="SITEDIR", help="remove that file again")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1 :]
    ap = _parser()
    opts = ap.parse_args(args)
    if opts.install_pth or opts.uninstall_pth:
        if command:
            ap.error("--install-pth/--uninstall-pth take no command")
        return _pth(opts.install_pth, opts.uninstall_pth, opts.spool)
    if not command or command == ["-m"]:
        ap.error("nothing to run: give a command after --")
    spool = os.path.abspath(opts.spool) if opts.spool else None
    # descendants (subprocesses, exec'd programs) trace themselves through the start-up hook
    os.environ.update(hooks.child_env(os.environ, spool))
    if command[0] == "-m":
        return _run_module(command[1], command[2:], spool)
    if command[0].endswith((".py", ".pyw")) and os.path.isfile(command[0]):
        return _run_script(command[0], command[1:], spool)
    return _exec(command)


def _run_script(path: str, args: list[str], spool: str | None) -> int:
    import runpy

    path = os.path.abspath(path)
    tracer.install(spool)
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(path)  # as `python script.py` sets it
    tracer.record_main(path)
    runpy.run_path(path, run_name="__main__")
    return 0


def _run_module(module: str, args: list[str], spool: str | None) -> int:
    import importlib.util
    import runpy

    tracer.install(spool)
    sys.argv = [module, *args]  # runpy replaces argv[0] with the module's file
    try:  # what runpy will run; finding it imports its parents, as runpy would
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(module + ".__main__")  # a package runs __main__
    except (ImportError, ValueError):
        spec = None  # runpy reports it
    if spec is not None:
        tracer.record_main(spec)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _exec(command: list[str]) -> int:
    try:
        os.execvp(command[0], command)  # noqa: S606 - running the user's command is the job
    except FileNotFoundError:
        print(f"imgdiff.trace: {command[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"imgdiff.trace: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126


def _pth(install: str | None, uninstall: str | None, spool: str | None) -> int:
    try:
        if install:
            print(hooks.install_pth(install, spool))
        elif uninstall:
            removed = hooks.uninstall_pth(uninstall)
            print(f"removed {os.path.join(uninstall, hooks.PTH_NAME)}" if removed else "none")
    except (OSError, ValueError) as exc:
        print(f"imgdiff.trace: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
