"""Runs the benchmarks in this folder (`python benchmarks/run.py [name ...]`) and prints
their tables. Each `bench_*.py` has a `main()`; ratios are against baselines timed in the
same process, so the numbers compare on a noisy machine."""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

HERE = pathlib.Path(__file__).parent
NAMES = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=" ".join(__doc__.split()),
        epilog="Each benchmark also runs alone: python benchmarks/bench_NAME.py "
        "(bench_pytest_plugin.py takes --repeat N).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"which benchmarks (default: all): {', '.join(NAMES)}")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    for n in args.names:
        if n not in NAMES:
            p.error(f"no benchmark named {n!r}; choose from {', '.join(NAMES)}")
    sys.path.insert(0, str(HERE))
    for n in args.names or NAMES:
        mod = importlib.import_module(f"bench_{n}")
        # bench_pytest_plugin reads its own arguments: give it none (its defaults), not ours
        mod.main([]) if n == "pytest_plugin" else mod.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
