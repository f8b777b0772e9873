"""TensorFlow 1 code, unchanged but for the import, on tracetensor's graph mode.

python examples/graph_tf1.py            # trains, differentiates a while_loop, exports and reloads
tracetensor debug examples/graph_tf1.py # the same under the debugger (node names, definition lines)
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

import tracetensor.graph as tf


def main(steps: int = 60) -> float:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((128, 2)).astype(np.float32)
    ys = (xs[:, 0] * xs[:, 1] > 0).astype(np.int64)  # XOR-like: needs the hidden layer

    x = tf.placeholder(tf.float32, [None, 2], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.name_scope("hidden"):
        w1 = tf.Variable(tf.random_normal([2, 16], stddev=1.0, seed=1), name="w")
        b1 = tf.Variable(tf.random_uniform([16], -1.0, 1.0, seed=3), name="b")
        h = tf.nn.tanh(tf.matmul(x, w1) + b1)
    with tf.name_scope("out"):
        w2 = tf.Variable(tf.random_normal([16, 2], stddev=0.5, seed=2), name="w")
        b2 = tf.Variable(tf.zeros([2]), name="b")
        logits = tf.debugging.check_numerics(tf.matmul(h, w2) + b2, "logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
    global_step = tf.Variable(0, trainable=False, name="global_step", dtype=tf.int64)
    train_op = tf.train.AdamOptimizer(0.05).minimize(loss, global_step=global_step)

    # a differentiable loop: y = x * w^3, dy/dw = 3 x w^2
    w = tf.Variable(2.0, name="w_loop")
    _, cube = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * w), [0, tf.constant(1.0)])
    (dcube,) = tf.gradients(cube, [w])

    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(steps):
            _, value = sess.run([train_op, loss], feed_dict={x: xs, y: ys})
            if i % 20 == 0:
                print(f"step {i:3d}  loss {value:.4f}")
        acc = sess.run(accuracy, {x: xs, y: ys})
        print(f"accuracy {acc:.2f} after {sess.run(global_step)} steps")
        print("w^3 =", sess.run(cube), " d(w^3)/dw =", sess.run(dcube))
        path = tf.export(
            os.path.join(tempfile.mkdtemp(), "xor.npz"), sess, inputs={"x": x}, outputs={"accuracy": accuracy}
        )
    reloaded = tf.load(path)
    again = reloaded.run(reloaded.signature["outputs"]["accuracy"], {"x:0": xs, "y:0": ys})
    print(f"reloaded from {path}: accuracy {again:.2f}")
    return float(acc)


if __name__ == "__main__":
    main()
