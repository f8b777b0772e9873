"""Writes a profile out: Chrome/Perfetto trace JSON, speedscope JSON and folded stacks.

Chrome trace layout: process 1 is the host (one track per thread, steps and user ranges
as slices that the op slices nest under), process 2 the GPU (device time of each op,
with a flow arrow from the host op that launched it), process 3 Python samples from
py-spy when given; memory is drawn as counters. Timestamps are microseconds relative to
the first event; `otherData.base_time_ns` is the wall-clock time (ns since the epoch)
of timestamp 0 and `otherData.base_perf_ns` the matching `perf_counter_ns` value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from tracetensor import events as ev
from tracetensor.trace import is_launcher_frame

from .core import Report, op_label

HOST_PID, GPU_PID, PY_PID = 1, 2, 3


def base_ns(rep: Report) -> int:
    """perf_counter_ns of timestamp 0: the earliest thing the report holds."""
    starts = [s.start for s in rep.spans]
    return min(starts) if starts else ev.clock_base()[0]


def _wall_of(perf_ns: int) -> int:
    p0, w0 = ev.clock_base()
    return w0 + (perf_ns - p0)


def chrome_events(rep: Report, base: int) -> list[dict[str, Any]]:
    us = lambda ns: (ns - base) / 1e3
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": HOST_PID, "name": "process_name", "args": {"name": "tracetensor host"}},
        {"ph": "M", "pid": HOST_PID, "name": "process_sort_index", "args": {"sort_index": 0}},
    ]
    tids: dict[int, int] = {}
    for s in rep.spans:
        if s.thread not in tids:
            tids[s.thread] = len(tids) + 1
            out.append(
                {
                    "ph": "M",
                    "pid": HOST_PID,
                    "tid": tids[s.thread],
                    "name": "thread_name",
                    "args": {"name": f"thread {s.thread}" if len(tids) > 1 else "main thread"},
                }
            )
    for s in rep.spans:
        x: dict[str, Any] = {
            "ph": "X",
            "pid": HOST_PID,
            "tid": tids[s.thread],
            "name": s.name,
            "ts": us(s.start),
            "dur": s.dur / 1e3,
        }
        e = s.event
        if e is None:
            x["cat"] = "step" if s.kind == "step" else "user_range"
            x["args"] = {"self_us": (s.dur - s.child_ns) / 1e3}
        else:
            x["cat"] = f"op.{e.phase}"
            args: dict[str, Any] = {
                "name": e.name,
                "op": e.op,
                "phase": e.phase,
                "mode": e.mode,
                "run": e.run,
                "seq": e.seq,
                "inputs": list(e.inputs),
                "output_shapes": [list(m.shape) for m in e.outputs],
                "output_dtypes": [m.dtype for m in e.outputs],
                "output_bytes": sum(m.nbytes for m in e.outputs),
                "device": e.device,
                "flops": e.flops,
            }
            if e.forward:
                args["forward"] = e.forward
            if e.stack:
                args["source"] = [str(f) for f in e.stack[:4]]  # innermost first
            x["args"] = args
        out.append(x)
    out += _device_events(rep, tids, us)
    out += _memory_counters(rep, us)
    return out


def _device_events(rep: Report, tids: dict[int, int], us: Any) -> list[dict[str, Any]]:
    """GPU slices: a stream runs its work in order, so an op's device work starts at the
    later of its host launch and the end of the previous op's device work (an estimate:
    CUDA events give durations, not absolute times)."""
    if not rep.device_ns:
        return []
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": GPU_PID, "name": "process_name", "args": {"name": "GPU"}},
        {"ph": "M", "pid": GPU_PID, "tid": 1, "name": "thread_name", "args": {"name": "stream (current)"}},
    ]
    gpu_end = 0
    for e in rep.ops:
        d = rep.device_ns.get(e.seq)
        if d is None:
            continue
        start = max(e.start_ns, gpu_end)
        gpu_end = start + d
        out.append(
            {
                "ph": "X",
                "pid": GPU_PID,
                "tid": 1,
                "name": op_label(e),
                "cat": "device",
                "ts": us(start),
                "dur": d / 1e3,
                "args": {"name": e.name, "seq": e.seq, "device_us": d / 1e3},
            }
        )
        out.append(
            {
                "ph": "s",
                "pid": HOST_PID,
                "tid": tids[e.thread],
                "name": "launch",
                "cat": "flow",
                "id": e.seq,
                "ts": us(e.start_ns),
            }
        )
        out.append(
            {
                "ph": "f",
                "bp": "e",
                "pid": GPU_PID,
                "tid": 1,
                "name": "launch",
                "cat": "flow",
                "id": e.seq,
                "ts": us(start),
            }
        )
    return out


def _memory_counters(rep: Report, us: Any) -> list[dict[str, Any]]:
    out = []
    for dev, series in rep.mem_series.items():
        for t, live in series:
            out.append(
                {"ph": "C", "pid": HOST_PID, "name": f"live bytes ({dev})", "ts": us(t), "args": {"bytes": live}}
            )
    for t, used, total in rep.pool:
        out.append(
            {
                "ph": "C",
                "pid": GPU_PID,
                "name": "cupy memory pool",
                "ts": us(t),
                "args": {"used": used, "reserved": total},
            }
        )
    return out


def export_chrome_trace(
    rep: Report,
    path: str,
    extra: Iterable[dict[str, Any]] = (),
    base: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """`extra`: already-aligned events to put beside the ops (py-spy samples), with `ts`
    in microseconds relative to `base`."""
    base = base_ns(rep) if base is None else base
    with ev.gc_paused():  # a dict per event, no cycles: see gc_paused
        events = chrome_events(rep, base) + list(extra)
    doc = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "tracetensor.profiler",
            "base_perf_ns": base,
            "base_time_ns": _wall_of(base),
            **(metadata or {}),
        },
    }
    if rep.left_out:  # a long profile keeps its last steps only: say so in the file and on the timeline
        doc["otherData"]["left_out"] = {
            "op_events": rep.omitted_ops,
            "steps": rep.omitted_steps,
            "max_trace_events": rep.max_trace_events,
            "note": rep.left_out,
        }
        doc["traceEvents"].append(
            {"ph": "i", "s": "g", "pid": HOST_PID, "tid": 1, "ts": 0, "name": rep.left_out, "cat": "left_out"}
        )
    _write_json(path, doc)


def speedscope_profile(rep: Report, base: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(frames, profiles): one evented profile per thread of steps > ranges > ops."""
    frames: list[dict[str, Any]] = []
    index: dict[tuple, int] = {}

    def frame(name: str, f: ev.Frame | None) -> int:
        key = (name, f.filename if f else None, f.lineno if f else None)
        if key not in index:
            index[key] = len(frames)
            d: dict[str, Any] = {"name": name}
            if f is not None:
                d.update(file=f.filename, line=f.lineno)
            frames.append(d)
        return index[key]

    by_thread: dict[int, list] = {}
    for s in rep.spans:
        by_thread.setdefault(s.thread, []).append(s)
    profiles = [
        evented_profile(
            f"tracetensor ops (thread {thread})",
            [
                (s.start - base, s.end - base, s.depth, frame(s.name, s.event.frame if s.event is not None else None))
                for s in spans
            ],
            start=0,
        )
        for thread, spans in by_thread.items()
    ]
    return frames, profiles


