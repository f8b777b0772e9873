"""Graph mode on MPI (Horovod's TF1 names): `mpiexec -n 2 python graph_train.py OUT.npy`,
or `python graph_train.py OUT.npy --single` for the one-process reference on the whole batch."""

import sys

import numpy as np

import tracetensor.graph as tf
import tracetensor.graph.horovod as hvd

single = "--single" in sys.argv
if not single:
    hvd.init()
rank, world = (0, 1) if single else (hvd.rank(), hvd.size())
rng = np.random.default_rng(3)
X, Y = rng.standard_normal((5, 8, 4)), rng.standard_normal((5, 8, 2))
x = tf.placeholder(tf.float64, [None, 4])
y = tf.placeholder(tf.float64, [None, 2])
w = tf.Variable(np.full((4, 2), 0.5 + rank), name="w")  # differs per rank until broadcast
b = tf.Variable(np.zeros(2), name="b")
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))
opt = tf.train.GradientDescentOptimizer(0.1)
train = (opt if single else hvd.DistributedOptimizer(opt)).minimize(loss)
sync = None if single else hvd.broadcast_global_variables(0)
per = 8 // world
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    if sync is not None:
        sess.run(sync)
    for s in range(5):
        sess.run(train, {x: X[s][rank * per : (rank + 1) * per], y: Y[s][rank * per : (rank + 1) * per]})
    if rank == 0:
        np.save(sys.argv[1], np.concatenate([sess.run(w).ravel(), sess.run(b).ravel()]))
