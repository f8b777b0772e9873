# ruff: noqa: UP010  (written as the public TF1 examples are)
"""TensorFlow-Examples' convolutional_network_raw.py (TF1): weights and biases in dicts,
conv2d with strides and bias_add, maxpool2d(k), dropout with a keep-probability
placeholder, softmax_cross_entropy_with_logits, Adam, on 12x12 images made here."""
from __future__ import print_function

import numpy as np
import tensorflow as tf

rng = np.random.RandomState(0)
protos = (rng.rand(4, 144) < 0.3).astype(np.float32)


def next_batch(n):
    labels = rng.randint(0, 4, n)
    xs = np.clip(protos[labels] + rng.normal(0, 0.3, (n, 144)), 0, 1).astype(np.float32)
    return xs, np.eye(4, dtype=np.float32)[labels]


learning_rate = 0.005
num_steps = 40
batch_size = 32
display_step = 10

num_input = 144
num_classes = 4
dropout = 0.75

tf.set_random_seed(0)  # seeded here so the test that runs it is deterministic
X = tf.placeholder(tf.float32, [None, num_input])
Y = tf.placeholder(tf.float32, [None, num_classes])
keep_prob = tf.placeholder(tf.float32)


def conv2d(x, W, b, strides=1):
    x = tf.nn.conv2d(x, W, strides=[1, strides, strides, 1], padding="SAME")
    x = tf.nn.bias_add(x, b)
    return tf.nn.relu(x)


def maxpool2d(x, k=2):
    return tf.nn.max_pool(x, ksize=[1, k, k, 1], strides=[1, k, k, 1], padding="SAME")


def conv_net(x, weights, biases, dropout):
    x = tf.reshape(x, shape=[-1, 12, 12, 1])
    conv1 = conv2d(x, weights["wc1"], biases["bc1"])
    conv1 = maxpool2d(conv1, k=2)
    conv2 = conv2d(conv1, weights["wc2"], biases["bc2"], strides=2)
    conv2 = maxpool2d(conv2, k=3)
    fc1 = tf.reshape(conv2, [-1, weights["wd1"].get_shape().as_list()[0]])
    fc1 = tf.add(tf.matmul(fc1, weights["wd1"]), biases["bd1"])
    fc1 = tf.nn.relu(fc1)
    fc1 = tf.nn.dropout(fc1, dropout)
    out = tf.add(tf.matmul(fc1, weights["out"]), biases["out"])
    return out


weights = {
    "wc1": tf.Variable(tf.random_normal([3, 3, 1, 8], stddev=0.3, seed=1)),
    "wc2": tf.Variable(tf.random_normal([3, 3, 8, 16], stddev=0.3, seed=2)),
    "wd1": tf.Variable(tf.random_normal([1 * 1 * 16, 32], stddev=0.3, seed=3)),
    "out": tf.Variable(tf.random_normal([32, num_classes], stddev=0.3, seed=4)),
}
biases = {
    "bc1": tf.Variable(tf.random_normal([8], stddev=0.1, seed=5)),
    "bc2": tf.Variable(tf.random_normal([16], stddev=0.1, seed=6)),
    "bd1": tf.Variable(tf.random_normal([32], stddev=0.1, seed=7)),
    "out": tf.Variable(tf.random_normal([num_classes], stddev=0.1, seed=8)),
}

logits = conv_net(X, weights, biases, keep_prob)
prediction = tf.nn.softmax(logits)
loss_op = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
optimizer = tf.train.AdamOptimizer(learning_rate=learning_rate)
train_op = optimizer.minimize(loss_op)
correct_pred = tf.equal(tf.argmax(prediction, 1), tf.argmax(Y, 1))
accuracy = tf.reduce_mean(tf.cast(correct_pred, tf.float32))
init = tf.global_variables_initializer()

print("logits shape:", logits.get_shape(), "flattened conv features:", weights["wd1"].get_shape().as_list()[0])
with tf.Session() as sess:
    sess.run(init)
    for step in range(1, num_steps + 1):
        batch_x, batch_y = next_batch(batch_size)
        sess.run(train_op, feed_dict={X: batch_x, Y: batch_y, keep_prob: dropout})
        if step % display_step == 0 or step == 1:
            loss, acc = sess.run([loss_op, accuracy], feed_dict={X: batch_x, Y: batch_y, keep_prob: 1.0})
            print("Step " + str(step) + ", Minibatch Loss= " + "{:.4f}".format(loss)
                  + ", Training Accuracy= " + "{:.3f}".format(acc))
    print("Optimization Finished!")
    test_x, test_y = next_batch(200)
    print("Testing Accuracy:", sess.run(accuracy, feed_dict={X: test_x, Y: test_y, keep_prob: 1.0}))
