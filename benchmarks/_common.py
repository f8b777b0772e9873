"""Shared benchmark helpers: medians of repeated timings, ratios against a baseline
measured in the same process, and one table format for every benchmark."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], *, number: int = 100, repeat: int = 7, warmup: int = 1) -> float:
    """Median over `repeat` rounds of the mean seconds per call of `fn` (`number` calls a round)."""
    for _ in range(warmup * number // 10 + 1):
        fn()
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number)
    return statistics.median(rounds)


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    number: int = 100,
    repeat: int = 7,
    sync: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Times several functions round-robin (so machine noise hits them alike); medians.
    `sync` runs before each timed batch, outside the timing (e.g. an MPI barrier)."""
    for fn in fns.values():
        for _ in range(max(1, number // 10)):
            fn()
    acc: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            acc[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in acc.items()}


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """rows: (case, measured, ratio, target)."""
    head = ("case", "measured", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
