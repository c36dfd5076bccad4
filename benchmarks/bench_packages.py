"""Package view of a full Debian image vs dpkg's own queries over the same database.

imgdiff builds the whole index (every package, every owned path, usr-merge resolved,
conffiles, md5sums) from the image's files; the baselines are `dpkg-query -W` (list
packages) and `dpkg-query -S` over every regular file of the image (ownership).
Run: `.venv/bin/python -m benchmarks.bench_packages [--corpus DIR] [--write]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Timing, measure, table


def index_once(image: str) -> None:
    """What the benchmark times: read the image and build its package view."""
    from imgdiff.manifest import Manifest
    from imgdiff.packages.view import PackageView, capture_predicate

    view = PackageView.read(Manifest.read(image, use_cache=False, capture=capture_predicate()))
    paths = sum(len(p.files) for p in view.packages)
    print(f"{sum(1 for _ in view.packages)} packages, {paths} owned paths", file=sys.stderr)


def in_process(image: str, runs: int = 5) -> Timing:
    """Median time to build the view from an already-read manifest (no start-up, no walk)."""
    import statistics
    import time

    from imgdiff.manifest import Manifest
    from imgdiff.packages.view import PackageView, capture_predicate

    manifest = Manifest.read(image, use_cache=False, capture=capture_predicate())
    PackageView.read(manifest)  # imports and first-touch costs out of the timing
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        PackageView.read(manifest)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return Timing(median, median, 0.0, runs)


def attributed(image: str, files: list[str]) -> int:
    """How many of `files` imgdiff's package view gives an owner."""
    from imgdiff.manifest import Manifest
    from imgdiff.packages.view import PackageView

    view = PackageView.read(Manifest.read(image, use_cache=False))
    return sum(1 for f in files if view.owners(f))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.environ.get("CORPUS", "/var/tmp/imgdiff-corpus"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--index", help=argparse.SUPPRESS)  # the timed child
    args = ap.parse_args()
    if args.index:
        index_once(args.index)
        return 0
    image = Path(args.corpus) / "new"
    if not (image / "var/lib/dpkg/status").is_file():
        print(
            f"no Debian image at {image}: run ../shared/corpus/build-image-pair.sh", file=sys.stderr
        )
        return 2
    admindir = str(image / "var/lib/dpkg")
    files = sorted(
        "/" + os.path.relpath(os.path.join(d, f), image)
        for d, _, names in os.walk(image)
        for f in names
        if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f))
    )
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as fh:
        fh.write("\0".join(files))
    rows: list[tuple[str, str, Timing, Timing | None]] = []
    w = measure(["dpkg-query", f"--admindir={admindir}", "-W"], runs=args.runs)
    rows.append(("list packages", "dpkg-query -W", w, None))
    s = measure(
        [
            "sh",
            "-c",
            f"xargs -0 dpkg-query --admindir={admindir} -S < {fh.name} >/dev/null 2>&1; true",
        ],
        runs=args.runs,
    )
    rows.append((f"owner of {len(files)} files", "xargs dpkg-query -S", s, None))
    me = measure(
        [sys.executable, "-m", "benchmarks.bench_packages", "--index", str(image)], runs=args.runs
    )
    rows.append(("whole index (walk + all dbs)", "imgdiff PackageView.read", me, s))
    rows.append(
        ("index, in process (dbs only)", "PackageView.read, warm", in_process(str(image)), s)
    )
    found = subprocess.run(
        ["sh", "-c", f"xargs -0 dpkg-query --admindir={admindir} -S < {fh.name} 2>/dev/null"],
        capture_output=True, text=True, check=False,
    ).stdout.count("\n")  # fmt: skip
    os.unlink(fh.name)
    ours = attributed(str(image), files)
    md = table(rows) + (
        f"\n\nOwner found for {ours} of {len(files)} regular files by imgdiff, "
        f"{found} by `dpkg-query -S` (it misses files at their usr-merged path, e.g. "
        "`/usr/lib/x86_64-linux-gnu/libc.so.6`, which dpkg lists under `/lib`)."
    )
    print(md)
    if args.write:
        head = (
            "# Package view benchmark\n\nThe `new` image of `../shared/corpus/build-image-pair.sh`"
            " (Debian 12, ~130 dpkg packages, pip distributions under /usr/local); page cache "
            f"warm; medians of {args.runs} runs; the ratio is imgdiff's whole index over "
            "dpkg-query -S for ownership alone.\n\n"
        )
        Path(__file__).with_name("results-packages.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
