"""`imgdiff verify TREE IMAGE` vs the tools users would pick to check a tree, on the real
Debian image: is a live copy of OLD still OLD (the plan's drift check), and is it NEW?

TREE is a fresh `cp -a` copy of OLD under /var/tmp (other inodes, same contents and
metadata), so every same-size file must really be compared. imgdiff compares type, mode,
owner, xattrs, link targets and contents and leaves out what a running system writes for
itself (`drift_ignore`); `diff -rq` compares contents only, `rsync -anic` checksums
contents and compares metadata. Medians with the page cache warm; the digest cache is
warmed by the first run except in the `--no-cache` rows.
Run: `.venv/bin/python -m benchmarks.bench_verify [--corpus DIR] [--runs N] [--write]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
    rows: list[tuple[str, str, Timing, Timing | None]] = []
    work = tempfile.mkdtemp(prefix="imgdiff-bench-verify-", dir="/var/tmp")
    cache = tempfile.mkdtemp(prefix="imgdiff-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    try:
        live = os.path.join(work, "live")
        subprocess.run(["cp", "-a", old, live], check=True)

        def add(case: str, label: str, argv: list[str], base: Timing | None) -> Timing:
            t = measure(argv, runs=args.runs)
            rows.append((case, label, t, base))
            print(f"{case:30} {t.wall:7.3f}s  {t.peak_mib:6.0f} MiB  {label}", file=sys.stderr)
            return t

        saved = os.path.join(work, "old.manifest")
        subprocess.run([IMGDIFF, "manifest", old, "-o", saved], check=True)
        for case, image in (("copy of OLD vs OLD (same)", old), ("copy of OLD vs NEW", new)):
            base = add(case, "diff -rq --no-dereference", ["diff", "-rq", "--no-dereference",
                                                            live, image], None)  # fmt: skip
            add(case, "rsync -anic --delete", ["rsync", "-anic", "--delete", live + "/",
                                                image + "/"], base)  # fmt: skip
            add(case, "imgdiff verify --json", [IMGDIFF, "verify", live, image, "--json"], base)
            add(case, "imgdiff verify --json --no-cache",
                [IMGDIFF, "verify", live, image, "--json", "--no-cache"], base)  # fmt: skip
            if image == old:  # what a host keeps: OLD's saved manifest, not OLD itself
                add(case, "imgdiff verify TREE old.manifest --json",
                    [IMGDIFF, "verify", live, saved, "--json"], base)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.write:
        head = (
            "# `imgdiff verify` vs `diff -rq` and `rsync -anic`\n\n"
            f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}. TREE is a "
            "`cp -a` copy of OLD from `../shared/corpus/build-image-pair.sh` (about 10k "
            "entries, 239 MB). Medians of "
            f"{args.runs} runs after a warm-up, page cache warm; ratios against `diff -rq` "
            "in the same case. `old.manifest` is `imgdiff manifest OLD`: a host keeps "
            "that, not OLD's tree.\n\n"
        )
        Path(__file__).with_name("results-verify.md").write_text(head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
