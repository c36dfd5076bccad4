"""The whole update cycle with a delta archive, on running services.

LIVE is a `cp -a` copy of OLD (the real Debian pair from
`../shared/corpus/build-image-pair.sh`) with N processes chrooted into it, spread over
units as in `bench_plan`. Then, as an operator would:

1. `imgdiff pack OLD NEW -o DELTA` (the publisher's side);
2. `imgdiff plan OLD DELTA --root LIVE`: what must restart, from the delta alone;
3. `imgdiff apply DELTA LIVE`;
4. `imgdiff check LIVE DELTA`: must say no (processes still run replaced files) and name
   them;
5. restart the processes the plan names (and count what `systemctl restart` of each
   named unit would take with it: every process of the unit);
6. `imgdiff check LIVE DELTA`: must say yes.

Beside it, the image way: restart all N processes. Every process and cgroup is removed
on the way out; nothing is written inside OLD or NEW. One run; ratios from it.
Run as root: `.venv/bin/python -m benchmarks.bench_cycle [--n 1000] [--write]`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.bench_plan import CORPUS, Started, running, settle, spawn

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
RESULTS = Path(__file__).with_name("results-cycle.md")


def _timed(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-800:]}")
    return wall, done.stdout


def _restart(live: str, started: list[Started], chosen: list[Started]) -> float:
    """Kill `chosen` and start each again in its unit; seconds until all are set up."""
    t0 = time.perf_counter()
    for s in chosen:
        s.popen.kill()
    for s in chosen:
        s.popen.wait()
        if s.popen.stdin:
            s.popen.stdin.close()
    again = [spawn(live, s.kind, s.unit) for s in chosen]
    started.extend(again)  # `running` kills and reaps what is in the list on the way out
    settle(live, again)
    for s in chosen:
        started.remove(s)
    return time.perf_counter() - t0


def _to_restart(started: list[Started], plan: dict[str, Any]) -> list[Started]:
    units = {step["unit"] for step in plan["steps"] if step.get("unit")}
    pids = {pid for step in plan["steps"] if not step.get("unit") for pid in step["pids"]}
    return [s for s in started if s.unit in units or s.popen.pid in pids]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="processes to run in LIVE")
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = ap.parse_args()
    old, new = f"{args.corpus}/old", f"{args.corpus}/new"
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as work:
        os.environ["XDG_CACHE_HOME"] = f"{work}/cache"  # a cold digest cache for every run
        live, delta = f"{work}/live", f"{work}/update.delta"
        subprocess.run(["cp", "-a", old, live], check=True)
        wall, out = _timed([IMGDIFF, "pack", old, new, "-o", delta, "--json"])
        packed = json.loads(out)
        rows.append(("pack OLD NEW -o DELTA", wall, f"{packed['size']:,} bytes"))
        with running(live, args.n) as started:
            wall, out = _timed([IMGDIFF, "plan", old, delta, "--root", live, "--json"])
            plan = json.loads(out)
            chosen = _to_restart(started, plan)
            pids = sum(len(step["pids"]) for step in plan["steps"])
            rows.append(
                (
                    "plan OLD DELTA --root LIVE",
                    wall,
                    f"{plan['verdict']}: {len(plan['steps'])} steps, {pids} processes named",
                )
            )
            wall, out = _timed([IMGDIFF, "apply", delta, live])
            rows.append(("apply DELTA LIVE", wall, "tree is NEW"))
            wall, out = _timed([IMGDIFF, "check", live, delta, "--json"], ok=(1,))
            before = json.loads(out)
            named = {p["pid"] for p in before["processes"]}
            planned = {s.popen.pid for s in started} & {
                pid for step in plan["steps"] for pid in step["pids"]
            }
            rows.append(
                (
                    "check LIVE DELTA (before restarts)",
                    wall,
                    f"no: {len(before['files'])} files, {len(named)} processes "
                    f"({len(named & planned)} of them in the plan, {len(named - planned)} not)",
                )
            )
            # the least a restart can do: the processes the plan names; `systemctl restart`
            # of each named unit would take every process of the unit with it (counted)
            named_now = [s for s in started if s.popen.pid in planned]
            by_unit = Counter(s.unit is not None for s in chosen)
            units = {s.unit for s in chosen if s.unit is not None}
            wall = _restart(live, started, named_now)
            rows.append(
                (
                    "restart the processes the plan names",
                    wall,
                    f"{len(named_now)} processes; restarting each named unit whole would "
                    f"restart {len(chosen)} ({by_unit[True]} in {len(units)} units, "
                    f"{by_unit[False]} without one)",
                )
            )
            wall, out = _timed([IMGDIFF, "check", live, delta, "--json"], ok=(0, 1))
            after = json.loads(out)
            rows.append(
                (
                    "check LIVE DELTA (after restarts)",
                    wall,
                    "yes" if after["ok"] else f"no: {len(after['processes'])} processes",
                )
            )
            wall = _restart(live, started, list(started))
            rows.append(("the image way: restart all", wall, f"{args.n} processes"))
    text = _report(args.n, rows)
    print(text)
    if args.write:
        RESULTS.write_text(text)
    return 0


def _report(n: int, rows: list[tuple[str, float, str]]) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# The update cycle with a delta archive, on running services",
        "",
        f"{datetime.date.today()}, {os.cpu_count()} CPUs ({cpu}), Python "
        f"{platform.python_version()}, Linux {platform.release()}. Real Debian 12 pair; "
        f"{n} processes chrooted into LIVE (a `cp -a` copy of OLD), in units as in "
        "`bench_plan`. Cold digest cache. One run.",
        "",
        "| step | wall s | result |",
        "|---|---:|---|",
    ]
    lines += [f"| {step} | {wall:.2f} | {result} |" for step, wall, result in rows]
    total = sum(w for s, w, _ in rows if s.startswith(("plan", "apply", "check", "restart the")))
    lines += [
        "",
        f"On the host (plan, apply, both checks, the plan's restarts): {total:.2f} s.",
        "",
        "The units here are `bench_plan`'s: processes of every kind dealt round robin over 20",
        "units, so every unit holds an affected process and a whole-unit restart takes most",
        "of the host with it; on a host whose units run one program each the two counts meet.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        sys.exit("run as root, with chroot(8)")
    sys.exit(main())
