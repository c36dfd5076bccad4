"""Image update vs package-style update, and imgdiff's forecast vs the tools that look after.

The same 1,000 processes run chrooted into LIVE, a `cp -a` copy of OLD (the real Debian
pair from `../shared/corpus/build-image-pair.sh`, kinds and units as in `bench_plan`).
Then three ways to go from OLD to NEW are compared on what they ship and whom they
disrupt:

- whole image: ship NEW (its tar, zstd -3), restart (or reboot) everything;
- imgdiff delta + plan: ship the changed and added files (tar, zstd -3), restart what
  `imgdiff plan` names, before anything is touched;
- package-style in place: rsync NEW onto LIVE (write + rename, as dpkg does), then ask
  `checkrestart`, `needrestart` and `imgdiff stale` which processes still run old code.

The forecast (plan, before) is scored against what `imgdiff stale` finds after the files
were replaced: processes in both, only forecast, only found after.
Run as root: `.venv/bin/python -m benchmarks.bench_update_modes [--n 1000] [--write]`.
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
import time
from pathlib import Path

from benchmarks.bench_plan import CORPUS, running

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))


def _run(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, done


def _zstd_size(path: str) -> int:
    out = subprocess.run(["zstd", "-3", "-T0", "-c", path], capture_output=True, check=True).stdout
    return len(out)


def _delta_tar(old: str, new: str, work: str) -> tuple[str, int]:
    """A tar of NEW's changed and added regular files (what a delta must carry)."""
    _, done = _run([IMGDIFF, "diff", old, new, "--json", "--all", "--no-packages"])
    doc = json.loads(done.stdout)
    paths = [
        c["path"].lstrip("/")
        for c in doc["changes"]
        if c["status"] in ("added", "modified") and (c.get("new") or {}).get("type") == "file"
    ]
    listing = os.path.join(work, "delta.list")
    Path(listing).write_text("\n".join(paths) + "\n")
    tar = os.path.join(work, "delta.tar")
    subprocess.run(["tar", "-C", new, "--no-recursion", "-cf", tar, "-T", listing], check=True)
    return tar, len(paths)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    old, new = os.path.join(args.corpus, "old"), os.path.join(args.corpus, "new")
    if not os.path.isdir(old) or not os.path.isfile(os.path.join(args.corpus, "new.tar")):
        print("no image pair: run ../shared/corpus/build-image-pair.sh", file=sys.stderr)
        return 2
    # not under /tmp or /var/tmp: checkrestart and needrestart ignore processes there
    work = tempfile.mkdtemp(prefix="imgdiff-bench-modes-", dir="/opt")
    cache = tempfile.mkdtemp(prefix="imgdiff-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    lines: list[str] = []
    kinds: dict[str, list[int]] = {}
    try:
        live = os.path.join(work, "live")
        subprocess.run(["cp", "-a", old, live], check=True)
        image_size = _zstd_size(os.path.join(args.corpus, "new.tar"))
        delta, n_files = _delta_tar(old, new, work)
        delta_size = _zstd_size(delta)
        with running(live, args.n) as started:
            pids = {s.popen.pid for s in started}
            _run([IMGDIFF, "plan", old, new, "--root", live, "--json"])  # warm the cache
            plan_s, done = _run([IMGDIFF, "plan", old, new, "--root", live, "--json"])
            verdict = json.loads(done.stdout)
            forecast = {p for s in verdict["steps"] for p in s["pids"]} & pids
            restart_units = [s for s in verdict["steps"] if s["action"] == "restart"]
            # --no-whole-file: rsync's delta transfer even between local trees, as over a
            # network; literal data is what it would send (before -z compression)
            rsync_s, done = _run(
                ["rsync", "-a", "--delete", "--no-whole-file", "--stats", new + "/", live + "/"]
            )
            literal = re.search(r"Literal data: ([\d,]+)", done.stdout)
            sent = int(literal.group(1).replace(",", "")) if literal else 0
            stale_s, done = _run([IMGDIFF, "stale", "--root", live, "--json"])
            after = {p["pid"] for p in json.loads(done.stdout)["processes"]} & pids
            check_s, done = _run(["checkrestart"])
            m = re.search(r"Found (\d+) processes", done.stdout)
            check_found = int(m.group(1)) if m else 0
            need_s, done = _run(["needrestart", "-b", "-r", "l"])
            need_found = sum(
                1 for line in done.stdout.splitlines() if line.startswith("NEEDRESTART-")
                and not line.startswith(("NEEDRESTART-VER", "NEEDRESTART-KCUR",
                                         "NEEDRESTART-KEXP", "NEEDRESTART-KSTA"))
            )  # fmt: skip
            verify_s, done = _run([IMGDIFF, "verify", live, new, "--json"])
            matches = json.loads(done.stdout)["matches"]
            for s in started:
                row = kinds.setdefault(s.kind.name, [0, 0, 0])
                row[0] += 1
                row[1] += s.popen.pid in forecast
                row[2] += s.popen.pid in after
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)

    n = args.n
    lines += [
        "# Image update vs package-style update, and the forecast vs tools that look after",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}. {n} processes "
        "chrooted into a `cp -a` copy of OLD (kinds and units as in `bench_plan`). One run.",
        "",
        "## What is shipped, and who is disrupted",
        "",
        "| way | shipped (zstd -3) | processes restarted |",
        "|---|---:|---:|",
        f"| whole image (NEW's tar) | {_mib(image_size)} MiB | all {n} (or a reboot) |",
        f"| imgdiff delta ({n_files} changed/added files) + plan | {_mib(delta_size)} MiB "
        f"| {len(forecast)} in {len(restart_units)} steps |",
        f"| rsync in place (literal data, uncompressed) | {_mib(sent)} MiB | whatever the "
        "tools below find afterwards |",
        "",
        "## Forecast before the update vs what is found after it",
        "",
        "| tool | when | wall s | processes named (of the benchmark's, or host-wide) |",
        "|---|---|---:|---:|",
        f"| `imgdiff plan OLD NEW --root LIVE` | before | {plan_s:.2f} | {len(forecast)} |",
        f"| `imgdiff stale --root LIVE` | after rsync ({rsync_s:.2f} s) | {stale_s:.2f} "
        f"| {len(after)} |",
        f"| `checkrestart` | after | {check_s:.2f} | {check_found} (host-wide) |",
        f"| `needrestart -b -r l` | after | {need_s:.2f} | {need_found} (host-wide) |",
        f"| `imgdiff verify LIVE NEW` | after | {verify_s:.2f} | tree is NEW: {matches} |",
        "",
        f"Forecast and finding agree on {len(forecast & after)} processes; "
        f"{len(forecast - after)} only forecast, {len(after - forecast)} only found after.",
        "",
        f"checkrestart names {check_found - len(after):+d} processes more than `imgdiff "
        "stale` host-wide; in this run they are the ones holding files that rsync rewrote "
        "with the same bytes (the images differ there in mtime only), which imgdiff "
        "compares by content. needrestart looks at services, not at chrooted processes.",
        "",
        "| kind | started | forecast (plan) | found after (stale) |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {a} | {b} | {c} |" for k, (a, b, c) in kinds.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(__file__).with_name("results-update-modes.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
