"""Graph mode (TF1 style): building, sessions and plans, gradients, optimizers, events, errors."""

from __future__ import annotations

import collections
import math

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


def _mlp(seed: int = 0, d_in: int = 4, hidden: int = 8, classes: int = 3):
    rng = np.random.default_rng(seed)
    params = [
        rng.standard_normal((d_in, hidden)).astype(np.float32) * 0.5,
        np.zeros(hidden, np.float32) + 0.1,
        rng.standard_normal((hidden, classes)).astype(np.float32) * 0.5,
        np.zeros(classes, np.float32),
    ]
    x = tf.placeholder(tf.float32, [None, d_in], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.name_scope("layer1"):
        w1, b1 = tf.Variable(params[0], name="W"), tf.Variable(params[1], name="b")
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
    with tf.name_scope("layer2"):
        w2, b2 = tf.Variable(params[2], name="W"), tf.Variable(params[3], name="b")
        logits = tf.matmul(h, w2) + b2
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    X = rng.standard_normal((16, d_in)).astype(np.float32)
    Y = rng.integers(0, classes, 16)
    return dict(x=x, y=y, h=h, logits=logits, loss=loss, vars=[w1, b1, w2, b2], params=params, X=X, Y=Y)


# --------------------------------------------------------------------------- building


def test_names_scopes_and_static_shapes(g):
    m = _mlp()
    assert m["x"].name == "x:0" and m["x"].shape == (None, 4)
    assert m["h"].name == "layer1/Relu:0" and m["h"].shape == (None, 8)
    assert m["h"].op.type == "Relu" and m["h"].op.inputs[0].op.name == "layer1/AddV2"
    assert m["vars"][0].name == "layer1/W:0" and m["vars"][2].name == "layer2/W:0"
    assert m["loss"].shape == () and m["loss"].dtype == tf.float32
    with tf.name_scope("layer1"):  # a scope name used twice becomes name_1, as in TF1
        t = tf.add(m["x"], 1.0)
    assert t.name == "layer1_1/AddV2:0"
    a, b = tf.matmul(m["x"], m["vars"][0]), tf.matmul(m["x"], m["vars"][0])
    assert (a.op.name, b.op.name) == ("MatMul", "MatMul_1")
    assert [v.name for v in tf.trainable_variables()] == [
        "layer1/W:0",
        "layer1/b:0",
        "layer2/W:0",
        "layer2/b:0",
    ]


def test_python_operators_and_scalar_dtypes(g):
    x = tf.placeholder(tf.float32, [3], name="x")
    y = (x * 2 + 1) / 4 - x**2
    neg, cmp = -x, x > 0.5
    assert y.dtype == tf.float32 and cmp.dtype == tf.bool
    with tf.Session() as s:
        out = s.run([y, neg, cmp, x[1:], abs(neg)], {x: [0.0, 1.0, -2.0]})
    X = np.array([0.0, 1.0, -2.0], np.float32)
    np.testing.assert_allclose(out[0], (X * 2 + 1) / 4 - X**2, rtol=1e-6)
    np.testing.assert_array_equal(out[2], X > 0.5)
    np.testing.assert_array_equal(out[3], X[1:])
    with pytest.raises(TypeError, match="Python bool"):
        bool(cmp)


def _ops_cases():
    a = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], np.float32)  # a == b once: log(a - b) = -inf there
    b = np.array([[2.0, 1.0, -1.0], [0.5, -2.0, 0.25]], np.float32)
    lab = np.array([2, 1])
    return (
        a,
        b,
        lab,
        [
            ("add", lambda A, B: tf.add(A, B), lambda: a + b),
            ("subtract", lambda A, B: tf.subtract(A, B), lambda: a - b),
            ("multiply", lambda A, B: tf.multiply(A, B), lambda: a * b),
            ("divide", lambda A, B: tf.divide(A, B), lambda: a / b),
            ("square", lambda A, B: tf.square(A), lambda: a * a),
            ("sqrt", lambda A, B: tf.sqrt(tf.abs(A)), lambda: np.sqrt(np.abs(a))),
            ("exp/log", lambda A, B: tf.math.log(tf.exp(A)), lambda: a),
            ("maximum", lambda A, B: tf.maximum(A, B), lambda: np.maximum(a, b)),
            ("minimum", lambda A, B: tf.minimum(A, B), lambda: np.minimum(a, b)),
            ("reduce_sum", lambda A, B: tf.reduce_sum(A, axis=1), lambda: a.sum(1)),
            (
                "reduce_mean",
                lambda A, B: tf.reduce_mean(A, axis=0, keepdims=True),
                lambda: a.mean(0, keepdims=True),
            ),
            ("reduce_max", lambda A, B: tf.reduce_max(A), lambda: a.max()),
            ("reduce_min", lambda A, B: tf.reduce_min(A, axis=[0, 1]), lambda: a.min()),
            ("argmax", lambda A, B: tf.argmax(A, axis=1), lambda: a.argmax(1)),
            ("equal", lambda A, B: tf.equal(A, B), lambda: a == b),
            (
                "less/greater",
                lambda A, B: tf.logical_and(tf.less(A, 2.0), tf.greater_equal(B, 0.0)),
                lambda: (a < 2) & (b >= 0),
            ),
            (
                "logical_or/not",
                lambda A, B: tf.logical_not(tf.logical_or(tf.less_equal(A, 0.5), tf.greater(B, 2.0))),
                lambda: ~((a <= 0.5) | (b > 2)),
            ),
            ("cast", lambda A, B: tf.cast(A, tf.int32), lambda: a.astype(np.int32)),
            ("reshape", lambda A, B: tf.reshape(A, [3, -1]), lambda: a.reshape(3, 2)),
            ("transpose", lambda A, B: tf.transpose(A), lambda: a.T),
            ("reverse", lambda A, B: tf.reverse(A, [1]), lambda: a[:, ::-1]),
            ("concat", lambda A, B: tf.concat([A, B], axis=0), lambda: np.concatenate([a, b], 0)),
            ("stack", lambda A, B: tf.stack([A, B], axis=1), lambda: np.stack([a, b], 1)),
            ("identity", lambda A, B: tf.identity(A), lambda: a),
            ("clip_by_value", lambda A, B: tf.clip_by_value(A, -1.0, 1.0), lambda: np.clip(a, -1, 1)),
            ("where", lambda A, B: tf.where(A > B, A, B), lambda: np.where(a > b, a, b)),
            ("add_n", lambda A, B: tf.add_n([A, B, A]), lambda: a + b + a),
            (
                "one_hot",
                lambda A, B: tf.one_hot(tf.constant(lab), 3),
                lambda: np.eye(3, dtype=np.float32)[lab],
            ),
            (
                "is_nan/is_inf",
                lambda A, B: tf.logical_or(tf.is_nan(tf.math.log(A)), tf.is_inf(tf.math.log(A - B))),
                lambda: (a < 0) | (a == b),
            ),
            (
                "relu/sigmoid/tanh",
                lambda A, B: tf.nn.relu(A) + tf.sigmoid(B) + tf.tanh(A),
                lambda: np.maximum(a, 0) + 1 / (1 + np.exp(-b)) + np.tanh(a),
            ),
            ("softmax", lambda A, B: tf.nn.softmax(A), lambda: np.exp(a) / np.exp(a).sum(1, keepdims=True)),
            (
                "log_softmax",
                lambda A, B: tf.nn.log_softmax(A),
                lambda: a - np.log(np.exp(a).sum(1, keepdims=True)),
            ),
            (
                "softmax_xent",
                lambda A, B: tf.nn.softmax_cross_entropy_with_logits(labels=tf.nn.softmax(B), logits=A),
                lambda: (
                    -(np.exp(b) / np.exp(b).sum(1, keepdims=True) * (a - np.log(np.exp(a).sum(1, keepdims=True)))).sum(
                        1
                    )
                ),
            ),
            (
                "sparse_xent",
                lambda A, B: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.constant(lab), logits=A),
                lambda: -(a - np.log(np.exp(a).sum(1, keepdims=True)))[[0, 1], lab],
            ),
            ("fft", lambda A, B: tf.signal.fft(tf.cast(A, tf.complex64)), lambda: np.fft.fft(a)),
            ("ifft", lambda A, B: tf.signal.ifft(tf.cast(A, tf.complex64)), lambda: np.fft.ifft(a)),
            ("floormod", lambda A, B: tf.math.floormod(A, B), lambda: np.remainder(a, b)),
            ("mod_operator", lambda A, B: A % 1.5, lambda: np.remainder(a, 1.5)),
            (
                "floor/ceil/round",
                lambda A, B: tf.floor(A * 0.7) + tf.math.ceil(B * 0.7) + tf.round(A * 1.3),
                lambda: np.floor(a * 0.7) + np.ceil(b * 0.7) + np.round(a * 1.3),
            ),
            (
                "log1p/expm1/erf",
                lambda A, B: tf.math.log1p(tf.abs(A)) + tf.math.expm1(B) + tf.math.erf(A),
                lambda: np.log1p(np.abs(a)) + np.expm1(b) + np.vectorize(math.erf)(a),
            ),
            (
                "reciprocal/rsqrt",
                lambda A, B: tf.math.reciprocal(A) + tf.math.rsqrt(tf.abs(B)),
                lambda: 1 / a + 1 / np.sqrt(np.abs(b)),
            ),
            (
                "trig/sign/square",
                lambda A, B: tf.math.sin(A) * tf.math.cos(B) + tf.math.sign(B) * tf.math.square(A),
                lambda: np.sin(a) * np.cos(b) + np.sign(b) * a * a,
            ),
            ("leaky_relu", lambda A, B: tf.nn.leaky_relu(A), lambda: np.where(a > 0, a, 0.2 * a)),
            ("elu", lambda A, B: tf.nn.elu(A), lambda: np.where(a > 0, a, np.expm1(a))),
            ("softplus", lambda A, B: tf.nn.softplus(A), lambda: np.log1p(np.exp(a))),
            (
                "sigmoid_xent",
                lambda A, B: tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(B), logits=A),
                lambda: np.maximum(a, 0) - a / (1 + np.exp(-b)) + np.log1p(np.exp(-np.abs(a))),
            ),
            ("l2_loss", lambda A, B: tf.nn.l2_loss(A), lambda: (a * a).sum() / 2),
            ("norm", lambda A, B: tf.norm(A, axis=1), lambda: np.linalg.norm(a, axis=1)),
            (
                "l2_normalize",
                lambda A, B: tf.nn.l2_normalize(A, axis=1),
                lambda: a / np.linalg.norm(a, axis=1)[:, None],
            ),
            ("tile", lambda A, B: tf.tile(A, [2, 3]), lambda: np.tile(a, (2, 3))),
            ("gather", lambda A, B: tf.gather(A, [2, 0], axis=1), lambda: a[:, [2, 0]]),
            ("squeeze/expand_dims", lambda A, B: tf.squeeze(tf.expand_dims(A, 1), [1]), lambda: a),
            ("reduce_prod", lambda A, B: tf.reduce_prod(A, 1), lambda: a.prod(1)),
            (
                "reduce_any/all",
                lambda A, B: tf.logical_xor(tf.reduce_any(A > 2, 1), tf.reduce_all(A > -1.5, 1)),
                lambda: (a > 2).any(1) ^ (a > -1.5).all(1),
            ),
            ("argmin", lambda A, B: tf.argmin(A, axis=1), lambda: a.argmin(1)),
            ("not_equal/negative", lambda A, B: tf.not_equal(tf.negative(A), B), lambda: -a != b),
            ("pow", lambda A, B: tf.pow(tf.abs(A), B), lambda: np.abs(a) ** b),
            (
                "ones/zeros_like/fill",
                lambda A, B: tf.ones_like(A) * 2 + tf.zeros_like(B) + tf.fill([2, 3], 0.5),
                lambda: np.full((2, 3), 2.5),
            ),
            ("linalg.matmul", lambda A, B: tf.linalg.matmul(A, tf.linalg.transpose(B)), lambda: a @ b.T),
            ("matrix_transpose", lambda A, B: tf.matrix_transpose(A), lambda: a.T),
            ("sort", lambda A, B: tf.sort(A, direction="DESCENDING"), lambda: -np.sort(-a, 1)),
            ("argsort", lambda A, B: tf.argsort(A), lambda: np.argsort(a, 1)),
        ],
    )


