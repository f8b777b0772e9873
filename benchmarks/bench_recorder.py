"""Recorder cost: an MLP training step recorded (values "none" / "summary") against the same
step unrecorded, and the trace file at scale: write and read throughput for a run of
1,000,000 small events, bytes per event on disk, and the time to open that file and find
the first non-finite tensor; and resident memory over a long recording of the MLP (1/20 as
many steps as events: about as many op events). `python benchmarks/run.py recorder`
(TT_BENCH_EVENTS=N for a smaller file)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

# small matrices, 2 shared cores: a multi-threaded BLAS spinning against the writer thread
# turns a 0.3 ms step into 3 ms of noise; set before numpy loads (when this runs alone)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import fmt_time, print_table

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace.store import TraceWriter


def mlp_step_fn():
    """One training step of a 64->128->10 MLP on a batch of 64, in tracetensor eager mode."""
    g = np.random.default_rng(0)
    x = tt.tensor(g.standard_normal((64, 64)).astype(np.float32))
    y = tt.tensor(g.integers(0, 10, 64))
    try:
        model = tt.nn.Sequential(tt.nn.Linear(64, 128), tt.nn.ReLU(), tt.nn.Linear(128, 10))
        opt = tt.optim.SGD(model.parameters(), lr=0.01)

        def step():
            r = ev.begin_run("step")
            opt.zero_grad()
            loss = tt.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            ev.end_run(r)

        step()
        return step, "tt.nn + tt.optim.SGD"
    except Exception:  # tt.nn / tt.optim not (fully) there yet: raw tensors + manual SGD
        w1 = tt.tensor(g.standard_normal((64, 128)).astype(np.float32) * 0.1, requires_grad=True)
        w2 = tt.tensor(g.standard_normal((128, 10)).astype(np.float32) * 0.1, requires_grad=True)
        onehot = tt.tensor(np.eye(10, dtype=np.float32)[y.numpy()])

        def step():
            r = ev.begin_run("step")
            loss = (((x @ w1).relu() @ w2 - onehot) ** 2).mean()
            loss.backward()
            with tt.no_grad():
                for w in (w1, w2):
                    w -= 0.01 * w.grad
                    w.grad = None
            ev.end_run(r)

    return step, "raw tensors + manual SGD"


def bench_mlp(steps: int = 300, repeat: int = 5) -> list[tuple[str, str, str, str]]:
    step, how = mlp_step_fn()
    tmp = tempfile.mkdtemp(prefix="tt-bench-")
    # "listen:X": a do-nothing listener asking what values=X asks: the engine's own cost of
    # being observed (names, stacks, summaries), which the recorder cannot go below
    times: dict[str, list[float]] = {
        "unrecorded": [],
        "listen:none": [],
        "none": [],
        "listen:summary": [],
        "summary": [],
    }
    for _ in range(steps // 5):
        step()
    for rep in range(repeat):  # round-robin, so machine noise hits every variant alike
        for k in times:
            if k == "unrecorded":
                rec = None
            elif k.startswith("listen:"):
                # what the recorder asks for: raw records, carrying summaries for "summary"
                rec = ev.subscribe(lambda e: None, summaries=k == "listen:summary", stacks=True, raw=True)
            else:
                rec = tt.record(os.path.join(tmp, f"{k}{rep}.ttrace"), values=k).start()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if rec is not None:
                rec.close()  # the writer's last flush counts: that is the real cost
            times[k].append((time.perf_counter() - t0) / steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    base = med["unrecorded"]
    rows = [(f"MLP step, unrecorded ({how})", fmt_time(base), "1.00x", "")]
    # (wall clock of short files, each closed after `steps` steps: the goals are the `overhead`
    # benchmark's, measured there on 1,000-step files as CPU time, the writer process's apart)
    for k, target in (("none", "goal: see overhead"), ("summary", "goal: see overhead")):
        rows.append(
            (
                f"  no-op listener with values='{k}' needs",
                fmt_time(med["listen:" + k]),
                f"{med['listen:' + k] / base:.2f}x",
                "engine's share",
            )
        )
        rows.append(
            (
                f"MLP step, record(values='{k}'), {steps}-step files, wall",
                fmt_time(med[k]),
                f"{med[k] / base:.2f}x",
                target,
            )
        )
        rows.append(("  recorder's own share (vs no-op listener)", "", f"{med[k] / med['listen:' + k]:.2f}x", ""))
    return rows


def synthetic_events(n: int, *, summaries: bool, nan_at: int | None = None):
    """n small op events shaped like a training loop's: 20 ops per run, repeating names,
    shapes and stacks, times increasing; one NaN output at index `nan_at`."""
    ops = [
        "matmul",
        "add",
        "relu",
        "matmul",
        "add",
        "softmax_cross_entropy",
        "mean",
        "mean",
        "matmul",
        "relu",
        "matmul",
        "add",
        "matmul",
        "accumulate_grad",
        "accumulate_grad",
        "sgd",
        "sgd",
        "sgd",
        "sgd",
        "sum",
    ]
    frames = tuple(
        (
            ev.Frame("/home/user/train.py", 40 + i, "train_step"),
            ev.Frame("/home/user/train.py", 90, "<module>"),
        )
        for i in range(20)
    )
    # summaries that differ from event to event, as real ones do (so compression is not flattered)
    g = np.random.default_rng(0)
    fin = [
        ev.Summary(8192, 0, 0, 0, int(neg), 12, 8180 - int(neg), *map(float, f))
        for neg, f in zip(g.integers(3000, 5000, 4096), g.standard_normal((4096, 4)))
    ]
    bad = ev.Summary(8192, 3, 0, 1, 4000, 12, 4176, -3.5, 3.25, 0.01, 1.0)
    phases = ["forward"] * 8 + ["backward"] * 7 + ["update"] * 4 + ["forward"]
    tid = 1
    t = time.perf_counter_ns()
    yield ev.RunStart(1, "eager", "step", "", (), (), None, t, tid, time.time_ns())
    for i in range(n):
        k = i % 20
        run = i // 20 + 1
        if k == 0 and i:
            yield ev.RunEnd(run - 1, t, tid)
            yield ev.RunStart(run, "eager", "step", "", (), (), None, t, tid, time.time_ns())
        name = f"layer{k // 4}/{ops[k]}"
        s = (bad if i == nan_at else fin[i % 4096],) if summaries else None
        yield ev.OpEvent(
            i + 1,
            run,
            "eager",
            phases[k],
            ops[k],
            name,
            (f"layer{k // 4}/in:0", "w:0"),
            (ev.TensorMeta(name + ":0", (64, 128), "float32", "cpu", 32768),),
            t,
            t + 5000,
            tid,
            "cpu",
            16384,
            None,
            (),
            None,
            frames[k],
            s,
            None,
            None,
        )
        t += 6000
    yield ev.RunEnd(n // 20, t, tid)


def bench_file(n: int) -> list[tuple[str, str, str, str]]:
    tmp = tempfile.mkdtemp(prefix="tt-bench-")
    rows = []
    gen_t0 = time.perf_counter()
    for _ in synthetic_events(n // 10, summaries=True):
        pass
    gen_per_event = (time.perf_counter() - gen_t0) / (n // 10)
    for level in ("none", "summary"):
        path = os.path.join(tmp, f"{level}.ttrace")
        # end to end: events through the listener, the queue and the writer thread, into the file
        rec = tt.record(path, values=level).start()
        emit = rec._listener.callback  # the listener itself (ev.emit would also reach other listeners)
        t0 = time.perf_counter()
        for e in synthetic_events(n, summaries=level == "summary", nan_at=int(n * 0.99)):
            emit(e)
        rec.stop()
        t_total = time.perf_counter() - t0 - gen_per_event * n
        size = os.path.getsize(path)
        rows.append(
            (
                f"write {n:,} events, values='{level}'",
                f"{n / t_total:,.0f} ev/s",
                f"{size / n:.1f} B/ev",
                "bytes/event on disk",
            )
        )
    # the writer alone (no queue, no thread): the ceiling of the design
    wpath = os.path.join(tmp, "writer.ttrace")
    w = TraceWriter(wpath)
    batch = []
    t0 = time.perf_counter()
    m = n // 4
    for e in synthetic_events(m, summaries=True):
        batch.append(e)
        if len(batch) == 20_000:
            w.write(batch)
            batch = []
    w.write(batch)
    w.close()
    rows.append(
        (
            "  writer alone (same events)",
            f"{m / (time.perf_counter() - t0 - gen_per_event * m):,.0f} ev/s",
            "",
            "",
        )
    )
    path = os.path.join(tmp, "summary.ttrace")
    t0 = time.perf_counter()
    t = tt.trace.open(path)
    bad = t.first_nonfinite()
    t_first = time.perf_counter() - t0
    assert bad is not None and bad.seq == int(n * 0.99) + 1, bad
    rows.append(("open + first_nonfinite()", fmt_time(t_first), "", "< 1 s"))
    t0 = time.perf_counter()
    runs = t.runs()
    rows.append((f"runs() ({len(runs):,} runs)", fmt_time(time.perf_counter() - t0), "", ""))
    t0 = time.perf_counter()
    page = t.events(runs[len(runs) // 2].run)
    rows.append(("events(run) of one run in the middle", fmt_time(time.perf_counter() - t0), "", f"{len(page)} ev"))
    t0 = time.perf_counter()
    k = sum(1 for _ in t.iter_events())
    rows.append((f"read all {k:,} events back", f"{k / (time.perf_counter() - t0):,.0f} ev/s", "", ""))
    t.close()
    return rows


_RSS_CHILD = r"""
import os, sys, numpy as np
sys.path.insert(0, sys.argv[3])
from bench_recorder import mlp_step_fn
import tracetensor as tt

