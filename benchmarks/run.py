"""Runs every benchmark in this folder (`python benchmarks/run.py [name ...]`) and prints
their tables. Each `bench_*.py` has a `main()`; ratios are against baselines timed in the
same process, so the numbers compare on a noisy machine."""
from __future__ import annotations

import importlib
import pathlib
import sys

HERE = pathlib.Path(__file__).parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    wanted = [n for n in names if not argv or any(a in n for a in argv)]
    for n in wanted:
        importlib.import_module(n).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
