"""Engine speed: a small MLP training step in tracetensor eager against the same step
hand-written in numpy (and PyTorch CPU when importable), the cost of one small op over
numpy's, and what a timing-only event listener costs. Ratios are measured in one process.

    python benchmarks/run.py engine        (or: python benchmarks/bench_engine.py)
    python benchmarks/bench_engine.py --ops   (per-op breakdown of the eager step)
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time

# One thread everywhere, so the comparison is of framework overhead and not of BLAS
# threading; the env route only works if numpy is not imported yet (threadpoolctl wins).
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
_NUMPY_WAS_LOADED = "numpy" in sys.modules

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fmt_time, interleaved, print_table  # noqa: E402

import tracetensor as tt  # noqa: E402
import tracetensor.nn.functional as F  # noqa: E402
from tracetensor.events import OpEvent  # noqa: E402

BATCH, D_IN, D_HID, D_OUT, LR = 64, 64, 128, 10, 0.1


def _limit_threads() -> str:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        return "1 (threadpoolctl)"
    except ImportError:
        return "1 (OMP/OPENBLAS env)" if not _NUMPY_WAS_LOADED else "not controlled (numpy loaded first)"


def _data(rng: np.random.Generator):
    x = rng.standard_normal((BATCH, D_IN)).astype(np.float32)
    y = rng.integers(0, D_OUT, BATCH)
    w1 = (rng.uniform(-1, 1, (D_HID, D_IN)) / np.sqrt(D_IN)).astype(np.float32)
    b1 = (rng.uniform(-1, 1, D_HID) / np.sqrt(D_IN)).astype(np.float32)
    w2 = (rng.uniform(-1, 1, (D_OUT, D_HID)) / np.sqrt(D_HID)).astype(np.float32)
    b2 = (rng.uniform(-1, 1, D_OUT) / np.sqrt(D_HID)).astype(np.float32)
    return x, y, [w1, b1, w2, b2]


def numpy_step(x: np.ndarray, y: np.ndarray, params: list[np.ndarray]):
    """The same training step, hand-written: forward, stable cross-entropy, backward, SGD."""
    w1, b1, w2, b2 = params
    h = x @ w1.T + b1
    a = np.maximum(h, 0)
    o = a @ w2.T + b2
    s = o - o.max(1, keepdims=True)
    lse = np.log(np.exp(s).sum(1, keepdims=True))
    loss = -(s - lse)[np.arange(len(y)), y].mean()
    p = np.exp(s - lse)
    p[np.arange(len(y)), y] -= 1
    p /= len(y)
    gw2, gb2 = p.T @ a, p.sum(0)
    gh = (p @ w2) * (h > 0)
    gw1, gb1 = gh.T @ x, gh.sum(0)
    for w, g in zip(params, (gw1, gb1, gw2, gb2)):
        w -= LR * g
    return loss


class MLP(tt.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = tt.nn.Linear(D_IN, D_HID)
        self.fc2 = tt.nn.Linear(D_HID, D_OUT)

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        return self.fc2(self.fc1(x).relu())


def _tt_step(model: MLP, opt: tt.optim.SGD, x: tt.Tensor, y: tt.Tensor):
    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _torch_step(x: np.ndarray, y: np.ndarray, params: list[np.ndarray]):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(D_IN, D_HID), torch.nn.ReLU(), torch.nn.Linear(D_HID, D_OUT))
    with torch.no_grad():
        for p, v in zip(model.parameters(), params):
            p.copy_(torch.from_numpy(v.copy()))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tx), ty)
        loss.backward()
        opt.step()
        return loss

    return step


def print_breakdown(steps: int = 300) -> None:
    """Median host time of each op of the eager step (forward, backward, update), from
    OpEvents (start/end around the op's own function, so dispatch overhead is not in
    them), next to the whole numpy step; the rest of the eager step is framework overhead."""
    _limit_threads()
    x, y, params = _data(np.random.default_rng(0))
    model = MLP()
    model.load_state_dict(
        {
            "fc1.weight": tt.tensor(params[0]),
            "fc1.bias": tt.tensor(params[1]),
            "fc2.weight": tt.tensor(params[2]),
            "fc2.bias": tt.tensor(params[3]),
        }
    )
    opt = tt.optim.SGD(model.parameters(), lr=LR)
    step = _tt_step(model, opt, tt.tensor(x), tt.tensor(y))
    np_params = [p.copy() for p in params]
    t = interleaved({"numpy": lambda: numpy_step(x, y, np_params), "tracetensor": step}, number=100, repeat=7)
    per: dict[tuple[str, str], list[int]] = {}
    t_np: list[float] = []

    def on(ev: object) -> None:
        if ev.__class__ is OpEvent:
            name = re.sub(r"_\d+(?=(_grad|/|$))", "", ev.name)  # one row per op, not per call counter
            per.setdefault((ev.phase, name), []).append(ev.end_ns - ev.start_ns)

    with tt.events.listen(on):
        for _ in range(steps):
            step()
            t0 = time.perf_counter()  # a numpy step after each, so both see the same machine load
            numpy_step(x, y, np_params)
            t_np.append(time.perf_counter() - t0)
    rows = [
        (f"{phase:8s} {name}", fmt_time(statistics.median(v) * 1e-9 * len(v) / steps), "", "")
        for (phase, name), v in per.items()
    ]
    total = sum(statistics.median(v) * 1e-9 * len(v) / steps for v in per.values())
    t_np_ops = statistics.median(t_np)
    rows += [
        (
            "sum of ops",
            fmt_time(total),
            f"{total / t_np_ops:.2f}x numpy",
            "numpy step timed alongside: " + fmt_time(t_np_ops),
        ),
        ("eager step (no listener)", fmt_time(t["tracetensor"]), f"{t['tracetensor'] / t['numpy']:.2f}x numpy", ""),
        ("numpy step", fmt_time(t["numpy"]), "1.00x", "baseline"),
    ]
    print_table("eager MLP step, per op (median per step, inside the op only)", rows)


def main() -> None:
    threads = _limit_threads()
    rng = np.random.default_rng(0)
    x, y, params = _data(rng)
    model = MLP()
    model.load_state_dict(
        {
            "fc1.weight": tt.tensor(params[0]),
            "fc1.bias": tt.tensor(params[1]),
            "fc2.weight": tt.tensor(params[2]),
            "fc2.bias": tt.tensor(params[3]),
        }
    )
    np_params = [p.copy() for p in params]
    tx, ty = tt.tensor(x), tt.tensor(y)
    opt = tt.optim.SGD(model.parameters(), lr=LR)
    tt_step = _tt_step(model, opt, tx, ty)

    # the two steps agree before they are timed (same math, same float32)
    l_np, l_tt = numpy_step(x, y, np_params), tt_step().item()
    assert abs(l_np - l_tt) < 1e-4 * max(1.0, abs(l_np)), (l_np, l_tt)

    fns = {"numpy": lambda: numpy_step(x, y, np_params), "tracetensor": tt_step}
    torch_step = _torch_step(x, y, params)
    if torch_step is not None:
        fns["torch"] = torch_step
    names: list[tuple] = []

    def timing_only(ev: object) -> None:
        if ev.__class__ is OpEvent:
            names.append((ev.name, ev.start_ns, ev.end_ns))

    def listened() -> None:  # a plain listener (an OpEvent per op, as it happens) that wants timings alone
        with tt.events.listen(timing_only, names=False):
            tt_step()
        names.clear()

    fns["tracetensor+listener"] = listened
    t = interleaved(fns, number=100, repeat=7)

    a8, b8 = np.ones((8, 8), np.float32), np.ones((8, 8), np.float32)
    ta, tb = tt.tensor(a8), tt.tensor(b8)
    small = interleaved({"numpy": lambda: a8 + b8, "tracetensor": lambda: ta + tb}, number=20000, repeat=7)

    rows = [
        ("MLP step, numpy by hand", fmt_time(t["numpy"]), "1.00x", "baseline"),
        (
            "MLP step, tracetensor eager",
            fmt_time(t["tracetensor"]),
            f"{t['tracetensor'] / t['numpy']:.2f}x",
            "<= 1.4x numpy",
        ),
    ]
    if "torch" in t:
        rows.append(
            (
                "MLP step, PyTorch CPU",
                fmt_time(t["torch"]),
                f"{t['tracetensor'] / t['torch']:.2f}x",
                "tracetensor <= 0.5x torch",
            )
        )
    else:
        rows.append(("MLP step, PyTorch CPU", "n/a", "n/a", "torch not importable"))
    rows += [
        ("8x8 add, numpy", fmt_time(small["numpy"]), "", ""),
        (
            "8x8 add, tracetensor",
            fmt_time(small["tracetensor"]),
            f"+{(small['tracetensor'] - small['numpy']) * 1e6:.2f} us",
            "<= +2 us",
        ),
        (
            "MLP step, timing-only listener taking OpEvents (names=False, subscribed per step)",
            fmt_time(t["tracetensor+listener"]),
            f"{t['tracetensor+listener'] / t['tracetensor']:.2f}x",
            "<= 1.15x no listener",
        ),
    ]
    print_table(f"engine (batch {BATCH}, {D_IN}->{D_HID}->{D_OUT}, SGD; threads: {threads})", rows)


if __name__ == "__main__":
    print_breakdown() if "--ops" in sys.argv[1:] else main()
