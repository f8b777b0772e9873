"""py-spy on our own process: start it, align its samples with the op timeline, parse them.

py-spy's chrometrace output gives each sampled stack as B/E slices whose timestamps count
from py-spy's own start, not from any clock we know. To align them we run a marker of our
own: right after py-spy says it is sampling, this process spins in `_tracetensor_clock_sync`
for a few sample intervals and notes `perf_counter_ns` around it; the marker's slice in
py-spy's output then gives the offset between the two clocks (accurate to about one
sample interval).

Attaching needs ptrace rights over this process. Under Linux's Yama (ptrace_scope=1) a
process may not trace its parent, so we first allow any process of ours to trace us
(`prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)`, undone when sampling stops).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .export import evented_profile, trim_launcher

MARKER = "_tracetensor_clock_sync"
_PR_SET_PTRACER = 0x59616D61
_PR_SET_PTRACER_ANY = ctypes.c_ulong(-1).value


class PySpyUnavailable(RuntimeError):
    """py-spy could not sample this process (not installed, or no ptrace rights)."""


def find_pyspy() -> str | None:
    """$TRACETENSOR_PYSPY, else the py-spy beside this Python (a venv's), else on PATH."""
    if os.environ.get("TRACETENSOR_PYSPY"):
        return os.environ["TRACETENSOR_PYSPY"]
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.access(here, os.X_OK) else shutil.which("py-spy")


def _set_ptracer(value: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PTRACER, ctypes.c_ulong(value), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no Yama, or no prctl: attaching may still work


def _tracetensor_clock_sync(seconds: float) -> tuple[int, int]:
    """Busy for `seconds` in a frame py-spy will sample under this function's name."""
    t0 = time.perf_counter_ns()
    end = t0 + int(seconds * 1e9)
    while time.perf_counter_ns() < end:
        pass
    return t0, time.perf_counter_ns()


@dataclass
class Samples:
    """py-spy's slices, already on our `perf_counter_ns` clock."""

    slices: list[tuple[int, int, int, str, str, int]] = field(default_factory=list)
    # (start_ns, end_ns, depth, function, filename, line) for the sampled thread
    rate: int = 100
    thread: int = 0
    offset_ns: int = 0
    aligned: bool = False

    def clip(self, t0: int, t1: int) -> Samples:
        """Keeps the part of the samples between t0 and t1 (the script's own run)."""
        self.slices = [
            (max(s, t0), min(e, t1), d, fn, f, ln) for s, e, d, fn, f, ln in self.slices if e > t0 and s < t1
        ]
        return self

    def within(self, spans: list[tuple[int, int]]) -> Samples:
        """Keeps the parts of the samples inside `spans` (the recorded steps), so that
        their times compare with the steps' wall time."""
        merged: list[list[int]] = []
        for a, b in sorted(spans):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.slices = sorted(
            (
                (max(s, a), min(e, b), d, fn, f, ln)
                for a, b in merged
                for s, e, d, fn, f, ln in self.slices
                if e > a and s < b
            ),
            key=lambda x: (x[0], x[2]),
        )
        return self

    def self_times(self) -> list[tuple[str, str, int, int]]:
        """(function, file:line of its innermost sampled line, self ns, total ns), by self ns."""
        if not self.slices:
            return []
        # self time of a slice = its duration minus its direct children's
        child: dict[int, int] = {}
        stack: list[int] = []
        for i, (s, e, _d, *_rest) in enumerate(self.slices):
            while stack and not (self.slices[stack[-1]][0] <= s and e <= self.slices[stack[-1]][1]):
                stack.pop()
            if stack:
                child[stack[-1]] = child.get(stack[-1], 0) + (e - s)
            stack.append(i)
        acc: dict[tuple[str, str], list[int]] = {}
        for i, (s, e, _d, fn, fname, _line) in enumerate(self.slices):
            a = acc.setdefault((fn, fname), [0, 0])
            a[0] += (e - s) - child.get(i, 0)
            a[1] += e - s
        rows = [(fn, fname, a[0], a[1]) for (fn, fname), a in acc.items() if fn != MARKER]
        return sorted(rows, key=lambda r: -r[2])

    def chrome_events(self, base_ns: int, pid: int = 3) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": "Python (py-spy samples)"}},
            {"ph": "M", "pid": pid, "tid": 1, "name": "thread_name", "args": {"name": "main thread"}},
        ]
        for s, e, _d, fn, fname, line in self.slices:
            out.append(
                {
                    "ph": "X",
                    "pid": pid,
                    "tid": 1,
                    "name": fn,
                    "cat": "py-spy",
                    "ts": (s - base_ns) / 1e3,
                    "dur": (e - s) / 1e3,
                    "args": {"file": fname, "line": line},
                }
            )
        return out

    def speedscope(self, base_ns: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(frames, an evented profile) of the samples, times in ns after `base_ns`."""
        frames: list[dict[str, Any]] = []
        index: dict[tuple, int] = {}
        spans = []
        for s, e, d, fn, fname, line in self.slices:
            k = (fn, fname, line)
            if k not in index:
                index[k] = len(frames)
                frames.append({"name": fn, "file": fname, "line": line})
            spans.append((s - base_ns, e - base_ns, d, index[k]))
        return frames, evented_profile("Python (py-spy samples)", spans)

    def folded(self) -> list[str]:
        """Folded stacks of the samples, launcher frames trimmed (value: microseconds of
        sampled self time of the innermost frame)."""
        acc: dict[str, int] = {}
        path: list[list] = []  # [start, end, frame, self ns]
        keys: list[tuple[str, list]] = []
        for s, e, _d, fn, fname, line in self.slices:
            while path and not (path[-1][0] <= s and e <= path[-1][1]):
                path.pop()
            if path:
                path[-1][3] -= e - s  # the parent's self time excludes this child
            node = [s, e, (fn, fname, line), e - s]
            path.append(node)
            frames = trim_launcher([p[2] for p in path])
            keys.append((";".join(f"{f} ({os.path.basename(n)}:{ln})" for f, n, ln in frames), node))
        for k, node in keys:
            if k:
                acc[k] = acc.get(k, 0) + node[3]
        return [f"{k} {round(v / 1e3)}" for k, v in acc.items() if v >= 500]


class PySpy:
    """`with PySpy(out_json, rate) as spy:` samples this process while the block runs;
    `spy.samples()` afterwards. Raises PySpyUnavailable from `start()` when it can't."""

    def __init__(self, path: str, rate: int = 100) -> None:
        self.path, self.rate = path, rate
        self.proc: subprocess.Popen | None = None
        self.marker: tuple[int, int] | None = None
        self._err: list[str] = []
        self.launch_ns = 0

    def start(self, timeout: float = 10.0) -> None:
        exe = find_pyspy()
        if exe is None:
            raise PySpyUnavailable("py-spy is not installed (pip install py-spy)")
        _set_ptracer(_PR_SET_PTRACER_ANY)
        self.launch_ns = time.perf_counter_ns()
        # its own session: a Ctrl-C meant for the script must not stop py-spy before it writes
        try:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--format",
                    "chrometrace",
                    "--rate",
                    str(self.rate),
                    "--full-filenames",
                    "--output",
                    self.path,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        except OSError as e:  # a bad $TRACETENSOR_PYSPY: not there, not executable, a directory
            _set_ptracer(0)
            where = "$TRACETENSOR_PYSPY" if os.environ.get("TRACETENSOR_PYSPY") else "py-spy"
            raise PySpyUnavailable(f"{where} ({exe!r}) cannot be run: {e.strerror or e}") from None
        ready = threading.Event()
        sampling = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:  # py-spy prints its status lines to stdout
                self._err.append(line.rstrip())
                if "Sampling process" in line:
                    sampling.set()
                    ready.set()
            ready.set()  # output ended: py-spy exited (it could not attach)

        threading.Thread(target=read, daemon=True, name="py-spy output").start()
        # "did it say it is sampling", not "has it exited yet": an exit may not be reaped yet
        if not ready.wait(timeout) or not sampling.is_set() or self.proc.poll() is not None:
            self._kill()
            _set_ptracer(0)
            msg = " ".join(x for x in self._err if x and "py-spy>" not in x)[:300] or "no output"
            raise PySpyUnavailable(
                f"py-spy could not attach to this process ({msg}); on Linux it needs "
                f"ptrace rights: run with sudo, or `sysctl kernel.yama.ptrace_scope=0`, "
                f"or in docker add --cap-add SYS_PTRACE"
            )
        self.marker = _tracetensor_clock_sync(max(5 / self.rate, 0.025))

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        _set_ptracer(0)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def samples(self, thread: int | None = None) -> Samples:
        """py-spy's slices of `thread` (default: the main thread) on our clock."""
        thread = threading.main_thread().ident if thread is None else thread
        with open(self.path, encoding="utf-8") as f:
            raw = json.load(f)
        return parse_chrometrace(raw, thread, self.marker, self.rate, self.launch_ns)


def parse_chrometrace(
    raw: list[dict[str, Any]], thread: int | None, marker: tuple[int, int] | None, rate: int, launch_ns: int = 0
) -> Samples:
    """Pairs py-spy's B/E events into slices and shifts them onto our clock: by the
    marker when its slice is found, else by when py-spy was launched (less exact)."""
    tids = {e.get("tid") for e in raw}
    if thread not in tids:
        thread = max(tids, key=lambda t: sum(1 for e in raw if e.get("tid") == t)) if tids else 0
    slices: list[tuple[int, int, int, str, str, int]] = []
    open_: list[tuple[int, dict[str, Any]]] = []
    for e in raw:
        if e.get("tid") != thread:
            continue
        if e["ph"] == "B":
            open_.append((int(float(e["ts"])), e))
        elif e["ph"] == "E" and open_:
            ts, b = open_.pop()
            args = b.get("args", {})
            slices.append(
                (
                    ts * 1000,
                    int(float(e["ts"])) * 1000,
                    len(open_),
                    b["name"],
                    str(args.get("filename", "")),
                    int(args.get("line", 0) or 0),
                )
            )
    slices.sort(key=lambda s: (s[0], s[2]))
    out = Samples(slices, rate, thread or 0, offset_ns=launch_ns)
    if marker is not None:
        hits = [s for s in slices if s[3] == MARKER]
        if hits:
            # the marker's slice starts at the first sample inside it, on average half an
            # interval after the marker started; likewise it ends after the marker ended
            b, e = hits[0][0], hits[0][1]
            out.offset_ns = (marker[0] + marker[1]) // 2 - (b + e) // 2
            out.aligned = True
    out.slices = [(s + out.offset_ns, e + out.offset_ns, d, fn, fname, line) for s, e, d, fn, fname, line in slices]
    return out
