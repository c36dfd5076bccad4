"""Overhead of the import tracer on a program importing a few hundred stdlib modules.

`.venv/bin/python -m benchmarks.bench_trace [--runs N] [--cpu N] [--callgrind] [--write]`
times, with `time.perf_counter` around each subprocess, four programs: an import-heavy one (every
importable top-level stdlib module, ~280 imports, ~500 modules loaded) and an empty one, each
plain and traced through the start-up hook (`PYTHONPATH` sitecustomize, as
`python -m imgdiff.trace -- python3 ...` runs a service). Runs alternate between the four so drift
hits all alike; medians are reported. The overhead is the issue's definition: (traced - plain) of
the heavy program minus (traced - plain) of the empty one — the fixed start-up cost, reported on
its own row — as a share of the plain heavy program's time. `--write` also writes
benchmarks/results-trace.md.

The garbage collector's phase: a program runs a full collection when an allocation crosses a
threshold, so a few hundred more long-lived objects (the tracer's own) can add one full
collection to a program that ended just short of it, or none at all; in the heavy program that
one collection is 1.3% of its instructions. Whether it falls inside the run is luck of the
program, not a cost of each import, so each round gives the heavy program (plain and traced
alike) one of `PHASES` throwaway long-lived objects before its imports, which moves where the
thresholds fall; the figures are over all phases, and the instruction count lists each.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgdiff.trace import hooks, spool

RESULTS = Path(__file__).with_name("results-trace.md")

# importable but unfit to import in a loop: GUI, side effects (browser, prints, writes grammar
# pickles into the stdlib as root), test suites, other platforms
SKIP = {
    "__main__",
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "test",
    "_tkinter",
    "msvcrt",
    "winreg",
    "winsound",
    "_winapi",
    "nt",
    "_msi",
    "msilib",
    "_overlapped",
    "_wmi",
}

PROBE = """
import contextlib, importlib, io, sys, warnings
warnings.simplefilter("ignore")
ok = []
for name in sys.argv[1:]:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            importlib.import_module(name)
        ok.append(name)
    except BaseException:
        pass