@pytest.mark.parametrize("case", [c[0] for c in _ops_cases()[3]])
def test_ops_match_numpy(g, case):
    a, b, lab, cases = _ops_cases()
    _, build, ref = next(c for c in cases if c[0] == case)
    A = tf.placeholder(tf.float32, [None, 3], name="A")
    B = tf.placeholder(tf.float32, [2, 3], name="B")
    out = build(A, B)
    with tf.Session() as s:
        got = s.run(out, {A: a, B: b})
    np.testing.assert_allclose(got, ref(), rtol=1e-5, atol=1e-5)
    if out.shape.dims is not None:
        assert out.shape.is_compatible_with(np.shape(got)), (out.shape, np.shape(got))


# --------------------------------------------------------------------------- sessions


def test_training_decreases_loss_and_gradients_match_eager(g):
    m = _mlp()
    grads = tf.gradients(m["loss"], m["vars"])
    assert grads[0].op.name.startswith("gradients/") and grads[0].op.type == "MatMulGrad"
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        got = s.run(grads, {m["x"]: m["X"], m["y"]: m["Y"]})
    import tracetensor.nn.functional as F

    ps = [tt.tensor(p, requires_grad=True) for p in m["params"]]
    h = (tt.tensor(m["X"]) @ ps[0] + ps[1]).relu()
    F.cross_entropy(h @ ps[2] + ps[3], tt.tensor(m["Y"])).backward()
    for gv, p in zip(got, ps):
        np.testing.assert_allclose(gv, p.grad.numpy(), rtol=1e-5, atol=1e-6)

    train = tf.train.GradientDescentOptimizer(0.5).minimize(m["loss"])
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        first = s.run(m["loss"], {m["x"]: m["X"], m["y"]: m["Y"]})
        for _ in range(30):
            s.run(train, {m["x"]: m["X"], m["y"]: m["Y"]})
        assert s.run(m["loss"], {m["x"]: m["X"], m["y"]: m["Y"]}) < first * 0.5


