"""`imgdiff stale` and `imgdiff snapshot` vs checkrestart and needrestart, at 100 and 1,000
processes that map a replaced library.

Each process is a tiny C program (benchmarks/c/holder.c) that dlopen()s a copy of libz
under /opt (both peers ignore /tmp and /var/tmp), then the library is replaced as dpkg
does (write + rename). Every tool runs 3 times after a warm-up; the table gives medians,
peak RSS and how many of the N processes each tool reported.
Run as root: `.venv/bin/python -m benchmarks.bench_stale [--sizes 100,1000] [--write]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Timing, measure, table

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"


def _found_checkrestart() -> int:
    out = subprocess.run(["checkrestart"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Found (\d+) processes", out)
    return int(m.group(1)) if m else 0


def _found_needrestart() -> int:
    out = subprocess.run(
        ["needrestart", "-b", "-r", "l"], capture_output=True, text=True, check=False
    ).stdout
    kinds = ("NEEDRESTART-SVC", "NEEDRESTART-CONT", "NEEDRESTART-SESS")
    return sum(1 for line in out.splitlines() if line.startswith(kinds))


def _found_imgdiff(pids: set[int]) -> int:
    out = subprocess.run([IMGDIFF, "stale", "--json"], capture_output=True, text=True, check=True)
    return sum(1 for p in json.loads(out.stdout)["processes"] if p["pid"] in pids)


def run(n: int, work: Path, runs: int) -> list[tuple[str, str, Timing, Timing | None]]:
    lib = work / "libz.so.1"
    shutil.copy(LIBZ, lib)
    holder = work / "holder"
    source = Path(__file__).with_name("c") / "holder.c"
    subprocess.run(["gcc", "-O2", "-o", str(holder), str(source), "-ldl"], check=True)
    procs = []
    try:
        for _ in range(n):
            p = subprocess.Popen([str(holder), str(lib)], stdout=subprocess.PIPE)
            assert p.stdout is not None
            p.stdout.readline()
            procs.append(p)
        tmp = work / "libz.so.1.new"
        shutil.copy(LIBZ, tmp)
        os.replace(tmp, lib)
        pids = {p.pid for p in procs}
        found = {
            "checkrestart": _found_checkrestart(),
            "needrestart -b -r l": _found_needrestart(),
            "imgdiff stale --json": _found_imgdiff(pids),
        }
        rows: list[tuple[str, str, Timing, Timing | None]] = []
        need = measure(["needrestart", "-b", "-r", "l"], runs=runs)
        rows.append(
            (
                f"{n} procs",
                f"needrestart -b -r l (found {found['needrestart -b -r l']})",
                need,
                None,
            )
        )
        check = measure(["checkrestart"], runs=runs)
        rows.append((f"{n} procs", f"checkrestart (found {found['checkrestart']})", check, need))
        mine = measure([IMGDIFF, "stale", "--json"], runs=runs)
        rows.append(
            (
                f"{n} procs",
                f"imgdiff stale --json (found {found['imgdiff stale --json']})",
                mine,
                need,
            )
        )
        snap = measure([IMGDIFF, "snapshot", "--json"], runs=runs)
        rows.append((f"{n} procs", "imgdiff snapshot --json", snap, need))
        return rows
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
            if p.stdout:
                p.stdout.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    for tool in ("checkrestart", "needrestart", "gcc"):
        if shutil.which(tool) is None:
            print(
                f"{tool} is not installed (apt-get install debian-goodies needrestart gcc)",
                file=sys.stderr,
            )
            return 2
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="imgdiff-bench-", dir="/opt") as work:
            rows += run(n, Path(work), args.runs)
    md = table(rows)
    print(md)
    if args.write:
        head = (
            "# Stale-process detection vs the peers\n\nN copies of a small program mapping a "
            "library under /opt, the library then replaced (write + rename). Medians of "
            f"{args.runs} runs; ratios to needrestart; `found` is how many of the N each tool "
            "reported. needrestart lists only what it can tie to a service, container or "
            "session: with no systemd as PID 1 here it reports none of them.\n\n"
        )
        Path(__file__).with_name("results-stale.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
