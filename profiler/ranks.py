"""`tracetensor profile -n N script.py`: the script under `mpiexec -n N`, each rank recording
its own trace; then one Perfetto/Chrome timeline with a process per rank, a per-rank op
table, a straggler table (per step: slowest rank, spread, time in computation vs waiting
vs transfer vs idle) and how much communication hid behind computation."""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from typing import Any, TextIO

from tracetensor.distributed import find_mpiexec, launcher_env
from tracetensor.trace import format_bytes, format_ns
from tracetensor.trace.multi import MultiTrace, collectives, open_ranks, overlap, steps

from .core import Report


def main_ranks(args: argparse.Namespace, out: str, stem: str) -> int:
    """Runs the script on `args.nproc` ranks, then reports across them. Returns the job's exit code."""
    mpiexec = find_mpiexec()
    if mpiexec is None:
        print(
            "tracetensor profile: -n needs MPI's launcher (mpiexec); install it with: "
            'pip install "tracetensor[distributed]"',
            file=sys.stderr,
        )
        return 2
    for old in glob.glob(os.path.join(out, f"{stem}.rank*.ttrace")):
        os.remove(old)  # a rank count smaller than last time must not pick up stale ranks
    base = os.path.join(out, f"{stem}.ttrace")
    cmd = [
        mpiexec,
        "-n",
        str(args.nproc),
        sys.executable,
        "-m",
        "tracetensor",
        "trace",
        "record",
        "-o",
        base,
        "--values",
        args.values or "summary",
        args.script,
        *args.args,
    ]
    code = subprocess.call(cmd, env=launcher_env())
    files = sorted(glob.glob(os.path.join(out, f"{stem}.rank*.ttrace")))
    if not files:
        print(f"tracetensor profile: the ranks wrote no traces (mpiexec exit code {code})", file=sys.stderr)
        return code or 1
    with open_ranks(files) as mt:
        assert isinstance(mt, MultiTrace)
        chrome = os.path.join(out, "trace.json")
        export_chrome(mt, chrome)
        report(sys.stdout, mt, args.sort, args.row_limit)
        with open(os.path.join(out, "ranks.txt"), "w", encoding="utf-8") as f:
            report(f, mt, args.sort, args.row_limit)
    print("\nwritten:")
    print(f"  {chrome:<40} Chrome/Perfetto timeline, one process per rank: https://ui.perfetto.dev")
    print(f"  {os.path.join(out, 'ranks.txt'):<40} the tables above")
    print(
        f"  {os.path.join(out, stem + '.rank*.ttrace'):<40} traces: tracetensor debug "
        f"{os.path.join(out, stem + '.rank*.ttrace')}"
    )
    return code


def report(w: TextIO, mt: MultiTrace, sort: str, row_limit: int) -> None:
    print(f"== tracetensor profile: {len(mt.ranks)} ranks ==", file=w)
    for r in mt.ranks:
        rep = Report.from_trace(r.trace)
        print(f"\n-- rank {r.rank} --", file=w)
        print(rep.key_averages().table(sort_by=sort, row_limit=row_limit) if rep.ops else "no ops", file=w)
    st = steps(mt)
    if st:
        print(
            "\nstragglers, per step (times per rank: computing / waiting for the slowest rank / transferring / idle):",
            file=w,
        )
        print(f"  {'step':>4}  {'slowest':>7}  {'spread':>10}  per rank", file=w)
        for s in st:
            cells = "  ".join(
                f"r{k}: {format_ns(v.compute)} / {format_ns(v.wait)} / {format_ns(v.transfer)} / {format_ns(v.idle)}"
                for k, v in sorted(s.ranks.items())
            )
            print(f"  {s.step:>4}  {'rank ' + str(s.slowest):>7}  {format_ns(s.spread):>10}  {cells}", file=w)
        slow = [s.slowest for s in st]
        top = max(set(slow), key=slow.count)
        print(f"  rank {top} was the slowest in {slow.count(top)} of {len(st)} steps", file=w)
    colls = collectives(mt)
    if colls:
        nbytes = sum(c.nbytes for c in colls)
        print(f"\ncollectives: {len(colls)} ({format_bytes(nbytes)} per rank)", file=w)
    ov = overlap(mt)
    if any(c for c, _ in ov.values()):
        print("communication hidden behind computation:", file=w)
        for rank, (comm, hidden) in sorted(ov.items()):
            pct = 100 * hidden / comm if comm else 0.0
            print(f"  rank {rank}: {format_ns(hidden)} of {format_ns(comm)} in collectives ({pct:.1f}%)", file=w)


def export_chrome(mt: MultiTrace, path: str) -> None:
    """One Chrome trace: process r+1 is rank r (ops, collectives, steps), times on rank 0's clock."""
    evs = mt.events()
    runs = [r for r in mt.runs() if r.n_events]
    base = min([e.start_ns for e in evs] + [r.start_ns for r in runs]) if evs else 0
    us = lambda ns: (ns - base) / 1e3
    out: list[dict[str, Any]] = []
    for r in mt.ranks:
        pid = r.rank + 1
        out.append({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": f"rank {r.rank}"}})
        out.append({"ph": "M", "pid": pid, "name": "process_sort_index", "args": {"sort_index": r.rank}})
        out.append({"ph": "M", "pid": pid, "tid": 1, "name": "thread_name", "args": {"name": "ops"}})
        out.append({"ph": "M", "pid": pid, "tid": 2, "name": "thread_name", "args": {"name": "collectives"}})
        out.append(
            {"ph": "M", "pid": pid, "tid": 3, "name": "thread_name", "args": {"name": "waiting for other ranks"}}
        )
        for info in r.trace.runs():
            if info.kind == "step" and info.end_ns is not None:
                out.append(
                    {
                        "ph": "X",
                        "pid": pid,
                        "tid": 1,
                        "cat": "step",
                        "name": info.name,
                        "ts": us(info.start_ns + r.offset_ns),
                        "dur": (info.end_ns - info.start_ns) / 1e3,
                    }
                )
    for e in evs:
        rank = mt.rank_of(e)
        coll = e.phase == "collective"
        args: dict[str, Any] = {"name": e.name, "phase": e.phase, "run": e.run}
        if coll:
            args.update(bytes=e.outputs[0].nbytes if e.outputs else 0, peers=list(e.inputs), via=e.forward)
        out.append(
            {
                "ph": "X",
                "pid": rank + 1,
                "tid": 2 if coll else 1,
                "cat": f"op.{e.phase}",
                "name": e.op,
                "ts": us(e.start_ns),
                "dur": e.duration_ns / 1e3,
                "args": args,
            }
        )
    for c in collectives(mt):  # how long each rank waited for the last one: a slice per rank
        for rank in c.start:
            wt = c.wait(rank)
            if wt > 0:
                out.append(
                    {
                        "ph": "X",
                        "pid": rank + 1,
                        "tid": 3,
                        "cat": "wait",
                        "name": f"wait for rank {c.last}",
                        "ts": us(c.start[rank]),
                        "dur": wt / 1e3,
                        "args": {"collective": c.name},
                    }
                )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "traceEvents": out,
                "displayTimeUnit": "ms",
                "otherData": {"ranks": [r.rank for r in mt.ranks], "world_size": mt.world_size},
            },
            f,
        )
