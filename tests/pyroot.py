"""A test OLD image with a real python3.11 in it: the interpreter, the libraries it loads
and the part of its standard library a small service imports; chrooted processes run it."""

from __future__ import annotations

import shutil
from pathlib import Path

from imgdiff.pipeline import plan_update
from imgdiff.results import Verdict
from imgdiff.runtime import Snapshot

from .procs import build_chroot

# the standard library minus what no test program imports (tests, IDLE, Tk, 2to3, ...)
_SKIP = shutil.ignore_patterns(
    "test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
    "pydoc_data", "distutils", "site-packages", "dist-packages", "__pycache__", "config-3*",
)  # fmt: skip

PYTHON = "/usr/bin/python3.11"
SERVICE = "import wsgiref.simple_server, time; print('ready', flush=True); time.sleep(900)"


def python_root(root: Path) -> Path:
    """`root` made an image with /usr/bin/python3.11 and its standard library."""
    build_chroot(root, [PYTHON])
    stdlib = Path("/usr/lib/python3.11")  # Debian's, not the interpreter running the tests
    shutil.copytree(stdlib, root / str(stdlib).lstrip("/"), ignore=_SKIP, symlinks=True)
    return root


def plan_live_and_saved(old: Path, new: Path, saved: Path) -> tuple[Verdict, Verdict]:
    """The plan for the processes running in `old`, live and from a snapshot of them saved
    to `saved` (the two must agree)."""
    live = plan_update(str(old), str(new), root=str(old), use_cache=False).verdict
    Snapshot.capture(str(old)).save(str(saved))
    offline = plan_update(str(old), str(new), root=str(old), snapshot=str(saved), use_cache=False)
    return live, offline.verdict
