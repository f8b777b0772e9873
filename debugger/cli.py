"""`tracetensor debug TRACE`: a recorded trace in the debugger, post-mortem. With `-c`
(or without a terminal) commands run in line mode; otherwise the Textual UI opens."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.text import Text

from tracetensor.trace import Trace, TraceFileError, open_ranks, printable
from tracetensor.trace import open as open_trace

from . import filters as flt
from .commands import Debugger, RunAction, to_plain


def start_run(trace: Trace) -> int | None:
    """The first run holding a NaN/inf (the usual reason to open a trace), else the last run
    that has ops (a profiled script's last step is opened by its final `step()` and is empty)."""
    bad = trace.first_nonfinite()
    if bad is not None:
        return bad.run
    ids = trace.run_ids()
    for run in reversed(ids[-64:]):  # from the end: the last run or two, not every run of a long trace
        if trace.run_info(run).n_events:
            return run
    return ids[-1] if ids else None


def next_run(trace: Trace, current: int | None, act: RunAction) -> int | None:
    """Offline `run`: moves to the next run (`-t N`: N runs on; `-f F`: the next run
    where a tensor passes F). None when the trace has no such run."""
    ids = [r for r in trace.run_ids() if current is None or r > current]
    if act.mode == "filter":
        fn = flt.get_filter(act.filter or "has_inf_or_nan")
        for r in ids:
            if flt.first_passing(trace, r, fn) is not None:
                return r
        return None
    k = act.times - 1 if act.mode == "times" else 0
    return ids[k] if k < len(ids) else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tracetensor debug", description=" ".join(__doc__.split()))
    p.add_argument(
        "trace",
        nargs="+",
        help="a trace file written by tt.record(...), `tracetensor trace record` or `tracetensor "
        "profile`; several (run.rank*.ttrace) open as one job",
    )
    p.add_argument(
        "-c",
        "--command",
        action="append",
        default=[],
        help="run this debugger command and print its output (repeatable); no UI opens",
    )
    p.add_argument("--run", type=int, default=None, help="start at this run (default: the first run with NaN/inf)")
    p.add_argument(
        "--ui",
        choices=["textual", "readline"],
        default=None,
        help="textual: the full-screen UI (leave it with ctrl+q or `exit`); readline: line mode, "
        "one `tfdbg>` prompt (default: textual on a terminal, readline otherwise)",
    )
    args = p.parse_args(argv)
    try:
        return _debug(args)
    except BrokenPipeError:
        raise  # `| head` closed the pipe: the top-level command ends quietly (exit 141)
    except (TraceFileError, OSError) as e:  # the reader's error names the file and the problem
        print(printable(f"tracetensor debug: {e}"), file=sys.stderr)
        return 2


def _debug(args: argparse.Namespace) -> int:
    # per-rank files of an MPI job: one trace in time order across ranks (tracetensor.trace.multi)
    trace = open_trace(args.trace[0]) if len(args.trace) == 1 and "*" not in args.trace[0] else open_ranks(args.trace)
    run = args.run if args.run is not None else start_run(trace)
    runs = trace.run_ids()  # numbers only: a long recording has tens of thousands of runs
    if args.run is not None and args.run not in runs:
        have = f"runs {runs[0]} to {runs[-1]}" if runs else "no runs"
        print(f"tracetensor debug: --run {args.run} is not in {' '.join(args.trace)} (it has {have})", file=sys.stderr)
        return 2
    dbg = Debugger(trace, run)
    dbg.history_from_trace()
    if args.command:
        rc = 0
        for cmd in args.command:
            print(f"tfdbg> {cmd}")
            res = dbg.execute(cmd)
            if res.action is not None:
                if _advance(dbg, res.action):
                    print(f"now at run {dbg.run}")
                continue
            if res.exit:
                break
            print(to_plain(res.output))
            rc = rc or (1 if res.error else 0)
        return rc
    ui_type = args.ui or ("textual" if sys.stdin.isatty() and sys.stdout.isatty() else "readline")
    if ui_type == "textual":
        from .tui import TextualUI

        ui = TextualUI()
    else:
        from .readline_ui import ReadlineUI

        ui = ReadlineUI()
    while True:
        intro = Text(
            f"trace {' '.join(args.trace)}: {len(trace.run_ids())} runs; at run {dbg.run}\n"
            "`run` moves to the next run, `run -f has_inf_or_nan` to the next run with NaN/inf"
        )
        act = ui.session(dbg, f"trace: run {dbg.run}", intro, kind="end")
        if act is None or not _advance(dbg, act):
            return 0


def _advance(dbg: Debugger, act: RunAction) -> bool:
    """Moves the debugger to the run `act` asks for; False (and says so) when there is none."""
    nr = next_run(dbg.trace, dbg.run, act)
    if nr is None:
        meta = getattr(dbg.trace, "meta", None)  # a trace file's; a live MemoryTrace has none
        values = meta().get("values") if act.mode == "filter" and callable(meta) else None
        print(
            "no further run matches in this trace"
            + (
                f" (but this trace was recorded with values={values!r}: it holds no numeric summaries, so "
                f"{act.filter or 'has_inf_or_nan'} cannot see NaN/inf in it)"
                if values == "none"
                else ""
            )
        )
        return False
    dbg.run = nr
    dbg.stopped_by = act.filter
    return True
