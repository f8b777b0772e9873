"""tracetensor.graph: TensorFlow-1-style graphs and sessions on the same op registry.

`import tracetensor.graph as tf` and TF1 code reads as before: `tf.placeholder`,
`tf.Variable`, `tf.Session`, `tf.train.AdamOptimizer`, `tf.nn.relu`, `tf.while_loop` ...
Every node runs the registry op eager mode runs, and every run emits events.
"""

from __future__ import annotations

import sys as _sys
import types as _types

from .. import ops as _registry_ops  # noqa: F401  (registers every op)
from . import gradients as _gradients_mod  # noqa: F401  (registers the gradient executor)
from . import ops as _o
from . import summary, train
from .control_flow import cond, while_loop
from .core import (
    FailedPreconditionError,
    Graph,
    GraphError,
    InvalidArgumentError,
    NotFoundError,
    Operation,
    Tensor,
    TensorShape,
    errors,
    get_default_graph,
    reset_default_graph,
)
from .function import Function, function
from .gradients import gradients
from .io import export, load
from .ops import *  # noqa: F403
from .session import InteractiveSession, Session, get_default_session, graph_def
from .summary import RunMetadata, RunOptions, Summary
from .variables import (
    GraphKeys,
    Variable,
    all_variables,
    get_variable,
    global_variables,
    global_variables_initializer,
    initialize_all_variables,
    trainable_variables,
    variable_scope,
    variables_initializer,
)


def _namespace(name: str, *members: str, **aliases: object) -> _types.SimpleNamespace:
    ns = _types.SimpleNamespace(**{m: getattr(_o, m) for m in members}, **aliases)
    ns.__name__ = f"tracetensor.graph.{name}"
    return ns


nn = _namespace(
    "nn",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
    "bias_add",
    "l2_loss",
    "embedding_lookup",
    "sigmoid_cross_entropy_with_logits",
    "leaky_relu",
    "elu",
    "softplus",
    "silu",
    "swish",
    "l2_normalize",
    "moments",
    "batch_normalization",
    "top_k",
)
math = _namespace(
    "math",
    "add",
    "subtract",
    "multiply",
    "divide",
    "truediv",
    "floordiv",
    "square",
    "sqrt",
    "rsqrt",
    "exp",
    "log",
    "abs",
    "negative",
    "sign",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "pow",
    "maximum",
    "minimum",
    "reciprocal",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    "reduce_logsumexp",
    "reduce_all",
    "reduce_any",
    "argmax",
    "argmin",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "is_nan",
    "is_inf",
    "is_finite",
    "add_n",
    "real",
    "imag",
    "softmax",
    "log_softmax",
    "floor",
    "ceil",
    "round",
    "log1p",
    "expm1",
    "erf",
    "floormod",
    "mod",
    "softplus",
    "top_k",
    "argsort",
    "reduce_euclidean_norm",
)
linalg = _namespace(
    "linalg",
    "matmul",
    "norm",
    "diag",
    "diag_part",
    transpose=_o.matrix_transpose,
    matrix_transpose=_o.matrix_transpose,
    l2_normalize=_o.l2_normalize,
)
losses = _namespace(
    "losses",
    "mean_squared_error",
    "absolute_difference",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
)
signal = spectral = _namespace("signal", "fft", "ifft")
debugging = _namespace("debugging", "check_numerics")
random = _namespace(
    "random",
    "set_random_seed",
    normal=_o.random_normal,
    uniform=_o.random_uniform,
    truncated_normal=_o.truncated_normal,
)
dtypes = _namespace(
    "dtypes",
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "as_dtype",
    "DType",
)
saved_model = _namespace(
    "saved_model",
    load=load,
    simple_save=lambda session, export_dir, inputs, outputs: export(
        export_dir, session, inputs=inputs, outputs=outputs
    ),
)
compat = _namespace("compat", v1=_sys.modules[__name__])  # `tf.compat.v1.placeholder` works too

# ---- TF1 programs as they are written (tf.app, tf.flags, tf.layers, tf.nn.rnn_cell, tf.contrib)
from . import app, layers, rnn  # noqa: E402
from .app import flags, logging  # noqa: E402
from .layers import (  # noqa: E402
    constant_initializer,
    glorot_normal_initializer,
    glorot_uniform_initializer,
    initializers,
    ones_initializer,
    random_normal_initializer,
    random_uniform_initializer,
    truncated_normal_initializer,
    variance_scaling_initializer,
    zeros_initializer,
)
from .nn_ops import (  # noqa: E402
    Print,
    arg_max,
    arg_min,
    assign,
    assign_add,
    assign_sub,
    boolean_mask,
    clip_by_global_norm,
    clip_by_norm,
    count_nonzero,
    cumsum,
    global_norm,
    local_variables_initializer,
    log_sigmoid,
    pad,
    sequence_mask,
    slice,
    split,
    squared_difference,
    stop_gradient,
    tables_initializer,
    to_float,
    to_int32,
    to_int64,
    unstack,
)
from .variables import (  # noqa: E402
    AUTO_REUSE,
    VariableScope,
    add_to_collection,
    get_collection,
    get_variable_scope,
)

