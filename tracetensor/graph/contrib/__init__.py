"""The parts of TF1's `tf.contrib` that training scripts use: `tf.contrib.rnn` (the cells
and `static_rnn`) and `tf.contrib.layers` (initializers, `flatten`, `fully_connected`)."""

from __future__ import annotations

import types as _types
from typing import Any

from .. import layers as _layers
from .. import rnn as _rnn
from ..ops import _tensors, add, matmul
from ..ops import relu as _relu


def _fully_connected(
    inputs: Any,
    num_outputs: int,
    activation_fn: Any = _relu,
    weights_initializer: Any = None,
    biases_initializer: Any = None,
    scope: str | None = None,
    reuse: Any = None,
    **_ignored: Any,
) -> Any:
    """tf.contrib.layers.fully_connected: a dense layer, ReLU by default (variables
    `fully_connected/weights` and `/biases`, as contrib names them)."""
    from ..variables import get_variable, variable_scope

    (x,) = _tensors(inputs)
    name = scope or _layers.unique_layer_name("fully_connected")
    with variable_scope(name, reuse=reuse):
        w = get_variable(
            "weights", [x._dims[-1], num_outputs], x.dtype, weights_initializer or _layers.glorot_uniform_initializer()
        )
        b = get_variable("biases", [num_outputs], x.dtype, biases_initializer or _layers.zeros_initializer())
        y = add(matmul(x, w), b)
        return activation_fn(y) if activation_fn is not None else y


rnn = _types.SimpleNamespace(
    RNNCell=_rnn.RNNCell,
    BasicRNNCell=_rnn.BasicRNNCell,
    BasicLSTMCell=_rnn.BasicLSTMCell,
    LSTMCell=_rnn.LSTMCell,
    GRUCell=_rnn.GRUCell,
    MultiRNNCell=_rnn.MultiRNNCell,
    DropoutWrapper=_rnn.DropoutWrapper,
    LSTMStateTuple=_rnn.LSTMStateTuple,
    static_rnn=_rnn.static_rnn,
    static_bidirectional_rnn=_rnn.static_bidirectional_rnn,
)
layers = _types.SimpleNamespace(
    xavier_initializer=_layers.xavier_initializer,
    flatten=_layers.flatten,
    variance_scaling_initializer=_layers.variance_scaling_initializer,
    fully_connected=_fully_connected,
    l2_regularizer=_layers.l2_regularizer,
    l1_regularizer=_layers.l1_regularizer,
)

__all__ = ["rnn", "layers"]
