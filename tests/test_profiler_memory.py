"""The profiler at length: it aggregates as it goes (tables equal to the whole-window
computation), keeps a bounded event stream for export and says what it left out, and
its memory does not grow with the run's length."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from tracetensor.profiler import Report, profile, record_function, schedule
from tracetensor.profiler import core as profiler_core
from tracetensor.profiler.export import folded_stacks

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F


def _train(rng: np.random.Generator, ranges: bool = True):
    """A small training step; without `ranges` (no `record_function`) it is what a profile
    folds straight from records."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = tt.optim.SGD(model.parameters(), lr=0.01)
    x = tt.tensor(rng.standard_normal((4, 8)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 3, 4))

    def step(i: int) -> None:
        opt.zero_grad()
        with record_function("forward") if ranges else contextlib.nullcontext():
            # a smaller last batch: the same tensor names take other shapes
            out = model(x if i % 5 else x[:2])
        F.cross_entropy(out, y if i % 5 else y[:2]).backward()
        opt.step()

    return step


def _rows(rows) -> list[dict]:
    return [dataclasses.asdict(r) for r in rows]


@pytest.fixture
def fold_every_step(monkeypatch):
    monkeypatch.setattr(profiler_core, "_FOLD_EVERY", 1)


def test_folded_aggregates_equal_the_whole_window_computation(rng, fold_every_step):
    step = _train(rng)
    with profile(with_stack=True, with_flops=True, max_trace_events=None) as prof:
        for i in range(12):
            step(i)
            prof.step()
    rep = prof.report
    assert rep.agg is not None and not rep.left_out  # it folded, and kept every event
    whole = Report.from_events(prof.events(), with_stack=True, with_flops=True)
    assert whole.agg is None
    for shapes, stack_n in ((False, 0), (True, 0), (False, 2), (True, 1)):
        got, want = rep.key_averages(shapes, stack_n), whole.key_averages(shapes, stack_n)
        assert _rows(got) == _rows(want)
        for sort in ("self_cpu_time_total", "count", "flops"):
            assert got.table(sort_by=sort, row_limit=0) == want.table(sort_by=sort, row_limit=0)
    assert rep.top_source_lines(10) == whole.top_source_lines(10)
    assert [(s.start, s.end) for s in rep.steps] == [(s.start, s.end) for s in whole.steps]
    assert len(rep.steps) == 12
    assert (rep.op_count, rep.op_time_ns) == (len(whole.ops), whole.op_time_ns)
    shaped = {r.input_shapes for r in rep.key_averages(group_by_input_shape=True) if r.key == "linear"}
    assert any(s.startswith("[2, 8]") for s in shaped)  # the short batches have rows of their own


@pytest.mark.tracetensor_nan("off")  # the plugin's listener would make every op a full event
@pytest.mark.parametrize("kw", [{}, {"record_shapes": True}, {"with_stack": True}], ids=["plain", "shapes", "stack"])
@pytest.mark.parametrize("fold", [1, 10**9])  # every step folded; nothing folded before the read
def test_timings_only_folds_from_records_equal_the_whole_window_computation(rng, monkeypatch, kw, fold):
    """A timings-only profile (no ranges) aggregates straight from the engine's records:
    its tables, steps and source lines are those of the full analysis of the same events."""
    monkeypatch.setattr(profiler_core, "_FOLD_EVERY", fold)
    step = _train(rng, ranges=False)
    with_stack = kw.get("with_stack", False)
    with profile(**kw, max_trace_events=None) as prof:
        for i in range(12):
            step(i)
            prof.step()
    rep = prof.report
    assert rep.agg is not None and not rep.left_out
    whole = Report.from_events(prof.events(), with_stack=with_stack)
    assert whole.agg is None
    for shapes, stack_n in ((False, 0), (True, 0), (False, 2), (True, 1)):
        got, want = rep.key_averages(shapes, stack_n), whole.key_averages(shapes, stack_n)
        assert _rows(got) == _rows(want)
        assert got.table(row_limit=0) == want.table(row_limit=0)
    assert rep.top_source_lines(10) == whole.top_source_lines(10)
    assert [(s.start, s.end, s.child_ns) for s in rep.steps] == [(s.start, s.end, s.child_ns) for s in whole.steps]
    assert len(rep.steps) == 12
    assert (rep.op_count, rep.op_time_ns) == (len(whole.ops), whole.op_time_ns)
    shaped = {r.input_shapes for r in rep.key_averages(group_by_input_shape=True) if r.key == "linear"}
    if kw:  # input shapes are recorded (found by the inputs' names): the short batches have rows of their own
        assert any(s.startswith("[2, 8]") for s in shaped)
    else:  # no input shapes (as torch without record_shapes); rows by output shape
        assert all(s.startswith(" -> ") for s in shaped) and " -> [2, 16]" in shaped


