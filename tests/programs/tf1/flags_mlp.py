"""The tf.app.flags style of the older TF1 examples (fully_connected_feed.py, the models
repository): flags defined at import, read through FLAGS in main, `tf.app.run()` finding
main in __main__, tf.logging, and tf.layers.dense with TF's variable names."""
import numpy as np
import tensorflow as tf

flags = tf.app.flags
FLAGS = flags.FLAGS
flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate.")
flags.DEFINE_integer("max_steps", 100, "Number of steps to run trainer.")
flags.DEFINE_integer("hidden1", 32, "Number of units in hidden layer 1.")
flags.DEFINE_string("train_dir", "/tmp/data", "Directory to put the training data.")
flags.DEFINE_boolean("fake_data", True, "If true, uses fake data for unit testing.")
flags.DEFINE_list("extra_layers", [], "Sizes of further hidden layers.")
tf.flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam", "momentum"], "Which optimizer.")


def main(argv):
    tf.logging.set_verbosity(tf.logging.INFO)
    print("argv:", argv[1:])
    print("flags: lr=%s steps=%d hidden1=%d fake=%s layers=%s opt=%s" % (
        FLAGS.learning_rate, FLAGS.max_steps, FLAGS.hidden1, FLAGS.fake_data, FLAGS.extra_layers, FLAGS.optimizer))
    rng = np.random.RandomState(0)
    xs = rng.normal(0, 1, (256, 10)).astype(np.float32)
    ys = (xs[:, :5].sum(1) > xs[:, 5:].sum(1)).astype(np.int32)

    tf.set_random_seed(0)  # seeded here so the test that runs it is deterministic
    x = tf.placeholder(tf.float32, [None, 10], name="x")
    y = tf.placeholder(tf.int32, [None], name="y")
    h = tf.layers.dense(x, FLAGS.hidden1, activation=tf.nn.relu)
    for units in FLAGS.extra_layers:
        h = tf.layers.dense(h, int(units), activation=tf.nn.tanh)
    logits = tf.layers.dense(h, 2)
    loss = tf.losses.sparse_softmax_cross_entropy(labels=y, logits=logits)
    opt = {"sgd": tf.train.GradientDescentOptimizer(FLAGS.learning_rate),
           "adam": tf.train.AdamOptimizer(FLAGS.learning_rate),
           "momentum": tf.train.MomentumOptimizer(FLAGS.learning_rate, 0.9)}[FLAGS.optimizer]
    train_op = opt.minimize(loss)
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
    print("variables:", " ".join(v.op.name for v in tf.trainable_variables()))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(FLAGS.max_steps):
            _, l = sess.run([train_op, loss], {x: xs, y: ys})
            if step % 50 == 0:
                tf.logging.info("Step %d: loss = %.4f", step, l)
        print("train accuracy %.3f" % sess.run(acc, {x: xs, y: ys}))
    return 0


if __name__ == "__main__":
    tf.app.run()
