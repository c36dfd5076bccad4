"""Time and peak memory per entry as images grow: 10k, 100k and 1M entries.

Synthetic tar images (directories of 1,000 small files each) are generated once under
benchmarks/.data (about 0.6 GB for the largest) and diffed against a copy with 1% of the
files changed. Run: `.venv/bin/python -m benchmarks.bench_scale [--sizes 10000,100000]`.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

from benchmarks.common import measure

DATA = Path(__file__).with_name(".data")
IMGDIFF = str(Path(sys.executable).with_name("imgdiff"))


def synth(path: Path, n: int, changed_every: int = 0) -> Path:
    """A tar of `n` entries; with `changed_every`, every k-th file has other content."""
    if path.exists():
        return path
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
        made = 0
        d = 0
        while made < n:
            dinfo = tarfile.TarInfo(f"usr/share/synth/d{d:05d}")
            dinfo.type = tarfile.DIRTYPE
            dinfo.mode = 0o755
            tf.addfile(dinfo)
            made += 1
            for i in range(min(999, n - made)):
                body = f"file {d}/{i}\n".encode()
                if changed_every and (made % changed_every == 0):
                    body = body.upper()
                info = tarfile.TarInfo(f"usr/share/synth/d{d:05d}/f{i:03d}.txt")
                info.size = len(body)
                info.mtime = 1_700_000_000
                tf.addfile(info, _Bytes(body))
                made += 1
            d += 1
    tmp.rename(path)
    return path


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    lines = [
        "| entries per image | wall s | peak MiB | µs per entry | KiB per entry |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in (int(x) for x in args.sizes.split(",")):
        a = synth(DATA / f"synth-{n}.tar", n)
        b = synth(DATA / f"synth-{n}-changed.tar", n, changed_every=100)
        t = measure([IMGDIFF, "diff", str(a), str(b), "--json"], runs=args.runs, warmup=0)
        row = (
            f"| {n:,} | {t.wall:.2f} | {t.peak_mib:.0f} | {t.wall / n * 1e6:.1f} "
            f"| {t.peak_mib * 1024 / n:.2f} |"
        )
        lines.append(row)
        print(row, file=sys.stderr)
    md = "\n".join(lines)
    print(md)
    if args.write:
        head = (
            "# Scale: synthetic tar images, diffed against a copy with 1% of files changed\n\n"
            "Whole `imgdiff diff A B --json` process (two images read, compared, JSON out); "
            "peak is the largest RSS of the process tree's biggest process.\n\n"
        )
        Path(__file__).with_name("results-scale.md").write_text(head + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
