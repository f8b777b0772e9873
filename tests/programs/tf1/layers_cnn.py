"""A tf.layers CNN in the style of TF1's "layers" tutorial (cnn_mnist.py) without the
Estimator: conv2d/max_pooling2d/batch_normalization/flatten/dense/dropout, a bool
`training` placeholder, the moving averages updated through tf.GraphKeys.UPDATE_OPS,
a global step, and a second tower sharing the first one's variables (reuse=True)."""
import numpy as np
import tensorflow as tf

rng = np.random.RandomState(0)
protos = (rng.rand(3, 8, 8, 1) < 0.35).astype(np.float32)


def batch(n):
    labels = rng.randint(0, 3, n)
    return (np.clip(protos[labels] + rng.normal(0, 0.3, (n, 8, 8, 1)), 0, 1).astype(np.float32),
            labels.astype(np.int64))


def cnn(images, training, reuse=None):
    conv1 = tf.layers.conv2d(inputs=images, filters=8, kernel_size=[3, 3], padding="same",
                             activation=tf.nn.relu, name="conv1", reuse=reuse)
    pool1 = tf.layers.max_pooling2d(inputs=conv1, pool_size=[2, 2], strides=2)
    bn1 = tf.layers.batch_normalization(pool1, momentum=0.9, training=training, name="bn1", reuse=reuse)
    conv2 = tf.layers.conv2d(inputs=bn1, filters=8, kernel_size=3, strides=2, padding="valid",
                             activation=tf.nn.relu, name="conv2", reuse=reuse)
    flat = tf.layers.flatten(conv2)
    dense = tf.layers.dense(inputs=flat, units=16, activation=tf.nn.relu, name="dense", reuse=reuse)
    dropout = tf.layers.dropout(inputs=dense, rate=0.3, training=training)
    return tf.layers.dense(inputs=dropout, units=3, name="logits", reuse=reuse)


tf.set_random_seed(0)  # seeded here so the test that runs it is deterministic
images = tf.placeholder(tf.float32, [None, 8, 8, 1])
labels = tf.placeholder(tf.int64, [None])
is_training = tf.placeholder(tf.bool, [])
logits = cnn(images, is_training)
loss = tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
global_step = tf.train.get_or_create_global_step()
update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.train.MomentumOptimizer(0.05, 0.9).minimize(loss, global_step=global_step)
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
eval_logits = cnn(images, False, reuse=True)  # the same variables, inference mode

print("trainable:", " ".join(v.op.name for v in tf.trainable_variables()))
print("update ops:", len(update_ops))
moving_mean = [v for v in tf.global_variables() if v.op.name == "bn1/moving_mean"][0]
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(40):
        bx, by = batch(32)
        _, l = sess.run([train_op, loss], {images: bx, labels: by, is_training: True})
        if step % 10 == 0:
            print("step %d loss %.4f" % (step, l))
    tx, ty = batch(300)
    print("global step:", sess.run(global_step))
    print("moving mean moved: %s" % bool(np.abs(sess.run(moving_mean)).sum() > 0))
    print("test accuracy %.3f" % sess.run(accuracy, {images: tx, labels: ty, is_training: False}))
    a, b = sess.run([logits, eval_logits], {images: tx, is_training: False})
    print("shared tower agrees: %s" % bool(np.allclose(a, b, atol=1e-5)))
