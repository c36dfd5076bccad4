"""`python -m benchmarks report [...]`: the benchmark report (benchmarks/report.py).

Each bench_*.py runs on its own as `python -m benchmarks.bench_NAME`.
"""

from __future__ import annotations

import sys

from benchmarks import report


def main(argv: list[str]) -> int:
    """Dispatch the one verb this package has."""
    if not argv or argv[0] != "report":
        print("usage: python -m benchmarks report [--quick] [--out DIR] [...]", file=sys.stderr)
        return 2
    return report.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
