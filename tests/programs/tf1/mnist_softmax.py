"""TF1 tutorial "MNIST for ML beginners" (mnist_softmax.py), on MNIST-like data made here:
argparse flags handed to tf.app.run, a softmax regression, the hand-written cross-entropy
with reduction_indices, and accuracy on a held-out set."""
import argparse
import sys

import numpy as np
import tensorflow as tf

FLAGS = None


def read_data_sets(n_train, n_test, seed=0):
    """Ten 8x8 'digit' prototypes, noisy copies of them, one-hot labels."""
    rng = np.random.RandomState(seed)
    protos = (rng.rand(10, 64) < 0.3).astype(np.float32)

    def make(n):
        labels = rng.randint(0, 10, n)
        x = np.clip(protos[labels] + rng.normal(0, 0.25, (n, 64)), 0, 1).astype(np.float32)
        return x, np.eye(10, dtype=np.float32)[labels]

    return make(n_train), make(n_test)


def main(_):
    (train_x, train_y), (test_x, test_y) = read_data_sets(2000, 500)

    x = tf.placeholder(tf.float32, [None, 64])
    W = tf.Variable(tf.zeros([64, 10]))
    b = tf.Variable(tf.zeros([10]))
    y = tf.nn.softmax(tf.matmul(x, W) + b)
    y_ = tf.placeholder(tf.float32, [None, 10])
    cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * tf.log(y), reduction_indices=[1]))
    train_step = tf.train.GradientDescentOptimizer(FLAGS.learning_rate).minimize(cross_entropy)

    sess = tf.InteractiveSession()
    tf.global_variables_initializer().run()
    for i in range(FLAGS.steps):
        batch = np.arange(i * 100, (i + 1) * 100) % len(train_x)
        sess.run(train_step, feed_dict={x: train_x[batch], y_: train_y[batch]})

    correct_prediction = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))
    print("accuracy %.4f" % sess.run(accuracy, feed_dict={x: test_x, y_: test_y}))
    print("dtype", W.dtype.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--learning_rate", type=float, default=0.5)
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
