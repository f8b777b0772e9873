"""`tracetensor profile [options] script.py [args...]`: runs a script as `python script.py`
would, with the op profiler on and py-spy sampling its Python stacks; prints the op
table and a summary, and writes the Chrome trace, speedscope file, folded stacks and a
trace file for `tracetensor debug` to a folder."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from tracetensor.trace import TraceFileError, format_ns, printable, record, run_script
from tracetensor.trace import open as open_trace
from tracetensor.trace.cli import export_tensorboard

from . import export
from .core import SORT_KEYS, ProfilerAction, Report, profile, schedule
from .pyspy import PySpy, PySpyUnavailable, Samples


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracetensor profile",
        description="Run a Python script under the tracetensor profiler: per-op CPU/GPU times, the source "
        "lines they come from, and py-spy's Python samples on one timeline.",
        epilog="Options go before SCRIPT: everything after it is the script's own, as with `python`. "
        "Scripts mark training steps with `tracetensor.profiler.step()` (a no-op when not profiled); "
        "--steps/--window then pick which steps are recorded.",
    )
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (default: a new folder named after the script)")
    p.add_argument(
        "--sort",
        default="self_cpu_time_total",
        choices=SORT_KEYS,
        metavar="KEY",
        help="table sort key (default: self_cpu_time_total; also cpu_time_total, count, "
        "self_device_time_total, cpu_memory_usage, flops ...)",
    )
    p.add_argument("--row-limit", type=int, default=20, metavar="N", help="table rows (default 20; 0: all)")
    p.add_argument("--no-py-spy", action="store_true", help="do not sample Python stacks with py-spy")
    p.add_argument("--rate", type=int, default=100, metavar="HZ", help="py-spy samples per second (default 100)")
    p.add_argument("--steps", metavar="A:B", help="record only steps A..B-1 (steps counted from 0)")
    p.add_argument(
        "--window",
        metavar="WAIT,WARMUP,ACTIVE[,REPEAT]",
        help="record windows of steps as torch.profiler.schedule does",
    )
    p.add_argument("--memory", action="store_true", help="track bytes allocated by ops and live bytes")
    p.add_argument("--shapes", action="store_true", help="group table rows by input/output shapes")
    p.add_argument(
        "--values",
        default="summary",
        choices=("none", "summary", "full"),
        help="what the trace file keeps of tensors: none (names, shapes, timings), summary "
        "(+ NaN/inf counts, min/max/mean/std: what `lt -f has_inf_or_nan` needs; the "
        "default) or full (+ the values)",
    )
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write the recorded steps as TensorBoard event files to DIR (loss, gradient flow, "
        "op times, graph; histograms with --values full)",
    )
    p.add_argument("--no-record", action="store_true", help="do not write the trace file for `tracetensor debug`")
    p.add_argument(
        "--from-trace",
        metavar="FILE",
        help="profile a recorded trace file (tt.record / tracetensor profile) instead of a script",
    )
    p.add_argument(
        "-n",
        "--nproc",
        type=int,
        metavar="N",
        help="run the script on N MPI ranks (mpiexec -n N): one timeline with a process per rank, "
        "per-rank op tables, a straggler table and communication/computation overlap",
    )
    p.add_argument("script", nargs="?", help="the Python script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    return p


class UsageError(ValueError):
    """A bad --steps/--window value."""


def make_schedule(steps: str | None, window: str | None) -> Callable[[int], ProfilerAction] | None:
    """The schedule that --steps or --window asks for (None: record everything)."""
    if steps and window:
        raise UsageError(f"give --steps or --window, not both (got --steps {steps} --window {window})")
    if steps:
        try:
            a, b = (int(x) for x in steps.split(":"))
        except ValueError:
            a = b = -1
        if not 0 <= a < b:
            raise UsageError(f"--steps expects A:B with 0 <= A < B, got {steps!r}")
        return schedule(wait=a, warmup=0, active=b - a, repeat=1)
    if window:
        try:
            parts = [int(x) for x in window.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (3, 4):
            raise UsageError(f"--window expects WAIT,WARMUP,ACTIVE[,REPEAT] integers, got {window!r}")
        try:
            return schedule(wait=parts[0], warmup=parts[1], active=parts[2], repeat=parts[3] if len(parts) == 4 else 0)
        except ValueError as e:
            raise UsageError(f"--window {window!r}: {e}") from None
    return None


def _new_dir(script: str) -> str:
    stem = os.path.splitext(os.path.basename(script))[0] + "-profile"
    path, n = stem, 2
    while os.path.exists(path):
        path, n = f"{stem}-{n}", n + 1
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sched = make_schedule(args.steps, args.window)
    except UsageError as e:
        print(f"tracetensor profile: {e}", file=sys.stderr)
        return 2
    if args.from_trace:
        return from_trace(args)
    if args.script is None:
        print("tracetensor profile: give a script to run (or --from-trace FILE)", file=sys.stderr)
        return 2
    if not os.path.isfile(args.script):
        print(f"tracetensor profile: can't open file {args.script!r}: no such file", file=sys.stderr)
        return 2
    if args.values is None:  # TensorBoard's gradient flow and loss need at least summaries
        args.values = "summary" if args.tensorboard else "none"
    if args.tensorboard and args.no_record:
        print("tracetensor profile: --tensorboard writes from the trace file: drop --no-record", file=sys.stderr)
        return 2
    if args.tensorboard:  # say so before the script runs, not after
        from tracetensor.utils.tensorboard.summary import TensorBoardNotInstalled, protos

        try:
            protos()
        except TensorBoardNotInstalled as e:
            print(f"tracetensor profile: {e}", file=sys.stderr)
            return 2
    out = args.out or _new_dir(args.script)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print(f"tracetensor profile: cannot write to {out!r} ({e.strerror})", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(args.script))[0]
    if args.nproc is not None:
        if args.nproc < 1:
            print(f"tracetensor profile: -n expects a number of ranks >= 1, got {args.nproc}", file=sys.stderr)
            return 2
        from .ranks import main_ranks  # across MPI ranks: its own module (tracetensor.trace.multi)

        code = main_ranks(args, out, stem)
        if args.tensorboard:  # one TensorBoard run per rank: DIR/rank0, DIR/rank1 ...
            for f in sorted(glob.glob(os.path.join(out, f"{stem}.rank*.ttrace"))):
                rank = f[len(os.path.join(out, stem)) + 1 : -len(".ttrace")]
                export_tensorboard(f, os.path.join(args.tensorboard, rank), prog="tracetensor profile")
        return code
    windows: list[Report] = []
    prof = profile(
        record_shapes=args.shapes,
        profile_memory=args.memory,
        with_stack=True,
        with_flops=True,
        schedule=sched,
        on_trace_ready=lambda p: windows.append(p.report),
    )

    rec = None
    trace_path = os.path.join(out, f"{stem}.ttrace")
    if not args.no_record:
        try:
            rec = record(trace_path, values=args.values).start()
        except TraceFileError as e:  # e.g. another `tracetensor profile` is writing to this folder
            print(f"tracetensor profile: {e}; give another --out folder", file=sys.stderr)
            return 2
    spy = None
    if not args.no_py_spy:
        spy = PySpy(os.path.join(out, "pyspy.chrometrace.json"), args.rate)
        try:
            spy.start()
        except PySpyUnavailable as e:
            print(
                f"tracetensor profile: {e}. Continuing with the op profile only (--no-py-spy hides this).",
                file=sys.stderr,
            )
            spy = None
    t0 = time.perf_counter_ns()
    prof.start()
    code = 1
    owner = os.getpid()
    try:
        code = run_script(args.script, args.args)
    finally:
        # a child the script forked that returns from it exits quietly: the parent reports
        if os.getpid() == owner:
            t1 = time.perf_counter_ns()
            with _finishing_on_ctrl_c():
                if spy is not None:
                    spy.stop()  # before the profiler analyses its events: that is not the script's time
                prof.stop()
                if rec is not None:
                    rec.stop()
                _report(args, out, stem, windows, prof, spy, t0, t1, trace_path if rec is not None else None, code)
                if args.tensorboard and rec is not None:
                    export_tensorboard(trace_path, args.tensorboard, prog="tracetensor profile")
    return code


@contextlib.contextmanager
def _finishing_on_ctrl_c() -> Iterator[None]:
    """The report is written to the end: a Ctrl-C (the script's run is over) says so and
    is otherwise ignored, so the tables and files of the profiled run are not lost."""

    def note(signum: int, frame: object) -> None:
        print(
            "\ntracetensor profile: finishing the report of the profiled run (a moment) ...",
            file=sys.stderr,
            flush=True,
        )

    try:
        old = signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def from_trace(args: argparse.Namespace) -> int:
    """The same table, summary and exports from a trace file recorded earlier."""
    try:
        with open_trace(args.from_trace) as trace:
            rep = Report.from_trace(trace)  # reads all it needs: the file can close
    except (OSError, TraceFileError) as e:  # a TraceFileError names the file and the problem
        print(f"tracetensor profile: {e}", file=sys.stderr)
        return 2
    print(f"== tracetensor profile: {args.from_trace} (recorded) ==")
    if not rep.ops:
        print("no op events in this trace")
        return 0
    averages = rep.key_averages(group_by_input_shape=args.shapes)
    print(averages.table(sort_by=args.sort, row_limit=args.row_limit))
    start = min(s.start for s in rep.spans)
    end = max(s.end for s in rep.spans)
    _summary(sys.stdout, rep, None, start, end, windowed=False, script_dir="", wall_label="wall time (recorded)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        export.export_chrome_trace(rep, os.path.join(args.out, "trace.json"))
        export.export_speedscope(rep, os.path.join(args.out, "profile.speedscope.json"))
        export.export_stacks(rep, os.path.join(args.out, "stacks.folded"))
        print(f"\nwritten: trace.json, profile.speedscope.json, stacks.folded in {args.out}")
    if args.tensorboard:
        return export_tensorboard(args.from_trace, args.tensorboard, prog="tracetensor profile")
    return 0


def _report(
    args: argparse.Namespace,
    out: str,
    stem: str,
    windows: list[Report],
    prof: profile,
    spy: PySpy | None,
    t0: int,
    t1: int,
    trace_path: str | None,
    code: int,
) -> None:
    w = _Printable(sys.stdout)
    rep = (
        prof.report
        if len(windows) == 1
        else Report.combined(windows, with_stack=True, with_flops=True, steps_marked=prof._steps_marked)
    )
    samples: Samples | None = None
    if spy is not None:
        try:
            samples = spy.samples().clip(t0, t1)
            if (args.steps or args.window) and rep.steps:
                # percentages are of the recorded steps' time: so must the samples be
                samples = samples.within([(st.start, st.end) for st in rep.steps])
        except (OSError, ValueError) as e:
            print(f"tracetensor profile: could not read py-spy's output ({e})", file=sys.stderr)

    files = []
    if spy is not None and os.path.exists(spy.path):
        files.append((spy.path, "py-spy's own output (all its samples, on its own clock)"))
    chrome = os.path.join(out, "trace.json")
    base = min(t0, export.base_ns(rep)) if rep.spans else t0
    extra = samples.chrome_events(base) if samples else []
    export.export_chrome_trace(
        rep,
        chrome,
        extra=extra,
        base=base,
        metadata={
            "script": args.script,
            "argv": [args.script, *args.args],
            "exit_code": code,
            "pyspy_aligned": bool(samples and samples.aligned),
        },
    )
    files.append((chrome, "Chrome/Perfetto trace (ops, steps, Python samples): https://ui.perfetto.dev"))
    ss = os.path.join(out, "profile.speedscope.json")
    if samples and samples.slices:
        frames, p = samples.speedscope(export.base_ns(rep))
        export.export_speedscope(rep, ss, extra=[p], extra_frames=frames)
    else:
        export.export_speedscope(rep, ss)
    files.append((ss, "speedscope (op timeline + Python samples): https://www.speedscope.app"))
    folded = os.path.join(out, "stacks.folded")
    export.export_stacks(rep, folded)
    files.append((folded, "folded stacks of ops under source lines (flamegraph.pl, speedscope)"))
    if samples and samples.slices:
        pyf = os.path.join(out, "python.folded")
        _write_lines(pyf, samples.folded())
        files.append((pyf, "folded stacks of py-spy's Python samples"))
    table = rep.key_averages(group_by_input_shape=args.shapes).table(sort_by=args.sort, row_limit=args.row_limit)
    _write_lines(os.path.join(out, "table.txt"), [table])
    files.append((os.path.join(out, "table.txt"), "the op table above" if rep.ops else "the op table (no ops ran)"))
    if trace_path is not None:
        files.append((trace_path, f"trace file: tracetensor debug {trace_path}"))

    print(f"\n== tracetensor profile: {args.script} (exit code {code}) ==", file=w)
    if not rep.ops:
        if not (args.steps or args.window):
            print("no tracetensor ops ran while profiling", file=w)
        elif prof._steps_marked:
            print(
                f"the script ran {prof.step_num} steps (tracetensor.profiler.step() calls): the "
                f"{'--steps ' + args.steps if args.steps else '--window ' + args.window} window was never "
                "reached, so no ops were recorded",
                file=w,
            )
        else:
            print(
                "no tracetensor ops were recorded: --steps/--window count steps, and the script never "
                "called tracetensor.profiler.step() (call it at the end of each step)",
                file=w,
            )
    else:
        print(table, file=w)
    _summary(
        w,
        rep,
        samples,
        t0,
        t1,
        windowed=bool(args.steps or args.window),
        script_dir=os.path.dirname(os.path.abspath(args.script)),
    )
    print("\nwritten:", file=w)
    for path, what in files:
        print(f"  {path:<40} {what}", file=w)
    w.flush()


class _Printable:
    """Writes to `out` with control characters shown, not sent: the report prints function
    and file names taken from the profiled program."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, s: str) -> int:
        return self.out.write(printable(s, lines=True))

    def flush(self) -> None:
        self.out.flush()


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _summary(
    w: TextIO,
    rep: Report,
    samples: Samples | None,
    t0: int,
    t1: int,
    windowed: bool,
    script_dir: str,
    wall_label: str = "wall time (script)",
) -> None:
    """Where the time went: wall time split into ops and Python, steps, memory peaks, the
    hottest source lines and, with py-spy, the hottest Python functions."""
    if windowed and rep.steps:
        wall = sum(s.dur for s in rep.steps)
        what = f"wall time of the {len(rep.steps)} recorded steps"
    else:
        wall = t1 - t0
        what = wall_label
    op_ns = rep.op_time_ns
    pct = (lambda x: f"{100 * x / wall:5.1f}%") if wall else (lambda x: "")
    print(f"\n{what:<28} {format_ns(wall):>12}", file=w)
    print(
        f"{'in ops':<28} {format_ns(op_ns):>12} {pct(op_ns)}  ({rep.op_count} op events"
        + (f", {len(rep.steps)} steps" if rep.steps else "")
        + ")",
        file=w,
    )
    py_ns = max(0, wall - op_ns)
    print(f"{'Python outside ops':<28} {format_ns(py_ns):>12} {pct(py_ns)}", file=w)
    if len(rep.steps) >= 2:
        rest = sorted(st.dur for st in rep.steps[1:])
        print(
            f"{'step time (median)':<28} {format_ns(rest[len(rest) // 2]):>12}  (slowest {format_ns(rest[-1])};"
            f" the first, {format_ns(rep.steps[0].dur)}, also holds what ran before the loop)",
            file=w,
        )
    if rep.has_device:
        print(f"{'GPU time of ops':<28} {format_ns(rep.device_time_ns):>12}", file=w)
    if rep.peak:
        for dev, (b, who) in rep.peak.items():
            print(f"{'peak live bytes (' + dev + ')':<28} {b:>12,}  reached by {who}", file=w)
    top = rep.top_source_lines(5)
    if top:
        print("\ntop source lines by op time:", file=w)
        for f, ns, n in top:
            print(
                f"  {format_ns(ns):>12} {pct(ns)}  {os.path.basename(f.filename)}:{f.lineno} in {f.name}  ({n} ops)",
                file=w,
            )
    if samples is not None:
        st = samples.self_times()
        total = sum(r[2] for r in st)
        if not total:
            print(f"\npy-spy took no samples of the script (did it run for under 1/{samples.rate} s?)", file=w)
            return
        print(
            f"\ntop Python functions by py-spy samples ({samples.rate} Hz, {total / 1e9:.2f} s sampled"
            + (" within the recorded steps" if windowed and rep.steps else "")
            + ("" if samples.aligned else "; timeline alignment approximate")
            + "):",
            file=w,
        )
        # frames with no self time (callers, the launcher) are the next list's business
        for fn, fname, self_ns, tot_ns in [r for r in st if r[2] > 0][:8]:
            print(
                f"  self {format_ns(self_ns):>12}  total {format_ns(tot_ns):>12}  {fn} ({os.path.basename(fname)})",
                file=w,
            )
        # the script's own functions rarely have self time (ops and the engine do): rank by total
        mine = sorted((r for r in st if os.path.abspath(r[1]).startswith(script_dir + os.sep)), key=lambda r: -r[3])
        if mine:
            print("the script's own functions by py-spy samples (total time, callees included):", file=w)
            for fn, fname, _self, tot_ns in mine[:5]:
                print(f"  total {format_ns(tot_ns):>12} {pct(tot_ns)}  {fn} ({os.path.basename(fname)})", file=w)


if __name__ == "__main__":
    sys.exit(main())
