"""Delta engine vs the tools users would pick instead, on the real Debian image pair.

Build the pair once with `../shared/corpus/build-image-pair.sh` (root, network; about a
minute), then: `.venv/bin/python -m benchmarks.bench_delta [--corpus DIR] [--runs N]
[--before SRC]`. Prints a markdown table (and writes it to benchmarks/results-delta.md
with --write). Within each case the commands run interleaved, round after round (peer,
imgdiff, peer, ...), so a machine whose speed drifts slows them alike; the table gives
each command's fastest and median wall time, its median CPU time, its peak RSS, and the
ratio of its fastest run to the baseline's fastest, all from one run on one machine.
`--before SRC` adds the same imgdiff commands run from another source tree (a checkout
of an earlier commit, put first on PYTHONPATH), for before/after figures.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

from benchmarks.common import pair_arguments, run_once

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))

# where a cold `imgdiff diff --json --no-cache` spends its time: the same stages, timed one
# by one in a child (the differing-bytes check timed through the name `delta` calls)
PHASES = """
import json, sys, time
t0 = time.perf_counter()
import imgdiff.cli, imgdiff.delta as delta, imgdiff.pipeline
from imgdiff.manifest import Manifest
from imgdiff.packages.view import annotate_owners, capture_predicate
from imgdiff.report.json import document
t1 = time.perf_counter()
om, nm = Manifest.read_pair(sys.argv[1], sys.argv[2], use_cache=False, capture=capture_predicate())
t2 = time.perf_counter()
spent = []
inner = delta.differing
def timed(*args, **kw):
    t = time.perf_counter()
    try:
        return inner(*args, **kw)
    finally:
        spent.append(time.perf_counter() - t)
delta.differing = timed
changes = delta.compare(om, nm, classify=delta.classifier(om, nm))
t3 = time.perf_counter()
owned = annotate_owners(changes, om, nm)
t4 = time.perf_counter()
text = json.dumps(document(owned))
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "read": t2 - t1, "compare": t3 - t2,
                  "bytes": sum(spent), "owners": t4 - t3, "json": t5 - t4}))
"""
PHASE_ROWS = (
    ("start", "interpreter start-up (`python -c pass`)"),
    ("imports", "imports (the modules `diff` loads; attrs among them)"),
    ("read", "reading both trees (OLD in a forked worker)"),
    ("compare", "comparing and classifying"),
    ("bytes", "of which: byte-for-byte compare of same-size pairs (forked workers)"),
    ("owners", "naming owning packages (dpkg databases)"),
    ("json", "the JSON document"),
)


def phases(old: str, new: str, runs: int) -> str:
    """Median milliseconds of each stage of a cold diff, as a Markdown table."""
    got: dict[str, list[float]] = {key: [] for key, _ in PHASE_ROWS}
    for _ in range(runs):
        got["start"].append(run_once((sys.executable, "-c", "pass"))[0])
        out = subprocess.run(
            [sys.executable, "-c", PHASES, old, new], capture_output=True, text=True, check=True
        ).stdout
        for key, seconds in json.loads(out).items():
            got[key].append(seconds)
    rows = ["| stage of a cold diff | ms (median) |", "|---|---:|"]
    rows += [f"| {label} | {statistics.median(got[key]) * 1000:.0f} |" for key, label in PHASE_ROWS]
    return "\n".join(rows)


@attrs.frozen
class Command:
    """One row: a command line, the case it belongs to, whether it is the case's baseline."""

    case: str
    label: str
    argv: tuple[str, ...]
    baseline: bool = False
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None  # `python -m` puts it first on sys.path


@attrs.frozen
class Result:
    """The runs of one command: wall seconds each, CPU seconds each, largest peak MiB."""

    command: Command
    walls: tuple[float, ...]
    cpus: tuple[float, ...]
    peak_mib: float


def _run(command: Command) -> tuple[float, float, float]:
    if not command.env:
        return run_once(command.argv, command.cwd)
    saved = {k: os.environ.get(k) for k, _ in command.env}
    os.environ.update(dict(command.env))
    try:
        return run_once(command.argv, command.cwd)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interleaved(commands: Sequence[Command], runs: int, warmup: int = 1) -> list[Result]:
    """Every command once per round, `warmup` rounds not counted, then `runs` rounds."""
    for _ in range(warmup):
        for c in commands:
            _run(c)
    samples: list[list[tuple[float, float, float]]] = [[] for _ in commands]
    for _ in range(runs):
        for i, c in enumerate(commands):
            samples[i].append(_run(c))
            print(f"{c.case:12} {samples[i][-1][0]:7.3f}s  {c.label}", file=sys.stderr)
    return [
        Result(c, tuple(s[0] for s in got), tuple(s[1] for s in got), max(s[2] for s in got))
        for c, got in zip(commands, samples, strict=True)
    ]


