# ruff: noqa: UP010  (written as the public TF1 examples are)
"""TensorFlow-Examples' save_restore_model.py (TF1): train a multilayer perceptron, save
it with tf.train.Saver (global_step in the name), restore it into a new session found
with tf.train.latest_checkpoint, check it predicts the same, and resume training."""
from __future__ import print_function

import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

rng = np.random.RandomState(5)
protos = (rng.rand(10, 64) < 0.3).astype(np.float32)
labels = rng.randint(0, 10, 600)
images = np.clip(protos[labels] + rng.normal(0, 0.3, (600, 64)), 0, 1).astype(np.float32)
onehot = np.eye(10, dtype=np.float32)[labels]

model_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
model_path = os.path.join(model_dir, "model.ckpt")

x = tf.placeholder("float", [None, 64])
y = tf.placeholder("float", [None, 10])
weights = {
    "h1": tf.Variable(tf.random_normal([64, 32], stddev=0.2, seed=1)),
    "out": tf.Variable(tf.random_normal([32, 10], stddev=0.2, seed=2)),
}
biases = {"b1": tf.Variable(tf.zeros([32])), "out": tf.Variable(tf.zeros([10]))}
layer_1 = tf.nn.relu(tf.add(tf.matmul(x, weights["h1"]), biases["b1"]))
pred = tf.matmul(layer_1, weights["out"]) + biases["out"]
cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=pred, labels=y))
global_step = tf.Variable(0, name="global_step", trainable=False)
optimizer = tf.train.AdamOptimizer(learning_rate=0.01).minimize(cost, global_step=global_step)
correct_prediction = tf.equal(tf.argmax(pred, 1), tf.argmax(y, 1))
accuracy = tf.reduce_mean(tf.cast(correct_prediction, "float"))
init = tf.global_variables_initializer()
saver = tf.train.Saver()

print("Starting 1st session...")
with tf.Session() as sess:
    sess.run(init)
    for epoch in range(3):
        for i in range(6):
            sess.run(optimizer, feed_dict={x: images[i * 100:(i + 1) * 100], y: onehot[i * 100:(i + 1) * 100]})
    acc1 = sess.run(accuracy, feed_dict={x: images, y: onehot})
    print("Accuracy:", acc1)
    save_path = saver.save(sess, model_path, global_step=global_step)
    print("Model saved in file: %s" % save_path)
    logits1 = sess.run(pred, feed_dict={x: images})

print("Starting 2nd session...")
with tf.Session() as sess:
    sess.run(init)
    latest = tf.train.latest_checkpoint(model_dir)
    print("latest checkpoint: %s" % latest)
    saver.restore(sess, latest)
    print("Model restored from file: %s" % latest)
    print("restored step:", sess.run(global_step))
    print("same predictions:", bool(np.allclose(sess.run(pred, feed_dict={x: images}), logits1)))
    for epoch in range(2):
        for i in range(6):
            sess.run(optimizer, feed_dict={x: images[i * 100:(i + 1) * 100], y: onehot[i * 100:(i + 1) * 100]})
    print("Accuracy after resuming:", sess.run(accuracy, feed_dict={x: images, y: onehot}))
    print("files:", " ".join(sorted(os.listdir(model_dir))))
