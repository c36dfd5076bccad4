"""End to end: `imgdiff plan OLD NEW --root OLD` on the real image pair, with N processes
running inside OLD, timed whole and per stage, beside what an operator would run instead.

OLD and NEW are the Debian 12 root trees built by `bash ../shared/corpus/build-image-pair.sh`
(under /var/tmp/imgdiff-corpus by default). N processes are started with `chroot OLD` from
programs of the image itself: most sleep, some hold a configuration file open, a few dozen
are Python, openssl, perl or grep processes that map files the update changes. They are
spread over 20 real cgroup v2 units (system.slice/bench-plan-K.service) plus some without
a unit, so the plan has a restart verdict with steps to check. Every process and cgroup is
removed on the way out, whatever happens; nothing is written inside OLD. The digest cache
lives in a temporary $XDG_CACHE_HOME, so "warm" means warmed by this run's own warm-up.
Run as root: `.venv/bin/python -m benchmarks.bench_plan [--sizes 100,1000] [--write]`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from benchmarks.common import Timing, measure, run_once

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))
CORPUS = "/var/tmp/imgdiff-corpus"
BUILD = "bash ../shared/corpus/build-image-pair.sh"
CGROUP2 = Path("/sys/fs/cgroup/unified")
UNITS = 20
# of every 23 processes, 20 go into a unit (one each, round robin) and 3 run without one
UNIT_CYCLE = 23
TARGET_S = 3.0  # the goal for the warm plan at 1,000 processes
STAGES = ("delta", "packages", "unit-files", "snapshot", "impact", "drift", "verdict")
LIB = "/usr/lib/x86_64-linux-gnu"
# the host's environment stays out of the image; Python must not write bytecode into OLD
CHILD_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@attrs.frozen
class Kind:
    """One kind of process to start inside OLD, and the files that decide whether the
    update touches it (its executable and the one file it was started to use)."""

    name: str
    argv: tuple[str, ...]  # inside the image
    exe: str  # the executable once it has settled (after `sh -c '... exec sleep'`)
    uses: tuple[str, ...]
    share: float  # of N; "sleep" takes what the others leave
    stdin: bool = False  # blocks reading a pipe held by the benchmark


def _holder(conf: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", f"exec 3<{conf}; exec sleep 600")


def _python(code: str) -> tuple[str, ...]:
    return ("/usr/bin/python3.11", "-c", f"{code}; import time; time.sleep(600)")


KINDS = (
    Kind(
        "python3.11 wsgiref server",
        _python("import wsgiref.simple_server"),
        "/usr/bin/python3.11",
        ("/usr/bin/python3.11", "/usr/lib/python3.11/http/client.py"),
        0.02,
    ),
    Kind(
        "python3.11 import ssl",
        _python("import ssl"),
        "/usr/bin/python3.11",
        ("/usr/bin/python3.11", f"{LIB}/libssl.so.3", f"{LIB}/libcrypto.so.3"),
        0.01,
    ),
    Kind(
        "openssl dgst (reads stdin)",
        ("/usr/bin/openssl", "dgst", "-sha256"),
        "/usr/bin/openssl",
        ("/usr/bin/openssl", f"{LIB}/libcrypto.so.3"),
        0.01,
        stdin=True,
    ),
    Kind(
        "perl with Socket",
        ("/usr/bin/perl", "-e", "use Socket; sleep 600"),
        "/usr/bin/perl",
        ("/usr/bin/perl", f"{LIB}/perl-base/auto/Socket/Socket.so"),
        0.01,
    ),
    Kind(
        "grep (reads stdin)",
        ("/usr/bin/grep", "-q", "x"),
        "/usr/bin/grep",
        ("/usr/bin/grep", f"{LIB}/libpcre2-8.so.0.11.2"),
        0.01,
        stdin=True,
    ),
    Kind(
        "sleep holding /etc/ca-certificates.conf",
        _holder("/etc/ca-certificates.conf"),
        "/usr/bin/sleep",
        ("/usr/bin/sleep", "/etc/ca-certificates.conf"),
        0.025,
    ),
    Kind(
        "sleep holding ca-certificates.crt",
        _holder("/etc/ssl/certs/ca-certificates.crt"),
        "/usr/bin/sleep",
        ("/usr/bin/sleep", "/etc/ssl/certs/ca-certificates.crt"),
        0.025,
    ),
    Kind(
        "sleep holding /etc/nginx/nginx.conf",
        _holder("/etc/nginx/nginx.conf"),
        "/usr/bin/sleep",
        ("/usr/bin/sleep", "/etc/nginx/nginx.conf"),
        0.025,
    ),
    Kind(
        "sleep holding /etc/passwd",
        _holder("/etc/passwd"),
        "/usr/bin/sleep",
        ("/usr/bin/sleep", "/etc/passwd"),
        0.025,
    ),
    Kind(
        "sleep",
        ("/usr/bin/sleep", "600"),
        "/usr/bin/sleep",
        ("/usr/bin/sleep", f"{LIB}/libc.so.6"),
        0.0,
    ),
)


@attrs.frozen
class Started:
    """A process of the benchmark: its kind, its unit (None: no unit) and its Popen."""

    kind: Kind
    unit: str | None
    popen: subprocess.Popen[bytes]


@attrs.frozen
class StageRun:
    """One `plan --timings` run: whole wall seconds and the seconds of each stage."""

    wall: float
    cpu: float
    peak_mib: float
    stages: dict[str, float]


@attrs.frozen
class Result:
    """Everything measured at one process count."""

    n: int
    rows: list[tuple[str, str, str, Timing]]  # job, command, found, timing
    stages: dict[str, float]  # medians, plus "other" (start-up, imports, output)
    cold: StageRun
    verdict: dict[str, Any]
    check: dict[str, Any]


def _counts(n: int) -> list[tuple[Kind, int]]:
    counts = [(k, max(1, round(k.share * n))) for k in KINDS if k.share]
    rest = n - sum(c for _, c in counts)
    if rest < 0:
        raise ValueError(f"{n} processes are too few for one of each kind")
    return [*counts, (KINDS[-1], rest)]


def _unit_of(i: int, prefix: str = "bench-plan") -> str | None:
    slot = i % UNIT_CYCLE
    return f"{prefix}-{slot + 1}.service" if slot < UNITS else None


def _settled(pid: int, exe: str) -> bool:
    """Whether the process runs `exe` (as the host sees it) and is asleep (set up)."""
    try:
        if os.readlink(f"/proc/{pid}/exe") != exe:
            return False
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] == "S"


def spawn(root: str, kind: Kind, unit: str | None) -> Started:
    """Start one process of `kind` chrooted into `root`, in `unit`'s cgroup (which must
    exist) if it has one."""
    popen = subprocess.Popen(
        ["chroot", root, *kind.argv],
        env=CHILD_ENV,
        stdin=subprocess.PIPE if kind.stdin else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if unit is not None:
        # children of chroot(8) (only exec here) stay in the cgroup it is put in
        (CGROUP2 / "system.slice" / unit / "cgroup.procs").write_text(str(popen.pid))
    return Started(kind, unit, popen)


def settle(root: str, started: Sequence[Started], timeout: float = 120) -> None:
    """Wait until every process runs its executable and sleeps (set up)."""
    waiting = list(started)
    deadline = time.monotonic() + timeout
    while waiting:
        for s in waiting:
            if s.popen.poll() is not None:
                raise RuntimeError(f"{s.kind.name} exited {s.popen.returncode} at start")
        waiting = [s for s in waiting if not _settled(s.popen.pid, root + s.kind.exe)]
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} processes not set up after {timeout} s")
        time.sleep(0.02)


@contextlib.contextmanager
def running(old: str, n: int, prefix: str = "bench-plan") -> Iterator[list[Started]]:
    """N processes inside OLD, in their units (PREFIX-1..20.service: another prefix keeps
    a concurrent run's cgroups apart), set up; all killed, reaped and their cgroups
    removed at exit."""
    plan = [k for k, count in _counts(n) for _ in range(count)]
    random.Random(n).shuffle(plan)  # kinds interleaved over the units, the same each run
    started: list[Started] = []
    cgroups: dict[str, Path] = {}
    try:
        for i, kind in enumerate(plan):
            unit = _unit_of(i, prefix)
            if unit is not None and unit not in cgroups:
                cgroups[unit] = CGROUP2 / "system.slice" / unit
                cgroups[unit].mkdir(exist_ok=True)
            started.append(spawn(old, kind, unit))
        settle(old, started)
        yield started
    finally:
        for s in started:
            if s.popen.poll() is None:
                s.popen.kill()
        for s in started:
            s.popen.wait()
            if s.popen.stdin:
                s.popen.stdin.close()
        for path in cgroups.values():
            _remove_cgroup(path)


def _remove_cgroup(path: Path) -> None:
    for pid in (path / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # exited meanwhile
            (CGROUP2 / "cgroup.procs").write_text(pid)
    for _ in range(50):
        try:
            path.rmdir()
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.1)  # the kernel frees a cgroup just after its last process
        else:
            return
    path.rmdir()


def _plan_argv(old: str, new: str, *extra: str) -> list[str]:
    return [IMGDIFF, "plan", old, new, "--root", old, "--json", "--timings", *extra]


def _stage_run(argv: Sequence[str]) -> StageRun:
    """One run with its rusage (wait4, as benchmarks.common) and its --timings lines."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err.seek(0)
        text = err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {text[-500:]}")
    stages = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(\S+)\s+([0-9.]+) s$", text, re.MULTILINE)
    }
    missing = set(STAGES) - set(stages)
    if missing:
        raise RuntimeError(f"--timings did not report {sorted(missing)}: {text[-500:]}")
    return StageRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stages)


