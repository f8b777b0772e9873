"""TensorBoard cost: an eager MLP training step that logs its loss (`add_scalar`) or every
parameter's histogram each step, and a TF1 `Session.run` that also computes its merged
summaries, against the same step without logging; and how fast a recorded trace exports.
`python benchmarks/run.py tensorboard` (needs `pip install "tracetensor[tensorboard]"`)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import fmt_time, interleaved, print_table

import tracetensor as tt
import tracetensor.graph as tf


def main() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print('\nTensorBoard benchmark skipped: pip install "tracetensor[tensorboard]"')
        return
    from tracetensor.utils.tensorboard import SummaryWriter, export_trace

    g = np.random.default_rng(0)
    x = tt.tensor(g.standard_normal((64, 64)).astype(np.float32))
    y = tt.tensor(g.integers(0, 10, 64))
    model = tt.nn.Sequential(tt.nn.Linear(64, 128), tt.nn.ReLU(), tt.nn.Linear(128, 10))
    opt = tt.optim.SGD(model.parameters(), lr=0.01)
    tmp = tempfile.mkdtemp(prefix="tt-bench-tb-")
    w = SummaryWriter(os.path.join(tmp, "w"), max_queue=1000)
    n = [0]

    def step() -> tt.Tensor:
        opt.zero_grad()
        loss = tt.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        n[0] += 1
        return loss

    def step_scalar() -> None:
        w.add_scalar("loss", step().item(), n[0])

    def step_histograms() -> None:
        step()
        for name, p in model.named_parameters():
            w.add_histogram(name, p, n[0])

    cases = {"base": lambda: step().item(), "scalar": step_scalar}
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter
    except ImportError:
        TorchWriter = None
    else:  # the same step logging through PyTorch's writer (the same TensorBoard file writer underneath)
        tw = TorchWriter(os.path.join(tmp, "torch_step"), max_queue=1000)
        cases["torch"] = lambda: tw.add_scalar("loss", step().item(), n[0])
    # separate rounds, each flushed, so one case's queued writes do not land in another's time
    t = interleaved(cases, number=50, repeat=7)
    w.flush()
    th = interleaved(
        {"base": lambda: step().item(), "hist": lambda: (step_histograms(), w.flush())}, number=20, repeat=7
    )
    rows = [
        ("eager MLP step", fmt_time(t["base"]), "1.00x", ""),
        ("  + add_scalar(loss)", fmt_time(t["scalar"]), f"{t['scalar'] / t['base']:.2f}x", "<= torch's"),
        *(
            [
                (
                    "  + torch.utils.tensorboard add_scalar(loss)",
                    fmt_time(t["torch"]),
                    f"{t['torch'] / t['base']:.2f}x",
                    "(reference)",
                )
            ]
            if "torch" in t
            else []
        ),
        ("  + add_histogram of 4 params, flushed", fmt_time(th["hist"]), f"{th['hist'] / th['base']:.2f}x", ""),
    ]

    graph = tf.Graph()
    with graph.as_default():
        xp = tf.placeholder(tf.float32, [None, 64])
        yp = tf.placeholder(tf.int64, [None])
        w1 = tf.Variable(tf.random_normal([64, 128], stddev=0.1, seed=0))
        w2 = tf.Variable(tf.random_normal([128, 10], stddev=0.1, seed=1))
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=yp, logits=tf.matmul(tf.nn.relu(tf.matmul(xp, w1)), w2)
            )
        )
        train = tf.train.GradientDescentOptimizer(0.01).minimize(loss)
        tf.summary.scalar("loss", loss)
        merged = tf.summary.merge_all()
        sess = tf.Session()
        sess.run(tf.global_variables_initializer())
        feed = {xp: x.numpy(), yp: y.numpy()}
        fw = tf.summary.FileWriter(os.path.join(tmp, "g"), max_queue=1000)
        k = [0]

        def with_summary() -> None:
            s, _ = sess.run([merged, train], feed)
            fw.add_summary(s, k[0])
            k[0] += 1

        tg = interleaved({"base": lambda: sess.run([loss, train], feed), "summ": with_summary}, number=50, repeat=7)
    rows += [
        ("TF1 Session.run step", fmt_time(tg["base"]), "1.00x", ""),
        ("  + scalar summary, add_summary", fmt_time(tg["summ"]), f"{tg['summ'] / tg['base']:.2f}x", ""),
    ]

    try:  # the writer PyTorch users have, on the same values: the baseline for one call
        import torch
        from torch.utils.tensorboard import SummaryWriter as TorchWriter
    except ImportError:
        rows.append(("vs torch.utils.tensorboard", "skipped", "", "pip install torch"))
    else:
        wt = TorchWriter(os.path.join(tmp, "torch"), max_queue=1000)
        ours = SummaryWriter(os.path.join(tmp, "ours"), max_queue=1000)
        arr = g.standard_normal((128, 64)).astype(np.float32)
        t_arr, o_arr = torch.from_numpy(arr), tt.tensor(arr)
        tc = interleaved(
            {"ours_s": lambda: ours.add_scalar("loss", 0.5, 1), "torch_s": lambda: wt.add_scalar("loss", 0.5, 1)},
            number=200,
            repeat=7,
        )
        ours.flush()
        wt.flush()
        th2 = interleaved(
            {
                "ours_h": lambda: (ours.add_histogram("w", o_arr, 1), ours.flush()),
                "torch_h": lambda: (wt.add_histogram("w", t_arr, 1), wt.flush()),
            },
            number=20,
            repeat=7,
        )
        rows += [
            (
                "add_scalar, one call (torch's writer = 1)",
                fmt_time(tc["ours_s"]),
                f"{tc['ours_s'] / tc['torch_s']:.2f}x",
                "<= 1x",
            ),
            (
                "add_histogram 64x128, flushed (torch = 1)",
                fmt_time(th2["ours_h"]),
                f"{th2['ours_h'] / th2['torch_h']:.2f}x",
                "<= 1x",
            ),
        ]
        wt.close()
        ours.close()

    path = os.path.join(tmp, "run.ttrace")
    steps = 200
    with tt.record(path, values="summary"):
        for _ in range(steps):
            step()
    t0 = time.perf_counter()
    with tt.trace.open(path) as tr:
        rep = export_trace(tr, os.path.join(tmp, "export"))
    dt = time.perf_counter() - t0
    rows.append((f"export {rep.steps} recorded steps", fmt_time(dt), f"{rep.steps / dt:.0f} steps/s", ""))
    w.close()
    fw.close()
    print_table("TensorBoard (ratios vs the same step without logging)", rows)


if __name__ == "__main__":
    main()
