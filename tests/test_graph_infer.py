"""Graph construction infers static shapes without computing at full size: large sizes
run as small stand-ins, and whatever that cannot settle runs as before."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor.graph as tf
from tracetensor.errors import OpError

HUGE = 10**7  # a (HUGE, HUGE) array of ones would need 400 TB: inference must never make one


@pytest.fixture
def g():
    graph = tf.Graph()
    with graph.as_default():
        yield graph


def test_matmuls_of_huge_placeholders_get_their_shapes(g):
    a = tf.placeholder(tf.float32, [HUGE, HUGE])
    b = tf.placeholder(tf.float32, [HUGE, 3])
    c = tf.matmul(a, b)
    d = tf.matmul(a, tf.nn.relu(a) * 2.0 + a)
    assert c.shape.as_list() == [HUGE, 3]
    assert d.shape.as_list() == [HUGE, HUGE]
    assert d.dtype == tf.float32


def test_unknown_sizes_stay_unknown_next_to_large_ones(g):
    x = tf.placeholder(tf.float32, [None, 5000])
    w = tf.placeholder(tf.float32, [5000, 300])
    y = tf.matmul(x, w) + tf.placeholder(tf.float32, [300])
    assert y.shape.as_list() == [None, 300]


def test_broadcasting_large_sizes(g):
    s = tf.placeholder(tf.float32, [1, 5000]) + tf.placeholder(tf.float32, [3000, 1])
    assert s.shape.as_list() == [3000, 5000]


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda x: tf.reduce_sum(x, axis=1), [3000]),
        (lambda x: tf.reshape(x, [-1]), [3000 * 2000]),
        (lambda x: tf.concat([x, x], axis=0), [6000, 2000]),
        (lambda x: x[:100], [100, 2000]),
        (lambda x: tf.transpose(x), [2000, 3000]),
    ],
)
def test_ops_whose_attributes_refer_to_sizes_get_the_full_size_answer(g, build, expected):
    x = tf.placeholder(tf.float32, [3000, 2000])
    assert build(x).shape.as_list() == expected


def test_a_mismatch_of_large_shapes_is_reported_at_build_time_with_the_real_shapes(g):
    a = tf.placeholder(tf.float32, [3000, 2000])
    with pytest.raises(OpError) as info:
        tf.matmul(a, a, name="bad")
    assert "bad" in str(info.value) and "(3000, 2000)" in str(info.value)


def test_the_graph_runs_with_the_inferred_shapes(g):
    a = tf.placeholder(tf.float32, [200, 300])
    b = tf.placeholder(tf.float32, [300, 400])
    c = tf.matmul(a, b)
    assert c.shape.as_list() == [200, 400]
    with tf.Session() as sess:
        out = sess.run(c, {a: np.ones((200, 300), np.float32), b: np.ones((300, 400), np.float32)})
    assert out.shape == (200, 400) and out[0, 0] == 300
