"""Untraced Python processes whose imports imgdiff cannot know are uninspected, never
clean: a program read from stdin, a script deleted after the start, an interpreter found
through PATH that may be a venv's. Real chrooted processes on real trees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imgdiff.pipeline import plan_update
from imgdiff.results import Verdict
from imgdiff.runtime import Snapshot, stale

from .procs import build_chroot, processes, replace_file, scratch_dir
from .pyroot import PYTHON, plan_live_and_saved, python_root

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no python3.11")

_APP = "import appmod, time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def _small_root(old: Path) -> Path:
    """A chroot running `python3.11 -S` and sh, with /opt/app/{main,appmod}.py."""
    build_chroot(old, [PYTHON, "sh"])
    lib = old / "usr/lib/python3.11"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/python3.11/encodings", lib / "encodings", symlinks=True)
    app = old / "opt/app"
    app.mkdir(parents=True)
    (app / "appmod.py").write_text("A = 1\n")
    (app / "main.py").write_text(_APP)
    return app


def _new_with_changed(old: Path, new: Path, module: str) -> None:
    shutil.copytree(old, new, symlinks=True)
    replace_file(new / module, (old / module).read_bytes() + b"# NEW\n")


def _uninspected(verdict: Verdict, pid: int) -> list[str]:
    return [u for u in verdict.uninspected if u.startswith(f"pid {pid}: ")]


@pytest.mark.parametrize(
    "shell",
    [f"cd /opt/app && exec {PYTHON} -S - < main.py", f"cd /opt/app && exec {PYTHON} -S < main.py"],
    ids=["dash", "piped"],
)
def test_a_program_read_from_stdin_is_uninspected_not_judged_clean(
    shell: str, tmp_path: Path
) -> None:
    """`python3 - < prog.py` and `python3 < prog.py`: the program's text is not on the
    command line, so its imports are unknown: a gap in the plan and in `stale`."""
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _small_root(old)
        proc = procs.start(["chroot", str(old), "/usr/bin/sh", "-c", shell])
        new = tmp_path / "new"
        _new_with_changed(old, new, "opt/app/appmod.py")
        plan = plan_update(str(old), str(new), root=str(old), use_cache=False)
        verdict = plan.verdict
        report = stale(Snapshot.capture(str(old)), root=str(old))
    (gap,) = _uninspected(verdict, proc.pid)
    assert "import graph not computed: " in gap
    assert "its imports are unknown" in gap or "what it imports is unknown" in gap
    assert verdict.verdict == "restart"
    assert "uninspected" in verdict.reason_codes
    assert proc.pid not in plan.impact.untraced_python
    assert [g.pid for g in report.gaps if g.reason.startswith("import graph not computed")] == [
        proc.pid
    ]


def test_a_script_deleted_after_the_start_is_uninspected_live_as_in_a_saved_plan(
    tmp_path: Path,
) -> None:
    """The live plan cannot read the program any more than a saved one can: both list
    the process as uninspected, for the same reason."""
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        app = _small_root(old)
        proc = procs.start(["chroot", str(old), PYTHON, "-S", "/opt/app/main.py"])
        (app / "main.py").unlink()
        new = tmp_path / "new"
        _new_with_changed(old, new, "opt/app/appmod.py")
        live, offline = plan_live_and_saved(old, new, tmp_path / "snap.json")
    why = "script /opt/app/main.py not found in the root"
    assert _uninspected(live, proc.pid) == [f"pid {proc.pid}: import graph not computed: {why}"]
    assert _uninspected(offline, proc.pid) == [
        f"pid {proc.pid}: evidence not computed from OLD's files: {why}"
    ]
    assert live.verdict == offline.verdict == "restart"


def _venv_root(old: Path) -> None:
    """A real python3.11 root with /usr/bin/python3 and a venv /opt/venv whose
    bin/python3 links to the base interpreter, vmod.py in its site-packages."""
    python_root(old)
    build_chroot(old, ["env"])
    (old / "usr/bin/python3").symlink_to("python3.11")
    venv = old / "opt/venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python3").symlink_to(PYTHON)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    site = venv / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    (site / "vmod.py").write_text("V = 1\n")
    (old / "opt/app").mkdir(parents=True)
    (old / "opt/app/app.py").write_text(
        "import sys, time\nif sys.prefix == '/opt/venv':\n    import vmod\n"
        "print('ready', flush=True)\ntime.sleep(600)\n"
    )


def test_python_started_through_path_holding_a_venv_is_uninspected(tmp_path: Path) -> None:
    """`#!/usr/bin/env python3` with a venv's bin first in PATH: argv[0] is `python3`,
    /proc/PID/exe the base interpreter, sys.prefix the venv. The PATH (only looked at)
    holds a venv's python3 leading to that executable: which sys.path applies is unknown.
    The same program started through a PATH without the venv is judged by its graph."""
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _venv_root(old)
        env = ["chroot", str(old), "/usr/bin/env"]
        in_venv = procs.start([*env, "PATH=/opt/venv/bin:/usr/bin", "python3", "/opt/app/app.py"])
        plain = procs.start([*env, "PATH=/usr/bin", "python3", "/opt/app/app.py"])
        new = tmp_path / "new"
        _new_with_changed(old, new, "opt/venv/lib/python3.11/site-packages/vmod.py")
        plan = plan_update(str(old), str(new), root=str(old), use_cache=False)
        verdict = plan.verdict
        saved = tmp_path / "snap.json"
        Snapshot.capture(str(old)).save(str(saved))
        offline = plan_update(
            str(old), str(new), root=str(old), snapshot=str(saved), use_cache=False
        ).verdict
    (gap,) = _uninspected(verdict, in_venv.pid)
    assert "started as 'python3' through PATH, which holds /opt/venv/bin/python3" in gap
    assert verdict.verdict == "restart"
    assert _uninspected(verdict, plain.pid) == []
    assert plain.pid in plan.impact.untraced_python
    # a saved snapshot holds no PATH: neither interpreter is known
    assert {u.split(":")[0] for u in offline.uninspected} >= {
        f"pid {in_venv.pid}",
        f"pid {plain.pid}",
    }
