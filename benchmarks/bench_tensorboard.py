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

    # separate rounds, each flushed, so one case's queued writes do not land in another's time
    t = interleaved({"base": lambda: step().item(), "scalar": step_scalar}, number=50, repeat=7)
    w.flush()
    th = interleaved({"base": lambda: step().item(), "hist": lambda: (step_histograms(), w.flush())},
                     number=20, repeat=7)
    rows = [("eager MLP step", fmt_time(t["base"]), "1.00x", ""),
            ("  + add_scalar(loss)", fmt_time(t["scalar"]), f"{t['scalar'] / t['base']:.2f}x", "<= 1.1x"),
            ("  + add_histogram of 4 params, flushed", fmt_time(th["hist"]), f"{th['hist'] / th['base']:.2f}x",
             "<= 2x")]

    graph = tf.Graph()
    with graph.as_default():
        xp = tf.placeholder(tf.float32, [None, 64])
        yp = tf.placeholder(tf.int64, [None])
        w1 = tf.Variable(tf.random_normal([64, 128], stddev=0.1, seed=0))
        w2 = tf.Variable(tf.random_normal([128, 10], stddev=0.1, seed=1))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=yp, logits=tf.matmul(tf.nn.relu(tf.matmul(xp, w1)), w2)))
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
    rows += [("TF1 Session.run step", fmt_time(tg["base"]), "1.00x", ""),
             ("  + scalar summary, add_summary", fmt_time(tg["summ"]), f"{tg['summ'] / tg['base']:.2f}x", "<= 1.1x")]

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
