"""`imgdiff stale` and `imgdiff snapshot` vs checkrestart and needrestart, at 100 and 1,000
processes that map a replaced library, and the start-up of each with nothing to report.

Each process is a tiny C program (benchmarks/c/holder.c) that dlopen()s a copy of libz
under /opt (both peers ignore /tmp and /var/tmp), then the library is replaced as dpkg
does (write + rename) by a build with other bytes (one byte appended: imgdiff compares the
bytes of a replaced file and rightly says nothing of a same-bytes rewrite).

The holders run in a private PID namespace (`unshare --pid --fork --mount-proc`, a shell as
its init) and every tool is run inside it (`nsenter`), so each tool sees the holders and
nothing else of the machine: on a shared host the other processes, Python ones above all
(imgdiff reads their import graphs, the peers do not), would otherwise be most of the work.
`--host` runs everything in the host's namespace instead.

The start-up rows are taken in an empty namespace (its init shell only): nothing to report
for any tool, against `python3 -c pass` of the same interpreter.

Every command runs interleaved with the others of its case (A B C A B C ...), after a
warm-up; the table gives the minimum and the median wall time of the runs, cpu and peak RSS
of the median run, and the ratio of minimums to the case's baseline (from the same run).
Run as root: `.venv/bin/python -m benchmarks.bench_stale [--sizes 100,1000] [--runs 7]
[--needrestart] [--write]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import run_once

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
PYTHON = sys.executable
LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
RESULTS = Path(__file__).with_name("results-stale.md")
BEFORE: list[str] = []  # --before: another build's `imgdiff` console script, timed alongside


@contextmanager
def holders(n: int, work: Path, isolate: bool) -> Iterator[list[str]]:
    """N holders of a library under `work`, the library then replaced; yields the prefix
    that runs a command where they run (nsenter into their namespace, or nothing)."""
    lib = work / "libz.so.1"
    shutil.copy(LIBZ, lib)
    holder = work / "holder"
    source = Path(__file__).with_name("c") / "holder.c"
    subprocess.run(["gcc", "-O2", "-o", str(holder), str(source), "-ldl"], check=True)
    ready = work / "ready"
    ready.touch()
    launcher = (
        f'i=0; while [ "$i" -lt {n} ]; do "{holder}" "{lib}" >>"{ready}" & i=$((i+1)); done; '
        "exec sleep 86400"
    )
    argv = ["sh", "-c", launcher]
    if isolate:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    init = subprocess.Popen(argv, start_new_session=True)
    try:
        while ready.read_text().count("ready") < n:
            if init.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited {init.returncode}")
            time.sleep(0.05)
        new = work / "libz.so.1.new"
        new.write_bytes(Path(LIBZ).read_bytes() + b"\0")
        os.replace(new, lib)
        prefix: list[str] = []
        if isolate:
            shell = _child_of(init.pid)
            prefix = ["nsenter", "-t", str(shell), "-p", "-m", "--"]
        yield prefix
    finally:
        os.killpg(init.pid, signal.SIGKILL)  # the launcher's group: itself and the holders
        init.wait()


def _child_of(pid: int) -> int:
    """unshare's one child: the namespace's init (the launcher)."""
    for _ in range(200):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise RuntimeError("unshare started no child")


def _found(prefix: list[str], name: str) -> str:
    """How many processes the tool reports (its own words)."""
    if name == "checkrestart":
        out = subprocess.run(
            [*prefix, "checkrestart"], capture_output=True, text=True, check=False
        ).stdout
        m = re.search(r"Found (\d+) processes", out)
        return f"found {m.group(1) if m else 0}"
    argv = [*prefix, IMGDIFF, "stale", "--json"]
    doc = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return f"found {len(doc['processes'])} of {doc['considered']}"


Row = tuple[str, str, str, list[tuple[float, float, float]], str]


def interleaved(case: str, commands: Sequence[tuple[str, list[str], str]], runs: int) -> list[Row]:
    """(case, label, note, runs, baseline label) per command, run A B C A B C ... after one
    warm-up each; the first command is the baseline."""
    for _, argv, _ in commands:
        run_once(argv)
    results: list[list[tuple[float, float, float]]] = [[] for _ in commands]
    for _ in range(runs):
        for i, (_, argv, _) in enumerate(commands):
            results[i].append(run_once(argv))
    base = commands[0][0]
    return [(case, label, note, results[i], base) for i, (label, _, note) in enumerate(commands)]


def table(rows: Sequence[Row]) -> str:
    out = [
        "| case | command | reported | wall s (min) | wall s (median) | cpu s | peak MiB "
        "| min ÷ baseline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    mins = {(r[0], r[1]): min(w for w, _, _ in r[3]) for r in rows}
    for case, label, note, runs, base in rows:
        walls = sorted(runs)
        median = walls[len(walls) // 2]
        middle = statistics.median(w for w, _, _ in runs)
        low = mins[(case, label)]
        ratio = "baseline" if label == base else f"{low / mins[(case, base)]:.2f}x"
        out.append(
            f"| {case} | `{label}` | {note} | {low:.3f} | {middle:.3f} "
            f"| {median[1]:.3f} | {median[2]:.0f} | {ratio} |"
        )
    return "\n".join(out)


def startup(work: Path, runs: int, isolate: bool) -> list[Row]:
    empty = work / "empty-root"
    empty.mkdir()
    with holders(0, work, isolate) as ns:
        return interleaved(
            "start-up, nothing to report",
            [
                (f"{Path(PYTHON).name} -c pass", [*ns, PYTHON, "-c", "pass"], "-"),
                ("checkrestart", [*ns, "checkrestart"], _found(ns, "checkrestart")),
                ("imgdiff stale --root EMPTY", [*ns, IMGDIFF, "stale", "--root", str(empty)], "-"),
                (
                    "imgdiff snapshot --root EMPTY --json",
                    [*ns, IMGDIFF, "snapshot", "--root", str(empty), "--json"],
                    "-",
                ),
                ("imgdiff stale --json", [*ns, IMGDIFF, "stale", "--json"], _found(ns, "imgdiff")),
                *(
                    (f"{label} (--before)", [*ns, BEFORE[0], *argv[1:]], "-")
                    for label, argv in (
                        ("imgdiff stale --root EMPTY", [IMGDIFF, "stale", "--root", str(empty)]),
                    )
                    if BEFORE
                ),
            ],
            runs,
        )


def at_scale(n: int, work: Path, runs: int, isolate: bool, needrestart: bool) -> list[Row]:
    with holders(n, work, isolate) as ns:
        rows = interleaved(
            f"{n} procs",
            [
                ("checkrestart", [*ns, "checkrestart"], _found(ns, "checkrestart")),
                ("imgdiff stale --json", [*ns, IMGDIFF, "stale", "--json"], _found(ns, "imgdiff")),
                ("imgdiff snapshot --json", [*ns, IMGDIFF, "snapshot", "--json"], "-"),
                *(
                    ("imgdiff stale --json (--before)", [*ns, BEFORE[0], "stale", "--json"], "-")
                    for _ in BEFORE
                ),
            ],
            runs,
        )
        if not needrestart:
            return rows
        # one run: here it asks dpkg about each holder, 13 s at 100 processes and three
        # minutes at 1,000 (2026-12-02); a reference, not a race
        out, timing = _run_keeping_output([*ns, "needrestart", "-b", "-r", "l"])
        kinds = ("NEEDRESTART-SVC", "NEEDRESTART-CONT", "NEEDRESTART-SESS")
        found = sum(1 for line in out.splitlines() if line.startswith(kinds))
        note = f"found {found} (1 run)"
        rows.append((f"{n} procs", "needrestart -b -r l", note, [timing], "checkrestart"))
        return rows


def _run_keeping_output(argv: list[str]) -> tuple[str, tuple[float, float, float]]:
    """(stdout, (wall s, cpu s, peak MiB)) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return out, (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--host", action="store_true", help="run in the host's PID namespace")
    ap.add_argument("--needrestart", action="store_true", help="also time needrestart, once")
    ap.add_argument("--before", metavar="IMGDIFF", help="also time this imgdiff (another build)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    tools = ["checkrestart", "gcc"] + ([] if args.host else ["unshare", "nsenter"])
    tools += ["needrestart"] if args.needrestart else []
    for tool in tools:
        if shutil.which(tool) is None:
            print(
                f"{tool} is not installed (apt-get install debian-goodies needrestart gcc "
                "util-linux)",
                file=sys.stderr,
            )
            return 2
    # imgdiff as installed: its modules' bytecode cached (this variable would make every run
    # compile them again)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    isolate = not args.host
    BEFORE[:] = [args.before] if args.before else []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="imgdiff-bench-", dir="/opt") as work:
        rows += startup(Path(work), args.runs, isolate)
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="imgdiff-bench-", dir="/opt") as work:
            rows += at_scale(n, Path(work), args.runs, isolate, args.needrestart)
    md = table(rows)
    print(md)
    if args.write:
        where = "a private PID namespace" if isolate else "the host's PID namespace (shared)"
        head = (
            "# Stale-process detection vs the peers\n\n"
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs shared with other "
            f"work (timings are noisy: read the minimums), {time.strftime('%Y-%m-%d')}. "
            "N copies of a small program mapping a library under /opt, the library then "
            "replaced by other bytes (write + rename); every tool runs in "
            f"{where} holding only those processes. Commands interleaved, {args.runs} runs "
            "each after a warm-up; ratios are of minimums, to the first row of each case. "
            "`reported`: what the tool found (imgdiff: stale processes of those it "
            "considered). needrestart (`--needrestart`, one run) lists only what it can tie to "
            "a service, container or session: with no systemd as PID 1 here it reports "
            "none of them, and it took 13 s at 100 processes, 175 s at 1,000 (it asks dpkg "
            "about each holder), so it is left out by default. Start-up: an empty "
            "namespace, nothing to report; `--root EMPTY` is a directory no "
            "process runs in. Peak RSS reads no lower than the benchmark's own (about 16 "
            "MiB: a forked child starts with its parent's). `(--before)`: "
            f"{args.before or 'none'}.\n\n"
            "`.venv/bin/python -m benchmarks.bench_stale --write` (root).\n\n"
        )
        RESULTS.write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