def test_gradients_match_finite_differences(g):
    x = tf.placeholder(tf.float64, [3], name="x")
    y = tf.reduce_sum(tf.sigmoid(x) * tf.exp(x * 0.5) / (1.0 + tf.square(x)) + tf.reduce_max(x))
    (gx,) = tf.gradients(y, [x])
    X = np.array([0.3, -1.2, 2.0])
    with tf.Session() as s:
        an = s.run(gx, {x: X})
        eps = 1e-6
        num = [(s.run(y, {x: X + eps * e}) - s.run(y, {x: X - eps * e})) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(an, num, rtol=1e-6, atol=1e-8)
    assert tf.gradients(y, [tf.constant(1.0)]) == [None]  # unconnected: None, as TensorFlow


@pytest.mark.parametrize("make", ["momentum", "adam"])
def test_optimizers_match_eager_optim(g, make):
    m = _mlp()
    opt = tf.train.MomentumOptimizer(0.1, momentum=0.9) if make == "momentum" else tf.train.AdamOptimizer(0.01)
    step = tf.Variable(0, trainable=False, name="global_step", dtype=tf.int64)
    train = opt.minimize(m["loss"], global_step=step)
    import tracetensor.nn.functional as F

    ps = [tt.tensor(p, requires_grad=True) for p in m["params"]]
    eopt = tt.optim.SGD(ps, lr=0.1, momentum=0.9) if make == "momentum" else tt.optim.Adam(ps, lr=0.01)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        for _ in range(3):
            s.run(train, {m["x"]: m["X"], m["y"]: m["Y"]})
            eopt.zero_grad()
            h = (tt.tensor(m["X"]) @ ps[0] + ps[1]).relu()
            F.cross_entropy(h @ ps[2] + ps[3], tt.tensor(m["Y"])).backward()
            eopt.step()
        vals = s.run(m["vars"])
        assert s.run(step) == 3
    for v, p in zip(vals, ps):
        np.testing.assert_allclose(v, p.detach().numpy(), rtol=1e-5, atol=1e-6)
    slot = opt.get_slot(m["vars"][0], opt.get_slot_names()[0])
    assert slot is not None and slot.name.startswith("layer1/W/")


def test_fetch_structures(g):
    m = _mlp()
    Point = collections.namedtuple("Point", "h loss")
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        feed = {"x:0": m["X"], m["y"]: m["Y"]}  # names work as feed keys too
        out = s.run(
            {
                "a": [m["h"], (m["loss"], "layer2/AddV2:0")],
                "p": Point(m["h"], m["loss"]),
                "op": tf.global_variables_initializer(),
            },
            feed,
        )
    assert set(out) == {"a", "p", "op"} and out["op"] is None
    assert isinstance(out["a"], list) and isinstance(out["a"][1], tuple) and isinstance(out["p"], Point)
    assert out["a"][0].shape == (16, 8) and out["a"][1][1].shape == (16, 3)
    assert isinstance(out["a"][1][0], np.float32) and out["p"].loss == out["a"][1][0]


def test_plans_are_cached_and_pruned(g):
    m = _mlp()
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        n = len(s._plans)
        for _ in range(3):
            s.run(m["h"], {m["x"]: m["X"]})  # y is not needed for h: no feed required
        assert len(s._plans) == n + 1
        seen = []
        with events.listen(seen.append):
            s.run(m["h"], {m["x"]: m["X"]})
        ran = [e.name for e in seen if isinstance(e, events.OpEvent)]
        assert "layer1/Relu" in ran and not any(n.startswith(("layer2", "Sparse")) for n in ran)
        # feeding an intermediate tensor skips what computes it
        seen.clear()
        with events.listen(seen.append):
            logits = s.run(m["logits"], {m["h"]: np.ones((2, 8), np.float32)})
        assert logits.shape == (2, 3)
        assert not any(e.name.startswith("layer1") for e in seen if isinstance(e, events.OpEvent))


def test_variables_assign_and_interactive_session(g):
    v = tf.Variable([1.0, 2.0], name="v")
    inc = v.assign_add([1.0, 1.0])
    reset = v.assign([0.0, 5.0])
    s = tf.InteractiveSession()
    try:
        v.initializer.run()
        np.testing.assert_array_equal(v.eval(), [1.0, 2.0])
        np.testing.assert_array_equal(inc.eval(), [2.0, 3.0])
        held = v.eval()
        inc.eval()
        np.testing.assert_array_equal(held, [2.0, 3.0])  # a fetched value is a copy, not the live variable
        reset.op.run()
        np.testing.assert_array_equal(s.run(v), [0.0, 5.0])
        v.load([7.0, 8.0])
        np.testing.assert_array_equal(s.run(v), [7.0, 8.0])
    finally:
        s.close()
    with pytest.raises(tt.TraceTensorError, match="no session"):
        v.eval()


def test_random_ops_are_seeded_per_session(g):
    a = tf.random_normal([3], seed=7)
    b = tf.random_uniform([3], seed=7)
    c = tf.truncated_normal([1000], stddev=2.0, seed=1)
    with tf.Session() as s1, tf.Session() as s2:
        first = s1.run(a)
        np.testing.assert_array_equal(first, s2.run(a))  # same sequence in a new session
        assert not np.array_equal(first, s1.run(a))  # new numbers at each run
        assert ((0 <= s1.run(b)) & (s1.run(b) < 1)).all()
        assert np.abs(s1.run(c)).max() <= 4.0


# --------------------------------------------------------------------------- events


def test_events_graphdef_runs_and_phases(g):
    m = _mlp()
    train = tf.train.GradientDescentOptimizer(0.1).minimize(m["loss"])
    seen = []
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        with events.listen(seen.append, stacks=True):
            s.run([m["loss"], train], {m["x"]: m["X"], m["y"]: m["Y"]})
            s.run([m["loss"], train], {m["x"]: m["X"], m["y"]: m["Y"]})
    gdefs = [e for e in seen if isinstance(e, events.GraphDef)]
    assert len(gdefs) == 1 and gdefs[0].graph == g.id  # once per graph version
    nodes = {n.name: n for n in gdefs[0].nodes}
    mm = nodes["layer1/MatMul"]
    assert mm.op == "MatMul" and mm.inputs == ("x:0", "layer1/W:0") and mm.shapes == ((None, 8),)
    assert (
        mm.stack[0].filename == __file__
        and "tf.matmul(x, w1)" in open(__file__).read().splitlines()[mm.stack[0].lineno - 1]
    )
    starts = [e for e in seen if isinstance(e, events.RunStart)]
    assert len(starts) == 2 and starts[0].mode == "graph" and starts[0].kind == "session.run"
    assert starts[0].fetches == ("Mean:0", "GradientDescent") and set(starts[0].feeds) == {"x:0", "y:0"}
    ops = [e for e in seen if isinstance(e, events.OpEvent) and e.run == starts[0].run]
    fwd = next(e for e in ops if e.name == "layer1/MatMul")
    assert fwd.mode == "graph" and fwd.phase == "forward" and fwd.op == "MatMul"
    assert fwd.inputs == ("x:0", "layer1/W:0") and fwd.outputs[0].shape == (16, 8) and fwd.stack == mm.stack
    bwd = next(e for e in ops if e.name == "gradients/layer1/MatMul_grad")
    assert bwd.phase == "backward" and bwd.forward == "layer1/MatMul" and bwd.grad_of == ("layer1/W:0",)
    upd = [e for e in ops if e.phase == "update"]
    assert {e.name for e in upd} == {
        f"GradientDescent/update_layer{i}/{v}/ApplyGradientDescent" for i in (1, 2) for v in ("W", "b")
    }
    assert [e.seq for e in ops] == sorted(e.seq for e in ops)
    assert ops.index(bwd) < ops.index(upd[0])  # updates wait for every gradient
    # the graph grows: its new version is announced before the next run
    tf.identity(m["loss"], name="extra")
    seen.clear()
    with tf.Session() as s, events.listen(seen.append):
        s.run(tf.global_variables_initializer())
    gd = [e for e in seen if isinstance(e, events.GraphDef)]
    assert len(gd) == 1 and "extra" in {n.name for n in gd[0].nodes}


# --------------------------------------------------------------------------- errors


def test_feed_errors_name_the_placeholder(g):
    m = _mlp()
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        with pytest.raises(tf.errors.InvalidArgumentError) as e:
            s.run(m["h"], {m["x"]: np.ones((2, 3), np.float32)})
        assert "placeholder 'x'" in str(e.value) and "(2, 3)" in str(e.value) and "(?, 4)" in str(e.value)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"dtype float64 for placeholder 'y'.*int64"):
            s.run(m["loss"], {m["x"]: m["X"], m["y"]: m["Y"] + 0.5})
        with pytest.raises(tf.errors.InvalidArgumentError) as e:
            s.run(m["loss"], {m["x"]: m["X"]})
        assert "placeholder 'y'" in str(e.value) and "fetch 'Mean:0'" in str(e.value)
        assert isinstance(e.value, tt.TraceTensorError)


