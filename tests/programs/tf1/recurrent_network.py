# ruff: noqa: UP010  (written as the public TF1 examples are)
"""TensorFlow-Examples' recurrent_network.py (TF1): an LSTM classifier over the rows of an
image, tf.unstack into time steps, rnn.BasicLSTMCell + rnn.static_rnn from tf.contrib,
the last output through a dense layer. Sequences made here: the class is which quarter
of the sequence carries a bump."""
from __future__ import print_function

import numpy as np
import tensorflow as tf
from tensorflow.contrib import rnn

learning_rate = 0.05
training_steps = 60
batch_size = 32
display_step = 20

num_input = 4
timesteps = 8
num_hidden = 16
num_classes = 4

rng = np.random.RandomState(0)


def next_batch(n):
    labels = rng.randint(0, num_classes, n)
    x = rng.normal(0, 0.3, (n, timesteps, num_input)).astype(np.float32)
    for i, c in enumerate(labels):
        x[i, 2 * c:2 * c + 2, :] += 1.5
    return x, np.eye(num_classes, dtype=np.float32)[labels]


X = tf.placeholder("float", [None, timesteps, num_input])
Y = tf.placeholder("float", [None, num_classes])

weights = {"out": tf.Variable(tf.random_normal([num_hidden, num_classes], seed=1))}
biases = {"out": tf.Variable(tf.random_normal([num_classes], seed=2))}


def RNN(x, weights, biases):
    x = tf.unstack(x, timesteps, 1)
    lstm_cell = rnn.BasicLSTMCell(num_hidden, forget_bias=1.0)
    outputs, states = rnn.static_rnn(lstm_cell, x, dtype=tf.float32)
    return tf.matmul(outputs[-1], weights["out"]) + biases["out"]


tf.set_random_seed(0)
logits = RNN(X, weights, biases)
prediction = tf.nn.softmax(logits)
loss_op = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
optimizer = tf.train.GradientDescentOptimizer(learning_rate=learning_rate)
train_op = optimizer.minimize(loss_op)
correct_pred = tf.equal(tf.argmax(prediction, 1), tf.argmax(Y, 1))
accuracy = tf.reduce_mean(tf.cast(correct_pred, tf.float32))
init = tf.global_variables_initializer()

print("variables:", " ".join(v.name for v in tf.trainable_variables()))
with tf.Session() as sess:
    sess.run(init)
    for step in range(1, training_steps + 1):
        batch_x, batch_y = next_batch(batch_size)
        sess.run(train_op, feed_dict={X: batch_x, Y: batch_y})
        if step % display_step == 0 or step == 1:
            loss, acc = sess.run([loss_op, accuracy], feed_dict={X: batch_x, Y: batch_y})
            print("Step " + str(step) + ", Minibatch Loss= " + "{:.4f}".format(loss)
                  + ", Training Accuracy= " + "{:.3f}".format(acc))
    print("Optimization Finished!")
    test_x, test_y = next_batch(200)
    print("Testing Accuracy:", sess.run(accuracy, feed_dict={X: test_x, Y: test_y}))
