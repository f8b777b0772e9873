"""A linear model fed a batch of the wrong width at run time: the debugger's error screen
names the failing node (`linear/MatMul`), its input shapes and the line that defined it.

    python examples/debug_shape_error.py --debug
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import tracetensor as tt
import tracetensor.graph as tf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="run under the tracetensor debugger")
    ap.add_argument("--ui", default="textual", choices=["textual", "readline"])
    args = ap.parse_args()
    x = tf.placeholder(tf.float32, [None, None], name="x")  # width unchecked until run time
    y_ = tf.placeholder(tf.float32, [None, 1], name="y")
    with tf.name_scope("linear"):
        w = tf.Variable(tf.zeros([3, 1]), name="w")
        b = tf.Variable(tf.zeros([1]), name="b")
        y = tf.matmul(x, w) + b
    loss = tf.reduce_mean(tf.square(y - y_))
    train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    if args.debug:
        from tracetensor.debugger import LocalCLIDebugWrapperSession

        sess = LocalCLIDebugWrapperSession(sess, ui_type=args.ui)
    rng = np.random.default_rng(0)
    for step in range(3):
        width = 3 if step < 2 else 4  # the third batch carries an extra feature column: the bug
        xs = rng.standard_normal((8, width)).astype(np.float32)
        ys = xs[:, :1] * 2
        try:
            _, l = sess.run([train, loss], feed_dict={x: xs, y_: ys})
        except tt.ShapeError as e:
            print(f"step {step} failed: {e}")
            return 1
        print(f"step {step}: loss {l:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