def test_feed_errors_give_the_placeholders_line_and_are_the_same_when_listened_to(g):
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    line = __import__("inspect").currentframe().f_lineno - 1
    y = tf.placeholder(tf.int64, [None], name="y")
    out = tf.reduce_sum(x * 2.0) + tf.cast(tf.reduce_sum(y), tf.float32)
    bad = [
        ({x: np.ones((2, 3), np.float32), y: np.ones(2, np.int64)}, "shape (2, 3)"),
        ({x: np.ones((2, 3, 4), np.float32), y: np.ones(2, np.int64)}, "shape (2, 3, 4)"),
        ({x: [["a"] * 4], y: np.ones(2, np.int64)}, "dtype str"),
        ({x: np.ones((2, 4), np.float32), y: np.ones(2) + 0.5}, "dtype float64 for placeholder 'y'"),
    ]
    with tf.Session() as s:
        assert s.run(out, {x: np.ones((2, 4), np.float32), y: np.ones(2, np.int64)}) == 18.0
        for feed, what in bad:
            msgs = []
            for listening in (False, True):
                with events.listen(lambda e: None) if listening else _nothing():
                    with pytest.raises(tf.errors.InvalidArgumentError) as e:
                        s.run(out, feed)
                msgs.append(str(e.value))
            assert msgs[0] == msgs[1] and what in msgs[0]
            if "'y'" not in what:
                assert f"placeholder 'x' (tensor 'x:0', defined at {__file__}:{line})" in msgs[0]
        # a float64 array of the right shape is converted (same kind), fast path or not
        assert s.run(out, {x: np.ones((2, 4)), y: [1, 1]}) == 18.0


