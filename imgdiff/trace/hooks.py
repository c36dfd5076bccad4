"""How the import tracer gets into a Python process that imgdiff does not start in-process.

It owns the two opt-in start-up hooks: the `sitecustomize` directory put on PYTHONPATH for one
command and its descendants (`child_env`), and a permanent `.pth` file in a site-packages
directory for system services (`install_pth`/`uninstall_pth`). Both load `tracer.py` by path,
never the `imgdiff` package. It writes only the one `.pth` file it names and must not touch any
other file in a site directory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

from imgdiff.trace import tracer

SITEHOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sitehook")
TRACER_PATH = os.path.abspath(tracer.__file__)
PTH_NAME = "imgdiff-trace.pth"
_PTH_MARK = "# imgdiff import tracer"


def child_env(env: Mapping[str, str], spool_dir: str | None = None) -> dict[str, str]:
    """`env` with the tracer's sitecustomize first on PYTHONPATH (so every Python 3.9+ process
    started with it, and their children, install the tracer) and the spool directory set.
    Interpreters started with -E, -I or -S skip the hook (no PYTHONPATH, no site)."""
    out = dict(env)
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != SITEHOOK_DIR]
    out["PYTHONPATH"] = os.pathsep.join([SITEHOOK_DIR, *paths])
    if spool_dir is not None:
        out[tracer.SPOOL_DIR_ENV] = os.path.abspath(spool_dir)
    return out


def pth_text(spool_dir: str | None = None) -> str:
    """The `.pth` file: a comment and one `import` line (site runs such lines at start-up) that
    loads tracer.py by path and installs it, silent but for one stderr line on failure."""
    load = (
        "try:\n"
        " import _frozen_importlib as b, _frozen_importlib_external as e\n"
        f" n, p = '_imgdiff_trace_tracer', {TRACER_PATH!r}\n"
        " l = e.SourceFileLoader(n, p); s = e.spec_from_file_location(n, p, loader=l)\n"
        " m = sys.modules[n] = b.module_from_spec(s); l.exec_module(m)\n"
        f" m.install({spool_dir and os.path.abspath(spool_dir)!r})\n"
        "except Exception as x:\n"
        " sys.stderr.write('imgdiff.trace: not tracing: %r\\n' % (x,))\n"
    )
    return (
        f"{_PTH_MARK} (opt-in): every Python 3.9+ start-up here records its imports.\n"
        "# Remove with: python -m imgdiff.trace --uninstall-pth THIS_DIRECTORY\n"
        f"import sys; sys.version_info >= (3, 9) and exec({load!r})\n"
    )


def install_pth(site_dir: str, spool_dir: str | None = None) -> str:
    """Write `imgdiff-trace.pth` into `site_dir` (atomically); returns its path. Opt-in and
    system-wide for that interpreter: every process that processes this site directory traces
    its imports into the spool (default /run/imgdiff/trace, see `tracer.install`)."""
    if not os.path.isdir(site_dir):
        raise FileNotFoundError(f"{site_dir}: not a directory")
    path = os.path.join(site_dir, PTH_NAME)
    fd, tmp = tempfile.mkstemp(dir=site_dir, prefix=".imgdiff-trace-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(pth_text(spool_dir))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def uninstall_pth(site_dir: str) -> bool:
    """Remove the `.pth` file `install_pth` wrote; False when there was none. A file of that
    name that this module did not write is left alone (ValueError)."""
    path = os.path.join(site_dir, PTH_NAME)
    try:
        with open(path) as f:
            first = f.readline()
    except FileNotFoundError:
        return False
    if not first.startswith(_PTH_MARK):
        raise ValueError(f"{path}: not written by imgdiff.trace; left in place")
    os.unlink(path)
    return True
