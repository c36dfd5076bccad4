"""`python -m benchmarks report`: every comparison, per update, over a series of real updates.

Each update OLD -> NEW is measured the same way, in one run:

- bytes to ship: NEW's whole tar (`zstd -19 --long -T0`), the .deb files of the packages
  whose version changed, imgdiff's delta (`imgdiff pack`), an OSTree static delta
  (`generate --inline`, commits made as `bench_archive` makes them);
- what restarts: LIVE is a `cp -a` copy of OLD with processes chrooted into it, in cgroup
  units (`bench_plan`'s mix; the demo's three services with `--quick`). Counted: restart
  everything; imgdiff's plan (`plan OLD NEW --root LIVE`, before the update); and, after
  `imgdiff apply DELTA LIVE`, what needrestart and checkrestart name, each mapped to the
  units an operator would restart;
- time: imgdiff against the peer for the delta (`diff -rq`), stale processes after the
  update (`checkrestart`, needrestart) and the plan (needrestart, the nearest tool an
  operator runs), interleaved rounds after a warm-up, minimums and ratios from the run.

The series is built by `benchmarks/build_series.sh` (mmdebstrap, as root) under
/var/tmp/imgdiff-series; the real pair is ../shared/corpus/build-image-pair.sh's. Writes
benchmarks/results/REPORT.md, report.json (read by notebooks/image-vs-package.ipynb) and
PNG plots. `--quick` measures the built-in example pair only, in seconds (the test suite
runs it). Run as root: `.venv/bin/python -m benchmarks report [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks.bench_archive import Corpus, ostree_server
from benchmarks.common import run_once

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
HERE = Path(__file__).parent
RESULTS = HERE / "results"
SERIES = "/var/tmp/imgdiff-series"
CORPUS = "/var/tmp/imgdiff-corpus"
SCHEMA = "imgdiff.bench-report/1"
STRATEGIES_BYTES = ("full_image", "packages", "imgdiff_delta", "ostree_delta")
STRATEGIES_RESTART = ("restart_everything", "imgdiff_plan", "needrestart", "checkrestart")
NEEDRESTART = ["needrestart", "-b", "-r", "l"]
STATES = {
    "s0": "bookworm + bookworm-updates, openssl/libssl3 3.0.17 and tzdata 2025b pinned "
    "(the older versions bookworm-updates still carries)",
    "s1": "bookworm + bookworm-updates at their newest (the current point release)",
    "s2": "s1 + bookworm-security",
    "s3": "s2 + bookworm-proposed-updates (the next point release)",
}


@attrs.frozen
class Update:
    """One update to measure: OLD and NEW trees, NEW's tar, where the .debs are."""

    name: str
    what: str
    old: str
    new: str
    new_tar: str | None  # made in the scratch directory when None
    old_debs: str | None  # directories of .deb files; None: sizes from apt-cache
    new_debs: str | None
    demo: bool = False  # the demo's services (example pair) instead of bench_plan's mix


# ---------------------------------------------------------------- bytes


def _tar(tree: str, dest: str) -> str:
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sort=name",
         "-C", tree, "-cf", dest, "."],
        check=True,
    )  # fmt: skip
    return dest


def full_image_bytes(u: Update, work: str, level: int) -> int:
    """NEW's tar compressed as a whole image would ship."""
    tar = u.new_tar or _tar(u.new, os.path.join(work, "new.tar"))
    out = os.path.join(work, "new.tar.zst")
    run_once(["zstd", "-q", "-f", f"-{level}", "--long", "-T0", tar, "-o", out])
    size = os.path.getsize(out)
    os.unlink(out)
    if tar != u.new_tar:
        os.unlink(tar)
    return size


