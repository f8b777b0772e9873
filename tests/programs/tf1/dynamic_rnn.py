# ruff: noqa: UP010  (written as the public TF1 examples are)
"""TensorFlow-Examples' dynamic_rnn.py (TF1) in spirit: sequences of different lengths
padded to a fixed width, tf.nn.dynamic_rnn with sequence_length over a GRU/LSTM stack,
and the output at each sequence's own last step picked with tf.gather. The task: is the
sequence's sum positive?"""
from __future__ import print_function

import numpy as np
import tensorflow as tf

max_len, n_hidden, batch = 6, 12, 32
rng = np.random.RandomState(1)


def next_batch(n):
    lengths = rng.randint(2, max_len + 1, n)
    x = np.zeros((n, max_len, 1), np.float32)
    for i, L in enumerate(lengths):
        x[i, :L, 0] = rng.normal(0, 1, L)
    labels = (x.sum((1, 2)) > 0).astype(np.int64)
    return x, labels, lengths.astype(np.int32)


tf.set_random_seed(0)  # seeded here so the test that runs it is deterministic
x = tf.placeholder(tf.float32, [None, max_len, 1])
y = tf.placeholder(tf.int64, [None])
seqlen = tf.placeholder(tf.int32, [None])

cell = tf.nn.rnn_cell.MultiRNNCell([tf.nn.rnn_cell.GRUCell(n_hidden), tf.nn.rnn_cell.LSTMCell(n_hidden)])
outputs, state = tf.nn.dynamic_rnn(cell, x, sequence_length=seqlen, dtype=tf.float32)

batch_size = tf.shape(outputs)[0]
index = tf.range(0, batch_size) * max_len + (seqlen - 1)
last = tf.gather(tf.reshape(outputs, [-1, n_hidden]), index)
logits = tf.layers.dense(last, 2)
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
train_op = tf.train.AdamOptimizer(0.02).minimize(loss)
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))

# the final LSTM state is the output at each sequence's last step
final_h = state[1].h
same = tf.reduce_max(tf.abs(final_h - last))

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(80):
        bx, by, bl = next_batch(batch)
        _, l = sess.run([train_op, loss], {x: bx, y: by, seqlen: bl})
        if step % 20 == 0:
            print("step %d loss %.4f" % (step, l))
    tx, ty, tl = next_batch(300)
    acc, diff, out = sess.run([accuracy, same, outputs], {x: tx, y: ty, seqlen: tl})
    print("test accuracy %.3f" % acc)
    print("final state matches last output: %s" % (diff < 1e-6))
    print("zeros past the end: %s" % all(np.all(out[i, L:] == 0) for i, L in enumerate(tl)))
