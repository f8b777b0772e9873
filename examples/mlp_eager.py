"""A small MLP (tt.nn + tt.optim) trained for a few dozen steps in eager mode: the profiler's showcase.

    python examples/mlp_eager.py               # trains, prints the loss
    tracetensor profile examples/mlp_eager.py  # the same, with the op table, Chrome trace, py-spy

`tracetensor.profiler.step()` marks the end of each training step (it does nothing when
the script is not being profiled) and `record_function` names the phases of a step.
"""

from __future__ import annotations

import argparse

import numpy as np

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor import profiler


def make_data(n: int, d_in: int, classes: int, rng: np.random.Generator) -> tuple[tt.Tensor, tt.Tensor]:
    """Gaussian blobs, one per class: easy to learn, so the loss visibly drops."""
    centers = rng.standard_normal((classes, d_in)).astype(np.float32) * 2
    labels = rng.integers(0, classes, n)
    x = centers[labels] + rng.standard_normal((n, d_in)).astype(np.float32)
    return tt.tensor(x), tt.tensor(labels)


def train_step(model: nn.Module, opt: tt.optim.Optimizer, x: tt.Tensor, y: tt.Tensor) -> float:
    with profiler.record_function("forward"):
        loss = F.cross_entropy(model(x), y)
    with profiler.record_function("backward"):
        opt.zero_grad()
        loss.backward()
    with profiler.record_function("optimizer"):
        opt.step()
    return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tt.manual_seed(0)
    x_all, y_all = make_data(args.batch * 8, 64, 10, rng)
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    opt = tt.optim.SGD(model.parameters(), lr=args.lr)
    for i in range(args.steps):
        lo = (i % 8) * args.batch
        loss = train_step(model, opt, x_all[lo : lo + args.batch], y_all[lo : lo + args.batch])
        profiler.step()  # marks the end of a training step; a no-op when not profiled
        if i % 10 == 0 or i == args.steps - 1:
            print(f"step {i:3d}  loss {loss:.4f}")


if __name__ == "__main__":
    main()
