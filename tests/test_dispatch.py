"""The one dispatch point: an op that cannot run raises the same error (class, message,
source line) whether or not anyone listens to the event stream."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.graph as tf
from tracetensor import events
from tracetensor.errors import OpError, ShapeError

# the project's own pytest plugin listens during every test; "nobody listens" needs it off
pytestmark = pytest.mark.tracetensor_nan("off")


def _error(fn: Callable[[], object], listen: bool, **flags: bool) -> BaseException:
    if listen:
        with events.listen(lambda e: None, **flags):
            with pytest.raises(Exception) as info:
                fn()
    else:
        assert not events.is_listening()
        with pytest.raises(Exception) as info:
            fn()
    return info.value


def _same_either_way(fn: Callable[[], object]) -> BaseException:
    quiet = _error(fn, False)
    for flags in ({}, {"stacks": True, "summaries": True, "values": True}):
        loud = _error(fn, True, **flags)
        assert type(loud) is type(quiet)
        assert str(loud) == str(quiet)
    return quiet


def _sgd_with_wrong_grad(opt_cls: type, **kw: object) -> Callable[[], object]:
    def run() -> None:
        p = tt.tensor(np.ones((2, 3), np.float32), requires_grad=True)
        opt = opt_cls([p], lr=0.1, **kw)
        p.grad = tt.tensor(np.ones((4,), np.float32))  # a gradient of the wrong shape
        opt.step()

    return run


@pytest.mark.parametrize("opt_cls, kw", [(tt.optim.SGD, {}), (tt.optim.SGD, {"momentum": 0.9}), (tt.optim.Adam, {})])
def test_an_update_with_a_wrongly_shaped_gradient_raises_one_shape_error(opt_cls, kw):
    err = _same_either_way(_sgd_with_wrong_grad(opt_cls, **kw))
    assert isinstance(err, ShapeError)
    assert "(4,)" in str(err) and "(2, 3)" in str(err)
    assert err.frame is not None and err.frame.filename == __file__


def test_a_broadcastable_but_wrong_gradient_is_refused_too():
    p = tt.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    opt = tt.optim.SGD([p], lr=0.1)
    p.grad = tt.tensor(np.ones((3,), np.float32))  # would broadcast silently into (2, 3)
    with pytest.raises(ShapeError):
        opt.step()
    assert np.array_equal(p.detach().numpy(), np.ones((2, 3)))


def test_a_forward_error_reads_the_same_with_and_without_a_listener():
    a, b = tt.ones(2, 3), tt.ones(4, 5)
    err = _same_either_way(lambda: a @ b)
    assert isinstance(err, ShapeError) and "(2, 3)" in str(err) and "(4, 5)" in str(err)
    err = _same_either_way(lambda: a + b)
    assert isinstance(err, ShapeError)


def test_a_graph_node_error_reads_the_same_with_and_without_a_listener():
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, None])
        y = tf.matmul(x, tf.constant(np.ones((3, 2), np.float32)), name="proj")
    with tf.Session(graph=g) as sess:
        err = _same_either_way(lambda: sess.run(y, {x: np.ones((2, 4), np.float32)}))
    assert isinstance(err, OpError) and "proj" in str(err)


def _linear_step(x_shape: tuple[int, ...], dtype: type, bias_grad: bool = True) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    x = tt.tensor(rng.standard_normal(x_shape).astype(dtype), requires_grad=True)
    w = tt.tensor(rng.standard_normal((5, x_shape[-1])).astype(dtype), requires_grad=True)
    b = tt.tensor(rng.standard_normal(5).astype(dtype), requires_grad=bias_grad)
    out = tt.nn.functional.linear(x, w, b)
    (out * out).sum().backward()
    return [out.detach().numpy(), x.grad.numpy(), w.grad.numpy()] + ([b.grad.numpy()] if bias_grad else [])


@pytest.mark.parametrize(
    "x_shape, dtype, bias_grad",
    [((8, 3), np.float32, True), ((2, 4, 3), np.float64, True), ((8, 3), np.float32, False)],
)
def test_linear_gives_the_same_values_and_gradients_with_and_without_a_listener(x_shape, dtype, bias_grad):
    # nobody listening, F.linear runs one fused op; a listener sees (and gets) matmul then add
    quiet = _linear_step(x_shape, dtype, bias_grad)
    with events.listen(lambda e: None):
        loud = _linear_step(x_shape, dtype, bias_grad)
    assert all(q.dtype == lo.dtype and np.array_equal(q, lo) for q, lo in zip(quiet, loud, strict=True))


def test_a_linear_layer_error_reads_the_same_with_and_without_a_listener():
    layer = tt.nn.Linear(4, 5)
    err = _same_either_way(lambda: layer(tt.ones(2, 3)))
    assert isinstance(err, ShapeError) and "matmul" in str(err) and "(2, 3)" in str(err)
    assert err.frame is not None and err.frame.filename == __file__
