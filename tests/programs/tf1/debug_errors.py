"""tfdbg's own example debug_errors.py (TF 1.15): a graph with a shape mismatch (a
transpose of a placeholder of unknown rank), an uninitialized variable, or no error;
with --debug the session is wrapped and the run-end screen names the failing node."""
import argparse
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python import debug as tf_debug

FLAGS = None


def main(_):
    sess = tf.Session()

    # Construct the TensorFlow network.
    ph_float = tf.placeholder(tf.float32, name="ph_float")
    x = tf.transpose(ph_float, name="x")
    v = tf.Variable(np.array([[-2.0], [-3.0], [6.0]], dtype=np.float32), name="v")
    m = tf.constant(np.array([[0.0, 1.0, 2.0], [-4.0, -1.0, 0.0]]), dtype=tf.float32, name="m")
    y = tf.matmul(m, x, name="y")
    z = tf.matmul(m, v, name="z")

    if FLAGS.debug:
        sess = tf_debug.LocalCLIDebugWrapperSession(sess, ui_type=FLAGS.ui_type)

    try:
        if FLAGS.error == "shape_mismatch":
            print(sess.run(y, feed_dict={ph_float: np.array([[0.0], [1.0], [2.0]])}))
        elif FLAGS.error == "uninitialized_variable":
            print(sess.run(z))
        elif FLAGS.error == "no_error":
            print(sess.run(y, feed_dict={ph_float: np.array([[0.0, 1.0, 2.0]])}))
        else:
            raise ValueError("Unrecognized error type: " + FLAGS.error)
    except tf.errors.InvalidArgumentError as e:
        print("caught InvalidArgumentError: %s" % e)
        return 3
    except tf.errors.FailedPreconditionError as e:
        print("caught FailedPreconditionError: %s" % e)
        return 4


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.register("type", "bool", lambda v: v.lower() == "true")
    parser.add_argument("--error", type=str, default="shape_mismatch",
                        help="Type of the error to generate (shape_mismatch | uninitialized_variable | no_error).")
    parser.add_argument("--ui_type", type=str, default="curses", help="Command-line user interface type (curses | readline)")
    parser.add_argument("--debug", type="bool", nargs="?", const=True, default=False, help="Use debugger to track down bad values during training")
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