def test_a_report_read_while_recording_does_not_disturb_the_window(rng, fold_every_step):
    step = _train(rng)
    with profile(max_trace_events=None) as prof:
        for i in range(6):
            step(i)
            prof.step()
        mid = {r.key: r.count for r in prof.key_averages()}
        for i in range(6):
            step(i)
            prof.step()
    end = {r.key: r.count for r in prof.key_averages()}
    assert mid["ProfilerStep*"] == 6 and end["ProfilerStep*"] == 12
    assert end["linear"] == 2 * mid["linear"]


def test_a_long_runs_chrome_trace_keeps_the_last_steps_and_says_what_it_left_out(rng, tmp_path, fold_every_step):
    step = _train(rng)
    with profile(max_trace_events=100) as prof:
        for i in range(30):
            step(i)
            prof.step()
    rows = prof.key_averages()
    total_ops = sum(r.count for r in rows if not r.is_range)
    assert next(r for r in rows if r.key == "ProfilerStep*").count == 30  # the tables cover every step
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    doc = json.loads(path.read_text())
    left = doc["otherData"]["left_out"]
    ops = [e for e in doc["traceEvents"] if e.get("cat", "").startswith("op.")]
    steps = [e for e in doc["traceEvents"] if e.get("cat") == "step"]
    assert 0 < len(ops) <= 100 + total_ops // 30  # the budget, give or take one step
    assert left["op_events"] + len(ops) == total_ops
    assert left["steps"] + len(steps) == 30
    assert f"first {left['steps']} steps" in left["note"]
    assert steps[-1]["name"] == "ProfilerStep#29"  # the last steps are the ones kept
    marker = [e for e in doc["traceEvents"] if e.get("cat") == "left_out"]
    assert marker and marker[0]["name"] == left["note"]
    assert "left out" in rows.table()  # the table says so too


_CHILD = r"""
import sys, numpy as np
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
import tracetensor as tt, tracetensor.nn as nn, tracetensor.nn.functional as F
from tracetensor.profiler import profile
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = tt.optim.SGD(model.parameters(), lr=0.01)
x = tt.tensor(rng.standard_normal((64, 64)).astype(np.float32)); y = tt.tensor(rng.integers(0, 10, 64))
for _ in range(20):  # warm: the engine's own caches are not the profiler's
    opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
base = peak_mb()
with profile(max_trace_events=5000) as prof:
    for _ in range(int(sys.argv[1])):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step(); prof.step()
n = sum(r.count for r in prof.key_averages() if not r.is_range)
print(peak_mb() - base, n)
"""


def _growth(steps: int) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(steps)], capture_output=True, text=True, timeout=300, check=True
    )
    mb, ops = out.stdout.split()
    return float(mb), int(ops)


def test_peak_memory_does_not_grow_with_the_runs_length():
    short, n_short = _growth(1000)
    long, n_long = _growth(4000)
    assert n_long == 4 * n_short  # every op of the long run is in its table
    # holding every event, the growth would scale with the run (about 4x); aggregated,
    # it is the bounded export budget either way (plus a few bytes per step)
    assert long / max(short, 4.0) < 1.6, (short, long)


def _memory_window(rng: np.random.Generator) -> Report:
    step = _train(rng)
    with profile(profile_memory=True, record_shapes=True, max_trace_events=None) as prof:
        for i in range(10):
            step(i)
            prof.step()
    return prof.report


