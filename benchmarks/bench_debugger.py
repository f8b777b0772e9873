"""The debugger at a million events: a 1,000,000-event eager recording (one run per
`optimizer.step()`, a NaN made at 90 % of the way), opened by `tracetensor debug` in line
mode (wall time including process start, peak RSS) and in the TUI (pilot: time until the
tensor list shows, and each command's latency). Ratios are against the same process start
doing nothing (`tracetensor debug --help`). `python benchmarks/run.py debugger`
(TT_BENCH_EVENTS=N for a smaller trace; the file is kept in TT_BENCH_DIR, default the temp dir)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _bigtrace import make
from _common import fmt_time, print_table

# runs the debug command and reports its own peak RSS (ru_maxrss of the one child)
_RSS = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(p.stdout)\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('CPU_S', u.ru_utime + u.ru_stime, 'MAXRSS_KB', u.ru_maxrss)\n"
)


def _debug(path: str, *args: str) -> tuple[float, float, int, str]:
    """(wall seconds of `tracetensor debug path *args`, its CPU seconds, its peak RSS in bytes,
    its output). CPU time is what a busy shared machine does not inflate."""
    argv = [sys.executable, "-c", _RSS, sys.executable, "-m", "tracetensor", "debug", path, *args]
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    tail = out.stdout.rsplit("CPU_S", 1)[1].split()
    return wall, float(tail[0]), int(tail[2]) * 1024, out.stdout


def bench_line_mode(path: str, culprit_run: int, repeat: int = 3) -> list[tuple[str, str, str, str]]:
    cases = {
        "process start (debug --help)": ("--help",),
        'debug -c "lt -f has_inf_or_nan"': ("-c", "lt -f has_inf_or_nan"),
        'debug -c "lt -t linear"': ("-c", "lt -t linear"),
        'debug -c "lt -a -f has_inf_or_nan"': ("-c", "lt -a -f has_inf_or_nan"),
    }
    goals = {'debug -c "lt -f has_inf_or_nan"': "<= 2 s", 'debug -c "lt -t linear"': "<= 1.5 s"}
    walls: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    rss, right = 0, True
    for _ in range(repeat):  # round-robin: machine noise hits every case alike
        for k, args in cases.items():
            w, c, r, out = _debug(path, *args)
            walls[k].append(w)
            cpus[k].append(c)
            if args[0] == "-c":
                rss = max(rss, r)
            if "has_inf_or_nan" in k and "-a" not in k:
                right = right and f"run {culprit_run}:" in out and "culprit (has_inf_or_nan): log:0" in out
    base = statistics.median(walls["process start (debug --help)"])
    rows = []
    for k, ws in walls.items():
        m = statistics.median(ws)
        rows.append(
            (
                k,
                f"{fmt_time(m)} (cpu {fmt_time(statistics.median(cpus[k]))})",
                f"{m / base:.2f}x start",
                goals.get(k, ""),
            )
        )
    rows.append(("right culprit (log:0 in the NaN step's run)", "yes" if right else "NO", "", "yes"))
    rows.append(("peak RSS of debug (largest of the commands)", f"{rss / 2**20:.0f} MB", "", "< 500 MB"))
    return rows


async def _tui(path: str) -> list[tuple[str, float]]:
    from tracetensor.debugger import Debugger
    from tracetensor.debugger.cli import start_run
    from tracetensor.debugger.tui import DebuggerApp, TensorList

    import tracetensor as tt

    out = []
    t = time.perf_counter()
    tr = tt.trace.open(path)
    dbg = Debugger(tr, start_run(tr))
    dbg.history_from_trace()
    app = DebuggerApp(dbg, f"trace: run {dbg.run}", "", kind="end")
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.query_one(TensorList).rows, "the list stayed empty"
        out.append(("open: trace read, screen up, list shown", time.perf_counter() - t))
        run = dbg.run
        for c in (
            "lt",
            "lt -t linear",
            "lt -f has_inf_or_nan",
            "pt log:0",
            "ni -t log",
            "gf",
            "tm",
            "lr",
            f"jump {max(1, run - 1)}",
            f"jump {run}",
        ):
            t = time.perf_counter()
            app.run_command(c)
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            out.append((f"command: {c}", time.perf_counter() - t))
        # keys while a long command runs: how long a key waits for the UI thread
        app.run_command("lt -a")
        t = time.perf_counter()
        await pilot.press("escape")
        out.append(("a key (Esc) while `lt -a` streams", time.perf_counter() - t))
        await app.workers.wait_for_complete()
    tr.close()
    return out


def bench_tui(path: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for k, s in asyncio.run(_tui(path)):
        rows.append((k, fmt_time(s), "", "<= 2 s" if k.startswith("open") else "<= 1 s"))
    return rows


def main() -> None:
    n = int(os.environ.get("TT_BENCH_EVENTS", 1_000_000))
    folder = os.environ.get("TT_BENCH_DIR", tempfile.gettempdir())
    t = time.perf_counter()
    path, culprit_run = make(os.path.join(folder, f"tracetensor-bench-{n}.ttrace"), n)
    print(
        f"\n{n:,}-event eager trace {path} (culprit in run {culprit_run}; ready in "
        f"{time.perf_counter() - t:.1f} s, {os.path.getsize(path) / 2**20:.1f} MiB)"
    )
    print_table(
        f"tracetensor debug, line mode, {n:,} events (median of 3, wall incl. process start)",
        bench_line_mode(path, culprit_run),
    )
    print_table(f"tracetensor debug, TUI (pilot), {n:,} events", bench_tui(path))


if __name__ == "__main__":
    main()