from tracetensor.trace import server

def rss_mb(pid="self"):  # (resident now, peak) of this process, or of the recording's writer process
    if pid is None:
        return 0, 0
    with open(f"/proc/{pid}/status") as f:
        d = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS", "VmHWM"))}
    return d["VmRSS"] // 1024, d["VmHWM"] // 1024

step, _ = mlp_step_fn()
steps, path = int(sys.argv[1]), sys.argv[2]
with tt.record(path, values="none"):
    for i in range(steps):
        step()
        if i == steps // 5:  # (the writer process started with the recording's first batch)
            writer = server._client.proc.pid if server._client is not None else None
            early, w_early = rss_mb()[0], rss_mb(writer)[0]
late, peak = rss_mb()
w_late, w_peak = rss_mb(writer)  # (the writer process outlives the recording: the program's next one)
with tt.trace.open(path) as t:
    n = t.count()
print(early, late, peak, w_early, w_late, w_peak, n, os.path.getsize(path))
"""


def bench_rss(steps: int) -> list[tuple[str, str, str, str]]:
    """A long values="none" recording of the MLP in a child process: resident memory a fifth of
    the way in and at the end (flat: the queue is bounded, the writer keeps nothing per event)."""
    import subprocess

    path = os.path.join(tempfile.mkdtemp(prefix="tt-bench-"), "long.ttrace")
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(steps), path, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    ).stdout.split()
    early, late, peak, w_early, w_late, w_peak, n, size = (int(v) for v in out)
    return [
        (f"record(values='none'), {n:,} op events: RSS at 1/5, at the end", f"{early} MB, {late} MB", "", "flat"),
        ("  peak RSS; trace bytes per event", f"{peak} MB", f"{size / n:.1f} B/ev", ""),
        ("  its writer process: RSS at 1/5, at the end; peak", f"{w_early} MB, {w_late} MB; {w_peak} MB", "", "flat"),
    ]


def main() -> None:
    print_table("recorder: MLP training step (64->128->10, batch 64), ratios vs unrecorded", bench_mlp())
    n = int(os.environ.get("TT_BENCH_EVENTS", 1_000_000))
    print_table(f"trace file at scale ({n:,} small events)", bench_file(n))
    print_table("recorder memory at length (a child process)", bench_rss(max(n // 20, 100)))


if __name__ == "__main__":
    main()
