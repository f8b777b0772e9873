"""A TF1-style MNIST-like classifier whose loss turns NaN: the classic tfdbg example.

    python examples/debug_tf1_mnist_nan.py            # trains; loss becomes nan
    python examples/debug_tf1_mnist_nan.py --debug    # the same under the debugger

784 -> 500 ReLU -> 10, softmax, then a hand-written cross-entropy with `tf.log(y)`:
once the softmax of a wrong class underflows to exactly 0, log gives -inf and
0 * -inf gives NaN. In the debugger, `run -f has_inf_or_nan` stops at that run,
`lt` lists the Log node's output first and `ni -t Log` shows the `tf.log(y)` line.
The fixed version is examples/debug_tf1_mnist_fixed.py.
"""

from __future__ import annotations

import argparse

import numpy as np

import tracetensor.graph as tf

IMAGE, HIDDEN, CLASSES = 784, 500, 10


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like data made here: ten 28x28 stroke prototypes, noisy copies of them."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((CLASSES, IMAGE)) < 0.15).astype(np.float32)
    labels = rng.integers(0, CLASSES, n)
    x = np.clip(protos[labels] + rng.normal(0, 0.3, (n, IMAGE)), 0, 1).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[labels]


def build_model(stable: bool) -> dict:
    """The graph: returns the tensors a training loop needs."""
    x = tf.placeholder(tf.float32, [None, IMAGE], name="input/x")
    y_ = tf.placeholder(tf.float32, [None, CLASSES], name="input/y")
    with tf.name_scope("hidden"):
        w1 = tf.Variable(tf.truncated_normal([IMAGE, HIDDEN], stddev=0.1, seed=1), name="weights")
        b1 = tf.Variable(tf.constant(0.1, shape=[HIDDEN]), name="biases")
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
    with tf.name_scope("output"):
        w2 = tf.Variable(tf.truncated_normal([HIDDEN, CLASSES], stddev=0.1, seed=2), name="weights")
        b2 = tf.Variable(tf.constant(0.1, shape=[CLASSES]), name="biases")
        logits = tf.matmul(h, w2) + b2
        y = tf.nn.softmax(logits)
    with tf.name_scope("cross_entropy"):
        if stable:
            cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=logits))
        else:
            diff = -(y_ * tf.log(y))  # log of an underflowed softmax is -inf: the bug
            cross_entropy = tf.reduce_mean(diff)
    train_step = tf.train.AdamOptimizer(0.025).minimize(cross_entropy)
    correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    return {"x": x, "y_": y_, "train": train_step, "loss": cross_entropy, "accuracy": accuracy}


def main(stable: bool = False) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="run under the tracetensor debugger")
    ap.add_argument("--ui", default="textual", choices=["textual", "readline"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    xs, ys = make_data(args.batch * args.steps)
    m = build_model(stable)
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    if args.debug:
        from tracetensor.debugger import LocalCLIDebugWrapperSession

        sess = LocalCLIDebugWrapperSession(sess, ui_type=args.ui)
    with np.errstate(all="ignore"):
        for i in range(args.steps):
            lo = i * args.batch
            feed = {m["x"]: xs[lo : lo + args.batch], m["y_"]: ys[lo : lo + args.batch]}
            _, loss, acc = sess.run([m["train"], m["loss"], m["accuracy"]], feed_dict=feed)
            print(f"step {i}: loss {loss:.4f}  accuracy {acc:.2f}")


if __name__ == "__main__":
    main()