@pytest.mark.tracetensor_nan("off")  # alone, the profiler gets compact records; beside a plain listener, events
def test_memory_tracking_from_records_equals_tracking_from_events():
    alone = _memory_window(np.random.default_rng(0))
    with tt.events.listen(lambda e: None):  # a listener that wants whole events: every op becomes one
        beside = _memory_window(np.random.default_rng(0))
    assert alone.peak == beside.peak and alone.peak["cpu"][0] > 0
    assert {d: [v for _, v in s] for d, s in alone.mem_series.items()} == {
        d: [v for _, v in s] for d, s in beside.mem_series.items()
    }
    mem = lambda rep: [(r.key, r.count, r.cpu_memory_usage, r.self_cpu_memory_usage) for r in rep.key_averages()]
    assert mem(alone) == mem(beside)
    assert any(r[2] > 0 for r in mem(alone))


def test_memory_columns_peak_and_series_are_the_same_folded_or_not(monkeypatch):
    whole = _memory_window(np.random.default_rng(0))  # ten small steps: nothing folds
    monkeypatch.setattr(profiler_core, "_FOLD_EVERY", 1)
    folded = _memory_window(np.random.default_rng(0))
    assert whole.agg is None and folded.agg is not None
    assert folded.peak == whole.peak and folded.peak["cpu"][0] > 0
    assert {d: [v for _, v in s] for d, s in folded.mem_series.items()} == {
        d: [v for _, v in s] for d, s in whole.mem_series.items()
    }
    mem = lambda rep: [(r.key, r.count, r.cpu_memory_usage, r.self_cpu_memory_usage) for r in rep.key_averages()]
    assert mem(folded) == mem(whole)


def test_a_schedule_folds_each_active_window_and_drops_the_warmup(rng, fold_every_step):
    step = _train(rng)
    counts: list[tuple[int, int]] = []

    def ready(p: profile) -> None:
        rows = p.key_averages()
        counts.append((next(r.count for r in rows if r.key == "ProfilerStep*"), len(p.report.steps)))

    with profile(schedule=schedule(wait=1, warmup=2, active=4, repeat=2), on_trace_ready=ready) as prof:
        for i in range(16):
            step(i)
            prof.step()
    assert counts == [(4, 4), (4, 4)]
    assert next(r for r in prof.key_averages() if r.key == "forward").count == 4


def test_repeated_windows_combine_into_one_report(rng, fold_every_step):
    step = _train(rng)
    windows: list[Report] = []
    with profile(
        schedule=schedule(wait=1, warmup=0, active=5, repeat=2),
        max_trace_events=30,
        on_trace_ready=lambda p: windows.append(p.report),
    ) as prof:
        for i in range(12):
            step(i)
            prof.step()
    both = Report.combined(windows)
    rows = {r.key: r.count for r in both.key_averages()}
    per = [{r.key: r.count for r in w.key_averages()} for w in windows]
    assert rows["ProfilerStep*"] == 10 and rows["linear"] == per[0]["linear"] + per[1]["linear"]
    assert both.op_count == sum(w.op_count for w in windows) > len(both.ops)  # the budget held per window
    assert both.omitted_steps == sum(w.omitted_steps for w in windows) > 0 and "left out" in both.left_out


def test_folded_stacks_cover_every_step_and_speedscope_says_what_it_left_out(rng, tmp_path, fold_every_step):
    step = _train(rng)
    with profile(with_stack=True, max_trace_events=None) as prof:
        for i in range(8):
            step(i)
            prof.step()
    whole = Report.from_events(prof.events(), with_stack=True)
    assert folded_stacks(prof.report) == folded_stacks(whole)  # from the aggregates, the same lines
    with profile(with_stack=True, max_trace_events=50) as prof:
        for i in range(20):
            step(i)
            prof.step()
    total_ns = sum(int(line.rsplit(" ", 1)[1]) for line in folded_stacks(prof.report))
    kept_ns = sum(
        int(line.rsplit(" ", 1)[1]) for line in folded_stacks(Report.from_events(prof.events(), with_stack=True))
    )
    assert total_ns > kept_ns  # the folded stacks weigh all 20 steps, not the kept ones
    path = tmp_path / "p.speedscope.json"
    prof.export_speedscope(str(path))
    assert "left out" in json.loads(path.read_text())["name"]


