"""Timing helpers for the benchmarks: whole commands, each run's own rusage via wait4."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs


@attrs.frozen
class Timing:
    """Median wall seconds and the largest peak RSS (MiB) over the runs of one command."""

    wall: float
    cpu: float
    peak_mib: float
    runs: int


def run_once(argv: Sequence[str], cwd: str | None = None) -> tuple[float, float, float]:
    """(wall s, cpu s, peak MiB) of one run; output discarded; failure raises."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):  # diff -rq exits 1 when trees differ
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(
    argv: Sequence[str], *, runs: int = 5, warmup: int = 1, cwd: str | None = None
) -> Timing:
    """Median of `runs` runs after `warmup` runs (page cache warm)."""
    for _ in range(warmup):
        run_once(argv, cwd)
    results = [run_once(argv, cwd) for _ in range(runs)]
    return Timing(
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        max(r[2] for r in results),
        runs,
    )


def table(rows: Sequence[tuple[str, str, Timing, Timing | None]]) -> str:
    """Markdown: case, command, wall, cpu, peak, ratio to the baseline."""
    out = [
        "| case | command | wall s (median) | cpu s | peak MiB | ratio vs baseline |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, cmd, t, base in rows:
        ratio = f"{t.wall / base.wall:.2f}x" if base else "baseline"
        out.append(
            f"| {case} | `{cmd}` | {t.wall:.3f} | {t.cpu:.3f} | {t.peak_mib:.0f} | {ratio} |"
        )
    return "\n".join(out)


def pair_arguments(
    doc: str | None, more: Callable[[argparse.ArgumentParser], object] | None = None
) -> tuple[argparse.Namespace, str, str] | None:
    """--corpus/--runs/--write (and what `more` adds) parsed, and the corpus's OLD and NEW
    trees; None (after saying how to build it) when the pair is missing."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--corpus", default=os.environ.get("CORPUS", "/var/tmp/imgdiff-corpus"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    if more is not None:
        more(ap)
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "old").is_dir():
        print(
            f"no image pair in {corpus}: run ../shared/corpus/build-image-pair.sh", file=sys.stderr
        )
        return None
    return args, str(corpus / "old"), str(corpus / "new")
