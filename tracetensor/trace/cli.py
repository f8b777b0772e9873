"""`tracetensor trace ...`: record a whole script into a trace file, and say what a file holds."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from .recorder import VALUES, record_script
from .store import SqliteTrace, TraceFileError
from .text import format_bytes, printable


def parse_steps(text: str) -> range | set[int]:
    """ "10:20" -> range(10, 20); "3,5,8" -> {3, 5, 8}; "7" -> {7}."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            steps: range | set[int] = range(int(a or 0), int(b))
        else:
            steps = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        steps = range(0)
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"expected A:B with 0 <= A < B, or N[,N...] with N >= 0; got {text!r}")
    return steps


def parse_bytes(text: str) -> int:
    """ "512M", "2G", "1000" -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 2G, got {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracetensor trace", description="Record and inspect tracetensor trace files.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    r = sub.add_parser(
        "record",
        help="run a script (like `python script.py args`) and record every event",
        description="Run SCRIPT as `python SCRIPT ARGS` would, recording every tracetensor event "
        "into a trace file. The script's exit code is passed through.",
    )
    r.add_argument("-o", "--output", help="trace file to write (default: SCRIPT's name + .ttrace)")
    r.add_argument(
        "--values",
        choices=VALUES,
        default="summary",
        help="none: names/shapes/timings; check: + an exact NaN/inf check of every output, summaries "
        "of the tensors that fail it; summary: + NaN/inf counts and min/max/mean/std (default); "
        "full: + the tensors, within --max-bytes",
    )
    r.add_argument("--ops", metavar="REGEX", help="keep only ops whose type or name matches REGEX")
    r.add_argument("--steps", type=parse_steps, metavar="A:B|N,N", help="keep only these runs (0 = first)")
    r.add_argument(
        "--max-bytes",
        type=parse_bytes,
        default=512 << 20,
        metavar="SIZE",
        help="byte budget for --values full (oldest values dropped first; default 512M)",
    )
    r.add_argument("--no-stacks", action="store_true", help="do not record source stacks (a little faster)")
    r.add_argument("script", help="the Python script to run")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    i = sub.add_parser("info", help="print what a trace file holds: runs, events, ops, bytes, drops")
    i.add_argument("file")
    i.add_argument("--ops", type=int, default=15, metavar="N", help="show the N most expensive op types")
    x = sub.add_parser(
        "export",
        help="write a trace as TensorBoard event files: loss, gradient flow, non-finite counts, op times, graph",
        description="Write FILE as TensorBoard event files, one point per training step: the loss, each "
        "parameter's gradient and weight norms (histograms when values were recorded with --values full), "
        "non-finite counts, time per op type, and the graph with its step stats. Then run "
        '`tensorboard --logdir DIR`. Needs: pip install "tracetensor[tensorboard]".',
    )
    x.add_argument("--tensorboard", metavar="DIR", required=True, help="folder for the event files")
    x.add_argument("--no-histograms", action="store_true", help="norms only, no histograms")
    x.add_argument("file")
    m = sub.add_parser(
        "merge",
        help="merge the per-rank traces of an MPI job into one trace file",
        description="Merge per-rank traces (run.rank0.ttrace, run.rank1.ttrace, ...) into one "
        "file: events of all ranks in time order on rank 0's clock, names prefixed rankN/.",
    )
    m.add_argument("files", nargs="+", help="the per-rank trace files (or a quoted glob: 'run.rank*.ttrace')")
    m.add_argument("-o", "--output", required=True, help="the merged trace file to write")
    return p


def export_tensorboard(path: str, log_dir: str, histograms: bool = True, prog: str = "tracetensor trace export") -> int:
    """Writes trace file `path` to `log_dir` for TensorBoard and says what it wrote (exit status)."""
    try:
        from ..utils.tensorboard import TensorBoardNotInstalled
        from ..utils.tensorboard.export import export_file

        print(f"TensorBoard: {export_file(path, log_dir, histograms=histograms)}")
    except (TraceFileError, TensorBoardNotInstalled, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.cmd == "record":
        out = args.output or os.path.splitext(os.path.basename(args.script))[0] + ".ttrace"
        try:
            return record_script(
                out,
                args.script,
                args.args,
                values=args.values,
                ops=args.ops,
                steps=args.steps,
                max_bytes=args.max_bytes,
                stacks=not args.no_stacks,
            )
        except TraceFileError as e:
            print(f"tracetensor trace record: {e}", file=sys.stderr)
            return 2
    if args.cmd == "export":
        return export_tensorboard(args.file, args.tensorboard, histograms=not args.no_histograms)
    if args.cmd == "merge":
        from .multi import merge

        try:
            merge(args.files, args.output)
        except TraceFileError as e:
            print(f"tracetensor trace merge: {e}", file=sys.stderr)
            return 2
        print(f"tracetensor: merged traces into {args.output} (`tracetensor debug {args.output}`)", file=sys.stderr)
        return 0
    try:
        with SqliteTrace(args.file) as t:
            print(printable(format_info(t, n_ops=args.ops), lines=True))  # names come from the file
    except TraceFileError as e:
        print(printable(f"tracetensor trace info: {e}"), file=sys.stderr)
        return 2
    return 0


def format_info(t: SqliteTrace, n_ops: int = 15) -> str:
    i = t.info()
    lines = [
        f"trace    {i['path']}  (format v{i['version']}, {format_bytes(i['file_bytes'])}"
        f"{', complete' if i['complete'] else ', INCOMPLETE: recording stopped early (killed, or disk full)'})",
        f"values   {i['values']}",
        f"runs     {i['runs']}",
        f"events   {i['events']}",
        f"tensors  {i['tensors']} kept ({format_bytes(i['tensor_bytes'])})",
        f"dropped  {i['dropped']['values']} values ({format_bytes(i['dropped']['bytes'])}) over the byte budget",
        f"graphs   {i['graphs']}    source files {i['sources']}",
    ]
    runs = t.runs()
    if runs:
        lines.append("\n  run  kind         name                   events     duration  error")
        shown = runs if len(runs) <= 12 else runs[:6] + [None] + runs[-5:]
        for r in shown:
            if r is None:
                lines.append(f"  ... {len(runs) - 11} more runs")
                continue
            dur = "-" if r.duration_ns is None else f"{r.duration_ns / 1e6:.3f} ms"
            lines.append(
                f"  {r.run:<4} {r.kind[:12]:<12} {r.name[:22]:<22} {r.n_events:>6} {dur:>12}  "
                f"{(r.error or '')[:40]}".rstrip()
            )
    if i["ops"]:
        w = max(len("op"), *(len(op) for op, _, _ in i["ops"][:n_ops]))
        lines.append(f"\n  {'op':<{w}} {'count':>6}     total time")
        for op, n, ns in i["ops"][:n_ops]:
            lines.append(f"  {op:<{w}} {n:>6} {ns / 1e6:>11.3f} ms")
        if len(i["ops"]) > n_ops:
            lines.append(f"  ... {len(i['ops']) - n_ops} more op types")
    return "\n".join(lines)