def test_one_session_run_from_several_threads_at_once_gives_each_its_own_gradients(g):
    import threading

    m = _mlp()
    grads = tf.gradients(m["loss"], m["vars"])
    rng = np.random.default_rng(1)
    feeds = [(rng.standard_normal((8 + i, 4)).astype(np.float32), rng.integers(0, 3, 8 + i)) for i in range(4)]
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        want = [s.run(grads, {m["x"]: x, m["y"]: y}) for x, y in feeds]
        bad: list[int] = []

        def work(i: int) -> None:
            x, y = feeds[i]
            for _ in range(200):
                got = s.run(grads, {m["x"]: x, m["y"]: y})
                if not all(np.array_equal(a, b) for a, b in zip(got, want[i])):
                    bad.append(i)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        old = __import__("sys").getswitchinterval()
        __import__("sys").setswitchinterval(1e-6)  # switch threads as often as possible
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            __import__("sys").setswitchinterval(old)
        assert not bad


def test_uninitialized_variable_is_failed_precondition(g):
    m = _mlp()
    with tf.Session() as s:
        for listening in (False, True):
            with events.listen(lambda e: None) if listening else _nothing():
                with pytest.raises(tf.errors.FailedPreconditionError, match="uninitialized value layer1/W") as e:
                    s.run(m["h"], {m["x"]: m["X"]})
            assert isinstance(e.value, tt.TraceTensorError)
        s.run(m["vars"][0].initializer)
        msgs = []
        for listening in (False, True):
            with events.listen(lambda e: None) if listening else _nothing():
                with pytest.raises(tf.errors.FailedPreconditionError, match="layer1/b") as e:
                    s.run(m["h"], {m["x"]: m["X"]})
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1]