def evented_profile(name: str, spans: Iterable[tuple[int, int, int, int]], start: int | None = None) -> dict[str, Any]:
    """A speedscope evented profile (ns) of (start, end, depth, frame index) spans that nest;
    `start` defaults to the earliest span's."""
    evs: list[tuple[int, int, int, str, int]] = []  # (time, close-first, depth order, type, frame)
    for t0, t1, depth, fr in spans:
        # at equal times closes go before opens, inner closes before outer ones
        evs.append((t0, 1, depth, "O", fr))
        evs.append((t1, 0, -depth, "C", fr))
    evs.sort(key=lambda x: (x[0], x[1], x[2]))
    return {
        "type": "evented",
        "name": name,
        "unit": "nanoseconds",
        "startValue": min((x[0] for x in evs), default=0) if start is None else start,
        "endValue": max((x[0] for x in evs), default=0),
        "events": [{"type": t, "frame": fr, "at": at} for at, _, _, t, fr in evs],
    }


def export_speedscope(
    rep: Report, path: str, extra: list[dict[str, Any]] | None = None, extra_frames: list[dict[str, Any]] | None = None
) -> None:
    """`extra`: more evented profiles (py-spy's, in ns relative to the same base) whose
    frame indices point into `extra_frames`."""
    base = base_ns(rep)
    frames, profiles = speedscope_profile(rep, base)
    if extra:
        shift = len(frames)
        frames = frames + list(extra_frames or [])
        for p in extra:
            p = dict(p)
            p["events"] = [dict(x, frame=x["frame"] + shift) for x in p["events"]]
            profiles.append(p)
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": f"tracetensor profile ({rep.left_out})" if rep.left_out else "tracetensor profile",
        "activeProfileIndex": 0,
        "exporter": "tracetensor.profiler",
    }
    _write_json(path, doc)


def folded_stacks(rep: Report) -> list[str]:
    """`file:line (func);...;op value`: the user's frames outermost first, then the op;
    value = the op's self time in microseconds (Brendan Gregg's folded format, for
    flamegraph.pl, speedscope or inferno). Ops without a recorded stack get `[no stack]`."""
    acc: dict[str, int] = {}

    def add(stack: tuple[ev.Frame, ...] | None, label: str, ns: int) -> None:
        if stack:
            frames = trim_launcher([(f.name, f.filename, f.lineno) for f in reversed(stack)])
            path = ";".join(f"{fn} ({os.path.basename(fname)}:{line})" for fn, fname, line in frames)
        else:
            path = "[no stack]"
        key = f"{path};{label}"
        acc[key] = acc.get(key, 0) + ns

    if rep.agg is not None:  # a long profile: its aggregates hold every op, the kept events only the last steps
        for (label, is_range, _, _, stack), row in rep.agg.fine.items():
            if not is_range:
                add(stack, label, row.cpu_time_total)
    else:
        for e in rep.ops:
            add(e.stack, op_label(e), e.end_ns - e.start_ns)
    return [f"{k} {max(1, round(v / 1e3))}" for k, v in sorted(acc.items(), key=lambda kv: -kv[1])]


def trim_launcher(frames: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Drops the frames that launched the script (`tracetensor profile`, runpy), outermost
    first in `frames` as (function, file, line): stacks then start at the script's module."""
    for i in range(len(frames) - 1, -1, -1):
        if is_launcher_frame(frames[i][0], frames[i][1]):
            return frames[i + 1 :]
    return frames


def export_stacks(rep: Report, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(folded_stacks(rep)) + "\n")


def _write_json(path: str, doc: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, separators=(",", ":"), default=str))
