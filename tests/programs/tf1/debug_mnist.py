"""tfdbg's own example debug_mnist.py (TF 1.15), with MNIST-like data made here instead of
the download: the hand-written cross-entropy -(y_ * tf.log(y)) turns NaN within a few
steps; with --debug the session is wrapped in LocalCLIDebugWrapperSession and
`run -f has_inf_or_nan` finds the first tensor that went bad."""
import argparse
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python import debug as tf_debug

IMAGE_SIZE = 28
HIDDEN_SIZE = 500
NUM_LABELS = 10
RAND_SEED = 42

FLAGS = None


class _Data:
    """MNIST-like: ten 28x28 stroke prototypes and noisy copies of them."""

    def __init__(self, n, seed):
        rng = np.random.RandomState(seed)
        protos = (np.random.RandomState(0).rand(NUM_LABELS, IMAGE_SIZE ** 2) < 0.15).astype(np.float32)
        labels = rng.randint(0, NUM_LABELS, n)
        self.images = np.clip(protos[labels] + rng.normal(0, 0.3, (n, IMAGE_SIZE ** 2)), 0, 1).astype(np.float32)
        self.labels = np.eye(NUM_LABELS, dtype=np.float32)[labels]
        self._at = 0

    def next_batch(self, n):
        idx = np.arange(self._at, self._at + n) % len(self.images)
        self._at += n
        return self.images[idx], self.labels[idx]


def main(_):
    train, test = _Data(2000, 1), _Data(500, 2)

    def feed_dict(training):
        if training:
            xs, ys = train.next_batch(FLAGS.train_batch_size)
        else:
            xs, ys = test.images, test.labels
        return {x: xs, y_: ys}

    sess = tf.InteractiveSession()

    with tf.name_scope("input"):
        x = tf.placeholder(tf.float32, [None, IMAGE_SIZE * IMAGE_SIZE], name="x-input")
        y_ = tf.placeholder(tf.float32, [None, NUM_LABELS], name="y-input")

    def weight_variable(shape):
        initial = tf.truncated_normal(shape, stddev=0.1, seed=RAND_SEED)
        return tf.Variable(initial)

    def bias_variable(shape):
        initial = tf.constant(0.1, shape=shape)
        return tf.Variable(initial)

    def nn_layer(input_tensor, input_dim, output_dim, layer_name, act=tf.nn.relu):
        with tf.name_scope(layer_name):
            with tf.name_scope("weights"):
                weights = weight_variable([input_dim, output_dim])
            with tf.name_scope("biases"):
                biases = bias_variable([output_dim])
            with tf.name_scope("Wx_plus_b"):
                preactivate = tf.matmul(input_tensor, weights) + biases
            activations = act(preactivate)
            return activations

    hidden = nn_layer(x, IMAGE_SIZE ** 2, HIDDEN_SIZE, "hidden")
    logits = nn_layer(hidden, HIDDEN_SIZE, NUM_LABELS, "output", tf.identity)
    y = tf.nn.softmax(logits)

    with tf.name_scope("cross_entropy"):
        # The following line is the culprit of the bad numerical values that appear
        # during training of this graph: log(0) is -inf, and 0 * -inf is NaN.
        diff = -(y_ * tf.log(y))
        with tf.name_scope("total"):
            cross_entropy = tf.reduce_mean(diff)

    with tf.name_scope("train"):
        train_step = tf.train.AdamOptimizer(FLAGS.learning_rate).minimize(cross_entropy)

    with tf.name_scope("accuracy"):
        with tf.name_scope("correct_prediction"):
            correct_prediction = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
        with tf.name_scope("accuracy"):
            accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))

    sess.run(tf.global_variables_initializer())

    if FLAGS.debug:
        sess = tf_debug.LocalCLIDebugWrapperSession(sess, ui_type=FLAGS.ui_type)

    # At this point, sess is a debug wrapper around the actual Session if
    # FLAGS.debug is true. In that case, calling run() will launch the CLI.
    for i in range(FLAGS.max_steps):
        acc = sess.run(accuracy, feed_dict=feed_dict(False))
        print("Accuracy at step %d: %s" % (i, acc))
        sess.run(train_step, feed_dict=feed_dict(True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.register("type", "bool", lambda v: v.lower() == "true")
    parser.add_argument("--max_steps", type=int, default=10, help="Number of steps to run trainer.")
    parser.add_argument("--train_batch_size", type=int, default=100, help="Batch size used during training.")
    parser.add_argument("--learning_rate", type=float, default=0.025, help="Initial learning rate.")
    parser.add_argument("--ui_type", type=str, default="curses", help="Command-line user interface type (curses | readline)")
    parser.add_argument("--fake_data", type="bool", nargs="?", const=True, default=False, help="Use fake MNIST data for unit testing")
    parser.add_argument("--debug", type="bool", nargs="?", const=True, default=False, help="Use debugger to track down bad values during training")
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