math.log_sigmoid, math.squared_difference, math.count_nonzero, math.cumsum = (
    log_sigmoid,
    squared_difference,
    count_nonzero,
    cumsum,
)
for _k in (
    "conv2d",
    "conv2d_transpose",
    "max_pool",
    "avg_pool",
    "dropout",
    "in_top_k",
    "relu6",
    "xw_plus_b",
    "lrn",
    "local_response_normalization",
):
    setattr(nn, _k, getattr(_sys.modules[__name__ + ".nn_ops"], _k))
rnn_cell = _types.SimpleNamespace(
    RNNCell=rnn.RNNCell,
    BasicRNNCell=rnn.BasicRNNCell,
    BasicLSTMCell=rnn.BasicLSTMCell,
    LSTMCell=rnn.LSTMCell,
    GRUCell=rnn.GRUCell,
    MultiRNNCell=rnn.MultiRNNCell,
    DropoutWrapper=rnn.DropoutWrapper,
    LSTMStateTuple=rnn.LSTMStateTuple,
)
nn.rnn_cell = rnn_cell
for _k in ("static_rnn", "dynamic_rnn", "static_bidirectional_rnn", "bidirectional_dynamic_rnn"):
    setattr(nn, _k, getattr(rnn, _k))
from . import contrib  # noqa: E402  (`from tensorflow.contrib import rnn` maps to it)

losses.get_regularization_loss = layers.get_regularization_loss
GraphKeys.UPDATE_OPS = layers.UPDATE_OPS
GraphKeys.REGULARIZATION_LOSSES = "regularization_losses"


class GPUOptions:
    """Accepted and ignored (the device is the session's): `config.gpu_options.allow_growth = True`."""

    def __init__(self, **kwargs: object) -> None:
        self.allow_growth = False
        self.per_process_gpu_memory_fraction = 1.0
        self.__dict__.update(kwargs)


class ConfigProto:
    """tf.ConfigProto: its options are accepted and have no effect here."""

    def __init__(self, **kwargs: object) -> None:
        self.gpu_options = GPUOptions()
        self.allow_soft_placement = self.log_device_placement = False
        self.__dict__.update(kwargs)


__all__ = [
    *_o.__all__,
    "train",
    "cond",
    "while_loop",
    "FailedPreconditionError",
    "Graph",
    "GraphError",
    "InvalidArgumentError",
    "NotFoundError",
    "Operation",
    "Tensor",
    "TensorShape",
    "errors",
    "get_default_graph",
    "reset_default_graph",
    "Function",
    "function",
    "gradients",
    "export",
    "load",
    "InteractiveSession",
    "Session",
    "get_default_session",
    "graph_def",
    "GraphKeys",
    "Variable",
    "all_variables",
    "get_variable",
    "global_variables",
    "global_variables_initializer",
    "initialize_all_variables",
    "trainable_variables",
    "variables_initializer",
    "variable_scope",
    "nn",
    "math",
    "linalg",
    "losses",
    "signal",
    "spectral",
    "debugging",
    "random",
    "dtypes",
    "saved_model",
    "compat",
    "app",
    "flags",
    "logging",
    "layers",
    "rnn_cell",
    "contrib",
    "split",
    "unstack",
    "get_collection",
    "add_to_collection",
    "initializers",
    "ConfigProto",
    "AUTO_REUSE",
    "get_variable_scope",
    "Print",
    "boolean_mask",
    "arg_max",
    "arg_min",
    "assign",
    "assign_add",
    "assign_sub",
    "clip_by_global_norm",
    "clip_by_norm",
    "count_nonzero",
    "cumsum",
    "global_norm",
    "local_variables_initializer",
    "log_sigmoid",
    "pad",
    "sequence_mask",
    "slice",
    "squared_difference",
    "stop_gradient",
    "tables_initializer",
    "to_float",
    "to_int32",
    "to_int64",
    "VariableScope",
    "GPUOptions",
    "constant_initializer",
    "zeros_initializer",
    "ones_initializer",
    "random_normal_initializer",
    "truncated_normal_initializer",
    "random_uniform_initializer",
    "variance_scaling_initializer",
    "glorot_uniform_initializer",
    "glorot_normal_initializer",
    "summary",
    "RunMetadata",
    "RunOptions",
    "Summary",
]
