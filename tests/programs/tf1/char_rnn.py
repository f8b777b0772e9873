# ruff: noqa: UP004  (written as the public TF1 examples are)
"""A character-level LSTM language model in the style of TF1's PTB tutorial (ptb_word_lm.py)
and char-rnn: an embedding via get_variable + embedding_lookup, a MultiRNNCell of LSTMCells
with DropoutWrapper, dynamic_rnn from a zero_state, the final state fed back as the next
batch's initial state, tf.gradients clipped by global norm, an exponentially decaying
learning rate, apply_gradients with a global step, and greedy sampling."""
import numpy as np
import tensorflow as tf

TEXT = "hello world. " * 40
chars = sorted(set(TEXT))
vocab = len(chars)
ids = np.array([chars.index(c) for c in TEXT], dtype=np.int32)

batch_size, num_steps, hidden, num_layers = 4, 8, 24, 2


class Model(object):
    def __init__(self, is_training, batch_size, num_steps):
        self.input_data = tf.placeholder(tf.int32, [batch_size, num_steps])
        self.targets = tf.placeholder(tf.int32, [batch_size, num_steps])

        def lstm_cell():
            cell = tf.nn.rnn_cell.LSTMCell(hidden, forget_bias=0.0, state_is_tuple=True)
            if is_training:
                cell = tf.nn.rnn_cell.DropoutWrapper(cell, output_keep_prob=0.9)
            return cell

        cell = tf.nn.rnn_cell.MultiRNNCell([lstm_cell() for _ in range(num_layers)], state_is_tuple=True)
        self.initial_state = cell.zero_state(batch_size, tf.float32)
        embedding = tf.get_variable("embedding", [vocab, hidden], dtype=tf.float32)
        inputs = tf.nn.embedding_lookup(embedding, self.input_data)
        outputs, state = tf.nn.dynamic_rnn(cell, inputs, initial_state=self.initial_state)
        output = tf.reshape(outputs, [-1, hidden])
        softmax_w = tf.get_variable("softmax_w", [hidden, vocab], dtype=tf.float32)
        softmax_b = tf.get_variable("softmax_b", [vocab], dtype=tf.float32)
        logits = tf.matmul(output, softmax_w) + softmax_b
        self.probs = tf.nn.softmax(logits)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(self.targets, [-1]), logits=logits)
        self.cost = tf.reduce_sum(loss) / batch_size / num_steps
        self.final_state = state
        if not is_training:
            return
        tvars = tf.trainable_variables()
        grads, _ = tf.clip_by_global_norm(tf.gradients(self.cost, tvars), 5.0)
        self.global_step = tf.train.get_or_create_global_step()
        self.lr = tf.train.exponential_decay(0.02, self.global_step, 50, 0.5, staircase=True)
        optimizer = tf.train.AdamOptimizer(self.lr)
        self.train_op = optimizer.apply_gradients(zip(grads, tvars), global_step=self.global_step)


def batches():
    n = (len(ids) - 1) // (batch_size * num_steps) * batch_size * num_steps
    x = ids[:n].reshape(batch_size, -1)
    y = ids[1:n + 1].reshape(batch_size, -1)
    for i in range(x.shape[1] // num_steps):
        yield x[:, i * num_steps:(i + 1) * num_steps], y[:, i * num_steps:(i + 1) * num_steps]


tf.set_random_seed(0)
with tf.variable_scope("Model", reuse=None):
    m = Model(is_training=True, batch_size=batch_size, num_steps=num_steps)
with tf.variable_scope("Model", reuse=True):
    mtest = Model(is_training=False, batch_size=1, num_steps=1)

with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    for epoch in range(6):
        state = session.run(m.initial_state)
        costs = 0.0
        for step, (x, y) in enumerate(batches()):
            feed_dict = {m.input_data: x, m.targets: y}
            for i, (c, h) in enumerate(m.initial_state):
                feed_dict[c] = state[i].c
                feed_dict[h] = state[i].h
            cost, state, _ = session.run([m.cost, m.final_state, m.train_op], feed_dict)
            costs += cost
        print("Epoch: %d Train Perplexity: %.3f" % (epoch + 1, np.exp(costs / (step + 1))))
    print("learning rate: %.4f after %d steps" % (session.run(m.lr), session.run(m.global_step)))

    state = session.run(mtest.initial_state)
    out = "h"
    for _ in range(24):
        feed = {mtest.input_data: [[chars.index(out[-1])]]}
        for i, (c, h) in enumerate(mtest.initial_state):
            feed[c], feed[h] = state[i].c, state[i].h
        probs, state = session.run([mtest.probs, mtest.final_state], feed)
        out += chars[int(np.argmax(probs[0]))]
    print("sample: %r" % out)
