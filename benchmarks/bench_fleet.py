"""The fleet plan at scale: many host reports planned on Dask, beside one single-host plan.

One real host report is taken of P processes chrooted into OLD (the real Debian pair, the
process mix of `bench_plan`), with its tree state against OLD. H host reports are made
from it, varied per host (each drops a random 0-20% of the processes and renumbers the
rest; 2% drifted trees, 1% redacted, 1% with the Python service as PID 1 to reboot), and
written as JSON. Then:

- one single-host `imgdiff plan OLD NEW --root OLD --snapshot REPORT` (whole command,
  warm digest cache, median of 3): the per-host baseline;
- the time to read the H reports (`load_host`, one process);
- `imgdiff.fleet.plan` on a local Dask cluster of 1 and of 2 worker processes: wall
  time, the share spent reading OLD and NEW once, per-host cost against the baseline,
  speed-up from 1 to 2 workers, peak RSS per worker;
- a sample of hosts checked against single-host `plan_update` (must be equal).
- JSON against Parquet for the reports, when pyarrow is installed: bytes, and the time
  to read every report into the rows the planner needs.

Every process and cgroup is removed on the way out. One run; ratios from it. Run as root:
`.venv/bin/python -m benchmarks.bench_fleet [--hosts 2000] [--processes 150] [--write]`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_plan import CORPUS, running
from benchmarks.common import run_once

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
RESULTS = Path(__file__).with_name("results-fleet.md")


def _variants(base: dict[str, Any], where: Path, hosts: int, seed: int = 11) -> list[Path]:
    rng = random.Random(seed)
    procs = base["snapshot"]["processes"]
    paths = []
    for n in range(hosts):
        doc = copy.deepcopy(base) if n == 0 else dict(base)
        if n:
            doc["host"] = dict(base["host"], hostname=f"host{n:05}", machine_id=f"{n:032x}")
            kept = [p for p in procs if rng.random() >= rng.uniform(0, 0.2)]
            shift = rng.randrange(1, 1 << 20)
            doc["snapshot"] = dict(
                base["snapshot"], processes=[dict(p, pid=p["pid"] + shift) for p in kept]
            )
            roll = rng.random()
            if roll < 0.02:
                doc["tree"] = dict(
                    base["tree"], matches=False, differs=["/etc/local-hack"], differs_total=1
                )
            elif roll < 0.03:
                doc["redacted"] = True
                doc["snapshot"]["processes"] = [
                    dict(p, cmdline=p["cmdline"][:1]) for p in doc["snapshot"]["processes"]
                ]
            elif roll < 0.04:
                py = [p for p in doc["snapshot"]["processes"] if "python" in (p["exe"] or "")]
                if py:
                    py[0]["pid"] = 1
        path = where / f"h{n:05}.json"
        path.write_text(json.dumps(doc, separators=(",", ":")))
        paths.append(path)
    return paths


def _read_all(paths: list[Path]) -> float:
    from imgdiff.hostreport import load_host

    t0 = time.perf_counter()
    for p in paths:
        load_host(str(p))
    return time.perf_counter() - t0


def _fleet(old: str, new: str, where: Path, workers: int) -> dict[str, Any]:
    import imgdiff.fleet
    from imgdiff.fleet.engine import connect

    with connect(None, workers=workers) as client:
        t0 = time.perf_counter()
        fv = imgdiff.fleet.plan(old, new, [str(where)], client=client)
        wall = time.perf_counter() - t0
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"wall": wall, "timings": fv.timings, "peaks": sorted(peaks.values()), "fv": fv}


def _parquet(paths: list[Path], where: Path) -> dict[str, float] | None:
    """Each report's process and file rows as one Parquet file, against its JSON."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    out = where / "parquet"
    out.mkdir()
    json_bytes = parquet_bytes = 0
    t_json = t_parquet = 0.0
    for path in paths:
        data = path.read_bytes()
        json_bytes += len(data)
        t0 = time.perf_counter()
        doc = json.loads(data)
        rows = [
            (p["pid"], f["path"], f["via"], f["dev"], f["ino"])
            for p in doc["snapshot"]["processes"]
            for f in p["files"]
        ]
        t_json += time.perf_counter() - t0
        table = pa.table(
            {
                "pid": [r[0] for r in rows],
                "path": [r[1] for r in rows],
                "via": [r[2] for r in rows],
                "dev": [r[3] for r in rows],
                "ino": [r[4] for r in rows],
            }
        )
        target = out / (path.stem + ".parquet")
        pq.write_table(table, target)
        parquet_bytes += target.stat().st_size
        t0 = time.perf_counter()
        back = pq.read_table(target).to_pylist()
        t_parquet += time.perf_counter() - t0
        assert len(back) == len(rows)
    return {
        "json_mib": json_bytes / 2**20,
        "parquet_mib": parquet_bytes / 2**20,
        "json_s": t_json,
        "parquet_s": t_parquet,
    }


