"""Graph mode beyond straight lines: while_loop/cond (values, events per iteration,
gradients), `tt.function` tracing, export/load in a fresh process, and the GPU path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.graph as tf
from tracetensor import events


@pytest.fixture
def g():
    graph = tf.Graph()
    with graph.as_default():
        yield graph


# --------------------------------------------------------------------------- while_loop


def test_while_loop_values_gradients_and_iteration_events(g):
    x = tf.placeholder(tf.float32, [3], name="x")
    w = tf.Variable(np.array([1.0, 2.0, 0.5], np.float32), name="w")
    i_end, acc = tf.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * w + x), [tf.constant(0), x])
    loss = tf.reduce_sum(acc)
    gx, gw = tf.gradients(loss, [x, w])
    assert acc.op.type == "While" and acc.op.name == "while" and acc.name == "while:1"
    X, W = np.array([1.0, -2.0, 3.0], np.float32), np.array([1.0, 2.0, 0.5])
    seen = []
    with tf.Session() as s:
        s.run(w.initializer)
        with events.listen(seen.append):
            i_v, a_v, gx_v, gw_v = s.run([i_end, acc, gx, gw], {x: X})
    assert i_v == 3
    np.testing.assert_allclose(a_v, X * (W**3 + W**2 + W + 1), rtol=1e-6)
    np.testing.assert_allclose(gx_v, W**3 + W**2 + W + 1, rtol=1e-6)  # d acc / dx
    np.testing.assert_allclose(gw_v, X * (3 * W**2 + 2 * W + 1), rtol=1e-6)  # d acc / dw
    ops = [e for e in seen if isinstance(e, events.OpEvent)]
    body = [e for e in ops if e.name == "while/body/Mul"]
    assert [e.iteration for e in body] == [0, 1, 2] and all(e.phase == "forward" for e in body)
    assert [e.iteration for e in ops if e.name == "while/cond/Less"] == [0, 1, 2, 3]
    back = [e for e in ops if e.phase == "backward" and e.forward == "while/body/Mul"]
    assert [e.iteration for e in back] == [2, 1, 0]
    nodes = {n.name for e in seen if isinstance(e, events.GraphDef) for n in e.nodes}
    assert {"while", "while/body/Mul", "while/cond/Less", "gradients/while_grad"} <= nodes


def test_while_loop_maximum_iterations_and_body_tensors_not_fetchable(g):
    n = tf.placeholder(tf.int32, [], name="n")
    out = tf.while_loop(lambda i: i < n, lambda i: i + 2, [tf.constant(0)], maximum_iterations=4)
    inner = g.get_tensor_by_name("while/body/AddV2:0")
    with tf.Session() as s:
        assert s.run(out, {n: 5}) == [6]
        assert s.run(out, {n: 100}) == [8]
        with pytest.raises(tf.errors.InvalidArgumentError, match="inside the control-flow body 'while'"):
            s.run(inner, {n: 5})


def test_while_loop_trains_with_optimizer(g):
    """A loop inside a model: minimize() differentiates through it."""
    w = tf.Variable(0.5, name="w")
    _, y = tf.while_loop(lambda i, v: i < 4, lambda i, v: (i + 1, v * w), [tf.constant(0), tf.constant(3.0)])
    loss = tf.square(y - 0.75)  # 3 w^4 = 0.75 at w = 0.707...
    train = tf.train.GradientDescentOptimizer(0.05).minimize(loss)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        for _ in range(200):
            s.run(train)
        assert abs(s.run(w) - 0.5**0.5) < 1e-3


# --------------------------------------------------------------------------- cond


def test_cond_runs_one_branch_and_differentiates(g):
    x = tf.placeholder(tf.float32, [2], name="x")
    w = tf.Variable([2.0, 3.0], name="w")
    y = tf.cond(tf.reduce_sum(x) > 0, lambda: x * w, lambda: tf.square(x))
    gx, gw = tf.gradients(tf.reduce_sum(y), [x, w])
    assert y.op.type == "If"
    with tf.Session() as s:
        s.run(w.initializer)
        seen = []
        with events.listen(seen.append):
            pos = s.run([y, gx, gw], {x: [1.0, 2.0]})
        ran = {e.name for e in seen if isinstance(e, events.OpEvent)}
        assert "cond/true/Mul" in ran and "cond/false/Square" not in ran
        neg = s.run([y, gx, gw], {x: [-1.0, -2.0]})
    np.testing.assert_allclose(pos[0], [2.0, 6.0])
    np.testing.assert_allclose(pos[1], [2.0, 3.0])
    np.testing.assert_allclose(pos[2], [1.0, 2.0])
    np.testing.assert_allclose(neg[0], [1.0, 4.0])
    np.testing.assert_allclose(neg[1], [-2.0, -4.0])
    np.testing.assert_allclose(neg[2], [0.0, 0.0])


def test_cond_inside_while_reports_iterations(g):
    def body(i, acc):
        return i + 1, tf.cond(tf.equal(i % 2, 0), lambda: acc + 1.0, lambda: acc * 2.0)

    _, out = tf.while_loop(lambda i, a: i < 4, body, [tf.constant(0), tf.constant(0.0)])
    seen = []
    with tf.Session() as s, events.listen(seen.append):
        assert s.run(out) == 6.0  # ((0+1)*2+1)*2
    adds = [e.iteration for e in seen if isinstance(e, events.OpEvent) and e.name == "while/body/cond/true/AddV2"]
    assert adds == [0, 2]


# --------------------------------------------------------------------------- tt.function


def test_function_traces_once_per_signature_and_matches_eager():
    w = tt.randn(4, 3, requires_grad=True)

    @tt.function
    def f(x, scale=2.0):
        h = (x @ w).relu() * scale
        return h.sum(1), {"h": h}

    x = tt.randn(5, 4)
    s, d = f(x)
    ref = ((x @ w).relu() * 2.0).detach()
    np.testing.assert_allclose(d["h"].numpy(), ref.numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.numpy(), ref.numpy().sum(1), rtol=1e-5)
    assert tt.function is tf.function and f.__name__ == "f"
    types = [op.type for op in f.graph.get_operations()]
    assert types.count("MatMul") == 1 and "Relu" in types and types[0] == "Placeholder"
    with tt.no_grad():
        w.data -= 1.0  # captured parameters are read live at each call
    np.testing.assert_allclose(f(x)[1]["h"].numpy(), ((x @ w).relu() * 2.0).detach().numpy(), rtol=1e-6)
    f(x)
    f(x, 3.0)
    f(tt.randn(2, 4))
    assert len(f.graphs) == 3  # (5,4) scale 2, (5,4) scale 3, (2,4) scale 2
    seen = []
    with events.listen(seen.append):
        f(x)
    start = next(e for e in seen if isinstance(e, events.RunStart))
    assert start.kind == "tt.function" and start.mode == "graph" and start.name.endswith("f")
    assert any(isinstance(e, events.OpEvent) and e.op == "MatMul" and e.mode == "graph" for e in seen)


def test_function_runs_a_traced_graph_in_a_session():
    @tt.function
    def f(a, b):
        return (a * b + a).exp()

    a, b = tt.tensor([1.0, 2.0]), tt.tensor([0.5, -1.0])
    f(a, b)
    graph = f.get_concrete_function(a, b)
    with tf.Session(graph=graph) as s:
        out = s.run(graph.get_operations()[-1].outputs[0], {"a:0": a.numpy(), "b:0": b.numpy()})
    np.testing.assert_allclose(out, np.exp([1.5, 0.0]), rtol=1e-6)


# --------------------------------------------------------------------------- export / load

_LOADER = """
import sys, numpy as np
import tracetensor.graph as tf
s = tf.load(sys.argv[1])
x = np.load(sys.argv[2])
out = s.run(s.signature["outputs"]["y"], {s.signature["inputs"]["x"]: x})
np.save(sys.argv[3], out)
s.run("GradientDescent", {"x:0": x})  # the training op comes back too
print(s.graph.get_operation_by_name("dense/MatMul").stack[0].lineno)
"""


def test_export_load_in_fresh_process(g, tmp_path):
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    with tf.name_scope("dense"):
        w = tf.Variable(tf.random_normal([3, 2], seed=3), name="w")
        y = tf.nn.relu(tf.matmul(x, w))
    line = __import__("inspect").currentframe().f_lineno - 1
    _, y2 = tf.while_loop(lambda i, v: i < 2, lambda i, v: (i + 1, v * 0.5), [0, y])
    train = tf.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_sum(y2 + y[:, 0:1]))
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        s.run(train, {x: X})  # exported values are the trained ones, not the initial ones
        want = s.run(y2, {x: X})
        path = tf.export(tmp_path / "model.npz", s, inputs={"x": x}, outputs={"y": y2})
    np.save(tmp_path / "x.npy", X)
    r = subprocess.run(
        [sys.executable, "-c", _LOADER, path, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6)
    assert int(r.stdout.strip()) == line
    assert b"pickle" not in (tmp_path / "model.npz").read_bytes()[:0]  # npz without object arrays
    with np.load(path, allow_pickle=False) as z:
        assert "__graph__" in z.files


def test_load_corrupt_file_is_serialization_error(g, tmp_path):
    a = tf.constant([1.0, 2.0], name="a")
    tf.multiply(a, 2.0, name="b")
    path = tf.export(tmp_path / "m.npz", g)
    data = (tmp_path / "m.npz").read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(bytes(arrays["__graph__"]))
    meta["nodes"][1]["op"] = "no_such_op"
    np.savez(
        tmp_path / "unknown_op.npz",
        **{**arrays, "__graph__": np.frombuffer(json.dumps(meta).encode(), np.uint8)},
    )
    np.savez(tmp_path / "bad_json.npz", __graph__=np.frombuffer(b"{not json", np.uint8))
    cases = [
        data[: len(data) // 2],
        b"not a zip at all",
        bytes(flipped),
        (tmp_path / "unknown_op.npz").read_bytes(),
        (tmp_path / "bad_json.npz").read_bytes(),
    ]
    for i, bad in enumerate(cases):
        p = tmp_path / f"bad{i}.npz"
        p.write_bytes(bad)
        with pytest.raises(tt.SerializationError, match="not a valid tracetensor graph file"):
            tf.load(p)
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(tt.SerializationError, match="graph"):
        tf.load(tmp_path / "other.npz")
    with tf.Session(graph=tf.load(path).graph) as s:
        np.testing.assert_allclose(s.run("b:0"), [2.0, 4.0])


def test_export_traced_function(tmp_path):
    w = tt.tensor([[1.0], [2.0]])

    @tt.function
    def f(x):
        return (x @ w).tanh()

    x = tt.tensor([[0.5, -0.25]])
    want = f(x).numpy()
    s = tf.load(tf.export(tmp_path / "f.npz", f, inputs={"x": "x:0"}))
    out_name = [op for op in s.graph.get_operations()][-1].outputs[0]
    np.testing.assert_allclose(s.run(out_name, {"x:0": x.numpy()}), want)


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_session_on_gpu_matches_cpu(g):
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
    _, acc = tf.while_loop(lambda i, a: i < 2, lambda i, a: (i + 1, a * 1.5), [0, tf.nn.relu(tf.matmul(x, w))])
    loss = tf.reduce_mean(tf.nn.log_softmax(acc))
    train = tf.train.AdamOptimizer(0.1).minimize(loss)
    X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    results = []
    for dev in ("cpu", "cuda"):
        with tf.Session(device=dev) as s:
            s.run(tf.global_variables_initializer())
            seen = []
            with events.listen(seen.append):
                s.run(train, {x: X})
            vals = s.run([loss, w], {x: X})
            assert all(e.device.startswith(dev) for e in seen if isinstance(e, events.OpEvent))
            assert isinstance(vals[1], np.ndarray)
            results.append(vals)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_tf1_example_trains_and_reloads(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "graph_tf1.py"
    spec = importlib.util.spec_from_file_location("graph_tf1_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with tf.Graph().as_default():
        assert mod.main() > 0.9
    out = capsys.readouterr().out
    assert "d(w^3)/dw = 12.0" in out and "reloaded from" in out
