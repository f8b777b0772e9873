"""GPU path: a training step of a 512->1024->1024->10 MLP (batch 256) on `device="cuda"`
against the same step hand-written in cupy, and what the profiler and the recorder cost
on it; CUDA-event device times are checked against the host's. Skips without a GPU.

    python benchmarks/run.py gpu        (or: python benchmarks/bench_gpu.py)
    python benchmarks/bench_gpu.py --where   (cProfile of recorded steps: where the time goes)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fmt_time, print_table

import tracetensor as tt
import tracetensor.nn.functional as F

BATCH, D_IN, D_HID, D_OUT, LR = 256, 512, 1024, 10, 0.01


def _sync() -> None:
    import cupy

    cupy.cuda.get_current_stream().synchronize()


def _timed(fns: dict, *, number: int = 20, repeat: int = 7) -> dict[str, float]:
    """Interleaved rounds, each ended by a device synchronize (GPU work is asynchronous)."""
    for fn in fns.values():
        for _ in range(3):
            fn()
        _sync()
    acc: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            _sync()
            acc[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in acc.items()}


def main() -> None:
    if not tt.cuda.is_available():
        print("\nGPU benchmark: skipped (no usable CUDA GPU with cupy)")
        return
    import cupy as cp

    rng = cp.random.default_rng(0)
    x = rng.standard_normal((BATCH, D_IN), dtype=cp.float32)
    y = rng.integers(0, D_OUT, BATCH)
    shapes = [(D_HID, D_IN), (D_HID,), (D_HID, D_HID), (D_HID,), (D_OUT, D_HID), (D_OUT,)]
    raw = [(rng.uniform(-1, 1, s, dtype=cp.float32) / 32).astype(cp.float32) for s in shapes]

    def cupy_step() -> None:
        w1, b1, w2, b2, w3, b3 = raw
        h1 = x @ w1.T + b1
        a1 = cp.maximum(h1, 0)
        h2 = a1 @ w2.T + b2
        a2 = cp.maximum(h2, 0)
        o = a2 @ w3.T + b3
        s = o - o.max(1, keepdims=True)
        lse = cp.log(cp.exp(s).sum(1, keepdims=True))
        p = cp.exp(s - lse)
        p[cp.arange(BATCH), y] -= 1
        p /= BATCH
        g3, gb3 = p.T @ a2, p.sum(0)
        g2h = (p @ w3) * (h2 > 0)
        g2, gb2 = g2h.T @ a1, g2h.sum(0)
        g1h = (g2h @ w2) * (h1 > 0)
        g1, gb1 = g1h.T @ x, g1h.sum(0)
        for w, g in zip(raw, (g1, gb1, g2, gb2, g3, gb3)):
            w -= LR * g

    model = tt.nn.Sequential(
        tt.nn.Linear(D_IN, D_HID), tt.nn.ReLU(), tt.nn.Linear(D_HID, D_HID), tt.nn.ReLU(), tt.nn.Linear(D_HID, D_OUT)
    ).to("cuda")
    opt = tt.optim.SGD(model.parameters(), lr=LR)
    tx, ty = tt.tensor(x, device="cuda"), tt.tensor(y, device="cuda")

    def tt_step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(tx), ty)
        loss.backward()
        opt.step()

    base = _timed({"cupy": cupy_step, "eager": tt_step})
    rows = [
        ("eager step, cuda", fmt_time(base["eager"]), f"{base['eager'] / base['cupy']:.2f}x cupy", "<= 1.2x"),
        ("hand-written cupy step", fmt_time(base["cupy"]), "1.00x", "anchor"),
    ]

    from tracetensor.profiler import profile

    with profile():
        prof_t = _timed({"eager": tt_step}, number=10, repeat=5)["eager"]
    rows.append(("eager step under profile()", fmt_time(prof_t), f"{prof_t / base['eager']:.2f}x eager", "<= 1.05x"))
    for values in ("none", "check", "summary"):
        with tempfile.TemporaryDirectory() as d:
            with tt.record(os.path.join(d, "gpu.ttrace"), values=values):
                rec_t = _timed({"eager": tt_step}, number=10, repeat=5)["eager"]
        rows.append(
            (f"eager step under record({values})", fmt_time(rec_t), f"{rec_t / base['eager']:.2f}x eager", "<= 1.05x")
        )

    # CUDA-event device times: resolved without a sync per op, and never longer than host wall
    dev_ns: list[int] = []
    from tracetensor.events import DeviceTime, listen

    with listen(lambda e: dev_ns.append(e.device_ns) if isinstance(e, DeviceTime) else None):
        for _ in range(5):
            tt_step()
        _sync()
        from tracetensor import _gpu

        _gpu.flush()
    rows.append(("ops with a CUDA-event device time (5 steps)", str(len(dev_ns)), "-", "> 0"))
    # under a listener the host is slower than the GPU, which then waits between kernels:
    # an op's CUDA-event time includes that launch gap, so compare with the listened step
    host_ms = prof_t * 1e3
    dev_ms = sum(dev_ns) / 5 / 1e6
    rows.append(("summed device time per step", f"{dev_ms:.2f} ms", f"{dev_ms / host_ms:.2f}x listened step", "<= 1x"))
    used, total = _gpu.pool_stats()
    print_table("GPU (cupy) path: 512-1024-1024-10 MLP, batch 256", rows)
    print(f"cupy memory pool: {used / 2**20:.1f} MiB used, {total / 2**20:.1f} MiB held")


def where() -> None:
    """cProfile of 10 recorded (values="summary") cuda steps, top 25 functions by own time."""
    import cProfile
    import pstats

    model = tt.nn.Sequential(tt.nn.Linear(D_IN, D_HID), tt.nn.ReLU(), tt.nn.Linear(D_HID, D_OUT)).to("cuda")
    opt = tt.optim.SGD(model.parameters(), lr=LR)
    tx = tt.randn(BATCH, D_IN, device="cuda")
    ty = tt.tensor(list(range(D_OUT)) * (BATCH // D_OUT) + [0] * (BATCH % D_OUT), device="cuda")

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(tx), ty).backward()
        opt.step()

    with tempfile.TemporaryDirectory() as d, tt.record(os.path.join(d, "w.ttrace"), values="summary"):
        for _ in range(3):
            step()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(10):
            step()
        _sync()
        pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    where() if "--where" in sys.argv else main()
