"""Train a small MLP, log it to TensorBoard as a PyTorch script would, and export the
recorded trace of the same training to TensorBoard too.

    python examples/tensorboard_mlp.py --logdir runs/mlp
    tensorboard --logdir runs/mlp

Needs `pip install "tracetensor[tensorboard]"`. The folder gets three runs:
`train` (SummaryWriter: loss, accuracy, weight/gradient histograms, the graph, an image
of the first layer's weights), `trace` (`export_trace` of the recorded steps: loss,
per-parameter gradient/weight norms and histograms, non-finite counts, time per op type)
and one hparams run.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor.utils.tensorboard import SummaryWriter, export_trace


def make_data(n: int, d_in: int, classes: int, rng: np.random.Generator) -> tuple[tt.Tensor, tt.Tensor]:
    centers = rng.standard_normal((classes, d_in)).astype(np.float32) * 2
    labels = rng.integers(0, classes, n)
    return tt.tensor(centers[labels] + rng.standard_normal((n, d_in)).astype(np.float32)), tt.tensor(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default="runs/mlp")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tt.manual_seed(0)
    x, y = make_data(512, 16, 4, rng)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = tt.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    trace_path = os.path.join(args.logdir, "train.ttrace")
    os.makedirs(args.logdir, exist_ok=True)

    with SummaryWriter(os.path.join(args.logdir, "train")) as w, tt.record(trace_path, values="full"):
        w.add_graph(model, x[:8])
        w.add_text("config", f"SGD, lr **{args.lr}**, momentum 0.9, {args.steps} steps")
        for step in range(args.steps):
            lo = (step % 8) * 64
            xb, yb = x[lo : lo + 64], y[lo : lo + 64]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.add_scalar("loss", loss.item(), step)
            w.add_scalar("accuracy", (logits.argmax(-1) == yb).float().mean().item(), step)
            if step % 10 == 0 or step == args.steps - 1:
                for name, p in model.named_parameters():
                    w.add_histogram(f"weights/{name}", p, step)
                    w.add_histogram(f"grads/{name}", p.grad, step)
                w1 = model[0].weight.detach().numpy()
                w.add_image("fc1_weights", (w1 - w1.min()) / (w1.max() - w1.min() + 1e-12), step, dataformats="HW")
        final_acc = (model(x).argmax(-1) == y).float().mean().item()
        w.add_hparams(
            {"lr": args.lr, "momentum": 0.9, "hidden": 32}, {"hparam/accuracy": final_acc}, run_name="hparams"
        )

    with tt.trace.open(trace_path) as t:
        print(export_trace(t, os.path.join(args.logdir, "trace")))
    print(f"final accuracy {final_acc:.3f}; now run: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
