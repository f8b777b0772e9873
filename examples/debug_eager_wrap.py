"""An eager two-layer network under `debugger.wrap`: each step (forward, backward and the
optimizer's update) is one debugged run; the gradient-flow panel (`gf`, or F3 in the TUI)
shows each parameter's gradient norm, its ratio to the weight norm and its history.

    python examples/debug_eager_wrap.py --debug
"""

from __future__ import annotations

import argparse

import numpy as np

import tracetensor as tt
from tracetensor import nn


class TwoLayer(nn.Module):
    def __init__(self, d_in: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        return self.fc2(self.fc1(x).relu())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="run under the tracetensor debugger")
    ap.add_argument("--ui", default="textual", choices=["textual", "readline"])
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    tt.manual_seed(0)
    rng = np.random.default_rng(0)
    x = tt.tensor(rng.standard_normal((64, 20)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 4, 64))
    model = TwoLayer(20, 32, 4)
    opt = tt.optim.SGD(model.parameters(), lr=0.5)
    if args.debug:
        from tracetensor.debugger import wrap

        model = wrap(model, ui_type=args.ui)
    for step in range(args.steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        print(f"step {step}: loss {loss.item():.4f}")
    if args.debug:
        model.close()  # ends the last run (its run-end screen shows)


if __name__ == "__main__":
    main()
