"""TF1 semantics the programs in tests/programs/tf1 rely on, checked one by one: dtype names,
run-time shapes, error classes, tf.nn convolution/pooling/dropout, tf.layers naming and
reuse, batch-norm updates, RNN cells against their equations and their gradients against
finite differences, flags parsing, checkpoints and the tfdbg wrapper's API."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.graph as tf


@pytest.fixture
def g():
    with tf.Graph().as_default() as graph:
        yield graph


def run(fetches, feed=None):
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        return s.run(fetches, feed)


# ----------------------------------------------------------------- dtypes, shapes, errors


def test_the_string_float_is_float32_as_in_tf(g) -> None:
    x = tf.placeholder("float", [None, 2])
    assert x.dtype == tf.float32 and tf.as_dtype("double") == tf.float64 and tf.as_dtype("half") == tf.float16
    assert run(tf.cast(x, "float") * 2, {x: np.ones((1, 2))}).dtype == np.float32


def test_transpose_of_unknown_rank_is_worked_out_at_run_time(g) -> None:
    p = tf.placeholder(tf.float32)
    t = tf.transpose(p)
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(run(t, {p: a}), a.T)
    np.testing.assert_array_equal(run(t, {p: a[0]}), a[0].T)
    (grad,) = tf.gradients(tf.reduce_sum(t * t), [p])
    np.testing.assert_allclose(run(grad, {p: a}), 2 * a)


def test_shape_errors_at_run_time_are_invalid_argument_errors(g) -> None:
    a = tf.placeholder(tf.float32, [None, 3])
    b = tf.placeholder(tf.float32)
    c = tf.matmul(a, b, name="prod")
    with tf.Session() as s, pytest.raises(tf.errors.InvalidArgumentError) as ei:
        s.run(c, {a: np.ones((2, 3)), b: np.ones((4, 2))})
    e = ei.value
    assert isinstance(e, tt.ShapeError) and type(e).__name__ == "ShapeError"
    assert str(e).startswith("MatMul 'prod' defined at ") and "test_tf1.py" in str(e)
    assert str(e).endswith("cannot multiply (2, 3) by (4, 2)")


def test_zeros_and_random_take_shapes_known_only_at_run_time(g) -> None:
    x = tf.placeholder(tf.float32, [None, 3])
    z = tf.zeros([tf.shape(x)[0], 4])
    r = tf.random_uniform(tf.shape(x), seed=1)
    f = tf.fill(tf.shape(x), 7.0)
    assert z.shape == (None, 4) and r.shape == (None, 3)
    zv, rv, fv = run([z, r, f], {x: np.ones((5, 3))})
    assert zv.shape == (5, 4) and not zv.any() and rv.shape == (5, 3) and (fv == 7).all()


def test_array_ops_unstack_split_tile_one_hot_gather_reverse_stack(g) -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = tf.constant(a)
    parts = tf.unstack(x, axis=1)
    pieces = tf.split(x, [1, -1], axis=2)
    thirds = tf.split(x, 2, 2)
    out = run(
        [
            *parts,
            *pieces,
            *thirds,
            tf.tile(x, [1, 2, 1]),
            tf.one_hot([2, 0], 3),
            tf.gather(x, [[1, 0]], axis=1),
            tf.reverse(x, [2]),
            tf.stack(parts, axis=1),
        ]
    )
    for i in range(3):
        np.testing.assert_array_equal(out[i], a[:, i])
    np.testing.assert_array_equal(out[3], a[..., :1])
    np.testing.assert_array_equal(out[4], a[..., 1:])
    np.testing.assert_array_equal(out[6], a[..., 2:])
    np.testing.assert_array_equal(out[7], np.tile(a, (1, 2, 1)))
    np.testing.assert_array_equal(out[8], [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(out[9], np.take(a, [[1, 0]], axis=1))
    np.testing.assert_array_equal(out[10], a[..., ::-1])
    np.testing.assert_array_equal(out[11], a)
    with pytest.raises(tf.InvalidArgumentError, match="does not divide into 3 equal pieces"):
        tf.split(x, 3, axis=2)


def test_reduction_indices_is_tf1s_name_for_axis(g) -> None:
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(run(tf.reduce_sum(x, reduction_indices=[1])), [3.0, 7.0])


# ----------------------------------------------------------------- tf.nn


def test_conv2d_same_and_valid_output_sizes_and_layouts_agree(g) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    x = tf.constant(a)
    same = tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")
    valid = tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="VALID")
    nchw = tf.nn.conv2d(tf.transpose(x, [0, 3, 1, 2]), w, strides=[1, 1, 2, 2], padding="SAME", data_format="NCHW")
    dil = tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="VALID", dilations=[1, 2, 2, 1])
    assert same.shape == (2, 3, 4, 4) and valid.shape == (2, 2, 3, 4) and dil.shape == (2, 1, 3, 4)
    s, v, n, d = run([same, valid, nchw, dil])
    np.testing.assert_allclose(n.transpose(0, 2, 3, 1), s, rtol=1e-5, atol=1e-5)
    # SAME pads 1 on each side here (5 rows, 7 columns, stride 2, kernel 3): output (1, 1) reads rows/cols 1..3
    np.testing.assert_allclose(
        s[0, 1, 1], sum(a[0, 1 + i, 1 + j] @ w[i, j] for i in range(3) for j in range(3)), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        v[0, 1, 2], sum(a[0, 2 + i, 4 + j] @ w[i, j] for i in range(3) for j in range(3)), rtol=1e-4, atol=1e-4
    )
    want = sum(a[0, 2 * i, 2 * j] @ w[i, j] for i in range(3) for j in range(3))
    np.testing.assert_allclose(d[0, 0, 0], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(tf.InvalidArgumentError, match="padding must be 'SAME', 'VALID'"):
        tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="FULL")
    with pytest.raises(tf.InvalidArgumentError, match="must be 1 in the batch and channel dimensions"):
        tf.nn.conv2d(x, w, strides=[2, 1, 1, 1], padding="SAME")


def test_conv2d_wrong_channels_names_the_node(g) -> None:
    with pytest.raises(tt.ShapeError, match=r"Conv2D 'conv' defined at .*input has 2 channels but the filter"):
        tf.nn.conv2d(tf.zeros([1, 4, 4, 2]), tf.zeros([3, 3, 3, 1]), strides=1, padding="SAME", name="conv")
    x = tf.placeholder(tf.float32, [None, 4, 4, None])  # found when it runs
    y = tf.nn.conv2d(x, tf.zeros([3, 3, 3, 1]), strides=1, padding="SAME", name="conv2")
    with (
        tf.Session() as s,
        pytest.raises(
            tf.errors.InvalidArgumentError, match="Conv2D 'conv2' defined at .*input has 2 channels but the filter"
        ),
    ):
        s.run(y, {x: np.ones((1, 4, 4, 2))})


def test_max_and_avg_pool_do_not_count_padding(g) -> None:
    a = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    x = tf.constant(a)
    mp = tf.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    ap = tf.nn.avg_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    m, v = run([mp, ap])
    np.testing.assert_array_equal(m[0, :, :, 0], [[5, 6], [8, 9]])
    np.testing.assert_allclose(v[0, :, :, 0], [[3, 4.5], [7.5, 9]])  # edge windows average fewer elements


def test_dropout_keeps_with_keep_prob_and_scales(g) -> None:
    x = tf.ones([200, 100])
    keep = tf.placeholder(tf.float32)
    d = tf.nn.dropout(x, keep)
    r = tf.nn.dropout(x, rate=0.75)
    with tf.Session() as s:
        full = s.run(d, {keep: 1.0})
        half = s.run(d, {keep: 0.5})
        quarter = s.run(r)
    np.testing.assert_array_equal(full, np.ones((200, 100)))
    assert set(np.unique(half)) == {0.0, 2.0} and abs((half == 0).mean() - 0.5) < 0.03
    assert set(np.unique(quarter)) == {0.0, 4.0} and abs((quarter == 0).mean() - 0.75) < 0.03
    assert d.shape == (200, 100)  # the keep_prob placeholder's unknown shape does not hide x's
    with pytest.raises(tf.InvalidArgumentError, match="exactly one of keep_prob and rate"):
        tf.nn.dropout(x)


def test_in_top_k(g) -> None:
    p = tf.constant([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    r1, r2 = run([tf.nn.in_top_k(p, [2, 0], 1), tf.nn.in_top_k(p, [2, 1], 2)])
    assert r1.tolist() == [False, True] and r2.tolist() == [True, True]


# ----------------------------------------------------------------- tf.layers


def test_layers_are_named_as_tf_names_them_and_reuse_by_name(g) -> None:
    x = tf.placeholder(tf.float32, [None, 3])
    a = tf.layers.dense(x, 4, activation=tf.nn.relu)
    tf.layers.dense(a, 2)
    with tf.variable_scope("tower"):
        tf.layers.dense(x, 2, name="head")
    with tf.variable_scope("tower", reuse=True):
        tf.layers.dense(x, 2, name="head")
    with tf.variable_scope("auto", reuse=tf.AUTO_REUSE):
        tf.get_variable("v", [2])
        tf.get_variable("v", [2])
    names = [v.op.name for v in tf.global_variables()]
    assert names == [
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
        "tower/head/kernel",
        "tower/head/bias",
        "auto/v",
    ]
    with pytest.raises(ValueError, match="tower/head/kernel already exists"), tf.variable_scope("tower"):
        tf.layers.dense(x, 2, name="head")


def test_variable_scope_reuse_variables(g) -> None:
    with tf.variable_scope("shared") as scope:
        v1 = tf.get_variable("w", [1])
        scope.reuse_variables()
        v2 = tf.get_variable("w", [1])
    assert v1 is v2 and scope.name == "shared"


def test_batch_normalization_training_flag_and_update_ops(g) -> None:
    x = tf.placeholder(tf.float32, [None, 2])
    training = tf.placeholder(tf.bool, [])
    y = tf.layers.batch_normalization(x, momentum=0.5, training=training)
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    mm = next(v for v in tf.global_variables() if v.op.name == "batch_normalization/moving_mean")
    assert mm not in tf.trainable_variables()
    a = np.array([[1.0, 10.0], [3.0, 30.0]], np.float32)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        out, _ = s.run([y, updates], {x: a, training: True})
        np.testing.assert_allclose(out, [[-1, -1], [1, 1]], atol=2e-3)  # batch statistics
        np.testing.assert_allclose(s.run(mm), [1.0, 10.0])  # 0.5 * 0 + 0.5 * mean
        inf = s.run(y, {x: a, training: False})  # moving statistics: mean 1/10, variance 0.5 + 0.5 * var
        var = 0.5 + 0.5 * a.var(0)
        np.testing.assert_allclose(inf, (a - [1.0, 10.0]) / np.sqrt(var + 1e-3), rtol=1e-5)


def test_layers_dropout_only_while_training(g) -> None:
    x = tf.ones([100, 100])
    training = tf.placeholder(tf.bool, [])
    d = tf.layers.dropout(x, rate=0.5, training=training)
    with tf.Session() as s:
        assert (s.run(d, {training: False}) == 1).all()
        assert abs((s.run(d, {training: True}) == 0).mean() - 0.5) < 0.05


# ----------------------------------------------------------------- RNNs


def _sig(z):
    return 1 / (1 + np.exp(-z))


def test_basic_lstm_cell_follows_tfs_equations(g) -> None:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((3, 4, 2)).astype(np.float64)
    x = tf.placeholder(tf.float64, [None, 4, 2])
    cell = tf.nn.rnn_cell.BasicLSTMCell(5, forget_bias=1.0)
    outputs, state = tf.nn.static_rnn(cell, tf.unstack(x, 4, 1), dtype=tf.float64)
    kernel, bias = cell.variables
    assert kernel.op.name == "rnn/basic_lstm_cell/kernel" and kernel.shape == (7, 20)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        s.run(bias.assign(rng.standard_normal(20)))
        out, (c_t, h_t), k, b = s.run([outputs, state, kernel, bias], {x: xs})
    c, h = np.zeros((3, 5)), np.zeros((3, 5))
    for t in range(4):
        i, j, f, o = np.split(np.concatenate([xs[:, t], h], 1) @ k + b, 4, axis=1)
        c = c * _sig(f + 1.0) + _sig(i) * np.tanh(j)
        h = np.tanh(c) * _sig(o)
        np.testing.assert_allclose(out[t], h, rtol=1e-10)
    np.testing.assert_allclose(c_t, c, rtol=1e-10)
    np.testing.assert_allclose(h_t, h, rtol=1e-10)


def test_gru_cell_follows_tfs_equations(g) -> None:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((2, 3)).astype(np.float64)
    hs = rng.standard_normal((2, 4))
    cell = tf.nn.rnn_cell.GRUCell(4)
    out, new = cell(tf.constant(xs), tf.constant(hs))
    names = [v.op.name for v in cell.variables]
    assert names == [
        "gru_cell/gates/kernel",
        "gru_cell/gates/bias",
        "gru_cell/candidate/kernel",
        "gru_cell/candidate/bias",
    ]
    o, gk, gb, ck, cb = run([out, *cell.variables])
    np.testing.assert_array_equal(gb, np.ones(8))  # TF starts the gates' bias at 1
    r, u = np.split(_sig(np.concatenate([xs, hs], 1) @ gk + gb), 2, axis=1)
    cand = np.tanh(np.concatenate([xs, r * hs], 1) @ ck + cb)
    np.testing.assert_allclose(o, u * hs + (1 - u) * cand, rtol=1e-10)


def _finite_difference_check(loss, var, feed, n=5, eps=1e-6):
    (grad,) = tf.gradients(loss, [var])
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        base = s.run(var)
        gv = s.run(grad, feed)
        rng = np.random.default_rng(2)
        for idx in [tuple(rng.integers(0, d) for d in base.shape) for _ in range(n)]:
            vals = []
            for sgn in (1, -1):
                w = base.copy()
                w[idx] += sgn * eps
                var.load(w, s)
                vals.append(s.run(loss, feed))
            var.load(base, s)
            np.testing.assert_allclose(gv[idx], (vals[0] - vals[1]) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_gradients_through_time_match_finite_differences(g) -> None:
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((2, 5, 3))
    x = tf.placeholder(tf.float64, [None, 5, 3])
    seq = tf.placeholder(tf.int32, [None])
    cell = tf.nn.rnn_cell.MultiRNNCell([tf.nn.rnn_cell.LSTMCell(4, use_peepholes=True), tf.nn.rnn_cell.GRUCell(3)])
    out, state = tf.nn.dynamic_rnn(cell, x, sequence_length=seq, dtype=tf.float64)
    loss = tf.reduce_sum(tf.square(out)) + tf.reduce_sum(state[0].c)
    feed = {x: xs, seq: np.array([5, 3], np.int32)}
    for v in cell.variables:
        _finite_difference_check(loss, v, feed)


def test_dynamic_rnn_time_major_and_sequence_length(g) -> None:
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((4, 2, 3)).astype(np.float32)  # (time, batch, depth)
    x = tf.placeholder(tf.float32, [4, None, 3])
    cell = tf.nn.rnn_cell.BasicRNNCell(2)
    out, last = tf.nn.dynamic_rnn(cell, x, sequence_length=[4, 2], time_major=True, dtype=tf.float32)
    o, h = run([out, last], {x: xs})
    assert o.shape == (4, 2, 2)
    np.testing.assert_array_equal(o[2:, 1], 0)  # past the second sequence's end
    np.testing.assert_allclose(h, [o[3, 0], o[1, 1]])
    with pytest.raises(tf.InvalidArgumentError, match="the time dimension must be known"):
        tf.nn.dynamic_rnn(cell, tf.placeholder(tf.float32, [None, None, 3]), dtype=tf.float32)


def test_dropout_wrapper_and_zero_state(g) -> None:
    cell = tf.nn.rnn_cell.DropoutWrapper(tf.nn.rnn_cell.BasicLSTMCell(3), output_keep_prob=0.5)
    batch = tf.placeholder(tf.int32, [])
    zs = cell.zero_state(batch, tf.float32)
    assert isinstance(zs, tf.nn.rnn_cell.LSTMStateTuple) and zs.c.shape == (None, 3)
    out, _ = cell(tf.ones([50, 2]), cell.zero_state(50, tf.float32))
    o, c = run([out, zs.c], {batch: 7})
    assert c.shape == (7, 3) and 0.3 < (o == 0).mean() < 0.7


# ----------------------------------------------------------------- flags and app


def test_flags_parse_like_absl() -> None:
    fv = tf.flags.FlagValues()
    tf.flags.DEFINE_string("name", "a", "", flag_values=fv)
    tf.flags.DEFINE_integer("n", 1, "", flag_values=fv)
    tf.flags.DEFINE_float("lr", 0.1, "", flag_values=fv)
    tf.flags.DEFINE_boolean("debug", False, "", flag_values=fv)
    tf.flags.DEFINE_bool("fast", True, "", flag_values=fv)
    tf.flags.DEFINE_list("sizes", "1,2", "", flag_values=fv)
    rest = fv(
        ["prog", "--name=b", "--n", "7", "-lr=0.5", "--debug", "--nofast", "--sizes=3,4", "file.txt", "--other=1"],
        known_only=True,
    )
    assert rest == ["prog", "file.txt", "--other=1"]
    assert (fv.name, fv.n, fv.lr, fv.debug, fv.fast, fv.sizes) == ("b", 7, 0.5, True, False, ["3", "4"])
    with pytest.raises(tf.app.UnrecognizedFlagError, match="--other=1"):
        fv(["prog", "--other=1"])
    with pytest.raises(tf.app.IllegalFlagValueError, match="--n=x"):
        fv(["prog", "--n=x"])
    with pytest.raises(AttributeError, match="no flag --missing"):
        _ = fv.missing


def test_app_run_calls_main_with_the_leftover_argv(monkeypatch) -> None:
    seen = []
    with pytest.raises(SystemExit) as ei:
        tf.app.run(main=lambda argv: seen.append(argv) or 5, argv=["prog", "x", "--unknown_flag_here=1"])
    assert ei.value.code == 5 and seen == [["prog", "x", "--unknown_flag_here=1"]]


# ----------------------------------------------------------------- checkpoints


def test_saver_keeps_the_newest_checkpoints_and_latest_checkpoint_finds_them(g, tmp_path) -> None:
    v = tf.Variable(1.0, name="v")
    saver = tf.train.Saver(max_to_keep=2)
    assert tf.train.latest_checkpoint(tmp_path) is None
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        paths = []
        for step in range(3):
            s.run(v.assign(float(step)))
            paths.append(saver.save(s, str(tmp_path / "model.ckpt"), global_step=step))
    assert paths[-1] == str(tmp_path / "model.ckpt-2") == tf.train.latest_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint",
        "model.ckpt-1.data-00000-of-00001",
        "model.ckpt-1.index",
        "model.ckpt-2.data-00000-of-00001",
        "model.ckpt-2.index",
    ]
    state = tf.train.get_checkpoint_state(tmp_path)
    assert state.all_model_checkpoint_paths == paths[1:]
    with tf.Session() as s:
        saver.restore(s, paths[1])
        assert s.run(v) == 1.0
    with tf.Session() as s, pytest.raises(FileNotFoundError, match="no checkpoint at"):
        saver.restore(s, str(tmp_path / "model.ckpt-0"))


# ----------------------------------------------------------------- the tfdbg wrapper


def test_wrapper_accepts_tfdbgs_arguments_and_filters_added_on_it(g, tmp_path) -> None:
    from tracetensor.debugger.readline_ui import ReadlineUI

    from tracetensor.graph.python import debug as tf_debug

    a = tf.Variable(3, name="a")
    b = tf.subtract(a, 5, name="b")
    c = tf.multiply(b, 2, name="c")
    out = io.StringIO()
    ui = ReadlineUI(stdin=io.StringIO("run -f is_negative\nexit\n"), stdout=out)
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    sess = tf_debug.LocalCLIDebugWrapperSession(
        sess, ui_type="readline", dump_root=str(tmp_path / "dumps"), config_file_path=str(tmp_path / "cfg"), ui=ui
    )
    sess.add_tensor_filter("is_negative", lambda datum, tensor: bool(np.any(tensor < 0)))
    assert sess.run(c) == -4
    assert "tensor filter 'is_negative' passed at b:0 (Sub)" in out.getvalue()
    assert tf_debug.has_inf_or_nan is not None
    sess.close()


def test_wrapper_thread_name_filter_debugs_only_matching_threads(g) -> None:
    from tracetensor.debugger.readline_ui import ReadlineUI

    from tracetensor.graph.python import debug as tf_debug

    x = tf.constant(2.0) * 3
    out = io.StringIO()
    ui = ReadlineUI(stdin=io.StringIO("run\nexit\n"), stdout=out)
    sess = tf_debug.LocalCLIDebugWrapperSession(tf.Session(), thread_name_filter="Main", ui=ui)
    results = []
    t = threading.Thread(target=lambda: results.append(sess.run(x)), name="worker")
    t.start()
    t.join(30)
    assert results == [6.0] and out.getvalue() == ""  # the worker thread's run is not debugged
    assert sess.run(x) == 6.0 and "run-start: run #1" in out.getvalue()


# ----------------------------------------------------------------- smaller TF1 names


def test_stop_gradient_pad_slice_and_friends(g) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = tf.Variable(a)
    y = tf.reduce_sum(x * tf.stop_gradient(x))  # d/dx = stop(x) = x, not 2x
    padded = tf.pad(x, [[1, 0], [0, 2]])
    refl = tf.pad(x, [[0, 0], [2, 2]], mode="REFLECT")
    (gy, gp, gr) = (
        tf.gradients([y], [x]) + tf.gradients(tf.reduce_sum(padded * 2), [x]) + tf.gradients(tf.reduce_sum(refl), [x])
    )
    out = run(
        [
            gy,
            padded,
            refl,
            gp,
            gr,
            tf.slice(x, [0, 1], [-1, 2]),
            tf.sequence_mask([1, 3], 4),
            tf.count_nonzero(x),
            tf.squared_difference(x, 1.0),
            tf.cumsum(x, axis=1),
            tf.log_sigmoid(x),
        ]
    )
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], np.pad(a, ((1, 0), (0, 2))))
    np.testing.assert_array_equal(out[2], np.pad(a, ((0, 0), (2, 2)), mode="reflect"))
    np.testing.assert_array_equal(out[3], np.full((2, 3), 2.0))
    np.testing.assert_array_equal(out[4], [[2, 3, 2], [2, 3, 2]])  # the middle column is copied twice
    np.testing.assert_array_equal(out[5], a[:, 1:3])
    np.testing.assert_array_equal(out[6], [[True, False, False, False], [True, True, True, False]])
    assert out[7] == 5 and out[7].dtype == np.int64
    np.testing.assert_array_equal(out[8], (a - 1) ** 2)
    np.testing.assert_array_equal(out[9], np.cumsum(a, 1))
    np.testing.assert_allclose(out[10], -np.log1p(np.exp(-a.astype(np.float64))), rtol=1e-6)


def test_clip_by_global_norm_and_exponential_decay(g) -> None:
    a, b = tf.constant([3.0, 0.0]), tf.constant([[4.0]])
    (ca, cb), norm = tf.clip_by_global_norm([a, b, None][:2], 1.0)
    step = tf.Variable(0, trainable=False)
    lr = tf.train.exponential_decay(0.1, step, 10, 0.5, staircase=True)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        n, va, vb = s.run([norm, ca, cb])
        assert n == pytest.approx(5.0) and va.tolist() == pytest.approx([0.6, 0.0]) and vb[0, 0] == pytest.approx(0.8)
        assert s.run(lr) == pytest.approx(0.1)
        s.run(tf.assign(step, 25))
        assert s.run(lr) == pytest.approx(0.025)
    assert run(tf.clip_by_norm(tf.constant([0.3, 0.4]), 1.0)).tolist() == pytest.approx([0.3, 0.4])


def test_get_variable_scope_reuse_variables(g) -> None:
    def tower(x):
        w = tf.get_variable("w", [2, 2], initializer=tf.ones_initializer())
        return tf.matmul(x, w)

    x = tf.ones([1, 2])
    with tf.variable_scope("model"):
        tower(x)
        tf.get_variable_scope().reuse_variables()
        tower(x)
    assert [v.op.name for v in tf.global_variables()] == ["model/w"]
    assert run(tf.local_variables_initializer()) is None


@pytest.mark.parametrize("kind", ["rmsprop", "rmsprop_centered", "adagrad"])
def test_rmsprop_and_adagrad_follow_tf1s_update_rules(g, kind) -> None:
    opt = {
        "rmsprop": tf.train.RMSPropOptimizer(0.1, momentum=0.5),
        "rmsprop_centered": tf.train.RMSPropOptimizer(0.1, centered=True),
        "adagrad": tf.train.AdagradOptimizer(0.5),
    }[kind]
    w = tf.Variable([1.0, -2.0], dtype=tf.float64)
    step = opt.minimize(tf.reduce_sum(w * w))
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        for _ in range(3):
            s.run(step)
        got = s.run(w)
    p, ms, mom, mg, acc = np.array([1.0, -2.0]), np.ones(2), np.zeros(2), np.zeros(2), np.full(2, 0.1)
    for _ in range(3):  # TF1's kernels: rms starts at 1, the accumulator at 0.1, eps inside the sqrt
        grad = 2 * p
        if kind == "adagrad":
            acc += grad * grad
            p = p - 0.5 * grad / np.sqrt(acc)
            continue
        ms = 0.9 * ms + 0.1 * grad * grad
        den = ms + 1e-10
        if kind == "rmsprop_centered":
            mg = 0.9 * mg + 0.1 * grad
            den = den - mg * mg
        mom = (0.5 if kind == "rmsprop" else 0.0) * mom + 0.1 * grad / np.sqrt(den)
        p = p - mom
    np.testing.assert_allclose(got, p, rtol=1e-12)
    assert opt.get_slot(w, opt.get_slot_names()[0]) is not None


@pytest.mark.gpu
def test_tf_conv_pool_pad_on_the_gpu_match_the_cpu() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 6, 5, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    results = []
    for dev in ("cpu", "cuda"):
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float64, [None, 6, 5, 3])
            k = tf.Variable(w)
            y = tf.nn.conv2d(x, k, strides=[1, 2, 1, 1], padding="SAME", dilations=[1, 1, 2, 1])
            y = tf.nn.max_pool(y, [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
            y = tf.nn.avg_pool(y, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
            loss = tf.reduce_sum(tf.pad(y, [[0, 0], [1, 1], [0, 0], [0, 0]], mode="REFLECT") ** 2)
            grads = tf.gradients(loss, [x, k])
            with tf.Session(device=dev) as s:
                s.run(tf.global_variables_initializer())
                results.append(s.run([loss, *grads], {x: a}))
    for c, d in zip(*results):
        np.testing.assert_allclose(d, c, rtol=1e-10, atol=1e-12)


def test_kernel_regularizers_feed_the_regularization_loss(g) -> None:
    x = tf.ones([2, 3])
    tf.layers.dense(
        x, 2, kernel_initializer=tf.constant_initializer(0.5), kernel_regularizer=tf.contrib.layers.l2_regularizer(0.1)
    )
    tf.layers.dense(
        x,
        2,
        kernel_initializer=tf.constant_initializer(-1.0),
        kernel_regularizer=tf.contrib.layers.l1_regularizer(0.01),
    )
    assert len(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)) == 2
    want = 0.1 * (6 * 0.25) / 2 + 0.01 * 6
    assert run(tf.losses.get_regularization_loss()) == pytest.approx(want)


def test_conv2d_transpose_inverts_conv2d_shapes_and_is_its_adjoint(g) -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal((2, 5, 7, 3)).astype(np.float64)
    w = rng.standard_normal((3, 3, 3, 4))
    x = tf.placeholder(tf.float64, [None, 5, 7, 3])
    y = tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")  # (?, 3, 4, 4)
    r = tf.placeholder(tf.float64, [None, 3, 4, 4])
    back = tf.nn.conv2d_transpose(r, w, output_shape=[tf.shape(r)[0], 5, 7, 3], strides=[1, 2, 2, 1])
    assert back.shape == (None, 5, 7, 3)
    rv = rng.standard_normal((2, 3, 4, 4))
    yv, bv = run([y, back], {x: a, r: rv})
    assert np.vdot(yv, rv) == pytest.approx(np.vdot(a, bv))  # <conv(x), r> = <x, conv_transpose(r)>
    up = tf.layers.conv2d_transpose(tf.ones([2, 4, 4, 3]), 5, 3, strides=2, padding="same")
    up_valid = tf.layers.conv2d_transpose(tf.ones([2, 4, 4, 3]), 5, 3, strides=2)
    assert up.shape == (2, 8, 8, 5) and up_valid.shape == (2, 9, 9, 5)
    assert [v.op.name for v in tf.trainable_variables()][:2] == ["conv2d_transpose/kernel", "conv2d_transpose/bias"]
    u, uv = run([up, up_valid])
    assert u.shape == (2, 8, 8, 5) and uv.shape == (2, 9, 9, 5)
    with pytest.raises(tf.InvalidArgumentError, match="static height"):
        tf.nn.conv2d_transpose(r, w, output_shape=tf.constant([2, 5, 7, 3]), strides=[1, 2, 2, 1])


def test_dense_over_a_sequence_keeps_its_leading_dimensions(g) -> None:
    x = tf.placeholder(tf.float32, [None, None, 3])
    y = tf.layers.dense(x, 2, kernel_initializer=tf.ones_initializer())
    assert y.shape == (None, None, 2)
    np.testing.assert_allclose(run(y, {x: np.ones((2, 5, 3))}), np.full((2, 5, 2), 3.0))


def test_boolean_mask_and_print(g, capfd) -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    x = tf.Variable(a)
    keep = tf.placeholder(tf.bool, [4])
    picked = tf.boolean_mask(x, keep)
    shown = tf.Print(picked, [tf.shape(picked), picked], message="picked: ", summarize=4)
    (grad,) = tf.gradients(tf.reduce_sum(shown * 2), [x])
    capfd.readouterr()
    p, gv = run([shown, grad], {keep: np.array([True, False, True, False])})
    np.testing.assert_array_equal(p, a[[0, 2]])
    np.testing.assert_array_equal(gv, [[2, 2, 2], [0, 0, 0], [2, 2, 2], [0, 0, 0]])
    assert capfd.readouterr().err == "picked: [2 3][0.0 1.0 2.0 6.0...]\n"
    np.testing.assert_array_equal(run(tf.boolean_mask(tf.constant(a), a > 5)), a[a > 5])


def test_lrn_and_exponential_moving_average(g, tmp_path) -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((1, 2, 2, 6)).astype(np.float64)
    got = run(tf.nn.lrn(tf.constant(a), depth_radius=2, bias=2.0, alpha=0.1, beta=0.75))
    sq = np.pad(a**2, ((0, 0), (0, 0), (0, 0), (2, 2)))
    want = a / (2.0 + 0.1 * sum(sq[..., i : i + 6] for i in range(5))) ** 0.75
    np.testing.assert_allclose(got, want, rtol=1e-12)

    w = tf.Variable(0.0, name="w")
    ema = tf.train.ExponentialMovingAverage(decay=0.9)
    with tf.control_dependencies([tf.assign_add(w, 10.0)]):
        train = ema.apply([w])
    shadow = ema.average(w)
    assert shadow.op.name == "w/ExponentialMovingAverage" and shadow not in tf.trainable_variables()
    saver = tf.train.Saver()
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        s.run(train)
        s.run(train)
        assert s.run(shadow) == pytest.approx(0.9 * (0.1 * 10) + 0.1 * 20)  # 2.9
        path = saver.save(s, str(tmp_path / "m"))
    with tf.Session() as s:  # evaluation with the averaged weights, as TF1 programs do
        tf.train.Saver(ema.variables_to_restore()).restore(s, path)
        assert s.run(w) == pytest.approx(2.9)


def test_bidirectional_rnns_read_the_sequence_both_ways(g) -> None:
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((2, 4, 3))
    x = tf.placeholder(tf.float64, [None, 4, 3])
    fw, bw = tf.nn.rnn_cell.GRUCell(5), tf.nn.rnn_cell.BasicRNNCell(2)
    (out_fw, out_bw), (st_fw, st_bw) = tf.nn.bidirectional_dynamic_rnn(fw, bw, x, dtype=tf.float64)
    assert out_fw.shape == (None, 4, 5) and out_bw.shape == (None, 4, 2)
    names = [v.op.name for v in tf.trainable_variables()]
    assert names[0] == "bidirectional_rnn/fw/gru_cell/gates/kernel"
    assert names[-1] == "bidirectional_rnn/bw/basic_rnn_cell/bias"
    # the backward cell run alone over the reversed sequence gives the same outputs, reversed
    alone, _ = tf.nn.dynamic_rnn(bw, tf.reverse(x, [1]), dtype=tf.float64, scope="again")
    of, ob, sb, a = run([out_fw, out_bw, st_bw, alone], {x: xs})
    np.testing.assert_allclose(ob, a[:, ::-1], rtol=1e-12)
    np.testing.assert_allclose(sb, ob[:, 0], rtol=1e-12)  # its final state is its output at step 0
    outs, _, _ = tf.nn.static_bidirectional_rnn(
        tf.nn.rnn_cell.GRUCell(3), tf.nn.rnn_cell.GRUCell(3), tf.unstack(x, axis=1), dtype=tf.float64, scope="static"
    )
    assert len(outs) == 4 and outs[0].shape == (None, 6)