@pytest.mark.tracetensor_nan("off")  # records, not events: the folds that aggregate from them
def test_memory_folded_from_records_equals_the_unfolded_window(monkeypatch):
    def window(fold: int):
        monkeypatch.setattr(profiler_core, "_FOLD_EVERY", fold)
        step = _train(np.random.default_rng(0), ranges=False)
        with profile(profile_memory=True, max_trace_events=None) as prof:
            for i in range(10):
                step(i)
                prof.step()
        return prof.report

    folded, whole = window(1), window(10**9)
    assert folded.agg is not None and whole.agg is None
    assert folded.peak == whole.peak and folded.peak["cpu"][0] > 0
    assert {d: [v for _, v in s] for d, s in folded.mem_series.items()} == {
        d: [v for _, v in s] for d, s in whole.mem_series.items()
    }
    mem = lambda rep: [(r.key, r.count, r.cpu_memory_usage, r.self_cpu_memory_usage) for r in rep.key_averages()]
    assert mem(folded) == mem(whole)
    assert any(r[3] > 0 for r in mem(folded))


@pytest.mark.tracetensor_nan("off")
def test_the_c_memory_hook_counts_what_the_python_tracker_counts(monkeypatch):
    """`profile_memory`'s listener has its common case in C (a CPU op's arrays, a record):
    side by side on the same ops, it and the Python tracker count the same allocations,
    with the same sizes, ops and times, and the same frees; views, the loss (a numpy
    scalar) and in-place updates count nothing in either."""
    from tracetensor import _dispatch

    if not _dispatch.ACCELERATED:
        pytest.skip("the C accelerator is not built (TRACETENSOR_PURE=1 or no compiler)")
    c_mem, py_mem = profiler_core._MemoryTracker(), profiler_core._MemoryTracker()
    c_got: list = []
    hook = c_mem.wrap(c_got.append)
    assert type(hook).__name__ == "MemoryHook"
    monkeypatch.setattr(tt.events, "MemoryHook", None)
    py_got: list = []
    on_event = py_mem.wrap(py_got.append)
    assert type(on_event).__name__ == "function"
    step = _train(np.random.default_rng(0), ranges=False)
    with tt.events.listen(hook, raw=True, outputs=True), tt.events.listen(on_event, raw=True, outputs=True):
        for i in range(6):
            step(i)
            view = tt.ones(6, 4)[1:]  # a view: allocates nothing
            del view
    raw = lambda got: [r for r in got if tt.events.is_raw(r)]
    assert raw(c_got) == raw(py_got) and raw(c_got)  # both passed every record on
    allocs = lambda m: [d for d in m.deltas if d[2] > 0]
    frees = lambda m: sorted((d[1], d[2]) for d in m.deltas if d[2] < 0)
    assert allocs(c_mem) == allocs(py_mem) and len(allocs(c_mem)) > 20
    assert frees(c_mem) == frees(py_mem) and len(frees(c_mem)) > 20
    assert len(c_mem._refs) == len(py_mem._refs)  # what is still alive, for both
    ops = {r[1]: r[0].phase for r in c_got if tt.events.is_raw(r)}
    assert {ops[d[3]] for d in allocs(c_mem)} == {"forward", "backward"}  # updates work in place


def test_memory_deltas_are_kept_flat_and_read_back_as_rows():
    """A profile's memory deltas are int64 rows in one buffer, not an object each (a long
    profile's would set off garbage collections): what goes in comes back, per device, in
    order; `take` removes what it returns (as a matrix) and keeps what comes after."""
    d = profiler_core._Deltas()
    rows = [(10, "cpu", 4096, 1), (11, "cuda:0", 512, 2), (12, "cpu", -4096, 0), (13, "cuda:1", -(2**40), 0)]
    for r in rows[:3]:
        d.append(r)
    snap = d.copy()
    arr, devs = d.take()
    assert arr.dtype == np.int64 and [(t, devs[c], nb, seq) for t, c, nb, seq in arr.tolist()] == rows[:3]
    assert len(d) == 0 and len(snap) == 3
    d.append(rows[3])
    assert list(d) == rows[3:] and list(snap) == rows[:3]  # (the copy is detached)
    assert len(d.buf) == 32 and d.devices == ["cpu", "cuda:0", "cuda:1"]


