"""Delta engine vs the tools users would pick instead, on the real Debian image pair.

Build the pair once with `../shared/corpus/build-image-pair.sh` (root, network; about a
minute), then: `.venv/bin/python -m benchmarks.bench_delta [--corpus DIR] [--runs N]`.
Prints a markdown table (and writes it to benchmarks/results-delta.md with --write):
wall time medians with the page cache warm, peak RSS, and each row's ratio to its
baseline, all from one run on one machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Timing, measure, pair_arguments, table

IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))


def main() -> int:
    parsed = pair_arguments(__doc__)
    if parsed is None:
        return 2
    args, old, new = parsed
    corpus = Path(args.corpus)
    rows: list[tuple[str, str, Timing, Timing | None]] = []
    r = args.runs

    def add(case: str, label: str, argv: list[str], base: Timing | None, **kw: object) -> Timing:
        t = measure(argv, runs=r, **kw)  # type: ignore[arg-type]
        rows.append((case, label, t, base))
        print(f"{case:28} {t.wall:7.3f}s  {t.peak_mib:6.0f} MiB  {label}", file=sys.stderr)
        return t

    cache = tempfile.mkdtemp(prefix="imgdiff-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    try:
        diffrq = add(
            "dir, cold",
            "diff -rq --no-dereference",
            ["diff", "-rq", "--no-dereference", old, new],
            None,
        )
        add(
            "dir, cold",
            "rsync -anic --delete",
            ["rsync", "-anic", "--delete", old + "/", new + "/"],
            diffrq,
        )
        add(
            "dir, cold",
            "imgdiff diff --json --no-cache",
            [IMGDIFF, "diff", old, new, "--json", "--no-cache"],
            diffrq,
        )
        walk = add(
            "dir, warm",
            "find -printf (metadata walk)",
            ["sh", "-c", f"find {old} {new} -printf '%p %s %T@ %m\\n' >/dev/null"],
            None,
        )
        add(
            "dir, warm",
            "imgdiff diff --json (digest cache)",
            [IMGDIFF, "diff", old, new, "--json"],
            walk,
            warmup=1,
        )
        if (corpus / "old.tar").is_file():
            ot, nt = str(corpus / "old.tar"), str(corpus / "new.tar")
            tmp = tempfile.mkdtemp(prefix="imgdiff-bench-x-")
            script = (
                f"rm -rf {tmp}/a {tmp}/b && mkdir {tmp}/a {tmp}/b && tar -xf {ot} -C {tmp}/a "
                f"&& tar -xf {nt} -C {tmp}/b "
                f"&& diff -rq --no-dereference {tmp}/a {tmp}/b >/dev/null; rm -rf {tmp}/a {tmp}/b"
            )
            ext = add("tar", "extract both + diff -rq", ["sh", "-c", script], None)
            add("tar", "imgdiff diff --json", [IMGDIFF, "diff", ot, nt, "--json"], ext)
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    md = table(rows)
    print(md)
    if args.write:
        head = (
            "# Delta engine benchmark\n\nReal Debian 12 image pair from "
            "`../shared/corpus/build-image-pair.sh`; page cache warm; medians of "
            f"{r} runs; ratios are to the first row of each case, from this one run.\n\n"
        )
        Path(__file__).with_name("results-delta.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
