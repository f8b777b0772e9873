"""What instrumentation costs, every case in one run: the eager and graph steps against
hand-written numpy, a timing-only listener, `profile()` (timings only, and with shapes,
memory and stacks), `tt.record` ("none", "check", "summary") with trace bytes per op event, the
same on a bigger model and a small conv net, graph construction with large shapes, and the profiler's peak
RSS over a long run. torch and torch.profiler run alongside when torch is installed.
Ratios are of CPU time (all threads of the process) against baselines timed in the same
process, cases interleaved round by round.

    python benchmarks/run.py overhead      (TT_BENCH_QUICK=1: fewer rounds)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

# one BLAS thread: the comparison is of framework overhead, not of BLAS threading (and a
# spinning BLAS pool against the recorder's writer thread on 2 cores is pure noise)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # (torch C++ warnings; its profiler lines: _quiet_stderr)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_engine as be  # noqa: E402
import bench_graph as bg  # noqa: E402
from _common import fmt_time, print_table  # noqa: E402
from tracetensor.profiler import profile  # noqa: E402

import tracetensor as tt  # noqa: E402
import tracetensor.nn as nn  # noqa: E402
import tracetensor.nn.functional as F  # noqa: E402
from tracetensor import events  # noqa: E402
from tracetensor.trace import server  # noqa: E402

QUICK = bool(os.environ.get("TT_BENCH_QUICK"))

# a case: () -> (start, step, stop); start/stop bracket one timed round of `number` steps
Case = Callable[[], tuple[Callable[[], object], Callable[[], object], Callable[[], object]]]


def _nothing() -> None:
    return None


# CPU seconds of the whole process (every thread): on a shared machine, wall time mostly
# measures the other jobs. A recording's writer process is counted apart (`_writer_cpu`)
_clock = time.process_time


def _writer_cpu() -> float:
    """CPU seconds the recordings' writer process has used (0 when recordings write in this
    process: TRACETENSOR_WRITER=thread, or no writer process started yet)."""
    c = server._client
    return c.cpu_seconds() if c is not None and not c.dead else 0.0


def _start_writer() -> None:
    """The writer process, started and booted before the timed rounds where recordings use one,
    as in a program whose earlier recording started it (a recording starts it with its first
    batch handed over: see tracetensor/trace/server.py). Each round then measures what a
    recording costs, not one round the process's boot."""
    from tracetensor.trace import recorder

    if recorder.uses_writer_process():
        try:
            server.client().wait_ready()
        except OSError:  # (no process can start: recordings write in this process)
            pass


