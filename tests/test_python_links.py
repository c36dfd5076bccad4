"""A Python package switched by a symlink (a release's `current` link, a site directory's
link into a release tree): NEW repointing the link changes what a running process
imported, joined through the images' own symlinks. Real chrooted processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .procs import build_chroot, processes, scratch_dir
from .pyroot import PYTHON, plan_live_and_saved

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no python3.11")


def _release_root(old: Path) -> None:
    """python3.11 -S, /opt/releases/{1,2}/myapp (other bytes), /opt/app/myapp -> 1."""
    build_chroot(old, [PYTHON])
    lib = old / "usr/lib/python3.11"
    lib.mkdir(parents=True)
    shutil.copytree("/usr/lib/python3.11/encodings", lib / "encodings", symlinks=True)
    for n in ("1", "2"):
        pkg = old / "opt/releases" / n / "myapp"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"RELEASE = {n}\n")
    (old / "opt/app").mkdir(parents=True)
    (old / "opt/app/myapp").symlink_to("/opt/releases/1/myapp")
    (old / "opt/app/main.py").write_text(
        "import myapp, time\nprint('ready', flush=True)\ntime.sleep(600)\n"
    )


def test_a_package_switched_by_a_symlink_new_repoints_is_import_graph_evidence(
    tmp_path: Path,
) -> None:
    """Only the link changes (both releases are in OLD): the process runs release 1, a
    restart would load release 2. Live and saved plans agree on the evidence."""
    with scratch_dir() as opt, processes() as procs:
        old = opt / "old"
        _release_root(old)
        proc = procs.start(["chroot", str(old), PYTHON, "-S", "/opt/app/main.py"])
        new = tmp_path / "new"
        shutil.copytree(old, new, symlinks=True)
        (new / "opt/app/myapp").unlink()
        (new / "opt/app/myapp").symlink_to("/opt/releases/2/myapp")
        live, offline = plan_live_and_saved(old, new, tmp_path / "snap.json")
    assert live.verdict == offline.verdict == "restart"
    (step,) = [s for s in live.steps if proc.pid in s.pids]
    (e,) = [e for p in step.processes for e in p.evidence]
    assert (e.path, str(e.via), e.confirmed) == ("/opt/app/myapp", "import-graph", True)
    assert e.detail == "myapp ← __main__ (imported as /opt/app/myapp/__init__.py)"
    (saved_step,) = [s for s in offline.steps if proc.pid in s.pids]
    assert [e] == [x for p in saved_step.processes for x in p.evidence]