def test_runtime_op_error_names_node_type_shapes_and_line(g):
    a = tf.placeholder(tf.float32, [None, None], name="a")
    b = tf.placeholder(tf.float32, [None, 3], name="b")
    with tf.name_scope("layer1"):
        out = tf.matmul(a, b)
    line = __import__("inspect").currentframe().f_lineno - 1
    with tf.Session() as s:
        for listening in (False, True):
            with events.listen(lambda e: None) if listening else _nothing():
                with pytest.raises(tt.ShapeError) as e:
                    s.run(out, {a: np.ones((2, 3), np.float32), b: np.ones((1, 3), np.float32)})
            msg = str(e.value)
            assert msg == f"MatMul 'layer1/MatMul' defined at {__file__}:{line}: cannot multiply (2, 3) by (1, 3)"


def test_static_shape_error_at_build_time(g):
    a = tf.placeholder(tf.float32, [2, 3], name="a")
    with pytest.raises(tt.ShapeError, match=r"MatMul 'MatMul' defined at .*test_graph.py:\d+: cannot multiply"):
        tf.matmul(a, a)


def test_fetch_errors(g):
    x = tf.placeholder(tf.float32, [2], name="x")
    other = tf.Graph()
    with other.as_default():
        y = tf.constant(1.0, name="y")
    with tf.Session(graph=g) as s:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"'y:0' is not an element of this graph"):
            s.run(y)
        with pytest.raises(tf.errors.NotFoundError, match=r"no operation named 'xx'.*did you mean 'x'"):
            s.run("xx:0", {x: [1.0, 2.0]})
        with pytest.raises(TypeError, match="invalid type"):
            s.run(3.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="graph #"):
        tf.add(x, y)


def test_check_numerics_names_node_and_message(g):
    x = tf.placeholder(tf.float32, [2], name="x")
    y = tf.debugging.check_numerics(tf.math.log(x), "log of x", name="chk")
    with tf.Session() as s:
        np.testing.assert_allclose(s.run(y, {x: [1.0, 2.0]}), np.log([1.0, 2.0]))
        with pytest.raises(tt.NumericsError, match=r"CheckNumerics 'chk' defined at .*test_graph.py:\d+: log of x"):
            s.run(y, {x: [1.0, -1.0]})


def test_closed_session_and_finalized_graph(g):
    x = tf.constant(1.0)
    s = tf.Session()
    s.close()
    with pytest.raises(tf.GraphError, match="closed"):
        s.run(x)
    g.finalize()
    with pytest.raises(tf.GraphError, match="finalized"):
        tf.constant(2.0)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_saver_round_trip_and_corrupt_checkpoint(g, tmp_path):
    m = _mlp()
    saver = tf.train.Saver()
    with tf.Session() as s:
        with pytest.raises(tf.errors.FailedPreconditionError, match="uninitialized variable layer1/W"):
            saver.save(s, tmp_path / "ckpt")
        s.run(tf.global_variables_initializer())
        s.run(m["vars"][0].assign(np.full((4, 8), 0.25, np.float32)))
        path = saver.save(s, tmp_path / "ckpt", global_step=7)
        assert path == str(tmp_path / "ckpt-7")  # TF's prefix, with its .index beside it
        assert (tmp_path / "ckpt-7.index").is_file()
        assert tf.train.latest_checkpoint(tmp_path) == path
    with tf.Session() as s:
        saver.restore(s, tmp_path / "ckpt-7")
        np.testing.assert_array_equal(s.run(m["vars"][0]), np.full((4, 8), 0.25, np.float32))
        assert s.run(m["loss"], {m["x"]: m["X"], m["y"]: m["Y"]}) > 0
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with tf.Session() as s, pytest.raises(tt.SerializationError, match="not a valid tracetensor checkpoint"):
        saver.restore(s, tmp_path / "bad.npz")