def table(results: Sequence[Result]) -> str:
    """Markdown: case, command, fastest and median wall, median CPU, peak, ratio."""
    out = [
        "| case | command | wall s (min) | wall s (median) | cpu s (median) | peak MiB "
        "| ratio vs baseline (min) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base: dict[str, float] = {}
    for r in results:
        if r.command.baseline:
            base[r.command.case] = min(r.walls)
    for r in results:
        c = r.command
        ratio = "baseline" if c.baseline else f"{min(r.walls) / base[c.case]:.2f}x"
        out.append(
            f"| {c.case} | `{c.label}` | {min(r.walls):.3f} | {statistics.median(r.walls):.3f} "
            f"| {statistics.median(r.cpus):.3f} | {r.peak_mib:.0f} | {ratio} |"
        )
    return "\n".join(out)


def main() -> int:
    def before(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--before", help="an earlier source tree: its imgdiff runs beside this")
        ap.add_argument("--before-name", help="what --before is, for the table (a commit)")

    parsed = pair_arguments(__doc__, before)
    if parsed is None:
        return 2
    args, old, new = parsed
    corpus = Path(args.corpus)
    cache = tempfile.mkdtemp(prefix="imgdiff-bench-cache-")
    tmp = tempfile.mkdtemp(prefix="imgdiff-bench-x-")
    os.environ["XDG_CACHE_HOME"] = cache
    before_env = (("PYTHONPATH", args.before),) if args.before else None

    def ours(case: str, label: str, argv: list[str]) -> list[Command]:
        rows = [Command(case, f"imgdiff {label}", (IMGDIFF, *argv))]
        if before_env:  # the module, so PYTHONPATH decides which imgdiff runs
            rows.append(
                Command(case, f"imgdiff {label} (before)",
                        (sys.executable, "-m", "imgdiff", *argv), env=before_env,
                        cwd=args.before)
            )  # fmt: skip
        return rows

    # bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE set, every run
    # would otherwise compile imgdiff's sources again (about 0.1 s of CPU)
    for src in (Path(__file__).parent.parent, *([Path(args.before)] if args.before else [])):
        compileall.compile_dir(src / "imgdiff", quiet=1)
    try:
        saved = [os.path.join(tmp, "old.manifest"), os.path.join(tmp, "new.manifest")]
        # in a child: this process stays small, and a child's peak RSS starts from it
        save = (
            "import sys; from imgdiff import Manifest; Manifest.read(sys.argv[1]).save(sys.argv[2])"
        )
        for tree, path in zip((old, new), saved, strict=True):
            subprocess.run([sys.executable, "-c", save, tree, path], check=True)
        cases = [
            [
                Command("dir, cold", "diff -rq --no-dereference",
                        ("diff", "-rq", "--no-dereference", old, new), baseline=True),
                Command("dir, cold", "rsync -anic --delete",
                        ("rsync", "-anic", "--delete", old + "/", new + "/")),
                *ours("dir, cold", "diff --json --no-cache", ["diff", old, new, "--json",
                                                              "--no-cache"]),
            ],
            [
                Command("dir, warm", "find -printf (metadata walk)",
                        ("sh", "-c", f"find {old} {new} -printf '%p %s %T@ %m\\n' >/dev/null"),
                        baseline=True),
                *ours("dir, warm", "diff --json (digest cache)", ["diff", old, new, "--json"]),
                *ours("dir, warm", "diff --json (saved manifests)",
                      ["diff", *saved, "--json"]),
            ],
        ]  # fmt: skip
        if (corpus / "old.tar").is_file():
            ot, nt = str(corpus / "old.tar"), str(corpus / "new.tar")
            script = (
                f"rm -rf {tmp}/a {tmp}/b && mkdir {tmp}/a {tmp}/b && tar -xf {ot} -C {tmp}/a "
                f"&& tar -xf {nt} -C {tmp}/b "
                f"&& diff -rq --no-dereference {tmp}/a {tmp}/b >/dev/null; rm -rf {tmp}/a {tmp}/b"
            )
            cases.append(
                [
                    Command("tar", "extract both + diff -rq", ("sh", "-c", script), baseline=True),
                    *ours("tar", "diff --json", ["diff", ot, nt, "--json"]),
                ]
            )
        load_start = os.getloadavg()[0]
        results = [r for commands in cases for r in interleaved(commands, args.runs)]
        stages = phases(old, new, args.runs)
        load_end = os.getloadavg()[0]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    md = table(results) + "\n\n" + stages
    print(md)
    if args.write:
        head = (
            "# Delta engine benchmark\n\nReal Debian 12 image pair from "
            "`../shared/corpus/build-image-pair.sh`; page cache warm; within each case the "
            f"commands ran interleaved, {args.runs} rounds after one warm-up round; ratios "
            "are of fastest runs, to the first row of each case, from this one run; imgdiff "
            f"ran from compiled bytecode, as installed. Machine: {os.cpu_count()} cores, "
            f"load average {load_start:.1f} at the start and {load_end:.1f} at the end (a "
            "shared machine: other work slows the peers' system calls and imgdiff's Python "
            "unevenly, so ratios move with the load; read them from one run)."
        )
        head += (
            " The second table times the stages of the cold diff one by one, in a child "
            f"process of their own (medians of {args.runs} runs): where the time goes."
        )
        if args.before:
            head += (
                f" Rows marked `(before)` ran imgdiff from {args.before_name or args.before} "
                "(`--before`), interleaved with the others."
            )
        head += "\n\n"
        Path(__file__).with_name("results-delta.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
