"""TensorFlow 1 style logging: `tf.summary.*` ops merged with `merge_all`, written with
`tf.summary.FileWriter(logdir, sess.graph)`, plus step stats of every 10th run.

    python examples/tensorboard_tf1.py --logdir runs/tf1
    tensorboard --logdir runs/tf1

Needs `pip install "tracetensor[tensorboard]"`.
"""

from __future__ import annotations

import argparse

import numpy as np

import tracetensor.graph as tf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default="runs/tf1")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 16)).astype(np.float32) * 2
    labels = rng.integers(0, 4, 512)
    data = centers[labels] + rng.standard_normal((512, 16)).astype(np.float32)

    x = tf.placeholder(tf.float32, [None, 16], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.name_scope("hidden"):
        w1 = tf.Variable(tf.random_normal([16, 32], stddev=0.3, seed=1), name="W")
        b1 = tf.Variable(tf.zeros([32]), name="b")
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
        tf.summary.histogram("weights", w1)
        tf.summary.histogram("activations", h)
    with tf.name_scope("logits"):
        w2 = tf.Variable(tf.random_normal([32, 4], stddev=0.3, seed=2), name="W")
        logits = tf.matmul(h, w2)
    with tf.name_scope("loss"):
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        tf.summary.scalar("cross_entropy", loss)
        tf.summary.scalar("accuracy", accuracy)
    train = tf.train.AdamOptimizer(1e-2).minimize(loss)
    merged = tf.summary.merge_all()

    with tf.Session() as sess, tf.summary.FileWriter(args.logdir, sess.graph) as writer:
        sess.run(tf.global_variables_initializer())
        for step in range(args.steps):
            lo = (step % 8) * 64
            feed = {x: data[lo : lo + 64], y: labels[lo : lo + 64]}
            if step % 10 == 0:
                md = tf.RunMetadata()
                opts = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
                summary, _ = sess.run([merged, train], feed, options=opts, run_metadata=md)
                writer.add_run_metadata(md, f"step{step}", step)
            else:
                summary, _ = sess.run([merged, train], feed)
            writer.add_summary(summary, step)
        print(f"accuracy {sess.run(accuracy, {x: data, y: labels}):.3f}; now run: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