print(" ".join(ok))
"""


def importable_stdlib() -> list[str]:
    """Top-level stdlib modules that import cleanly here, found in a throwaway process."""
    names = sorted(sys.stdlib_module_names - SKIP)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *names], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run: perf_counter around it, and the child's own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def instructions(argv: list[str], env: dict[str, str], out: Path) -> tuple[int, str]:
    """Instructions one run executes, counted by callgrind: the same count whatever else
    the machine does (the process's own user-space work; system calls are not counted);
    and what the run printed."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1]), run.stdout
    raise RuntimeError(f"{out}: no totals line")


# long-lived objects the heavy program makes before its imports: a quarter of the collector's
# first threshold (700) apart, so that each phase of its schedule is met once
PHASES = (0, 175, 350, 525)

Cases = dict[tuple[str, str], tuple[list[str], dict[str, str]]]


def at_phase(cases: Cases, phase: int) -> Cases:
    """The four programs, the heavy one given `phase` throwaway objects."""
    return {
        case: ([*argv, str(phase)] if case[0] == "heavy" else argv, env)
        for case, (argv, env) in cases.items()
    }


def counted_overhead(cases: Cases, work: Path) -> str:
    """The overhead by instructions (the same definition), one callgrind run per program and
    phase; the empty program's fixed cost is counted once. The full collections are those of
    the counted runs (valgrind's own environment variables move the collector's phase)."""
    out = work / "callgrind.out"
    n = {
        case: instructions(argv, env, out)[0]
        for case, (argv, env) in cases.items()
        if case[0] == "empty"
    }
    fixed = n["empty", "traced"] - n["empty", "plain"]
    shares, parts = [], []
    for phase in PHASES:
        (plain, plain_out), (traced, traced_out) = (
            instructions(argv, env, out)
            for case, (argv, env) in at_phase(cases, phase).items()
            if case[0] == "heavy"
        )
        shares.append((traced - plain - fixed) / plain * 100)
        parts.append(
            f"{phase}: {shares[-1]:.2f}% ({traced - plain - fixed:,} of {plain:,}; "
            f"{plain_out.split()[1]} / {traced_out.split()[1]})"
        )
    return (
        f"- **instructions (callgrind, user space): import overhead "
        f"{statistics.mean(shares):.2f}%**, the mean over the collector's phases; a count the "
        "machine's other work cannot change, unlike the clocks above. By phase (throwaway "
        f"objects: share, instructions traced - plain - fixed ({fixed:,}) of plain, full "
        "collections plain / traced): " + "; ".join(parts)
    )


def probe(
    heavy: Path, plain_env: dict[str, str], traced_env: dict[str, str]
) -> tuple[str, dict[int, dict[str, str]]]:
    """Untimed: the heavy program's module count, and its full collections plain and traced
    at each phase."""
    full: dict[int, dict[str, str]] = {}
    loaded = ""
    for phase in PHASES:
        full[phase] = {}
        for how, env in (("plain", plain_env), ("traced", traced_env)):
            out = subprocess.run(
                [sys.executable, str(heavy), str(phase)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            loaded, full[phase][how] = out[0], out[1]
    return loaded, full


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--cpu", type=int, help="pin this process and its children to one CPU")
    ap.add_argument(
        "--callgrind", action="store_true", help="also count instructions (valgrind; ~1 min)"
    )
    args = ap.parse_args()
    if args.runs < 10:
        ap.error("--runs: at least 10 (medians)")
    return args


def main() -> int:
    args = parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    work = Path(tempfile.mkdtemp(prefix="imgdiff-bench-trace-"))
    try:
        names = importable_stdlib()
        heavy = work / "heavy.py"
        heavy.write_text(
            "import sys\n_phase = [[] for _ in range(int(sys.argv[1]))]\n"
            "import warnings\nwarnings.simplefilter('ignore')\n"
            + "".join(f"import {n}\n" for n in names)
            # the module count, and how many full collections the program's garbage collector
            # ran: a few hundred more objects can make it cross the threshold once more
            + "import gc, sys\nprint(len(sys.modules), gc.get_stats()[2]['collections'])\n"
        )
        empty = work / "empty.py"
        empty.write_text("")
        spool_dir = work / "spool"
        # bytecode cached as an installed system has it (tracer.py included), in a private
        # directory: the repository and the stdlib stay untouched
        skip = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
        plain_env = {k: v for k, v in os.environ.items() if k not in skip}
        plain_env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        # one hash seed: set and dict sizes, so the allocations the collector counts, repeat
        plain_env["PYTHONHASHSEED"] = "0"
        traced_env = hooks.child_env(plain_env, str(spool_dir))
        loaded, full = probe(heavy, plain_env, traced_env)

        cases: Cases = {
            ("heavy", "plain"): ([sys.executable, str(heavy)], plain_env),
            ("heavy", "traced"): ([sys.executable, str(heavy)], traced_env),
            ("empty", "plain"): ([sys.executable, str(empty)], plain_env),
            ("empty", "traced"): ([sys.executable, str(empty)], traced_env),
        }
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {case: [] for case in cases}
        for argv, env in at_phase(cases, 0).values():  # warm the page cache, write bytecode
            once(argv, env)
            once(argv, env)
        counted = counted_overhead(cases, work) if args.callgrind else ""
        records = 0
        for n in range(args.runs):
            phased = at_phase(cases, PHASES[n % len(PHASES)])
            for case, (argv, env) in phased.items():  # same order each round: pairs stay close
                runs[case].append(once(argv, env))
                for pid, start in spool.list_spool(str(spool_dir)):  # untimed housekeeping
                    if case == ("heavy", "traced"):
                        records = len(spool.read_spool(str(spool_dir), pid, start) or [])
                    os.unlink(spool_dir / f"{pid}-{start}.jsonl")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        "| program | clock | plain ms | traced ms | traced - plain ms |",
        "|---|---|---:|---:|---:|",
    ]
    verdicts = []
    for i, clock in enumerate(("wall", "cpu")):
        med = {case: statistics.median(r[i] for r in rs) * 1000 for case, rs in runs.items()}
        fixed = med["empty", "traced"] - med["empty", "plain"]
        extra = med["heavy", "traced"] - med["heavy", "plain"]
        overhead = (extra - fixed) / med["heavy", "plain"] * 100
        # the same per round of four runs (they ran back to back): drift cancels out
        per_round = sorted(
            (
                (runs["heavy", "traced"][n][i] - runs["heavy", "plain"][n][i])
                - (runs["empty", "traced"][n][i] - runs["empty", "plain"][n][i])
            )
            / runs["heavy", "plain"][n][i]
            * 100
            for n in range(args.runs)
        )
        q1, q3 = per_round[args.runs // 4], per_round[3 * args.runs // 4]
        rows.append(
            f"| empty (fixed start-up) | {clock} | {med['empty', 'plain']:.1f} "
            f"| {med['empty', 'traced']:.1f} | {fixed:.1f} |"
        )
        rows.append(
            f"| {len(names)} stdlib imports ({loaded} modules) | {clock} "
            f"| {med['heavy', 'plain']:.1f} | {med['heavy', 'traced']:.1f} | {extra:.1f} |"
        )
        verdicts.append(
            f"- **{clock}: import overhead {overhead:.2f}%** = ({extra:.1f} - {fixed:.1f}) ms / "
            f"{med['heavy', 'plain']:.1f} ms; per round of four runs: median "
            f"{statistics.median(per_round):.2f}%, middle half {q1:.2f}% to {q3:.2f}%; "
            f"{(extra - fixed) / max(records, 1) * 1000:.1f} us per record ({records} records)"
        )
    verdicts.append(
        "- full garbage collections in the heavy program (timed runs), plain / traced, by phase: "
        + ", ".join(f"{p}: {full[p]['plain']} / {full[p]['traced']}" for p in PHASES)
        + " (one is 1.3% of its instructions; see the note on phases)"
    )
    report = "\n".join([*rows, "", *verdicts, *([counted] if counted else [])])
    print(report)
    if args.write:
        RESULTS.write_text(
            "# Import tracer overhead\n\n"
            f"Python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPUs); "
            f"medians of {args.runs} alternating runs per program: wall time by "
            "`time.perf_counter` around each subprocess, cpu time (user + sys) from its rusage. "
            "Traced = the start-up hook on PYTHONPATH, spool in a temporary directory; bytecode "
            "cached (PYTHONPYCACHEPREFIX) for both, tracer.py included, as after an install. "
            f"{f'Pinned to CPU {args.cpu}. ' if args.cpu is not None else ''}"
            "Overhead = (traced - plain) of the heavy program minus the same for the empty "
            "program, as a share of the plain heavy program. Rounds rotate the heavy program "
            f"through {len(PHASES)} phases of the garbage collector's schedule "
            f"({', '.join(map(str, PHASES))} "
            "throwaway long-lived objects made before its imports, the same plain and traced): "
            "whether a full collection falls inside the run is luck of the program, and the "
            "tracer's own few hundred objects can tip it either way. From one run on one machine. "
            "`--callgrind` adds the same overhead counted in instructions, one valgrind run "
            "per program: on a shared machine the clocks move by several percent between "
            "runs of the same build, the count does not.\n\n" + report + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