def test_variable_scope_and_get_variable_reuse(g):
    def layer(x):
        w = tf.get_variable("w", [3, 2], initializer=tf.ones_like(tf.zeros([3, 2])))
        return tf.matmul(x, w)

    x = tf.placeholder(tf.float32, [None, 3], name="x")
    with tf.variable_scope("dense"):
        a = layer(x)
    with tf.variable_scope("dense", reuse=True):
        b = layer(x)
    with tf.variable_scope("dense"), pytest.raises(ValueError, match="dense/w already exists"):
        layer(x)
    assert [v.name for v in tf.global_variables()] == ["dense/w:0"]
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        va, vb = s.run([a, b], {x: np.ones((1, 3))})
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(va, [[3.0, 3.0]])


# --------------------------------------------------------------------------- TF1 names beyond the core


def test_shape_size_rank_and_range_follow_the_fed_value(g):
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    s, n, r = tf.shape(x), tf.size(x), tf.rank(x)
    idx = tf.range(tf.shape(x)[0])  # a size known only at run time
    hits = tf.where(x > 0)  # the indices form: (n, rank) int64
    assert (s.op.type, n.op.type, r.op.type, idx.op.type, hits.op.type) == ("Shape", "Size", "Rank", "Range", "Where")
    assert s.shape == (2,) and s.dtype == tf.int32 and idx.shape == (None,) and hits.shape == (None, 2)
    with tf.Session() as sess:
        for rows in (1, 4):
            X = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) - 2
            got = sess.run([s, n, r, idx, hits], {x: X})
            assert got[0].tolist() == [rows, 3] and got[1] == rows * 3 and got[2] == 2
            assert got[3].tolist() == list(range(rows))
            assert got[4].tolist() == np.argwhere(X > 0).tolist() and got[4].dtype == np.int64
    assert tf.shape(x, out_type=tf.int64).dtype == tf.int64


def test_static_range_and_linspace_use_tensorflow_dtypes(g):
    a, b, c = tf.range(5), tf.range(1, 2, 0.25), tf.linspace(0.0, 1.0, 5)
    assert (a.dtype, b.dtype, c.dtype) == (tf.int32, tf.float32, tf.float32)
    with tf.Session() as sess:
        va, vb, vc = sess.run([a, b, c])
    assert va.tolist() == [0, 1, 2, 3, 4] and vb.tolist() == [1.0, 1.25, 1.5, 1.75]
    np.testing.assert_allclose(vc, np.linspace(0, 1, 5))


def test_top_k_gives_values_and_int32_indices(g):
    x = tf.placeholder(tf.float32, [None, 4])
    top = tf.math.top_k(x, k=2)
    X = np.array([[0.1, 3.0, -1.0, 2.0], [5.0, 4.0, 6.0, -2.0]], np.float32)
    with tf.Session() as sess:
        vals, idx = sess.run([top.values, top.indices], {x: X})
    assert idx.dtype == np.int32 and idx.tolist() == [[1, 3], [2, 0]]
    np.testing.assert_array_equal(vals, [[3.0, 2.0], [6.0, 5.0]])
    (gx,) = tf.gradients(tf.reduce_sum(top.values), [x])  # gradients reach the picked entries only
    with tf.Session() as sess:
        assert sess.run(gx, {x: X}).tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]


