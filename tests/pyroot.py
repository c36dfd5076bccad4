"""A test OLD image with a real python3.11 in it: the interpreter, the libraries it loads
and the part of its standard library a small service imports; chrooted processes run it."""

from __future__ import annotations

import shutil
from pathlib import Path

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