def test_the_live_bytes_series_and_peak_follow_the_deltas_in_time_order():
    """`_memory_series` (vectorized) against the plain reading of its rule: walk the deltas
    in time order (ties as they came), per device; the peak is the first allocation that
    reached the highest level, and only counts when above the earlier peak."""
    rng = np.random.default_rng(5)
    devices = ["cpu", "cuda:0"]
    rows = np.stack(
        [rng.integers(0, 50, 400), rng.integers(0, 2, 400), rng.integers(-300, 400, 400), rng.integers(1, 9, 400)],
        axis=1,
    ).astype(np.int64)
    by_seq = {k: f"op{k}" for k in range(1, 9)}
    fake = lambda name: type("E", (), {"name": name, "op": "add", "mode": "eager", "phase": "forward"})()
    named = {k: fake(v) for k, v in by_seq.items()}
    live0, peak0 = {"cpu": 100, "cuda:1": 7}, {"cpu": (250, "earlier")}
    series, peak, live = profiler_core._memory_series((rows, devices), named, live0, peak0)

    want_live, want_peak, want_series = dict(live0), dict(peak0), {}
    for t, code, delta, seq in sorted(rows.tolist(), key=lambda r: r[0]):
        dev = devices[code]
        want_live[dev] = want_live.get(dev, 0) + delta
        want_series.setdefault(dev, []).append((t, want_live[dev]))
        if delta > 0 and want_live[dev] > want_peak.get(dev, (0, ""))[0]:
            want_peak[dev] = (want_live[dev], f"{by_seq[seq]} (add)")
    assert series == want_series and live == want_live and peak == want_peak
    assert peak["cpu"] != (250, "earlier") and "cuda:1" in live


@pytest.mark.tracetensor_nan("off")  # the plugin's listener would make every op a full event
@pytest.mark.parametrize("kw", [{}, {"record_shapes": True}], ids=["plain", "shapes"])
def test_a_window_whose_steps_are_not_marked_folds_at_eager_step_ends(rng, monkeypatch, kw):
    """A script that never calls `prof.step()` (`tracetensor profile` of an unmodified one):
    its buffer folds where an optimizer step ends, so it stays bounded, and the tables are
    those of the full analysis of the same events."""
    monkeypatch.setattr(profiler_core, "_FOLD_UNMARKED", 100)
    monkeypatch.setattr(profiler_core, "_FOLD_EVERY", 40)  # (after the first fold)
    step = _train(rng, ranges=False)
    sizes = []
    with profile(max_trace_events=None, **kw) as prof:
        for i in range(40):
            step(i)
            sizes.append(len(prof._buf))
    # (a step: 16 op events, two getitems every fifth, two run markers)
    assert max(sizes) < 100 + 20 and max(sizes[sizes.index(0) :]) < 40 + 20
    rep = prof.report
    assert rep.agg is not None  # it folded
    whole = Report.from_events(prof.events(), steps_marked=False)
    assert _rows(rep.key_averages()) == _rows(whole.key_averages())
    assert rep.op_count == len(whole.ops) >= 40 * 16


@pytest.mark.tracetensor_nan("off")
def test_an_unmarked_inference_loop_folds_too(rng, monkeypatch):
    monkeypatch.setattr(profiler_core, "_FOLD_UNMARKED", 50)
    monkeypatch.setattr(profiler_core, "_FOLD_EVERY", 50)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = tt.tensor(rng.standard_normal((4, 8)).astype(np.float32))
    sizes = []
    with tt.no_grad(), profile() as prof:
        for _ in range(60):
            model(x).argmax(1)
            sizes.append(len(prof._buf))
    assert max(sizes) < 50 + 5
    assert {r.key: r.count for r in prof.key_averages()} == {"linear": 120, "relu": 60, "argmax": 60}