def _median_stages(runs: Sequence[StageRun]) -> dict[str, float]:
    out = {s: statistics.median(r.stages[s] for r in runs) for s in STAGES}
    out["other"] = statistics.median(r.wall - sum(r.stages[s] for s in STAGES) for r in runs)
    return out


def _found_needrestart() -> str:
    out = subprocess.run(
        ["needrestart", "-b", "-r", "l"], capture_output=True, text=True, check=False
    ).stdout
    kinds = ("NEEDRESTART-SVC", "NEEDRESTART-CONT", "NEEDRESTART-SESS")
    found = sum(1 for line in out.splitlines() if line.startswith(kinds))
    return f"{found} services, containers or sessions"


def _found_checkrestart() -> str:
    out = subprocess.run(["checkrestart"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Found (\d+) processes", out)
    return f"{m.group(1) if m else 0} process(es), host-wide"


def _found_diff(argv: Sequence[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return f"{len(out.splitlines())} paths differ"


def _distinct(reasons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({(r["path"], r["via"]): r for r in reasons}.values())


def _check(
    started: Sequence[Started], verdict: dict[str, Any], changed: set[str]
) -> dict[str, Any]:
    """The verdict against what each started process uses: missed, extra, per kind."""
    planned = {pid for step in verdict["steps"] for pid in step["pids"]}
    mine = {s.popen.pid for s in started}
    per_kind: dict[str, list[int]] = {k.name: [0, 0, 0] for k in KINDS}  # in KINDS order
    missed, extra = [], []
    for s in started:
        affected = any(p in changed for p in s.kind.uses)
        hit = s.popen.pid in planned
        row = per_kind[s.kind.name]
        row[0] += 1
        row[1] += hit
        row[2] = affected
        if affected and not hit:
            missed.append(s)
        elif hit and not affected:
            extra.append(s)
    want_units = {s.unit for s in started if s.unit and any(p in changed for p in s.kind.uses)}
    want_bare = sum(1 for s in started if not s.unit and any(p in changed for p in s.kind.uses))
    restart = [s for s in verdict["steps"] if s["action"] == "restart"]
    via = Counter(r["via"] for s in restart for r in _distinct(s["reasons"]))
    return {
        "per_kind": per_kind,
        "missed": [f"{s.popen.pid} ({s.kind.name})" for s in missed],
        "extra": [f"{s.popen.pid} ({s.kind.name})" for s in extra],
        "others": sorted(planned - mine),
        "want_steps": len(want_units) + want_bare,
        "unit_steps": sum(1 for s in restart if s["unit"]),
        "bare_steps": sum(1 for s in restart if not s["unit"]),
        "batches": len({s["batch"] for s in verdict["steps"]}),
        "via": dict(via.most_common()),
        "cited": sorted({r["path"] for s in restart for r in s["reasons"]}),
    }


def run(old: str, new: str, n: int, runs: int, changed: set[str]) -> Result:
    warm = _plan_argv(old, new)
    with running(old, n) as started:
        doc = subprocess.run(warm, capture_output=True, text=True, check=True).stdout
        verdict: dict[str, Any] = json.loads(doc)
        check = _check(started, verdict, changed)
        cold = _stage_run(_plan_argv(old, new, "--no-cache"))
        mine = measure(warm, runs=runs, warmup=1)
        stages = _median_stages([_stage_run(warm) for _ in range(runs)])
        diff = ["diff", "-rq", "--no-dereference", old, new]
        peers = [
            (
                "stale processes, after the update (no image pair)",
                "needrestart -b -r l",
                _found_needrestart(),
                measure(["needrestart", "-b", "-r", "l"], runs=runs),
            ),
            (
                "processes using deleted files, after the update",
                "checkrestart",
                _found_checkrestart(),
                measure(["checkrestart"], runs=runs),
            ),
            (
                "delta only: file contents, no metadata or packages",
                "diff -rq --no-dereference OLD NEW",
                _found_diff(diff),
                measure(diff, runs=runs),
            ),
        ]
    cold_t = Timing(cold.wall, cold.cpu, cold.peak_mib, 1)
    steps = f"{verdict['verdict']}, {len(verdict['steps'])} steps"
    rows = [
        (
            "imgdiff plan (delta+packages+processes+verdict), warm digest cache",
            "imgdiff plan OLD NEW --root OLD --json --timings",
            steps,
            mine,
        ),
        (
            "the same, digest cache unused (1 run)",
            "imgdiff plan ... --no-cache",
            steps,
            cold_t,
        ),
        *peers,
    ]
    return Result(n, rows, stages, cold, verdict, check)


def _table(results: Sequence[Result]) -> str:
    out = [
        "| procs | job | command | result | wall s (median) | cpu s | peak MiB "
        "| wall ÷ imgdiff plan (warm) |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        base = r.rows[0][3].wall
        for job, cmd, found, t in r.rows:
            out.append(
                f"| {r.n} | {job} | `{cmd}` | {found} | {t.wall:.3f} | {t.cpu:.3f} "
                f"| {t.peak_mib:.0f} | {t.wall / base:.2f}x |"
            )
    return "\n".join(out)


def _stage_table(results: Sequence[Result]) -> str:
    head = " | ".join(f"{r.n} procs warm s | {r.n} procs --no-cache s" for r in results)
    out = [f"| stage | {head} |", "|---|" + "---:|" * (2 * len(results))]
    for stage in (*STAGES, "other"):
        cells = []
        for r in results:
            cold = (
                r.cold.wall - sum(r.cold.stages[s] for s in STAGES)
                if stage == "other"
                else r.cold.stages[stage]
            )
            cells += [f"{r.stages[stage]:.3f}", f"{cold:.3f}"]
        out.append(f"| {stage} | {' | '.join(cells)} |")
    totals = []
    for r in results:
        totals += [f"**{sum(r.stages.values()):.3f}**", f"**{r.cold.wall:.3f}**"]
    out.append(f"| total (wall) | {' | '.join(totals)} |")
    return "\n".join(out)


def _verdict_text(r: Result) -> str:
    c = r.check
    v = r.verdict
    lines = [
        f"**{r.n} processes** — verdict `{v['verdict']}`; {len(v['steps'])} steps in "
        f"{c['batches']} batches: {c['unit_steps']} units and {c['bare_steps']} bare "
        f"processes to restart (expected {c['want_steps']} from the processes' own files); "
        f"{len(v['uninspected'])} uninspected.",
        "",
        "Reasons: " + "; ".join(f"“{x}”" for x in v["reasons"]),
        "",
        f"Missed: {', '.join(c['missed']) or 'none'}. Flagged though expected clean: "
        f"{', '.join(c['extra']) or 'none'}. Planned processes not started here: "
        f"{', '.join(map(str, c['others'])) or 'none'}. Uninspected: "
        f"{'; '.join(v['uninspected']) or 'none'}.",
        "",
        "Evidence cited by the restart steps (distinct path+via per step): "
        + ", ".join(f"{k} {n}" for k, n in c["via"].items())
        + f"; {len(c['cited'])} distinct changed paths.",
        "",
        "| kind | started | in a restart step | uses a changed file |",
        "|---|---:|---:|---|",
    ]
    for name, (started, hit, affected) in c["per_kind"].items():
        lines.append(f"| {name} | {started} | {hit} | {'yes' if affected else 'no'} |")
    return "\n".join(lines)


def _dominates(results: Sequence[Result]) -> str:
    big = results[-1]
    wall = big.rows[0][3].wall
    order = sorted(STAGES, key=lambda s: -big.stages[s])
    top, second = order[0], order[1]
    total = sum(big.stages.values())
    text = [
        f"At {big.n} processes the warm plan takes {wall:.2f} s "
        f"({'under' if wall < TARGET_S else 'over'} the {TARGET_S:.0f} s target); "
        f"{top} is {big.stages[top]:.2f} s of it ({big.stages[top] / total:.0%}), then "
        f"{second} {big.stages[second]:.2f} s, and start-up/imports/output "
        f"{big.stages['other']:.2f} s."
    ]
    if len(results) > 1:
        small = results[0]
        grow = {s: big.stages[s] - small.stages[s] for s in ("delta", "snapshot", "impact")}
        per_proc = (grow["snapshot"] + grow["impact"]) * 1000 / (big.n - small.n)
        text.append(
            f"From {small.n} to {big.n} processes snapshot goes "
            f"{small.stages['snapshot']:.2f} → {big.stages['snapshot']:.2f} s and impact "
            f"{small.stages['impact']:.2f} → {big.stages['impact']:.2f} s, while "
            f"the delta moves by {grow['delta']:+.2f} s: the per-process "
            f"stages are what grows with N ({per_proc:.2f} ms per added process)."
        )
    extra = big.cold.stages["delta"] - big.stages["delta"]
    text.append(
        f"Without the digest cache the plan takes {big.cold.wall:.2f} s; "
        f"{extra:.2f} s of the difference is the delta hashing both trees again."
    )
    peers = {cmd: t.wall for _, cmd, _, t in big.rows[2:]}
    text.append(
        "The peers are cheaper because each does one slice of the job: `diff -rq` "
        f"({peers['diff -rq --no-dereference OLD NEW']:.2f} s) compares contents only, and "
        f"needrestart ({peers['needrestart -b -r l']:.2f} s) and checkrestart "
        f"({peers['checkrestart']:.2f} s) only find processes already running deleted "
        "files, which none of the benchmark's processes are: nothing in OLD has been "
        "replaced yet, and that foresight is the part only the image pair gives."
    )
    return " ".join(text)


def _changed(old: str, new: str) -> tuple[set[str], dict[str, Any]]:
    out = subprocess.run(
        [IMGDIFF, "diff", old, new, "--json"], capture_output=True, text=True, check=False
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(f"imgdiff diff exited {out.returncode}: {out.stderr[-500:]}")
    doc = json.loads(out.stdout)
    return {c["path"] for c in doc["changes"] if c["status"] != "added"}, doc["stats"]


def _leftovers(old: str) -> list[str]:
    found = [p.name for p in (CGROUP2 / "system.slice").glob("bench-plan-*.service")]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == old:
                    found.append(f"pid {proc.name}")
    return found


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corpus", default=CORPUS, help=f"holds old/ and new/ (default {CORPUS})")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results-plan.md")
    args = ap.parse_args()
    # imgdiff as installed: its modules' bytecode cached (with this variable every run would
    # compile them again); the processes inside OLD keep it (CHILD_ENV)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    old = os.path.realpath(os.path.join(args.corpus, "old"))
    new = os.path.realpath(os.path.join(args.corpus, "new"))
    for tree in (old, new):
        if not os.path.isdir(os.path.join(tree, "usr/bin")):
            print(
                f"image pair not found: {tree} is missing. Build it (as root, about a minute, "
                f"needs the Debian mirrors) with: {BUILD}",
                file=sys.stderr,
            )
            return 2
    if os.geteuid() != 0 or not (CGROUP2 / "cgroup.procs").exists():
        print(f"run as root, with cgroup v2 mounted at {CGROUP2}", file=sys.stderr)
        return 2
    for tool in ("checkrestart", "needrestart", "diff", "chroot"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install debian-goodies needrestart)", file=sys.stderr)
            return 2
    before = _leftovers(old)
    if before:
        print(f"leftovers from an earlier run: {', '.join(before)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    sizes = [int(x) for x in args.sizes.split(",")]
    changed, stats = _changed(old, new)
    results = []
    with tempfile.TemporaryDirectory(prefix="imgdiff-bench-cache-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        run_once(_plan_argv(old, new))  # fills the digest cache once, before any size
        for n in sizes:
            print(f"{n} processes ...", file=sys.stderr)
            results.append(run(old, new, n, args.runs, changed))
    left = _leftovers(old)
    if left:
        print(f"LEFT BEHIND: {', '.join(left)}", file=sys.stderr)
    md = "\n\n".join(
        [
            "## Wall time, beside what an operator would run instead",
            _table(results),
            f"## Stages (medians of {args.runs} `--timings` runs; `other` is start-up, "
            "imports and JSON output)",
            _stage_table(results),
            "## Verdict",
            *(_verdict_text(r) for r in results),
            "## What dominates",
            _dominates(results),
        ]
    )
    print(md)
    if args.write:
        mix = ", ".join(f"{c} {k.name}" for k, c in _counts(sizes[-1]))
        head = (
            "# End-to-end plan on the real image pair\n\n"
            f"Machine: {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}, "
            f"Linux {platform.release()}, {datetime.date.today().isoformat()}. "
            f"Run as root: `.venv/bin/python -m benchmarks.bench_plan --sizes {args.sizes} "
            f"--runs {args.runs} --write`.\n\n"
            f"OLD → NEW: the Debian 12 pair from `{BUILD}` ({stats['modified']} modified, "
            f"{stats['added']} added, {stats['removed']} removed, {stats['unchanged']} "
            f"unchanged files; {stats['mtime_only']} differ in mtime only). Processes run "
            f"inside OLD (`chroot OLD ...`, programs of the image); at {sizes[-1]}: {mix}. "
            f"Of every {UNIT_CYCLE} processes {UNITS} are in a cgroup v2 unit "
            f"(system.slice/bench-plan-1..{UNITS}.service) and {UNIT_CYCLE - UNITS} in none. "
            "Each command is a whole process timed with wait4: medians of "
            f"{args.runs} runs after a warm-up, peak RSS the largest. The peers do different, "
            "smaller jobs, so the ratio column (wall ÷ imgdiff plan warm, same process "
            "count, same run) is what the whole plan costs against each slice, not a race; "
            "`result` is what each reported.\n\n"
        )
        Path(__file__).with_name("results-plan.md").write_text(head + md + "\n")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