def _dpkg(tree: str) -> dict[tuple[str, str], str]:
    admin = os.path.join(tree, "var/lib/dpkg")
    if not os.path.isfile(os.path.join(admin, "status")):
        return {}
    out = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f=${Package}\t${Architecture}\t${Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {(p, a): v for p, a, v in (line.split("\t") for line in out.splitlines())}


def _deb_size(name: str, arch: str, version: str, debs: str | None) -> int | None:
    """The .deb's size: from the build's own copy, else from the host's apt lists
    (mmdebstrap keeps no copy of the essential packages it unpacks first)."""
    if debs:
        path = Path(debs) / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        if path.exists():
            return path.stat().st_size
    out = subprocess.run(
        ["apt-cache", "show", f"{name}:{arch}={version}"], capture_output=True, text=True,
        check=False,
    ).stdout  # fmt: skip
    m = re.search(r"^Size: (\d+)$", out, re.MULTILINE)
    return int(m.group(1)) if m else None


def package_bytes(u: Update) -> tuple[int | None, list[str], list[str]]:
    """Summed size of the .debs whose version NEW changed or added, the packages, and
    those whose .deb could not be found (then the sum is None)."""
    old, new = _dpkg(u.old), _dpkg(u.new)
    if not new:
        return None, [], []
    changed = sorted(k for k, v in new.items() if old.get(k) != v)
    total, missing = 0, []
    for name, arch in changed:
        size = _deb_size(name, arch, new[(name, arch)], u.new_debs)
        if size is None:
            missing.append(name)
        else:
            total += size
    names = [f"{n} {new[(n, a)]}" for n, a in changed]
    return (None if missing else total), names, missing


def ostree_bytes(u: Update, work: str) -> int | None:
    """An OSTree static delta between commits of OLD and NEW (None without ostree)."""
    if shutil.which("ostree") is None:
        return None
    server = ostree_server(Corpus(u.old, u.new, "", ""), work)
    try:
        subprocess.run(
            ["ostree", f"--repo={server.repo}", "static-delta", "generate", "--from=old",
             "--to=new", "--inline", f"--filename={server.delta}"],
            check=True, capture_output=True,
        )  # fmt: skip
        return os.path.getsize(server.delta)
    finally:
        shutil.rmtree(server.repo, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(server.delta)


# ---------------------------------------------------------------- processes


@attrs.frozen
class Proc:
    """A process this report started in LIVE: its pid and unit (None: none)."""

    pid: int
    unit: str | None


@contextlib.contextmanager
def processes(u: Update, live: str, n: int) -> Iterator[list[Proc]]:
    """Start the processes in LIVE; all stopped (and their cgroups removed) at exit."""
    if u.demo:
        from imgdiff import demo

        with demo.running(Path(live)) as pids:
            yield [Proc(pid, f"{name}.service") for name, pid in pids.items()]
        return
    from benchmarks.bench_plan import running

    # units of their own: bench_plan's names may be in use by a concurrent benchmark
    with running(live, n, prefix=f"imgdiff-report-{os.getpid()}") as started:
        yield [Proc(s.popen.pid, s.unit) for s in started]


def _restart_units(procs: Sequence[Proc], pids: set[int], units: set[str]) -> dict[str, int]:
    """What restarting these (whole units, bare pids) takes: units+bare steps, processes."""
    chosen_units = {p.unit for p in procs if p.unit and (p.pid in pids or p.unit in units)}
    bare = {p.pid for p in procs if p.unit is None and p.pid in pids}
    taken = [p for p in procs if p.unit in chosen_units or p.pid in bare]
    return {"services": len(chosen_units) + len(bare), "processes": len(taken)}


def _plan_counts(doc: dict[str, Any], procs: Sequence[Proc]) -> dict[str, Any]:
    steps = [s for s in doc["steps"] if s.get("action", "restart") == "restart"]
    units = {s["unit"] for s in steps if s.get("unit")}
    pids = {pid for s in steps if not s.get("unit") for pid in s["pids"]}
    out: dict[str, Any] = _restart_units(procs, pids, units)
    return out | {"verdict": doc["verdict"], "steps": len(doc["steps"])}


def _checkrestart_pids() -> set[int]:
    out = subprocess.run(["checkrestart", "-v"], capture_output=True, text=True, check=False)
    # "[DEBUG] Process /usr/bin/x (PID: 123)" for each process using deleted files
    return {int(m.group(1)) for m in re.finditer(r"\(PID: (\d+)\)", out.stdout)}


def _needrestart_found() -> tuple[int, set[int]]:
    """Services, containers or sessions needrestart names, and the pids its verbose
    log says use outdated files."""
    out = subprocess.run([*NEEDRESTART, "-v"], capture_output=True, text=True, check=False)
    kinds = ("NEEDRESTART-SVC", "NEEDRESTART-CONT", "NEEDRESTART-SESS")
    named = sum(1 for line in out.stdout.splitlines() if line.startswith(kinds))
    pids = {int(m.group(1)) for m in re.finditer(r"#(\d+) uses", out.stderr)}
    return named, pids


def _json(argv: Sequence[str], ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-800:]}")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def rounds(cmds: dict[str, list[str]], runs: int, warmup: int = 1) -> dict[str, float]:
    """Minimum wall seconds of each command over `runs` rounds after `warmup` rounds; the
    commands take turns in each round so that all see the machine alike."""
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for r in range(runs + warmup):
        for label, argv in cmds.items():
            wall = run_once(argv)[0]
            if r >= warmup:
                walls[label].append(wall)
    return {k: min(v) for k, v in walls.items()}


def measure(u: Update, work: str, n: int, runs: int, level: int) -> dict[str, Any]:
    """Everything the report says about one update, from this run (for the example pair
    of `--quick`, timing rounds without a warm-up round)."""
    warmup = 0 if u.demo else 1
    print(f"[report] {u.name}: delta", file=sys.stderr)
    diff = _json([IMGDIFF, "diff", u.old, u.new, "--json"], ok=(0, 1))
    deb_total, pkgs, missing = package_bytes(u)
    delta = os.path.join(work, "update.delta")
    packed = _json([IMGDIFF, "pack", u.old, u.new, "-o", delta, "--json"])
    print(f"[report] {u.name}: full image and OSTree", file=sys.stderr)
    sizes = {
        "full_image": full_image_bytes(u, work, level),
        "packages": deb_total,
        "imgdiff_delta": packed["size"],
        # of which content records; the rest is NEW's manifest and the headers
        "imgdiff_delta_records": sum(packed["record_bytes"].values()),
        "ostree_delta": ostree_bytes(u, work),
    }
    live = os.path.join(work, "live")
    subprocess.run(["cp", "-a", u.old, live], check=True)
    print(f"[report] {u.name}: processes", file=sys.stderr)
    try:
        with processes(u, live, n) as procs:
            mine = {p.pid for p in procs}
            plan_argv = [IMGDIFF, "plan", u.old, u.new, "--root", live, "--json"]
            plan = _json(plan_argv)
            before = rounds(
                {
                    "imgdiff diff": [IMGDIFF, "diff", u.old, u.new, "--json"],
                    "diff -rq": ["diff", "-rq", "--no-dereference", u.old, u.new],
                    "imgdiff plan": plan_argv,
                    "needrestart (before)": NEEDRESTART,
                },
                runs,
                warmup,
            )
            _json([IMGDIFF, "apply", delta, live, "--json"])
            stale = _json([IMGDIFF, "stale", "--root", live, "--json"])
            stale_pids = {p["pid"] for p in stale["processes"]} & mine
            check_pids = _checkrestart_pids() & mine
            need_named, need_pids = _needrestart_found()
            after = rounds(
                {
                    "imgdiff stale": [IMGDIFF, "stale", "--root", live, "--json"],
                    "checkrestart": ["checkrestart"],
                    "needrestart": NEEDRESTART,
                },
                runs,
                warmup,
            )
            units = {p.unit for p in procs if p.unit}
            restarts = {
                "restart_everything": _restart_units(procs, mine, units),
                "imgdiff_plan": _plan_counts(plan, procs),
                "needrestart": _restart_units(procs, need_pids & mine, set())
                | {"named": need_named},
                "checkrestart": _restart_units(procs, check_pids, set()),
            }
            restarts["imgdiff_stale_after"] = _restart_units(procs, stale_pids, set())
            started = len(procs)
    finally:
        shutil.rmtree(live, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(delta)
    return {
        "name": u.name,
        "what": u.what,
        "old": u.old,
        "new": u.new,
        "stats": {k: diff["stats"].get(k) for k in ("modified", "added", "removed", "unchanged")},
        "packages_changed": pkgs,
        "packages_missing_debs": missing,
        "bytes": sizes,
        "processes_started": started,
        "restarts": restarts,
        "verdict": plan["verdict"],
        "timings": {
            "delta": {
                "imgdiff": before["imgdiff diff"],
                "peer": before["diff -rq"],
                "peer_name": "diff -rq --no-dereference",
            },
            "stale": {
                "imgdiff": after["imgdiff stale"],
                "peer": after["checkrestart"],
                "peer_name": "checkrestart",
                "needrestart": after["needrestart"],
            },
            "plan": {
                "imgdiff": before["imgdiff plan"],
                "peer": before["needrestart (before)"],
                "peer_name": "needrestart -b -r l",
            },
        },
    }


# ---------------------------------------------------------------- the machine


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _deb_version(package: str) -> str:
    out = _first_line(["dpkg-query", "-W", "-f=${Version}", package])
    return out if "no packages found" not in out else "not installed"


def machine() -> dict[str, Any]:
    """Cores, CPU model, kernel, load, and the peers' versions."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_start": os.getloadavg()[0],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "shared": "shared with other engineers' jobs during the run",
        "peers": {
            "zstd": _deb_version("zstd"),
            "ostree": _deb_version("ostree"),
            "needrestart": _deb_version("needrestart"),
            "checkrestart (debian-goodies)": _deb_version("debian-goodies"),
            "diff (diffutils)": _deb_version("diffutils"),
            "mmdebstrap": _deb_version("mmdebstrap"),
        },
        "imgdiff_revision": _first_line(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"]),
    }


# ---------------------------------------------------------------- earlier results

# (area, file, pattern, template): each captured group fills the template, so the
# numbers follow the file when its benchmark is run again
HEADLINES = (
    ("delta, trees (cold cache)", "results-delta.md",
     r"`imgdiff diff --json --no-cache` \| ([\d.]+) .*?\| ([\d.]+x) \|",
     "{0} s; {1} of `diff -rq`"),
    ("delta, tars", "results-delta.md",
     r"\| tar \| `imgdiff diff --json` \| ([\d.]+) .*?\| ([\d.]+x) \|",
     "{0} s; {1} of extract both + `diff -rq`"),
    ("bytes to ship (real pair)", "results-archive.md",
     r"\| `imgdiff pack` \(dirs\) \| [\d,]+ \| ([\d.]+) \| ([\d.]+x) \|",
     "imgdiff delta {0} MB, {1} of an OSTree static delta"),
    ("plan, 1000 processes (warm)", "results-plan.md",
     r"\| 1000 \| imgdiff plan .*?\| ([\d.]+) \| [\d.]+ \| \d+ \| 1\.00x \|", "{0} s"),
    ("whole update cycle on the host", "results-cycle.md",
     r"the plan's restarts\): ([\d.]+) s", "{0} s (plan, apply, checks, restarts; 1000 procs)"),
    ("image way vs plan: processes restarted", "results-update-modes.md",
     r"\| whole image .*?\| all (\d+) .*?\n\| imgdiff delta .*?\| (\d+) in (\d+) steps \|",
     "{1} of {0} processes ({2} steps)"),
    ("stale, 1000 procs", "results-stale.md",
     r"\| 1000 procs \| `imgdiff stale --json` \| found (\d+) of \d+ \| ([\d.]+) \|",
     "found {0}; {1} s"),
    ("stale, 1000 procs: checkrestart", "results-stale.md",
     r"\| 1000 procs \| `checkrestart` \| found (\d+) \| ([\d.]+) \|", "found {0}; {1} s"),
    ("verify a tree", "results-verify.md",
     r"copy of OLD vs NEW \| `imgdiff verify --json` \| ([\d.]+) .*?\| ([\d.]+x) \|",
     "{0} s; {1} of `diff -rq`"),
    ("package ownership", "results-packages.md",
     r"Owner found for (\d+) of (\d+) regular files by imgdiff, (\d+) by `dpkg-query -S`",
     "{0} of {1} files owned (dpkg-query -S: {2})"),
    ("/proc reading (maps)", "results-procfs.md",
     r"\| maps \(files \+ identity\) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+x) \|",
     "{1} ms vs psutil {0} ms ({2})"),
    ("scale, 1M-entry tars", "results-scale.md",
     r"\| 1,000,000 \| after \| ([\d.]+) \| [\d.]+ \| (\d+) \| [\d.]+ \| (\d+) \|",
     "{0} s, {1} MiB peak, {2} bytes per entry"),
    ("fleet, per host (2 workers)", "results-fleet.md",
     r"fleet, 2 workers: per host \(hosts phase / hosts\) \| ([\d.]+) ms", "{0} ms"),
    ("import tracer overhead", "results-trace.md",
     r"\*\*wall: import overhead ([\d.]+%)\*\*", "{0} of start-up with 284 imports"),
    ("import tracer overhead, instructions", "results-trace.md",
     r"\*\*instructions \(callgrind, user space\): import overhead ([\d.]+%)\*\*",
     "{0} (callgrind, mean over the collector's phases: the machine's load does not move it)"),
)  # fmt: skip


def headlines() -> list[dict[str, str]]:
    """The headline figure of each earlier results-*.md, as that file has it now."""
    out = []
    for area, name, pattern, template in HEADLINES:
        path = HERE / name
        text = path.read_text() if path.exists() else ""
        m = re.search(pattern, text, re.DOTALL)
        value = template.format(*m.groups()) if m else "(not found: see the file)"
        out.append({"area": area, "value": value, "source": f"benchmarks/{name}"})
    return out


# ---------------------------------------------------------------- writing


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.2f}"


def _restart_cell(r: dict[str, Any] | None) -> str:
    return "n/a" if r is None else f"{r['services']} / {r['processes']}"


HEADLINE_START, HEADLINE_END = "<!-- headline: start -->", "<!-- headline: end -->"
README = HERE.parent / "README.md"


def headline(doc: dict[str, Any]) -> list[str]:
    """The headline table, between its markers: bytes to ship and what restarts, per
    update (REPORT.md, the README and the docs' comparison page show it)."""
    lines = [
        HEADLINE_START,
        "| update | full image MB | packages MB | imgdiff delta MB | OSTree delta MB "
        "| restart everything | imgdiff plan | needrestart | checkrestart |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for u in doc["updates"]:
        b, r = u["bytes"], u["restarts"]
        lines.append(
            f"| {u['name']} | {_mb(b['full_image'])} | {_mb(b['packages'])} "
            f"| {_mb(b['imgdiff_delta'])} | {_mb(b['ostree_delta'])} | "
            + " | ".join(_restart_cell(r.get(k)) for k in STRATEGIES_RESTART)
            + " |"
        )
    lines += [
        "",
        "Restarts are services / processes of the ones started in OLD; imgdiff plans before "
        "the update, needrestart and checkrestart look after it. "
        f"From `{doc['command']}`, {doc['machine']['date']}.",
        HEADLINE_END,
    ]
    return lines


def with_headline(text: str, doc: dict[str, Any]) -> str:
    """`text` with the block between the headline markers replaced by `doc`'s."""
    start, end = text.index(HEADLINE_START), text.index(HEADLINE_END) + len(HEADLINE_END)
    return text[:start] + "\n".join(headline(doc)) + text[end:]


def markdown(doc: dict[str, Any]) -> str:
    """REPORT.md from the JSON twin."""
    m = doc["machine"]
    peers = ", ".join(f"{k} {v}" for k, v in m["peers"].items())
    lines = [
        "# imgdiff benchmark report" + (" (--quick smoke run)" if doc["quick"] else ""),
        "",
        f"{m['date']}. Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, "
        f"Python {m['python']}, imgdiff at {m['imgdiff_revision']}; the machine was "
        f"{m['shared']} (load {m['load_start']:.1f} at the start, {doc['load_end']:.1f} "
        f"at the end), so wall times are noisy. Peers: {peers}. Made by "
        f"`{doc['command']}` in {doc['elapsed_s']:.0f} s; every figure below comes from "
        "that one run (`report.json` holds them all).",
        "",
        "## Headline",
        "",
        *headline(doc),
        "",
        "## The updates",
        "",
        doc["series_note"],
        "",
        "| update | what | modified / added / removed files | packages changed | verdict |",
        "|---|---|---:|---:|---|",
    ]
    for u in doc["updates"]:
        s = u["stats"]
        lines.append(
            f"| {u['name']} | {u['what']} | {s['modified']} / {s['added']} / {s['removed']} "
            f"| {len(u['packages_changed'])} | {u['verdict']} |"
        )
    lines += [
        "",
        "## Bytes to ship, per update (MB = 10^6 bytes)",
        "",
        "| update | full image (`zstd -19 --long`) | packages (changed .debs) "
        "| imgdiff delta (`pack`) | OSTree static delta | delta ÷ packages | delta ÷ OSTree |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for u in doc["updates"]:
        b = u["bytes"]
        vs_pkg = f"{b['imgdiff_delta'] / b['packages']:.2f}x" if b["packages"] else "n/a"
        vs_os = f"{b['imgdiff_delta'] / b['ostree_delta']:.2f}x" if b["ostree_delta"] else "n/a"
        lines.append(
            f"| {u['name']} | {_mb(b['full_image'])} | {_mb(b['packages'])} "
            f"| {_mb(b['imgdiff_delta'])} | {_mb(b['ostree_delta'])} | {vs_pkg} | {vs_os} |"
        )
    last = doc["updates"][-1]["bytes"]
    lines += [
        "",
        "imgdiff's delta always carries NEW's whole manifest (so that a host can check the "
        "result without NEW): "
        f"{(last['imgdiff_delta'] - last['imgdiff_delta_records']) / 1e6:.2f} MB of the "
        f"last update's {last['imgdiff_delta'] / 1e6:.2f} MB; when almost nothing "
        "changes, that is most of it. Content records per update (MB): "
        + ", ".join(
            f"{u['name']} {u['bytes']['imgdiff_delta_records'] / 1e6:.2f}" for u in doc["updates"]
        )
        + ".",
        "",
        "## What restarts, per update (services / processes)",
        "",
        "A service is a unit, or a process with no unit (restarted alone); restarting a "
        "unit restarts every process in it. needrestart and checkrestart run after "
        "`imgdiff apply` has updated LIVE under the running processes; their pids are "
        "mapped to the units an operator would restart: checkrestart, after the fact, is "
        "the independent check of the plan imgdiff made before the update.",
        "",
        "| update | processes started | restart everything | imgdiff plan (before) "
        "| needrestart (after) | checkrestart (after) | imgdiff stale (after) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for u in doc["updates"]:
        r = u["restarts"]
        lines.append(
            f"| {u['name']} | {u['processes_started']} | "
            + " | ".join(
                _restart_cell(r.get(k)) for k in (*STRATEGIES_RESTART, "imgdiff_stale_after")
            )
            + " |"
        )
    named = {u["name"]: u["restarts"]["needrestart"]["named"] for u in doc["updates"]}
    lines += [
        "",
        f"Services needrestart itself names (`-b`, NEEDRESTART-SVC/CONT/SESS): {named}; "
        "there is no systemd here, so it can tie no process to a service.",
        "",
        "## Time: imgdiff vs the peer for the same question (minimum wall s)",
        "",
        f"{doc['runs']} interleaved rounds "
        f"{'(no warm-up: --quick)' if doc['quick'] else 'after a warm-up'}; "
        "the ratio is imgdiff ÷ peer, "
        "from the same rounds. The plan does more than its peer (delta, packages, "
        "processes, verdict, before the update); needrestart only looks after it.",
        "",
        "| update | delta: imgdiff diff | diff -rq | ratio | stale: imgdiff stale "
        "| checkrestart | ratio | plan: imgdiff plan | needrestart | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for u in doc["updates"]:
        cells = []
        for job in ("delta", "stale", "plan"):
            t = u["timings"][job]
            cells += [f"{t['imgdiff']:.3f}", f"{t['peer']:.3f}", f"{t['imgdiff'] / t['peer']:.2f}x"]
        lines.append(f"| {u['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Headline figures of the other benchmarks (from their results-*.md)",
        "",
        "| area | figure | source |",
        "|---|---|---|",
    ]
    lines += [f"| {h['area']} | {h['value']} | `{h['source']}` |" for h in doc["headlines"]]
    lines += [
        "",
        "## Plots",
        "",
        *(f"![{p}]({p})" for p in doc["plots"]),
        "",
    ]
    return "\n".join(lines)


def plots(doc: dict[str, Any], out: Path) -> list[str]:
    """Bytes per strategy and restarts per strategy, one group of bars per update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [u["name"] for u in doc["updates"]]
    written = []
    for fname, key, strategies, title, ylabel, scale in (
        ("bytes.png", "bytes", STRATEGIES_BYTES, "bytes to ship per update", "MB (log)", 1e6),
        ("restarts.png", "restarts", STRATEGIES_RESTART, "services restarted per update",
         "services (units + bare processes)", 1.0),
    ):  # fmt: skip
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / len(strategies)
        for i, strategy in enumerate(strategies):
            values = []
            for u in doc["updates"]:
                v = u[key].get(strategy)
                v = v["services"] if isinstance(v, dict) else v
                values.append(0 if v is None else v / scale)
            ax.bar([x + i * width for x in range(len(names))], values, width, label=strategy)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
        if key == "bytes":
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=80)
        plt.close(fig)
        written.append(fname)
    return written


# ---------------------------------------------------------------- the run


def _series_updates(series: str, corpus: str) -> list[Update]:
    out = []
    have = [s for s in STATES if os.path.isdir(os.path.join(series, s, "usr"))]
    for a, b in itertools.pairwise(have):
        out.append(
            Update(
                f"{a}→{b}", STATES[b].replace(f"{a} + ", "+ "),
                os.path.join(series, a), os.path.join(series, b),
                os.path.join(series, f"{b}.tar"),
                os.path.join(series, "debs", a), os.path.join(series, "debs", b),
            )
        )  # fmt: skip
    if os.path.isdir(os.path.join(corpus, "old", "usr")):
        out.append(
            Update(
                "real pair", "the corpus OLD→NEW (bookworm-updates pins → + security, "
                "and a pip layer requests 2.31→2.32)",
                os.path.join(corpus, "old"), os.path.join(corpus, "new"),
                os.path.join(corpus, "new.tar"), None, None,
            )
        )  # fmt: skip
    return out


def _example(work: str) -> Update:
    """The built-in example pair with the demo's services installed in both images."""
    from imgdiff import demo
    from imgdiff.examples import build_example_pair

    old, new = build_example_pair(os.path.join(work, "example"))
    for image in (old, new):
        demo.install_services(Path(image))
        # the services (python -I) write bytecode where they run: once here, so that
        # LIVE, a copy of OLD, stays OLD while they run in it
        with demo.running(Path(image)):
            pass
    return Update("example", "the built-in example pair (imgdiff.examples)", old, new,
                  None, None, None, demo=True)  # fmt: skip


SERIES_NOTE = (
    "snapshot.debian.org (pinned historical dates) is not reachable from this machine, so "
    "the series is built from the suites deb.debian.org publishes today, stacked in the "
    "order a host receives them (`benchmarks/build_series.sh`, mmdebstrap minbase + "
    "python3, openssl, ca-certificates, nginx-light, tzdata): "
    + "; ".join(f"**{k}** = {v}" for k, v in STATES.items())
    + ". Each neighbouring pair is one update; bookworm-proposed-updates carries no newer "
    "version of any package in this set today, so s2→s3 is a rebuild with the same "
    "packages (files differ by build date only). bookworm-backports is left out: nothing "
    "installs from it unless asked. The real pair is "
    "`../shared/corpus/build-image-pair.sh`'s (it adds a pip layer that no .deb carries: "
    "the packages column does not count it)."
)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks report", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the built-in example pair only")
    ap.add_argument("--series", default=os.environ.get("SERIES", SERIES))
    ap.add_argument("--corpus", default=os.environ.get("CORPUS", CORPUS))
    ap.add_argument("--out", default=str(RESULTS), help="where REPORT.md etc. go")
    ap.add_argument("--runs", type=int, default=None, help="timing rounds (5; 1 with --quick)")
    ap.add_argument("--n", type=int, default=100, help="processes in LIVE (real images)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        print("run as root, with chroot(8): the processes run chrooted in cgroups",
              file=sys.stderr)  # fmt: skip
        return 2
    for tool in ("zstd", "checkrestart", "needrestart", "diff"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (bash scripts/dev.sh setup)", file=sys.stderr)
            return 2
    runs = args.runs or (1 if args.quick else 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = datetime.datetime.now(datetime.UTC)
    info = machine()
    results = []
    # LIVE must not be under /tmp or /var/tmp: needrestart and checkrestart ignore both
    with tempfile.TemporaryDirectory(prefix="imgdiff-report-", dir="/opt") as work:
        cache_home = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = os.path.join(work, "cache")  # our own digest cache
        if args.quick:
            updates = [_example(work)]
        else:
            updates = _series_updates(args.series, args.corpus)
            if not updates:
                print(f"no series in {args.series} and no pair in {args.corpus}: run "
                      "bash benchmarks/build_series.sh (as root)", file=sys.stderr)  # fmt: skip
                return 2
        scratch = os.path.join(work, "scratch")
        try:
            for u in updates:
                os.makedirs(scratch)
                try:
                    results.append(measure(u, scratch, args.n, runs, 3 if args.quick else 19))
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
        finally:  # matplotlib keeps its font cache there too: not in the removed directory
            if cache_home is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = cache_home
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "quick": args.quick,
        "command": "python -m benchmarks report"
        + (" --quick" if args.quick else "")
        + f" --runs {runs}"
        + ("" if args.quick else f" --n {args.n}"),
        "runs": runs,
        "machine": info,
        "load_end": os.getloadavg()[0],
        "elapsed_s": (datetime.datetime.now(datetime.UTC) - t0).total_seconds(),
        "series_note": "the built-in example pair only" if args.quick else SERIES_NOTE,
        "strategies": {"bytes": list(STRATEGIES_BYTES), "restarts": list(STRATEGIES_RESTART)},
        "updates": results,
        "headlines": headlines(),
    }
    doc["plots"] = plots(doc, out)
    (out / "report.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (out / "REPORT.md").write_text(markdown(doc))
    if not args.quick and out == RESULTS:  # the README shows the committed run's headline
        README.write_text(with_headline(README.read_text(), doc))
    print(f"wrote {out}/REPORT.md, report.json, {', '.join(doc['plots'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
