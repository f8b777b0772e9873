"""tfdbg's own example debug_fibonacci.py (TF 1.15): a chain of int32 additions that
overflows into negative numbers past position 47; with --debug, a tensor filter
registered on the wrapper session (`sess.add_tensor_filter("has_negative", ...)`)
finds the first node whose value went negative."""
import argparse
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python import debug as tf_debug

FLAGS = None


def main(_):
    sess = tf.Session()

    # Construct the TensorFlow network.
    n0 = tf.Variable(np.ones([FLAGS.tensor_size] * 2), dtype=tf.int32, name="node_00")
    n1 = tf.Variable(np.ones([FLAGS.tensor_size] * 2), dtype=tf.int32, name="node_01")

    for i in range(2, FLAGS.length):
        n0, n1 = n1, tf.add(n0, n1, name="node_%.2d" % i)

    sess.run(tf.global_variables_initializer())

    # Wrap the TensorFlow Session object for debugging.
    if FLAGS.debug:
        sess = tf_debug.LocalCLIDebugWrapperSession(sess, ui_type=FLAGS.ui_type)

        def has_negative(_, tensor):  # pylint: disable=unused-argument
            return np.any(tensor < 0)

        sess.add_tensor_filter("has_inf_or_nan", tf_debug.has_inf_or_nan)
        sess.add_tensor_filter("has_negative", has_negative)

    print("Fibonacci number at position %d:\n%s" % (FLAGS.length, sess.run(n1)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.register("type", "bool", lambda v: v.lower() == "true")
    parser.add_argument("--tensor_size", type=int, default=1, help="Size of tensor. E.g., if the value is 30, the tensors will have shape [30, 30].")
    parser.add_argument("--length", type=int, default=20, help="Length of the fibonacci sequence to compute.")
    parser.add_argument("--ui_type", type=str, default="curses", help="Command-line user interface type (curses | readline)")
    parser.add_argument("--debug", dest="debug", action="store_true", help="Use TensorFlow Debugger (tfdbg).")
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
