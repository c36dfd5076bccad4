"""Real processes for runtime tests: spawned, placed in cgroups, chrooted, always reaped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CGROUP2 = Path("/sys/fs/cgroup/unified")

# maps a library with ctypes, says "ready", then waits to be killed; never imports anything
# from the test tree itself
MAP_LIB = (
    "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); print('ready', flush=True); "
    "time.sleep(600)"
)


class Processes:
    """Start processes that print 'ready' once set up; kill and reap all of them at exit,
    with whatever they forked: each starts a process group of its own, killed whole."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, ready: bool = True, **kw: object
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # type: ignore[call-overload]
            list(argv), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, process_group=0, **kw
        )
        self.started.append(proc)
        if ready:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == b"ready", f"{argv}: {line!r}"
        return proc  # type: ignore[no-any-return]

    def python(self, code: str, *args: str) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "-c", code, *args])

    def close(self) -> None:
        for proc in self.started:
            # the group outlives its leader: children it forked (workers) are in it still
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


def children(pid: int | str = "self") -> list[int]:
    """The pids of `pid`'s children (every thread's), sorted."""
    return sorted(
        int(child)
        for task in os.listdir(f"/proc/{pid}/task")
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    )


@contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()


@contextmanager
def unit_cgroup(name: str | None = None) -> Iterator[tuple[str, Path]]:
    """A real cgroup standing for a systemd unit: system.slice/NAME.service."""
    unit = name or f"imgdiff-test-{uuid.uuid4().hex[:8]}.service"
    path = CGROUP2 / "system.slice" / unit
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield unit, path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # already gone
                (CGROUP2 / "cgroup.procs").write_text(pid)
        path.rmdir()


def join_cgroup(path: Path, pid: int) -> None:
    (path / "cgroup.procs").write_text(str(pid))


@contextmanager
def scratch_dir(base: str = "/opt") -> Iterator[Path]:
    """A directory outside /tmp (the peers ignore /tmp and /var/tmp)."""
    path = Path(base) / f"imgdiff-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replace_file(path: Path, data: bytes) -> None:
    """Replace a file as dpkg does: write a new file, then rename it over the old one."""
    tmp = path.with_name(path.name + ".dpkg-new")
    tmp.write_bytes(data)
    os.chmod(tmp, path.stat().st_mode)
    os.replace(tmp, path)


def build_chroot(root: Path, programs: Sequence[str]) -> None:
    """A minimal chroot with copies of `programs` and every library they load (per ldd)."""
    for prog in programs:
        real = shutil.which(prog) or prog
        out = subprocess.run(["ldd", real], capture_output=True, text=True, check=False).stdout
        libs = [p for line in out.splitlines() for p in line.split() if p.startswith("/")]
        for src in [real, *libs]:
            dest = root / src.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(os.path.realpath(src), dest)


@contextmanager
def fifo(path: Path, after: float = 30.0) -> Iterator[Path]:
    """A FIFO at `path`. A reader that opened it (the bug a test looks for) is sent EOF
    every second from `after` seconds on, so the test fails instead of hanging."""
    import threading

    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:
        if done.wait(after):
            return
        while not done.wait(1.0):
            with contextlib.suppress(OSError):  # ENXIO: no reader waits
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()