def _measure(args: argparse.Namespace, old: str, new: str, work: Path) -> dict[str, Any]:
    from imgdiff.hostreport import HostReport
    from imgdiff.pipeline import plan_update
    from imgdiff.report.json import verdict_doc

    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    first = work / "report.json"
    with running(old, args.processes):
        HostReport.capture(old, old, exclude_self=True).save(str(first))
    base = json.loads(first.read_text())
    plan_argv = [IMGDIFF, "plan", old, new, "--root", old, "--snapshot", str(first), "-q"]
    run_once(plan_argv)  # fills the digest cache
    out: dict[str, Any] = {
        "taken": len(base["snapshot"]["processes"]),
        "single": statistics.median(run_once(plan_argv)[0] for _ in range(3)),
    }
    reports = work / "reports"
    reports.mkdir()
    t0 = time.perf_counter()
    paths = _variants(base, reports, args.hosts)
    out["generate"] = time.perf_counter() - t0
    out["size_mib"] = sum(p.stat().st_size for p in paths) / 2**20
    out["read"] = _read_all(paths)
    out["runs"] = {w: _fleet(old, new, reports, w) for w in (1, 2)}
    fv = out["runs"][2]["fv"]
    for i in random.Random(3).sample(range(len(paths)), min(8, len(paths))):
        want = verdict_doc(plan_update(old, new, root=old, snapshot=str(paths[i])).verdict)
        assert want == verdict_doc(fv.hosts[i].verdict), paths[i]
    out["parquet"] = _parquet(paths[: min(500, len(paths))], work)
    return out


def _table(m: dict[str, Any], h: int) -> str:
    single, runs = m["single"], m["runs"]
    lines = [
        "| measure | value |",
        "|---|---:|",
        f"| hosts; processes in the real report (each host keeps 80-100%) | {h}; {m['taken']} |",
        f"| reports on disk (JSON) | {m['size_mib']:.0f} MiB "
        f"({m['size_mib'] * 1024 / h:.0f} KiB each) |",
        f"| read every report (`load_host`, one process) | {m['read']:.1f} s "
        f"({m['read'] / h * 1000:.1f} ms each) |",
        f"| single-host `plan --snapshot` (whole command, warm) | {single:.2f} s |",
    ]
    for w, r in runs.items():
        t = r["timings"]
        per = t["hosts"] / h
        name = f"fleet, {w} worker{'s' if w > 1 else ''}"
        lines += [
            f"| {name}: wall | {r['wall']:.1f} s (images {t['images']:.1f}, programs "
            f"{t['programs']:.1f}, hosts {t['hosts']:.1f}) |",
            f"| {name}: per host (hosts phase / hosts) | {per * 1000:.1f} ms = "
            f"{per / single:.4f} x single |",
            f"| {name}: per host, whole wall / hosts | {r['wall'] / h * 1000:.1f} ms = "
            f"{r['wall'] / h / single:.4f} x single |",
            f"| {name}: peak RSS per worker | "
            + ", ".join(f"{p:.0f} MiB" for p in r["peaks"])
            + " |",
        ]
    speedup = runs[1]["timings"]["hosts"] / runs[2]["timings"]["hosts"]
    lines.append(f"| speed-up 1 to 2 workers (hosts phase) | {speedup:.2f} x |")
    fv = runs[2]["fv"]
    counts = ", ".join(f"{n} {k}" for k, n in fv.summary["verdicts"].items() if n)
    lines += [f"| verdicts | {counts} |", f"| waves | {len(fv.waves)} |"]
    pq = m["parquet"]
    if pq is not None:
        lines.append(
            f"| 500 reports' file rows: JSON {pq['json_mib']:.0f} MiB parsed in "
            f"{pq['json_s']:.1f} s; Parquet {pq['parquet_mib']:.0f} MiB read in "
            f"{pq['parquet_s']:.1f} s | |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=150)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = ap.parse_args()
    old = os.path.realpath(os.path.join(args.corpus, "old"))
    new = os.path.realpath(os.path.join(args.corpus, "new"))
    work = Path(tempfile.mkdtemp(prefix="imgdiff-bench-fleet-"))
    try:
        measured = _measure(args, old, new, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    md = _table(measured, args.hosts)
    print(md)
    if args.write:
        head = (
            "# Fleet plan at scale\n\n"
            f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Linux "
            f"{platform.release()}, {datetime.date.today().isoformat()}. Run as root: "
            f"`.venv/bin/python -m benchmarks.bench_fleet --hosts {args.hosts} --processes "
            f"{args.processes} --write`. One run.\n\n"
        )
        RESULTS.write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