def _rounds(cases: dict[str, Case], number: int, repeat: int, longer: dict[str, int] | None = None) -> dict[str, float]:
    """Median CPU seconds per step of each case, rounds interleaved across cases. `longer`:
    cases whose round is that many times `number` steps (a recording: one file per round,
    as long as a real one, not 100 steps' worth of file creation and closing). For those,
    also "<case> +writer" (the program's and its writer process's CPU together) and "<case>
    wall" (wall-clock seconds)."""
    longer = longer or {}
    if longer:
        _start_writer()
    made = {k: make() for k, make in cases.items()}
    for start, step, stop in made.values():  # warm up (plans compiled, caches filled)
        start()
        for _ in range(max(2, number // 10)):
            step()
        stop()
    acc: dict[str, list[float]] = {k: [] for k in cases}
    for k in longer:
        acc[f"{k} +writer"], acc[f"{k} wall"] = [], []
    for _ in range(repeat):
        for k, (start, step, stop) in made.items():
            n = number * longer.get(k, 1)
            start()
            w0 = _writer_cpu() if k in longer else 0.0
            t0, wall0 = _clock(), time.perf_counter()
            for _ in range(n):
                step()
            stop()  # a recorder's last flush, a listener's close: part of the cost
            cpu, wall = _clock() - t0, time.perf_counter() - wall0
            acc[k].append(cpu / n)
            if k in longer:
                acc[f"{k} +writer"].append((cpu + _writer_cpu() - w0) / n)
                acc[f"{k} wall"].append(wall / n)
    return {k: float(np.median(v)) for k, v in acc.items()}


def _plain(step: Callable[[], object]) -> Case:
    return lambda: (_nothing, step, _nothing)


def _profiled(step: Callable[[], object], read: bool = False, marked: bool = True, **kw: bool) -> Case:
    """`profile(**kw)` around each round; `read`: the round ends with `key_averages()` too
    (the window's analysis waits for its first read); `marked`: `prof.step()` after each step."""

    def make():
        box: list[profile] = []

        def start() -> None:
            box[:] = [profile(**kw)]
            box[0].start()

        def one() -> None:
            step()
            box[0].step()

        def stop() -> None:
            box[0].stop()
            if read:
                assert box[0].key_averages()

        return start, one if marked else step, stop

    return make


def _timing_listener(step: Callable[[], object], read: str = "") -> Case:
    """A consumer that wants only timings: it listens raw, without names (the program as it
    runs unobserved); after the round it reads nothing (the cost of listening, as the
    `profile()` row), its `timings()`, or `materialize()`'s whole OpEvents."""

    def make():
        got: list = []
        box: list[events.Listener] = []

        def start() -> None:
            got.clear()
            box[:] = [events.subscribe(got.append, raw=True, names=False)]

        def stop() -> None:
            box[0].close()
            if read == "events":
                ops = events.materialize(got)
                assert [(e.op, e.end_ns - e.start_ns) for e in ops if e.__class__ is events.OpEvent]
            elif read == "timings":
                assert [(t.op, t.end_ns - t.start_ns) for t in events.timings(got)]
            else:
                assert got

        return start, step, stop

    return make


class _Recording:
    def __init__(self, step: Callable[[], object], values: str, tmp: str) -> None:
        self.step, self.values, self.tmp = step, values, tmp
        self.paths: list[str] = []

    def __call__(self):
        def start() -> None:
            self.paths.append(os.path.join(self.tmp, f"{self.values}-{id(self)}-{len(self.paths)}.ttrace"))
            self.rec = tt.record(self.paths[-1], values=self.values, max_bytes=1 << 30).start()

        return start, self.step, lambda: self.rec.stop()

    def bytes_per_op(self) -> float:
        """Trace bytes per op event over every file this case wrote (read after timing)."""
        ops = size = 0
        for p in self.paths:
            with tt.trace.open(p) as t:
                ops += t.count()
            size += os.path.getsize(p)
        return size / max(ops, 1)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """torch.profiler's C++ side prints a line to the process's stderr at each start and stop
    (`USDT: ... profiler_start`), which TORCH_CPP_LOG_LEVEL does not silence: a run of this
    benchmark would print hundreds around its tables. The file descriptor is pointed at
    /dev/null for those two calls only."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _torch_cases(steps_for: Callable[[], Callable[[], object] | None]) -> dict[str, Case]:
    step = steps_for()
    if step is None:
        return {}
    import torch.profiler as tp

    def torch_profiled(read: bool = False, **kw: bool) -> Case:
        def make():
            box: list = []

            def start() -> None:
                box[:] = [tp.profile(activities=[tp.ProfilerActivity.CPU], **kw)]
                with _quiet_stderr():
                    box[0].__enter__()

            def stop() -> None:
                with _quiet_stderr():
                    box[0].__exit__(None, None, None)
                if read:
                    assert box[0].key_averages()

            return start, step, stop

        return make

    return {
        "torch": _plain(step),
        "torch.profiler": torch_profiled(),
        "torch.profiler read": torch_profiled(read=True),
        "torch.profiler full": torch_profiled(record_shapes=True, profile_memory=True, with_stack=True),
    }


def _writer_row(t: dict[str, float], k: str, base: str = "eager") -> tuple[str, str, str, str, str]:
    """The row under recording case `k`'s: with its writer process's CPU added, and wall
    clock, against the plain step `base` timed in rounds as long as `k`'s (CPU, wall)."""
    w, wall = t[k + " +writer"], t[k + " wall"]
    return (
        "  with the writer process's CPU; wall clock",
        f"{fmt_time(w)}; {fmt_time(wall)}",
        f"{w / t[base]:.2f}x; {wall / t[base + ' wall']:.2f}x",
        "",
        "",
    )


def small_model(number: int, repeat: int, tmp: str) -> tuple[list, dict]:
    x, y, params = be._data(np.random.default_rng(0))
    model = be.MLP()
    model.load_state_dict(
        {
            "fc1.weight": tt.tensor(params[0]),
            "fc1.bias": tt.tensor(params[1]),
            "fc2.weight": tt.tensor(params[2]),
            "fc2.bias": tt.tensor(params[3]),
        }
    )
    step = be._tt_step(model, tt.optim.SGD(model.parameters(), lr=be.LR), tt.tensor(x), tt.tensor(y))
    np_params = [p.copy() for p in params]
    g_np, g_step = bg.numpy_step(), bg.graph_step()[0]
    rec = {v: _Recording(step, v, tmp) for v in ("none", "check", "summary")}
    cases: dict[str, Case] = {
        "numpy": _plain(lambda: be.numpy_step(x, y, np_params)),
        "eager": _plain(step),
        "graph numpy": _plain(g_np),
        "graph": _plain(g_step),
        "timing listener": _timing_listener(step),
        "timing listener timings": _timing_listener(step, "timings"),
        "timing listener events": _timing_listener(step, "events"),
        "profile()": _profiled(step),
        "profile() read": _profiled(step, read=True),
        "profile(full)": _profiled(step, record_shapes=True, profile_memory=True, with_stack=True),
        "record none": rec["none"],
        "record check": rec["check"],
        "record summary": rec["summary"],
        # the plain step again, in rounds as long as a recording's: the baseline of the record
        # rows (a step timed right after other cases runs slower for a while: 100-step rounds
        # measure it 4-6% slower than 1,000-step rounds, which flattered the record rows)
        "eager, long rounds": _plain(step),
    }
    cases.update(_torch_cases(lambda: be._torch_step(x, y, params)))
    t = _rounds(
        cases,
        number,
        repeat,
        longer={"eager, long rounds": RECORD_ROUNDS, **{f"record {v}": RECORD_ROUNDS for v in rec}},
    )
    r = lambda k, base="eager": f"{t[k] / t[base]:.2f}x"
    torch = "torch" in t
    rows = [
        (
            "eager step vs numpy",
            fmt_time(t["eager"]),
            r("eager", "numpy"),
            "<= 1.4x",
            f"torch {r('torch', 'numpy')}" if torch else "torch: not installed",
        ),
        ("graph Session.run vs numpy", fmt_time(t["graph"]), r("graph", "graph numpy"), "<= 1.15x", "TF1 4.1x"),
        (
            "timing-only listener (raw, names=False)",
            fmt_time(t["timing listener"]),
            r("timing listener"),
            "<= 1.15x",
            "",
        ),
        (
            "  then reading its events.timings()",
            fmt_time(t["timing listener timings"]),
            r("timing listener timings"),
            "",
            "",
        ),
        (
            "  then reading materialize()'s OpEvents",
            fmt_time(t["timing listener events"]),
            r("timing listener events"),
            "",
            "",
        ),
        (
            "profile() timings only",
            fmt_time(t["profile()"]),
            r("profile()"),
            "<= 1.15x",
            f"torch.profiler {r('torch.profiler', 'torch')}" if torch else "torch: not installed",
        ),
        (
            "profile(), then key_averages()",
            fmt_time(t["profile() read"]),
            r("profile() read"),
            "",
            f"torch.profiler {r('torch.profiler read', 'torch')}" if torch else "torch: not installed",
        ),
        (
            "profile(shapes, memory, stack)",
            fmt_time(t["profile(full)"]),
            r("profile(full)"),
            "<= 1.6x",
            f"torch.profiler {r('torch.profiler full', 'torch')}" if torch else "torch: not installed",
        ),
    ]
    steps, long = number * RECORD_ROUNDS, "eager, long rounds"
    rows.append((f"plain eager step, {steps}-step rounds (the record rows' baseline)", fmt_time(t[long]), "", "", ""))
    for v, goal in (("none", "<= 1.3x"), ("check", "<= 1.6x"), ("summary", "<= 1.6x")):
        per = f"{rec[v].bytes_per_op():.0f} B/op event"
        k = f"record {v}"
        rows.append((f'tt.record(values="{v}"), {steps}-step files', fmt_time(t[k]), r(k, long), goal, per))
        rows.append(_writer_row(t, k, long))
    rows.append(("  a recording's start and stop (an empty file)", fmt_time(_open_close(tmp)), "", "", ""))
    return rows, t


RECORD_ROUNDS = 10  # a recording's round is 10x the others' (see _rounds)


def long_recording(steps: int, repeat: int, tmp: str) -> list:
    """The small MLP recorded into one file of `steps` steps (the issue's "recording 1M events"
    is 62,500 of them): the steady state, where a file's start and stop and its writer's first
    batches weigh nothing. Each recording sits between two plain runs of a quarter its length
    (the baseline: their mean), repeated; medians of the ratios."""
    _start_writer()
    x, y, _ = be._data(np.random.default_rng(0))
    model = be.MLP()
    step = be._tt_step(model, tt.optim.SGD(model.parameters(), lr=be.LR), tt.tensor(x), tt.tensor(y))
    for _ in range(50):
        step()

    def plain(n: int) -> tuple[float, float]:
        t0, wall0 = _clock(), time.perf_counter()
        for _ in range(n):
            step()
        return (_clock() - t0) / n, (time.perf_counter() - wall0) / n

    rows = []
    for v in ("none", "summary"):
        got: dict[str, list[float]] = {"cpu": [], "total": [], "wall": [], "step": [], "writer": []}
        size = events = 0
        for i in range(repeat):
            before = plain(steps // 4)
            path = os.path.join(tmp, f"long-{v}-{i}.ttrace")
            w0, t0, wall0 = _writer_cpu(), _clock(), time.perf_counter()
            with tt.record(path, values=v, max_bytes=1 << 30):
                for _ in range(steps):
                    step()
            cpu, wall, writer = _clock() - t0, time.perf_counter() - wall0, _writer_cpu() - w0
            after = plain(steps // 4)
            base, base_wall = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            got["step"].append(cpu / steps)
            got["writer"].append(writer / steps)
            got["cpu"].append(cpu / steps / base)
            got["total"].append((cpu + writer) / steps / base)
            got["wall"].append(wall / steps / base_wall)
            size = os.path.getsize(path)
            with tt.trace.open(path) as t:
                events = t.count()
            os.remove(path)
        m = {k: float(np.median(g)) for k, g in got.items()}
        rows.append(
            (
                f'tt.record(values="{v}"), one {steps:,}-step file ({events:,} op events)',
                fmt_time(m["step"]),
                f"{m['cpu']:.2f}x",
                "<= 1.3x" if v == "none" else "<= 1.6x",
                f"{size / max(events, 1):.1f} B/op event",
            )
        )
        rows.append(
            (
                "  with the writer process's CPU (a step's); wall clock",
                fmt_time(m["writer"]),
                f"{m['total']:.2f}x; {m['wall']:.2f}x",
                # (the goal all counted: what a training run recorded costs the machine)
                "<= 1.3x; 1.3x" if v == "none" else "<= 1.6x; 1.6x",
                "",
            )
        )
    return rows


def _open_close(tmp: str) -> float:
    """Median CPU seconds of `tt.record(...).start()` then `.stop()` with one op between."""
    x = tt.ones(4, 4)
    times = []
    for i in range(9):
        t0 = _clock()
        r = tt.record(os.path.join(tmp, f"empty-{i}.ttrace"), values="none").start()
        x.relu()
        r.stop()
        times.append(_clock() - t0)
    return float(np.median(times))


def big_model(number: int, repeat: int, tmp: str) -> list:
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    opt = tt.optim.SGD(model.parameters(), lr=0.01)
    x = tt.tensor(rng.standard_normal((256, 512)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 10, 256))

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    t = _rounds(
        {"eager": _plain(step), "profile()": _profiled(step), "record none": _Recording(step, "none", tmp)},
        number,
        repeat,
        longer={"eager": 1, "record none": 1},
    )
    return [
        (f"512->1024->1024->10 batch 256: {k}", fmt_time(t[k]), f"{t[k] / t['eager']:.2f}x", "<= 1.05x", "")
        for k in ("profile()", "record none")
    ] + [_writer_row(t, "record none")]


def real_loops(number: int, repeat: int, tmp: str) -> list:
    """Two loops as programs write them, recorded ("none", `number` steps a file) against
    their plain step in rounds as long: the MLP fed a batch made each step (`tt.tensor(x)`,
    as a data loader's are), and a hand-written loop with no module and no optimizer (`w -=
    lr * w.grad`, a tutorial's regression, 9 ops a step). Before their steps were named alike
    (README, Runs) each had a new name, so a new call site and signature, per op and step."""
    x, y, _ = be._data(np.random.default_rng(0))
    model = be.MLP()
    opt = tt.optim.SGD(model.parameters(), lr=be.LR)

    def fresh() -> None:
        opt.zero_grad()
        F.cross_entropy(model(tt.tensor(x)), tt.tensor(y)).backward()
        opt.step()

    rng = np.random.default_rng(1)
    xs = tt.tensor(rng.standard_normal((64, 32)).astype(np.float32))
    w = tt.tensor(rng.standard_normal((32, 1)).astype(np.float32) * 0.1, requires_grad=True)

    def by_hand() -> None:
        ((xs @ w) ** 2).mean().backward()
        with tt.no_grad():
            w.sub_(0.01 * w.grad)
        w.grad = None

    recs = {k: _Recording(f, "none", tmp) for k, f in (("fresh", fresh), ("by hand", by_hand))}
    cases: dict[str, Case] = {"fresh": _plain(fresh), "by hand": _plain(by_hand)}
    cases.update({f"{k} record": r for k, r in recs.items()})
    t = _rounds(cases, number, repeat, longer={k: 1 for k in cases})
    rows = []
    for k, label in (("fresh", "MLP step, a batch tensor made each step"), ("by hand", "a hand-written loop")):
        rows.append((f"{label}: plain ({number}-step rounds)", fmt_time(t[k]), "", "", ""))
        rows.append(
            (
                '  tt.record(values="none"), a file per round; with the writer process\'s CPU',
                f"{fmt_time(t[k + ' record'])}; {fmt_time(t[k + ' record +writer'])}",
                f"{t[k + ' record'] / t[k]:.2f}x; {t[k + ' record +writer'] / t[k]:.2f}x",
                "",
                f"{recs[k].bytes_per_op():.1f} B/op event",
            )
        )
    return rows


def inference_model(number: int, repeat: int, tmp: str) -> list:
    """The small MLP's forward and an argmax under `no_grad`, in a loop with no optimizer (an
    evaluation loop): plain, under `profile()` without `prof.step()` and recorded, in rounds of
    `number` steps each (a file per round); torch's same loop and torch.profiler alongside.
    Each batch is a step of its own (see nn.Module._call_listened): its op names repeat."""
    x, _, params = be._data(np.random.default_rng(0))
    model = be.MLP()
    model.load_state_dict(
        {k: tt.tensor(v) for k, v in zip(("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"), params)}
    )
    tx = tt.tensor(x)

    def step() -> None:
        with tt.no_grad():
            model(tx).argmax(1)

    def torch_step() -> Callable[[], object] | None:
        try:
            import torch
        except ImportError:
            return None
        torch.set_num_threads(1)
        tm = torch.nn.Sequential(
            torch.nn.Linear(be.D_IN, be.D_HID), torch.nn.ReLU(), torch.nn.Linear(be.D_HID, be.D_OUT)
        )
        with torch.no_grad():
            for p, v in zip(tm.parameters(), params):
                p.copy_(torch.from_numpy(v.copy()))
        t_x = torch.from_numpy(x)

        def one() -> None:
            with torch.no_grad():
                tm(t_x).argmax(1)

        return one

    rec = _Recording(step, "none", tmp)
    cases: dict[str, Case] = {"eager": _plain(step), "profile()": _profiled(step, marked=False), "record none": rec}
    cases.update({k: v for k, v in _torch_cases(torch_step).items() if k in ("torch", "torch.profiler")})
    t = _rounds(cases, number, repeat, longer={k: 1 for k in cases})
    label = f"MLP forward + argmax under no_grad, no optimizer ({number}-step rounds)"
    torch = "torch" in t
    return [
        (
            f"{label}: eager step",
            fmt_time(t["eager"]),
            f"{t['eager'] / t['torch']:.2f}x torch" if torch else "-",
            "",
            f"torch {fmt_time(t['torch'])}" if torch else "torch: not installed",
        ),
        (
            "  profile(), no prof.step()",
            fmt_time(t["profile()"]),
            f"{t['profile()'] / t['eager']:.2f}x",
            "",
            f"torch.profiler {t['torch.profiler'] / t['torch']:.2f}x" if torch else "",
        ),
        (
            '  tt.record(values="none"), a file per round',
            fmt_time(t["record none"]),
            f"{t['record none'] / t['eager']:.2f}x",
            "",
            f"{rec.bytes_per_op():.0f} B/op event",
        ),
        _writer_row(t, "record none"),
    ]


def _convnet(lib: object) -> object:
    """The same small CNN in tracetensor or torch (`lib.nn`): 1x28x28 -> conv 3x3x8 -> pool 2
    -> conv 3x3x16 -> pool 2 -> dense 10."""
    n = lib.nn  # type: ignore[attr-defined]
    return n.Sequential(
        n.Conv2d(1, 8, 3, padding=1),
        n.ReLU(),
        n.MaxPool2d(2),
        n.Conv2d(8, 16, 3, padding=1),
        n.ReLU(),
        n.MaxPool2d(2),
        n.Flatten(),
        n.Linear(16 * 7 * 7, 10),
    )


def conv_model(number: int, repeat: int, tmp: str) -> list:
    """The issue's "small conv net": a training step (batch 32, SGD with momentum) plain,
    profiled and recorded, a file per round; torch's same step and torch.profiler alongside."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y_np = rng.integers(0, 10, 32)
    model = _convnet(tt)
    opt = tt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = tt.tensor(x_np), tt.tensor(y_np)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def torch_step() -> Callable[[], object] | None:
        try:
            import torch
        except ImportError:
            return None
        torch.set_num_threads(1)
        tm = _convnet(torch)
        with torch.no_grad():  # (the same weights: the same work)
            for p, q in zip(tm.parameters(), model.parameters()):
                p.copy_(torch.from_numpy(q.detach().numpy().copy()))
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np)

        def one() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

        return one

    rec = {v: _Recording(step, v, tmp) for v in ("none", "check", "summary")}
    # (the record rows' baseline: the plain step in rounds as long as a recording's, as in the
    # MLP's table; a recording's round is CONV_RECORD_ROUNDS rounds, a file of 0.6 s, whose
    # start and stop are then not a fifth of what the row measures)
    cases: dict[str, Case] = {"eager": _plain(step), "profile()": _profiled(step), "eager, long rounds": _plain(step)}
    cases.update({f"record {v}": r for v, r in rec.items()})
    torch = {k: v for k, v in _torch_cases(torch_step).items() if k in ("torch", "torch.profiler")}
    cases.update(torch)
    longer = {"eager, long rounds": CONV_RECORD_ROUNDS, **{f"record {v}": CONV_RECORD_ROUNDS for v in rec}}
    t = _rounds(cases, number, repeat, longer=longer)
    r = lambda k, base="eager": f"{t[k] / t[base]:.2f}x"
    label = "small CNN, batch 32"
    rows = [
        (
            f"{label}: eager step",
            fmt_time(t["eager"]),
            f"{t['eager'] / t['torch']:.2f}x torch" if torch else "-",
            "",
            f"torch {fmt_time(t['torch'])}" if torch else "torch: not installed",
        ),
        (
            f"{label}: profile()",
            fmt_time(t["profile()"]),
            r("profile()"),
            "<= 1.05x",
            f"torch.profiler {r('torch.profiler', 'torch')}" if torch else "",
        ),
    ]
    long = "eager, long rounds"
    steps = number * CONV_RECORD_ROUNDS
    rows.append(
        (f"{label}: eager step, {steps}-step rounds (the record rows' baseline)", fmt_time(t[long]), "", "", "")
    )
    for v in rec:
        k = f"record {v}"
        rows.append(
            (
                f"{label}: record {v}, {steps}-step files",
                fmt_time(t[k]),
                r(k, long),
                "<= 1.05x" if v == "none" else "",
                "",
            )
        )
        rows.append(_writer_row(t, k, long))
    return rows


CONV_RECORD_ROUNDS = 4


_MALLOC_CHILD = """
import os, resource, sys, time
import numpy as np
import tracetensor as tt, tracetensor.nn as nn, tracetensor.nn.functional as F
from tracetensor import _malloc
rng = np.random.default_rng(0)
if sys.argv[1] == "cnn":
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    x, n = tt.tensor(rng.standard_normal((32, 1, 28, 28)).astype(np.float32)), 32
else:
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    x, n = tt.tensor(rng.standard_normal((256, 512)).astype(np.float32)), 256
y = tt.tensor(rng.integers(0, 10, n))
opt = tt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
def step():
    opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
for _ in range(3):
    step()
k = int(sys.argv[2])
f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
for _ in range(k):
    step()
print(_malloc.TUNED, (time.process_time() - t0) / k, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / k)
"""


def malloc_rows(repeat: int) -> list:
    """A step of the bigger model and of the small CNN, each in a fresh process without torch
    (whose own allocations raise glibc's adaptive thresholds): with tracetensor's malloc
    thresholds (see tracetensor/_malloc.py) and with glibc's defaults (TRACETENSOR_MALLOC=
    default), interleaved; medians of CPU time and page faults per step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    rows = []
    for model, steps, label in (("mlp", 10, "512->1024->1024->10 batch 256"), ("cnn", 30, "small CNN batch 32")):
        got: dict[str, list[tuple[float, float]]] = {"set": [], "default": []}
        tuned = True
        for _ in range(repeat):
            for mode in got:
                e = {**env, "TRACETENSOR_MALLOC": mode}
                out = subprocess.run(
                    [sys.executable, "-c", _MALLOC_CHILD, model, str(steps)],
                    env=e,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                ).stdout.split()
                tuned &= out[0] == "True" if mode == "set" else True
                got[mode].append((float(out[1]), float(out[2])))
        t = {m: float(np.median([a for a, _ in v])) for m, v in got.items()}
        pf = {m: float(np.median([b for _, b in v])) for m, v in got.items()}
        rows.append(
            (
                f"{label}, a fresh process: eager step, malloc thresholds set (glibc's defaults)",
                f"{fmt_time(t['set'])} ({fmt_time(t['default'])})",
                f"{t['set'] / t['default']:.2f}x",
                "",
                f"page faults a step: {pf['set']:.0f} ({pf['default']:.0f})" + ("" if tuned else "; not set here"),
            )
        )
    return rows


def graph_build() -> list:
    import tracetensor.graph as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [3000, 3000])
        t0 = time.perf_counter()
        y = x
        for _ in range(5):
            y = tf.matmul(y, x)
        dt = time.perf_counter() - t0
    assert y.shape.as_list() == [3000, 3000]
    return [
        (
            "graph build: five 3000x3000 tf.matmul nodes",
            fmt_time(dt),
            "",
            "no full-size compute",
            "2.4 s before (full-size)",
        )
    ]


_RSS_CHILD = r"""
import resource, sys, numpy as np

def peak_kb():  # VmHWM is this process's own; ru_maxrss keeps the parent's peak across exec on Linux
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

import tracetensor as tt, tracetensor.nn as nn, tracetensor.nn.functional as F
from tracetensor.profiler import profile
n = int(sys.argv[1]); FULL = sys.argv[2:] == ["full"]; MARKED = sys.argv[2:] != ["unmarked"]
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = tt.optim.SGD(model.parameters(), lr=0.01)
x = tt.tensor(rng.standard_normal((64, 64)).astype(np.float32)); y = tt.tensor(rng.integers(0, 10, 64))
import os, tempfile, time
def plain(k):
    for _ in range(k):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
plain(n // 10)
t0 = time.process_time(); plain(n); t_plain = time.process_time() - t0
base = peak_kb()
t0 = time.process_time()
with profile(profile_memory=FULL, with_stack=FULL, record_shapes=FULL) as prof:
    for _ in range(n):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
        if MARKED: prof.step()
    held = peak_kb()
t_prof = time.process_time() - t0
t0 = time.process_time()
rows = prof.key_averages()
t_read = time.process_time() - t0
ops = sum(r.count for r in rows if not r.is_range)
with tempfile.TemporaryDirectory() as d:
    t0 = time.process_time()
    prof.export_chrome_trace(os.path.join(d, "t.json"))
    t_export = time.process_time() - t0
    kept = len([e for e in prof.events() if e.__class__.__name__ == "OpEvent"])
print(base, held, peak_kb(), ops, t_plain, t_prof, t_read, t_export, kept)
"""


def profiler_rss(steps: list[int], mode: str = "") -> list:
    """Peak RSS and times of a profiled loop, a child process each; `mode`: "full" (shapes,
    memory, stack) or "unmarked" (no `prof.step()`: a script profiled as it is)."""
    rows = []
    what = {"full": "profile(shapes, memory, stack)", "unmarked": "profile(), no prof.step()"}.get(mode, "profile()")
    for n in steps:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(n), *([mode] if mode else [])],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        ).stdout.split()
        base, held, peak, ops = (int(v) for v in out[:4])
        t_plain, t_prof, t_read, t_export = (float(v) for v in out[4:8])
        kept = int(out[8])
        rows.append(
            (
                f"{what} {n:,} steps ({ops:,} op events): peak RSS",
                f"{peak / 1024:.0f} MB",
                f"{(held - base) / 1024:.0f} MB held above the start",
                "< 300 MB at any length",
                "torch.profiler 15.8 GB at 20,000 steps",
            )
        )
        rows.append(
            (
                "  the whole loop profiled (folding as it goes) vs unprofiled; key_averages(); chrome export",
                f"{t_prof / t_plain:.2f}x",
                f"{t_read * 1e3:.0f} ms; {t_export:.2f} s for {kept:,} kept events",
                "export <= 2 s per 100k events",
                "",
            )
        )
    return rows


def _table(title: str, rows: list) -> None:
    print_table(title, [(a, b, c, f"{d}" + (f"  [{e}]" if e else "")) for a, b, c, d, e in rows])


def main() -> None:
    number, repeat = (50, 3) if QUICK else (100, 7)
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as tmp:
        rows, _ = small_model(number, repeat, tmp)
        _table(
            "instrumentation overhead, MLP 64->128->10 batch 64, SGD (ratio vs the plain eager step; [anchor])", rows
        )
        _table(
            "a long recording: the MLP in one file (ratio vs the plain step around it)",
            long_recording(4000 if QUICK else 20000, 3, tmp),
        )
        _table("bigger model", big_model(max(5, number // 10), repeat, tmp))
        _table(
            "small conv net (ratio vs its plain eager step; [anchor])", conv_model(max(10, number // 2), repeat, tmp)
        )
        _table("an inference loop (ratio vs its plain step; [anchor])", inference_model(10 * number, repeat, tmp))
        _table("loops as programs write them (ratio vs their plain step)", real_loops(20 * number, repeat, tmp))
    _table("malloc thresholds (a child process each, no torch)", malloc_rows(3 if QUICK else 5))
    _table("graph construction", graph_build())
    lengths = [2000, 8000] if QUICK else [5000, 20000]
    _table(
        "profiler memory at length (a child process each)",
        profiler_rss(lengths) + profiler_rss(lengths, "full") + profiler_rss(lengths, "unmarked"),
    )


if __name__ == "__main__":
    main()
