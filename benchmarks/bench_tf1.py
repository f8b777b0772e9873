"""TF1 layouts against PyTorch's on the same engine: one training step of a small CNN
(16x16x1 -> conv 5x5x8 SAME -> pool 2 -> conv 5x5x16 SAME -> pool 2 -> dense 10, batch 32,
SGD) built with `tf.nn.conv2d` / `tf.nn.max_pool` (NHWC, graph mode) and with
`F.conv2d` / `F.max_pool2d` (NCHW, eager), timed interleaved in one process.

    python benchmarks/run.py tf1        (or: python benchmarks/bench_tf1.py)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_time, interleaved, print_table

import tracetensor as tt
import tracetensor.graph as tf
import tracetensor.nn.functional as F

BATCH, SIDE, LR = 32, 16, 0.05


def _data() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIDE, SIDE, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    ws = [rng.standard_normal(s).astype(np.float32) * 0.1 for s in ((5, 5, 1, 8), (5, 5, 8, 16), (4 * 4 * 16, 10))]
    return x, y, ws


def graph_step() -> tuple[Callable[[], float], tf.Session]:
    x_np, y_np, ws = _data()
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, SIDE, SIDE, 1])
        y = tf.placeholder(tf.int64, [None])
        w1, w2, w3 = (tf.Variable(w) for w in ws)
        h = tf.nn.max_pool(tf.nn.relu(tf.nn.conv2d(x, w1, [1, 1, 1, 1], "SAME")), [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        h = tf.nn.max_pool(tf.nn.relu(tf.nn.conv2d(h, w2, [1, 1, 1, 1], "SAME")), [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        logits = tf.matmul(tf.reshape(h, [-1, 4 * 4 * 16]), w3)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf.train.GradientDescentOptimizer(LR).minimize(loss)
        sess = tf.Session(graph=g)
        sess.run(tf.global_variables_initializer())
    feed = {x: x_np, y: y_np}
    return lambda: float(sess.run([train, loss], feed)[1]), sess


def eager_step() -> Callable[[], float]:
    x_np, y_np, ws = _data()
    x = tt.tensor(x_np.transpose(0, 3, 1, 2).copy())
    y = tt.tensor(y_np)
    # the same weights in PyTorch's layout: (out, in, kh, kw)
    w1, w2 = (tt.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True) for w in ws[:2])
    # NHWC flattening order in the graph, NCHW here: permute the dense weight's rows to match
    w3 = tt.tensor(ws[2].reshape(4, 4, 16, 10).transpose(2, 0, 1, 3).reshape(-1, 10).copy(), requires_grad=True)
    opt = tt.optim.SGD([w1, w2, w3], lr=LR)

    def step() -> float:
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, padding=2)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, padding=2)), 2)
        loss = F.cross_entropy(h.reshape(BATCH, -1) @ w3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main(number: int = 20, repeat: int = 5) -> dict[str, float]:
    g_fn, sess = graph_step()
    e_fn = eager_step()
    a, b = graph_step()[0](), eager_step()()
    assert abs(a - b) < 1e-4, (a, b)  # the two models are the same model
    t = interleaved({"eager": e_fn, "graph": g_fn}, number=number, repeat=repeat)
    rows = [
        ("eager NCHW (F.conv2d, F.max_pool2d)", fmt_time(t["eager"]), "1.00x", "baseline"),
        (
            "graph NHWC (tf.nn.conv2d, tf.nn.max_pool)",
            fmt_time(t["graph"]),
            f"{t['graph'] / t['eager']:.2f}x",
            "<= 1.5x eager",
        ),
    ]
    print_table(f"TF1 CNN training step {SIDE}x{SIDE}x1 -> 8 -> 16 -> 10, batch {BATCH}, SGD", rows)
    sess.close()
    return {"ratio": t["graph"] / t["eager"]}


if __name__ == "__main__":
    main()
