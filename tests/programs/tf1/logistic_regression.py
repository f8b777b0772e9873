# ruff: noqa: UP010  (written as the public TF1 examples are)
"""TensorFlow-Examples' logistic_regression.py (TF1): softmax regression with the
hand-written cross-entropy (tf.log, reduction_indices), batches, per-epoch average cost."""
from __future__ import print_function

import numpy as np
import tensorflow as tf

rng = np.random.RandomState(3)
protos = (rng.rand(10, 64) < 0.3).astype(np.float32)
labels = rng.randint(0, 10, 1100)
images = np.clip(protos[labels] + rng.normal(0, 0.35, (1100, 64)), 0, 1).astype(np.float32)
onehot = np.eye(10, dtype=np.float32)[labels]
train_x, train_y, test_x, test_y = images[:1000], onehot[:1000], images[1000:], onehot[1000:]

learning_rate = 0.1
training_epochs = 8
batch_size = 100
display_step = 2

x = tf.placeholder(tf.float32, [None, 64])
y = tf.placeholder(tf.float32, [None, 10])
W = tf.Variable(tf.zeros([64, 10]))
b = tf.Variable(tf.zeros([10]))
pred = tf.nn.softmax(tf.matmul(x, W) + b)
cost = tf.reduce_mean(-tf.reduce_sum(y * tf.log(pred), reduction_indices=1))
optimizer = tf.train.GradientDescentOptimizer(learning_rate).minimize(cost)
init = tf.global_variables_initializer()

with tf.Session() as sess:
    sess.run(init)
    for epoch in range(training_epochs):
        avg_cost = 0.
        total_batch = int(len(train_x) / batch_size)
        for i in range(total_batch):
            batch_xs = train_x[i * batch_size:(i + 1) * batch_size]
            batch_ys = train_y[i * batch_size:(i + 1) * batch_size]
            _, c = sess.run([optimizer, cost], feed_dict={x: batch_xs, y: batch_ys})
            avg_cost += c / total_batch
        if (epoch + 1) % display_step == 0:
            print("Epoch:", "%04d" % (epoch + 1), "cost=", "{:.9f}".format(avg_cost))
    print("Optimization Finished!")
    correct_prediction = tf.equal(tf.argmax(pred, 1), tf.argmax(y, 1))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))
    print("Accuracy:", accuracy.eval({x: test_x, y: test_y}))