def test_losses_match_tf1_reductions(g):
    y = tf.placeholder(tf.float32, [2, 3])
    p = tf.placeholder(tf.float32, [2, 3])
    Y = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]], np.float32)
    P = np.array([[0.5, 1.0, 0.0], [2.0, -1.0, 0.5]], np.float32)
    w = np.array([[1.0], [0.0]], np.float32)  # the second row weighs nothing
    mse = tf.losses.mean_squared_error(y, p)
    mse_w = tf.losses.mean_squared_error(y, p, weights=w)
    mae = tf.losses.absolute_difference(y, p, weights=2.0)
    sig = tf.losses.sigmoid_cross_entropy(tf.sigmoid(y), p)
    sparse = tf.losses.sparse_softmax_cross_entropy(tf.constant([2, 0]), p)
    with tf.Session() as sess:
        got = sess.run([mse, mse_w, mae, sig, sparse], {y: Y, p: P})
    sq = (P - Y) ** 2
    q = 1 / (1 + np.exp(-Y))
    lsm = P - np.log(np.exp(P).sum(1, keepdims=True))
    want = [
        sq.mean(),
        sq[0].sum() / 3,
        2 * np.abs(P - Y).mean(),
        (np.maximum(P, 0) - P * q + np.log1p(np.exp(-np.abs(P)))).mean(),
        -(lsm[0, 2] + lsm[1, 0]) / 2,
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize(
    "build",
    [
        lambda x: tf.nn.leaky_relu(x) + tf.nn.elu(x) + tf.nn.softplus(x),
        lambda x: tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(x * 0.5), logits=x),
        lambda x: tf.norm(x) + tf.nn.l2_normalize(x, 0),
        lambda x: tf.tile(x, [3]) * tf.range(9.0),
        lambda x: tf.math.floormod(x, 0.7) + tf.math.erf(x) + tf.math.log1p(tf.abs(x)),
        lambda x: tf.math.reciprocal(x) + tf.math.rsqrt(tf.abs(x)) + tf.math.expm1(x),
        lambda x: tf.sort(x) * tf.constant([1.0, 2.0, 3.0], tf.float64),
    ],
    ids=["activations", "sigmoid_xent", "norms", "tile", "floormod_erf", "reciprocal_rsqrt", "sort"],
)
def test_new_op_gradients_match_finite_differences(g, build):
    x = tf.placeholder(tf.float64, [3], name="x")
    y = tf.reduce_sum(build(x))
    (gx,) = tf.gradients(y, [x])
    X = np.array([0.3, -1.2, 2.05])
    with tf.Session() as s:
        an = s.run(gx, {x: X})
        eps = 1e-6
        num = [(s.run(y, {x: X + eps * e}) - s.run(y, {x: X - eps * e})) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(an, num, rtol=1e-6, atol=1e-7)


def test_new_names_are_single_nodes_of_the_tensorflow_type(g):
    x = tf.placeholder(tf.float32, [None, 3])
    types = [
        t.op.type
        for t in (
            x % 2.0,
            tf.tile(x, [1, 2]),
            tf.nn.leaky_relu(x),
            tf.nn.elu(x),
            tf.nn.softplus(x),
            tf.math.log1p(x),
            tf.math.rsqrt(x),
            tf.math.reciprocal(x),
            tf.norm(x),
            tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=x),
        )
    ]
    assert types == [
        "FloorMod",
        "Tile",
        "LeakyRelu",
        "Elu",
        "Softplus",
        "Log1p",
        "Rsqrt",
        "Reciprocal",
        "EuclideanNorm",
        "SigmoidCrossEntropyWithLogits",
    ]
    with pytest.raises(tf.InvalidArgumentError, match="labels=, logits="):
        tf.nn.sigmoid_cross_entropy_with_logits(x, x)


def test_moments_and_batch_normalization_standardize_and_train(g):
    x = tf.placeholder(tf.float64, [None, 3], name="x")
    gamma = tf.Variable(np.array([1.0, 2.0, 0.5]), name="gamma")
    mean, var = tf.nn.moments(x, axes=[0])
    y = tf.nn.batch_normalization(x, mean, var, offset=None, scale=gamma, variance_epsilon=1e-3)
    assert mean.shape == (3,) and var.shape == (3,)
    X = np.random.default_rng(0).standard_normal((6, 3)) * [1, 5, 10] + [0, 3, -3]
    loss = tf.reduce_sum(tf.square(y) * tf.constant([1.0, 0.0, 0.0], tf.float64))
    (gg,) = tf.gradients(loss, [gamma])
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        m, v, out, grad = s.run([mean, var, y, gg], {x: X})
    np.testing.assert_allclose(m, X.mean(0))
    np.testing.assert_allclose(v, X.var(0))
    np.testing.assert_allclose(out, (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-3) * [1.0, 2.0, 0.5])
    xhat = (X[:, 0] - X[:, 0].mean()) / np.sqrt(X[:, 0].var() + 1e-3)
    np.testing.assert_allclose(grad, [2 * (xhat**2).sum(), 0.0, 0.0])


def test_cross_entropy_gradient_is_the_same_with_and_without_kept_residuals(g):
    # both generated plans (plain and listened to) hand the forward's log-softmax to the
    # gradient node; a gradient without its forward in the plan (logits fed) recomputes it:
    # all must give the same gradients
    m = _mlp()
    grads = tf.gradients(m["loss"], m["vars"])
    feed = {m["x"]: m["X"], m["y"]: m["Y"]}
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        fast = s.run(grads, feed)
        seen = []
        with tt.events.listen(seen.append):
            observed = s.run(grads, feed)
        logits = s.run(m["logits"], feed)
        g_logits = tf.gradients(m["loss"], [m["logits"]])[0]
        kept = s.run(g_logits, feed)
        recomputed = s.run(g_logits, {**feed, m["logits"]: logits})
        with tt.events.listen(seen.append):
            recomputed_observed = s.run(g_logits, {**feed, m["logits"]: logits})
    assert any(getattr(e, "op", "") == "SparseSoftmaxCrossEntropyWithLogits" for e in seen)
    for a, b in zip(fast, observed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(recomputed, kept, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(recomputed_observed, kept, rtol=1e-6, atol=1e-7)
