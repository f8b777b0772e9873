"""Graph mode vs hand-written numpy vs eager tracetensor on one MLP training step
(64 -> 128 -> 10, batch 64, SGD, softmax cross-entropy), timed interleaved in one
process; plus the peak memory of the step (tracemalloc) for the plan against eager.

    python benchmarks/run.py graph        (or: python benchmarks/bench_graph.py)
    python benchmarks/bench_graph.py --ops   (per-node breakdown of the graph step)
    python benchmarks/bench_graph.py --observed   (the step under a raw listener and profile())
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_time, interleaved, print_table

import tracetensor as tt
import tracetensor.graph as tf

D_IN, HIDDEN, CLASSES, BATCH, LR = 64, 128, 10, 64, 0.1


def _data() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, D_IN)).astype(np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    params = [
        rng.standard_normal((D_IN, HIDDEN)).astype(np.float32) * D_IN**-0.5,
        np.zeros(HIDDEN, np.float32),
        rng.standard_normal((HIDDEN, CLASSES)).astype(np.float32) * HIDDEN**-0.5,
        np.zeros(CLASSES, np.float32),
    ]
    return x, y, params


def numpy_step() -> Callable[[], float]:
    x, y, (w1, b1, w2, b2) = _data()
    rows = np.arange(BATCH)

    def step() -> float:
        h = x @ w1
        h += b1
        np.maximum(h, 0, out=h)
        z = h @ w2
        z += b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, y]).mean()
        p[rows, y] -= 1
        p /= BATCH
        gw2 = h.T @ p
        gb2 = p.sum(axis=0)
        gh = p @ w2.T
        gh *= h > 0
        gw1 = x.T @ gh
        gb1 = gh.sum(axis=0)
        np.subtract(w1, LR * gw1, out=w1)
        np.subtract(b1, LR * gb1, out=b1)
        np.subtract(w2, LR * gw2, out=w2)
        np.subtract(b2, LR * gb2, out=b2)
        return float(loss)

    return step


def graph_step() -> tuple[Callable[[], float], tf.Session, list, dict]:
    x_np, y_np, (w1_0, b1_0, w2_0, b2_0) = _data()
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, D_IN], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        with tf.name_scope("fc1"):
            w1, b1 = tf.Variable(w1_0, name="w"), tf.Variable(b1_0, name="b")
            h = tf.nn.relu(tf.matmul(x, w1) + b1)
        with tf.name_scope("fc2"):
            w2, b2 = tf.Variable(w2_0, name="w"), tf.Variable(b2_0, name="b")
            logits = tf.matmul(h, w2) + b2
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf.train.GradientDescentOptimizer(LR).minimize(loss)
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=g)
    sess.run(init)
    fetches = [loss, train]
    feed = {x: x_np, y: y_np}

    def step() -> float:
        return float(sess.run(fetches, feed)[0])

    return step, sess, fetches, feed


def eager_step() -> Callable[[], float]:
    import tracetensor.nn.functional as F

    x_np, y_np, params = _data()
    x, y = tt.tensor(x_np), tt.tensor(y_np)
    w1, b1, w2, b2 = (tt.tensor(p, requires_grad=True) for p in params)

    def step() -> float:
        loss = F.cross_entropy((x @ w1 + b1).relu() @ w2 + b2, y)
        for p in (w1, b1, w2, b2):
            p.grad = None
        loss.backward()
        with tt.no_grad():
            for p in (w1, b1, w2, b2):
                p -= LR * p.grad
        return loss.item()

    return step


def engine_overhead(sess: tf.Session, fetches: list, feed: dict) -> Callable[[], object]:
    """`Session.run` of the training step with every op of its plan replaced by a stub
    returning a recorded output: what the graph engine itself costs per step (plan lookup,
    feed checks, the generated plan, fetch conversion), without the ops."""
    from tracetensor.graph.session import Plan, Step, run_step_fast

    sess.run(fetches, feed)
    plan = list(sess._plans.values())[-1][0]
    x_np, y_np = feed.values()
    vals = dict(zip(plan.feeds, (x_np, y_np)))
    stubs = []
    for st in plan.steps:
        out = run_step_fast(st, tuple(vals[t] for t in st.ins), np)
        vals.update(zip(st.outs, out) if st.multi else ((st.outs[0], out),))
        stub = Step(st.op, lambda *a, _out=out, **k: _out, multi=st.multi)
        stub.var, stub.const = st.var, st.const
        stubs.append(stub)
    plan.fast = Plan(sess, stubs, plan.feeds, plan.fetches, plan.specs).fast
    return lambda: sess.run(fetches, feed)


def op_breakdown(number: int = 300) -> tuple[list[tuple[str, str, float]], float]:
    """Median seconds of each plan node inside real `Session.run` calls: the function each
    node of the generated plan calls (an op's forward, an inlined VJP, an update) wrapped in
    a timer where the plan looks it up, so the plan runs as in the benchmark (residuals
    kept, VJPs inlined); each run alternates with a numpy step, timed alike.
    Returns ((node type, node name, seconds) in plan order, numpy step seconds)."""
    import statistics
    import time

    _, sess, fetches, feed = graph_step()
    sess.run(fetches, feed)
    plan = list(sess._plans.values())[-1][0]
    times: list[list[float]] = [[] for _ in plan.steps]

    def timed(fn: Callable, k: int) -> Callable:
        def call(*a: object, **kw: object) -> object:
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            times[k].append(time.perf_counter() - t0)
            return out

        return call

    ns = plan.fast.__globals__
    for k, st in enumerate(plan.steps):
        for name in (f"f{k}", f"v{k}"):
            if name in ns and st.var is None and st.const is None:
                ns[name] = timed(ns[name], k)
    np_fn = numpy_step()
    t_np = []
    for _ in range(number):
        sess.run(fetches, feed)
        t0 = time.perf_counter()
        np_fn()
        t_np.append(time.perf_counter() - t0)
    sess.close()
    rows = [(st.op.type, st.op.name, statistics.median(ts)) for st, ts in zip(plan.steps, times) if ts]
    return rows, statistics.median(t_np)


def print_breakdown() -> None:
    rows, t_np = op_breakdown()
    total = sum(r[2] for r in rows)
    table = [(f"{ty} {name}", fmt_time(s), f"{s / t_np:.2f}x", "") for ty, name, s in rows]
    table += [
        ("sum of nodes", fmt_time(total), f"{total / t_np:.2f}x", ""),
        ("numpy step (whole)", fmt_time(t_np), "1.00x", "baseline"),
    ]
    print_table("graph MLP step, per node (median inside Session.run; ratio to the numpy step)", table)


def observed(number: int = 100, repeat: int = 9) -> dict[str, float]:
    """The graph step watched: by a timing-only listener (raw records, events read after
    the round) and by `profile()`, against numpy and the unwatched step; CPU seconds,
    rounds interleaved, each watcher started and stopped around its own rounds."""
    import statistics
    import time

    from tracetensor.profiler import profile

    from tracetensor import events

    nothing = lambda: None
    got: list = []
    box: list = []

    def listen() -> None:
        got.clear()
        box[:] = [events.subscribe(got.append, raw=True)]

    def unlisten() -> None:
        box[0].close()
        events.materialize(got)

    def prof() -> None:
        box[:] = [profile()]
        box[0].start()

    p_step = graph_step()[0]

    def profiled() -> None:
        p_step()
        box[0].step()

    cases = {
        "numpy": (nothing, numpy_step(), nothing),
        "graph": (nothing, graph_step()[0], nothing),
        "listened": (listen, graph_step()[0], unlisten),
        "profiled": (prof, profiled, lambda: box[0].stop()),
    }
    acc: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(repeat + 1):  # the first round warms up
        for k, (start, step, stop) in cases.items():
            start()
            t0 = time.process_time()
            for _ in range(number):
                step()
            stop()
            if r:
                acc[k].append((time.process_time() - t0) / number)
    return {k: statistics.median(v) for k, v in acc.items()}


def print_observed() -> None:
    t = observed()
    r = lambda k: f"{t[k] / t['numpy']:.2f}x"
    print_table(
        "graph MLP step watched (CPU time; ratio to the numpy step)",
        [
            ("numpy (hand-written)", fmt_time(t["numpy"]), "1.00x", "baseline"),
            ("graph Session.run", fmt_time(t["graph"]), r("graph"), "<= 1.15x"),
            ("  with a timing-only listener (raw)", fmt_time(t["listened"]), r("listened"), "-"),
            ("  under profile()", fmt_time(t["profiled"]), r("profiled"), "-"),
        ],
    )


def peak_bytes(fn: Callable[[], object]) -> int:
    fn()  # warm: plans compiled, caches filled
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def main(number: int = 200, repeat: int = 7) -> dict[str, float]:
    np_fn = numpy_step()
    g_fn, sess, _, _ = graph_step()
    _, stub_sess, fetches, feed = graph_step()
    e_fn = eager_step()
    # the three agree on the first steps (same data, same initial parameters)
    a, b, c = numpy_step()(), graph_step()[0](), eager_step()()
    assert abs(a - b) < 1e-4 and abs(a - c) < 1e-4, (a, b, c)
    t = interleaved(
        {"numpy": np_fn, "graph": g_fn, "eager": e_fn, "engine": engine_overhead(stub_sess, fetches, feed)},
        number=number,
        repeat=repeat,
    )
    mem_g, mem_e = peak_bytes(g_fn), peak_bytes(e_fn)
    rows = [
        ("numpy (hand-written)", fmt_time(t["numpy"]), "1.00x", "baseline"),
        ("graph Session.run", fmt_time(t["graph"]), f"{t['graph'] / t['numpy']:.2f}x", "<= 1.15x numpy"),
        ("graph engine alone (ops stubbed)", fmt_time(t["engine"]), f"{t['engine'] / t['numpy']:.2f}x", "-"),
        ("eager tracetensor", fmt_time(t["eager"]), f"{t['eager'] / t['numpy']:.2f}x", "-"),
        (
            "peak memory, graph plan",
            f"{mem_g / 1024:.1f} KiB",
            f"{mem_g / max(mem_e, 1):.2f}x eager",
            "<= eager",
        ),
        ("peak memory, eager step", f"{mem_e / 1024:.1f} KiB", "1.00x", "-"),
    ]
    print_table(f"MLP training step {D_IN}->{HIDDEN}->{CLASSES}, batch {BATCH}, SGD", rows)
    sess.close()
    stub_sess.close()
    return {
        "numpy": t["numpy"],
        "graph": t["graph"],
        "eager": t["eager"],
        "engine": t["engine"],
        "graph_ratio": t["graph"] / t["numpy"],
        "mem_graph": mem_g,
        "mem_eager": mem_e,
    }


if __name__ == "__main__":
    if "--ops" in sys.argv[1:]:
        print_breakdown()
    elif "--observed" in sys.argv[1:]:
        print_observed()
    else:
        main()
