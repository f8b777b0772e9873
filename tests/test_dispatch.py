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
