"""Trains a few steps, then feeds a batch of the wrong width: the profile of the steps
that ran is still written (`tracetensor profile examples/profile_raises.py`), and the
exit code is the script's (1, from the ShapeError)."""

from __future__ import annotations

import numpy as np

import tracetensor as tt
from tracetensor import profiler


def train_step(w: tt.Tensor, x: tt.Tensor) -> float:
    loss = (x @ w).tanh().sum()
    loss.backward()
    with tt.no_grad():
        w -= 0.01 * w.grad
        w.grad = None
    return loss.item()


def main() -> None:
    rng = np.random.default_rng(0)
    w = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32), requires_grad=True)
    for i in range(6):
        width = 16 if i < 5 else 15  # step 5 gets a batch with one feature missing
        x = tt.tensor(rng.standard_normal((8, width)).astype(np.float32))
        print(f"step {i} loss {train_step(w, x):.3f}")
        profiler.step()


if __name__ == "__main__":
    main()
