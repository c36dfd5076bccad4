"""`imgdiff demo`: the main job, end to end, on a small real example.

Builds the example image pair (`examples.py`), installs into OLD what three services
need to run — the system's own Python interpreter with exactly the stdlib modules its
static import graph reaches, and the ELF closure of each program (both computed by
imgdiff itself, so nothing is executed to find them) — then starts three processes
chrooted into OLD, each in a real cgroup standing for a unit: a Python service importing
`wsgiref` and holding its config open, a Python service mapping `libssl`, and an idle one.
It prints the plan for updating to NEW and cleans up every process and cgroup it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from imgdiff.errors import Unsupported
from imgdiff.examples import build_example_pair
from imgdiff.fs.rootfs import RootFS
from imgdiff.loaders.elf import elf_closure, load_loader_config
from imgdiff.loaders.python import static_imports
from imgdiff.pipeline import plan_update
from imgdiff.results import DemoRun

PYTHON = "/usr/bin/python3.11"
CGROUP = Path("/sys/fs/cgroup/unified")
SERVICES = {
    # unit name -> (script, what it shows)
    "demo-web": (
        "import time, wsgiref.simple_server\n"
        "conf = open('/etc/app/app.conf')\n"
        "print('ready', flush=True)\ntime.sleep(3600)\n"
    ),
    "demo-tls": (
        "import ctypes, time\nctypes.CDLL('libssl.so.3')\n"
        "print('ready', flush=True)\ntime.sleep(3600)\n"
    ),
    "demo-idle": "import time\nprint('ready', flush=True)\ntime.sleep(3600)\n",
}


def _copy_in(root: Path, path: str) -> None:
    dest = root / path.lstrip("/")
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(path), dest)


def _install_closure(root: Path, host: RootFS, program: str) -> None:
    closure = elf_closure(host, program, load_loader_config(host))
    for path in (program, *closure.dependency_paths()):
        if os.path.isfile(path):
            _copy_in(root, path)


def install_services(root: Path) -> None:
    """Put the interpreter, the modules the services import and their libraries in `root`."""
    if not os.path.isfile(PYTHON):
        raise Unsupported(f"the demo runs the system's {PYTHON}, which is not installed")
    host = RootFS("/")
    try:
        (root / "lib64").mkdir(exist_ok=True)
        _install_closure(root, host, PYTHON)
        _copy_in(root, "/usr/lib/python3.11/os.py")  # the landmark getpath looks for
        scripts = root / "srv/demo"
        scripts.mkdir(parents=True, exist_ok=True)
        for name, code in SERVICES.items():
            (scripts / f"{name}.py").write_text(code)
            # the import graph is computed on the host, where the stdlib lives now
            probe = Path("/tmp") / f"imgdiff-demo-{uuid.uuid4().hex}.py"  # noqa: S108
            probe.write_text(code)
            try:
                graph = static_imports(host, [PYTHON, "-I", "-S", str(probe)], PYTHON, "/")
            finally:
                probe.unlink()
            for path in graph.files:
                if path != str(probe) and not path.startswith("/usr/lib/python3.11/wsgiref/"):
                    _copy_in(root, path)
                    if path.endswith(".so"):
                        _install_closure(root, host, path)
    finally:
        host.close()


@contextlib.contextmanager
def running(old: Path) -> Iterator[dict[str, int]]:
    """Start the services chrooted into `old`, in cgroups; stop and remove all at exit."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    cgroups: list[Path] = []
    try:
        for name in SERVICES:
            proc = subprocess.Popen(
                ["chroot", str(old), PYTHON, "-I", "-S", f"/srv/demo/{name}.py"],
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            procs[name] = proc
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise Unsupported(f"the demo service {name} did not start in the chroot")
            cg = CGROUP / "system.slice" / f"{name}.service"
            with contextlib.suppress(OSError):  # no cgroup v2 here: processes without units
                cg.mkdir(parents=True, exist_ok=True)
                cgroups.append(cg)
                (cg / "cgroup.procs").write_text(str(proc.pid))
        yield {name: p.pid for name, p in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
        for proc in procs.values():
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for cg in cgroups:
            with contextlib.suppress(OSError):
                cg.rmdir()


def run(workdir: str) -> DemoRun:
    """Build the pair under `workdir`, run the services on OLD, and plan OLD -> NEW."""
    old, new = build_example_pair(workdir)
    for image in (old, new):
        install_services(Path(image))
    with running(Path(old)) as pids:
        plan = plan_update(old, new, root=old, use_cache=False)
    return DemoRun(workdir, pids, plan.verdict)
