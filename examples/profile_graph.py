"""The MLP of mlp_eager.py in graph mode (TensorFlow 1 style): build a graph once, run
it in a session step after step. `tracetensor profile examples/profile_graph.py` shows
the graph's node types (MatMul, Relu ...) with the node names in the Chrome trace."""

from __future__ import annotations

import numpy as np

import tracetensor.graph as tf
from tracetensor import profiler


def build(d_in: int = 64, hidden: int = 128, classes: int = 10, lr: float = 0.1):
    rng = np.random.default_rng(0)
    x = tf.placeholder(tf.float32, [None, d_in], name="x")
    y = tf.placeholder(tf.float32, [None, classes], name="y")
    with tf.name_scope("fc1"):
        w1 = tf.Variable(rng.standard_normal((d_in, hidden)).astype(np.float32) * d_in**-0.5, name="w")
        h = tf.nn.relu(tf.matmul(x, w1))
    with tf.name_scope("fc2"):
        w2 = tf.Variable(rng.standard_normal((hidden, classes)).astype(np.float32) * hidden**-0.5, name="w")
        logits = tf.matmul(h, w2)
    loss = tf.reduce_mean(tf.square(logits - y))
    train_op = tf.train.GradientDescentOptimizer(lr).minimize(loss)
    return x, y, loss, train_op


def main(steps: int = 30, batch: int = 64) -> None:
    x, y, loss, train_op = build()
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((batch, 64)).astype(np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(steps):
            value, _ = sess.run([loss, train_op], feed_dict={x: xs, y: ys})
            profiler.step()
            if i % 10 == 0:
                print(f"step {i:3d}  loss {value:.4f}")


if __name__ == "__main__":
    main()
