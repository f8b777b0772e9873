"""Cost of the pytest NaN plugin: the project's own test suite run with
`--tracetensor-nan=all` against `--tracetensor-nan=off` (target: at most 1.2x), each in
a fresh subprocess, interleaved, median of a few; then the per-step cost of the
listener on a small eager training step, to show where the time goes.

`python benchmarks/bench_pytest_plugin.py [--repeat N] [pytest args, default: tests/]`
"""

from __future__ import annotations

import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

from _common import fmt_time, interleaved, print_table

ROOT = pathlib.Path(__file__).resolve().parent.parent


def suite_time(mode: str, targets: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the pytest process and the children it waited for)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--tracetensor-nan={mode}", *targets]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # failures are expected in `all` mode (tests that make NaN on purpose); only time counts
    subprocess.run(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def bench_suite(targets: list[str], repeat: int) -> list[tuple[str, str, str, str]]:
    wall: dict[str, list[float]] = {"off": [], "all": []}
    cpu: dict[str, list[float]] = {"off": [], "all": []}
    for _ in range(repeat):
        for mode in wall:  # interleaved, so machine noise hits every mode alike
            w, c = suite_time(mode, targets)
            wall[mode].append(w)
            cpu[mode].append(c)
    label = " ".join(targets)
    rows = []
    for kind, d in (("wall", wall), ("cpu", cpu)):
        med = {m: statistics.median(v) for m, v in d.items()}
        for m in med:
            samples = ", ".join(f"{x:.1f}" for x in d[m])
            rows.append(
                (
                    f"{kind}: pytest {label} --tracetensor-nan={m} [{samples}]",
                    fmt_time(med[m]),
                    f"{med[m] / med['off']:.2f}x",
                    "baseline" if m == "off" else "<= 1.2x",
                )
            )
    return rows


def bench_step() -> list[tuple[str, str, str, str]]:
    import tracetensor as tt
    from tracetensor.nancheck import Numerics

    w = tt.randn(32, 16, requires_grad=True)
    x = tt.randn(64, 32)

    def step():
        w.grad = None
        (x @ w).tanh().softmax(-1).log().mean().backward()

    def with_plugin():
        with Numerics():
            step()

    res = interleaved({"none": step, "plugin": with_plugin}, number=200, repeat=5)
    return [
        ("eager step, no listener", fmt_time(res["none"]), "1.00x", "baseline"),
        (
            "eager step, plugin listening (summaries+stacks)",
            fmt_time(res["plugin"]),
            f"{res['plugin'] / res['none']:.2f}x",
            "info",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    repeat = 3
    if "--repeat" in argv:
        i = argv.index("--repeat")
        repeat = int(argv[i + 1])
        del argv[i : i + 2]
    targets = argv or ["tests/"]
    print_table(
        f"pytest plugin: suite wall time (subprocesses, interleaved, median of {repeat})", bench_suite(targets, repeat)
    )
    print_table("pytest plugin: per-step cost of listening", bench_step())


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    main()
