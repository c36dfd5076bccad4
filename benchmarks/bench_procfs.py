"""psutil vs imgdiff's own /proc reading, field by field, over every process of this host.

The runtime view needs, per process: start time, ppid, uid, exe, cmdline, cwd, root,
cgroup, file-backed mappings with their identities, and open regular files. This times
each field both ways over all processes (medians of several passes, in process) so the
choice in docs/runtime.md rests on numbers. psutil is a dev dependency for this only.
Run: `.venv/bin/python -m benchmarks.bench_procfs [--write]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from imgdiff.errors import AccessDenied, NoSuchProcess
from imgdiff.runtime import _procfs


def _time(fn: Callable[[int], object], pids: list[int], passes: int = 7) -> float:
    def one(pid: int) -> None:
        with contextlib.suppress(psutil.Error, NoSuchProcess, AccessDenied, OSError):
            fn(pid)

    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for pid in pids:
            one(pid)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ours(field: str) -> Callable[[int], object]:
    def read(pid: int) -> object:
        with _procfs.ProcDir(pid) as d:
            if field == "stat (start, ppid)":
                return _procfs.parse_stat(d.read("stat"))
            if field == "uid":
                return _procfs.parse_status(d.read("status"))[0]
            if field == "exe":
                return d.readlink("exe")
            if field == "cmdline":
                return d.read("cmdline").split(b"\0")
            if field == "cwd":
                return d.readlink("cwd")
            if field == "maps (files + identity)":
                maps = _procfs.parse_maps(d.read("maps"))
                return [d.stat_target(f"map_files/{m.ranges[0]}") for m in maps]
            if field == "open regular files":
                return [d.stat_target(f"fd/{n}") for n in d.listdir("fd")]
            if field == "cgroup":
                return d.read("cgroup")
        raise AssertionError(field)

    return read


_PSUTIL: dict[str, Callable[[int], object]] = {
    "stat (start, ppid)": lambda pid: psutil.Process(pid).create_time(),
    "uid": lambda pid: psutil.Process(pid).uids(),
    "exe": lambda pid: psutil.Process(pid).exe(),
    "cmdline": lambda pid: psutil.Process(pid).cmdline(),
    "cwd": lambda pid: psutil.Process(pid).cwd(),
    # psutil's memory_maps parses smaps (per-mapping memory figures) and has no inode/dev
    "maps (files + identity)": lambda pid: psutil.Process(pid).memory_maps(grouped=False),
    "open regular files": lambda pid: psutil.Process(pid).open_files(),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    pids = _procfs.pids()
    lines = [
        f"| field ({len(pids)} processes) | psutil ms | imgdiff _procfs ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    for field in _PSUTIL | {"cgroup": lambda pid: None}:
        ours = _time(_ours(field), pids)
        if field == "cgroup":
            lines.append(f"| {field} | (no API) | {ours * 1e3:.2f} | - |")
            continue
        theirs = _time(_PSUTIL[field], pids)
        lines.append(f"| {field} | {theirs * 1e3:.2f} | {ours * 1e3:.2f} | {ours / theirs:.2f}x |")
    md = "\n".join(lines)
    print(md)
    if args.write:
        head = (
            "# psutil vs direct /proc reading\n\nIn-process medians of 7 passes over every "
            f"process of the benchmark host (pid {os.getpid()} included). "
            f"psutil {psutil.__version__}.\n\n"
        )
        Path(__file__).with_name("results-procfs.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
