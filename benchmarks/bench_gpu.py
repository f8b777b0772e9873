"""GPU path: a training step of a 512->1024->1024->10 MLP (batch 256: launch-bound, every
microsecond of host work per op shows) and of a 4096-wide one (batch 4096: compute-bound)
on `device="cuda"`, against the same step hand-written in cupy, and what the profiler and
the recorder cost on it, with the same step in PyTorch, plain and under torch.profiler
(CPU and CUDA activities), measured alongside when torch has CUDA; CUDA-event device times
are checked against the host's. Skips without a GPU.

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


def _timed(fns: dict, *, number: int = 20, repeat: int = 7, sync=None) -> dict[str, float]:
    """Interleaved rounds, each ended by a device synchronize (GPU work is asynchronous)."""
    sync = sync or _sync
    for fn in fns.values():
        for _ in range(3):
            fn()
        sync()
    acc: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            acc[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in acc.items()}


def _torch_anchor(batch: int, d_in: int, d_hid: int, x_np, y_np) -> tuple[float, float] | None:
    """The same step in PyTorch on the same GPU, plain and under torch.profiler (CPU and
    CUDA activities): (seconds per step, profiled seconds per step); None without torch+CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(d_in, d_hid),
        torch.nn.ReLU(),
        torch.nn.Linear(d_hid, d_hid),
        torch.nn.ReLU(),
        torch.nn.Linear(d_hid, D_OUT),
    ).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    x, y = torch.as_tensor(x_np, device="cuda"), torch.as_tensor(y_np, device="cuda")

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    def sync() -> None:
        torch.cuda.synchronize()

    plain = _timed({"torch": step}, sync=sync)["torch"]
    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
        prof = _timed({"torch": step}, number=10, repeat=5, sync=sync)["torch"]
    return plain, prof


def _model(batch: int, d_in: int, d_hid: int) -> dict:
    """Times one MLP size: the hand-written cupy step, the eager step, and that step under
    profile() and the three recordings; the PyTorch anchor beside them."""
    import cupy as cp

    rng = cp.random.default_rng(0)
    x = rng.standard_normal((batch, d_in), dtype=cp.float32)
    y = rng.integers(0, D_OUT, batch)
    shapes = [(d_hid, d_in), (d_hid,), (d_hid, d_hid), (d_hid,), (D_OUT, d_hid), (D_OUT,)]
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
        p[cp.arange(batch), y] -= 1
        p /= batch
        g3, gb3 = p.T @ a2, p.sum(0)
        g2h = (p @ w3) * (h2 > 0)
        g2, gb2 = g2h.T @ a1, g2h.sum(0)
        g1h = (g2h @ w2) * (h1 > 0)
        g1, gb1 = g1h.T @ x, g1h.sum(0)
        for w, g in zip(raw, (g1, gb1, g2, gb2, g3, gb3)):
            w -= LR * g

    model = tt.nn.Sequential(
        tt.nn.Linear(d_in, d_hid), tt.nn.ReLU(), tt.nn.Linear(d_hid, d_hid), tt.nn.ReLU(), tt.nn.Linear(d_hid, D_OUT)
    ).to("cuda")
    opt = tt.optim.SGD(model.parameters(), lr=LR)
    tx, ty = tt.tensor(x, device="cuda"), tt.tensor(y, device="cuda")

    def tt_step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(tx), ty)
        loss.backward()
        opt.step()

    from tracetensor.profiler import profile

    out = _timed({"cupy": cupy_step, "eager": tt_step})
    with profile():
        out["profile"] = _timed({"eager": tt_step}, number=10, repeat=5)["eager"]
    for values in ("none", "check", "summary"):
        with tempfile.TemporaryDirectory() as d:
            with tt.record(os.path.join(d, "gpu.ttrace"), values=values):
                out[values] = _timed({"eager": tt_step}, number=10, repeat=5)["eager"]
    out["torch"] = _torch_anchor(batch, d_in, d_hid, x.get(), y.get())
    out["step"] = tt_step
    return out


def main() -> None:
    if not tt.cuda.is_available():
        print("\nGPU benchmark: skipped (no usable CUDA GPU with cupy)")
        return
    sizes = [
        ("512-1024-1024-10, batch 256", (BATCH, D_IN, D_HID)),
        ("4096-4096-4096-10, batch 4096", (4096, 4096, 4096)),
    ]
    for title, dims in sizes:
        m = _model(*dims)
        eager, anchor = m["eager"], m["torch"]
        tprof = f"{anchor[1] / anchor[0]:.2f}x" if anchor else "-"
        small = dims[0] == BATCH
        rows = [
            ("eager step, cuda", fmt_time(eager), f"{eager / m['cupy']:.2f}x cupy", "<= 1.2x" if small else "<= 1.05x"),
            ("hand-written cupy step", fmt_time(m["cupy"]), "1.00x", "anchor"),
        ]
        if anchor:
            rows.append(("PyTorch step, same GPU", fmt_time(anchor[0]), f"{anchor[0] / m['cupy']:.2f}x cupy", "anchor"))
            rows.append(
                ("PyTorch step under torch.profiler(CPU, CUDA)", fmt_time(anchor[1]), f"{tprof} torch", "anchor")
            )
        # launch-bound (small): below torch.profiler's own ratio; compute-bound: <= 1.05x
        goal = f"<= torch.profiler ({tprof})" if small else "<= 1.05x"
        for key, label in [
            ("profile", "profile()"),
            ("none", "record(none)"),
            ("check", "record(check)"),
            ("summary", "record(summary)"),
        ]:
            rows.append((f"eager step under {label}", fmt_time(m[key]), f"{m[key] / eager:.2f}x eager", goal))
        if small:
            # CUDA-event device times: resolved without a sync per op, and never longer than host wall
            dev_ns: list[int] = []
            from tracetensor import _gpu
            from tracetensor.events import DeviceTime, listen

            def on_time(e, dev_ns=dev_ns) -> None:
                if isinstance(e, DeviceTime):
                    dev_ns.append(e.device_ns)

            with listen(on_time):
                for _ in range(5):
                    m["step"]()
                _sync()
                _gpu.flush()
            rows.append(("ops with a CUDA-event device time (5 steps)", str(len(dev_ns)), "-", "> 0"))
            # under a listener the host is slower than the GPU, which then waits between kernels:
            # an op's CUDA-event time includes that launch gap, so compare with the listened step
            host_ms = m["profile"] * 1e3
            dev_ms = sum(dev_ns) / 5 / 1e6
            rows.append(
                ("summed device time per step", f"{dev_ms:.2f} ms", f"{dev_ms / host_ms:.2f}x listened step", "<= 1x")
            )
        print_table(f"GPU (cupy) path: {title}, SGD", rows)
    from tracetensor import _gpu

    used, total = _gpu.pool_stats()
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
