"""TF1's `tf.layers` (dense, conv2d, pooling, dropout, flatten, batch_normalization) and the
variable initializers they take (`tf.zeros_initializer`, `tf.glorot_uniform_initializer`, ...).
Variables are named as TF names them (`dense/kernel`, `dense_1/bias`, `conv2d/kernel`) and a
layer called again with the same `name` and `reuse=True` uses the same variables."""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .core import Graph, InvalidArgumentError, Tensor, get_default_graph
from .nn_ops import avg_pool, max_pool
from .nn_ops import conv2d as _conv2d
from .nn_ops import dropout as _dropout
from .ops import (
    _tensors,
    add,
    as_dtype,
    cast,
    constant,
    matmul,
    moments,
    multiply,
    random_normal,
    random_uniform,
    reshape,
    subtract,
    truncated_normal,
    where,
)
from .ops import batch_normalization as _batch_norm
from .ops import float32 as _float32
from .variables import get_variable, variable_scope

UPDATE_OPS = "update_ops"

# --------------------------------------------------------------------------- initializers


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """TF's fan_in / fan_out: a conv kernel (kh, kw, in, out) counts its receptive field."""
    shape = [builtins.int(s) for s in shape]
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = math.prod(shape[:-2])
    return shape[-2] * field, shape[-1] * field


class Initializer:
    """Called as `init(shape, dtype)` (get_variable does) to give the initial-value tensor."""

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        raise NotImplementedError


class constant_initializer(Initializer):
    def __init__(self, value: Any = 0, dtype: Any = _float32, verify_shape: bool = False) -> None:
        self.value, self.dtype = value, dtype

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        dt = as_dtype(dtype or self.dtype)
        v = np.asarray(self.value, dtype=dt.np)
        if v.size != 1 and v.size != math.prod(shape):
            raise InvalidArgumentError(f"constant_initializer: {v.size} values cannot fill the shape {list(shape)}")
        return constant(v.reshape(tuple(shape)) if v.size != 1 else v, dtype=dt, shape=shape)


class zeros_initializer(constant_initializer):
    def __init__(self, dtype: Any = _float32) -> None:
        super().__init__(0, dtype)


class ones_initializer(constant_initializer):
    def __init__(self, dtype: Any = _float32) -> None:
        super().__init__(1, dtype)


class random_normal_initializer(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None, dtype: Any = _float32) -> None:
        self.mean, self.stddev, self.seed, self.dtype = mean, stddev, seed, dtype

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_normal(shape, self.mean, self.stddev, dtype or self.dtype, seed=self.seed)


class truncated_normal_initializer(random_normal_initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None, dtype: Any = _float32) -> None:
        super().__init__(mean, stddev, seed, dtype)

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        return truncated_normal(shape, self.mean, self.stddev, dtype or self.dtype, seed=self.seed)


class random_uniform_initializer(Initializer):
    def __init__(
        self, minval: float = 0.0, maxval: float = 1.0, seed: int | None = None, dtype: Any = _float32
    ) -> None:
        self.minval, self.maxval, self.seed, self.dtype = minval, maxval, seed, dtype

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        return random_uniform(shape, self.minval, self.maxval, dtype or self.dtype, seed=self.seed)


class variance_scaling_initializer(Initializer):
    """scale / fan (fan_in, fan_out or their mean), as a truncated normal or a uniform."""

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        dtype: Any = _float32,
    ) -> None:
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise InvalidArgumentError(f"mode must be fan_in, fan_out or fan_avg, got {mode!r}")
        self.scale, self.mode, self.distribution, self.seed, self.dtype = scale, mode, distribution, seed, dtype

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> Tensor:
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, fan)
        dt = dtype or self.dtype
        if self.distribution == "uniform":
            lim = math.sqrt(3.0 * var)
            return random_uniform(shape, -lim, lim, dt, seed=self.seed)
        if self.distribution in ("normal", "truncated_normal"):
            return truncated_normal(shape, 0.0, math.sqrt(var) / 0.87962566103423978, dt, seed=self.seed)
        return random_normal(shape, 0.0, math.sqrt(var), dt, seed=self.seed)  # "untruncated_normal"


class glorot_uniform_initializer(variance_scaling_initializer):
    def __init__(self, seed: int | None = None, dtype: Any = _float32) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)


class glorot_normal_initializer(variance_scaling_initializer):
    def __init__(self, seed: int | None = None, dtype: Any = _float32) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)


def xavier_initializer(uniform: bool = True, seed: int | None = None, dtype: Any = _float32) -> Initializer:
    """tf.contrib.layers.xavier_initializer: Glorot uniform (or normal)."""
    return glorot_uniform_initializer(seed, dtype) if uniform else glorot_normal_initializer(seed, dtype)


def _init(initializer: Any, default: Initializer) -> Any:
    return default if initializer is None else initializer


# --------------------------------------------------------------------------- layer names


def unique_layer_name(base: str, graph: Graph | None = None) -> str:
    """`dense`, then `dense_1`, ... within the current scope (TF's layer naming)."""
    g = graph or get_default_graph()
    counts: dict[str, int] = g.__dict__.setdefault("_tf_layer_names", {})
    scope = g.get_name_scope()
    key = f"{scope}/{base}"
    n = counts.get(key, 0)
    counts[key] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _layer_name(name: str | None, base: str, reuse: Any) -> str:
    if name is not None:
        return name
    if reuse:
        raise InvalidArgumentError(f"a {base} layer with reuse=True needs the name= of the layer it reuses")
    return unique_layer_name(base)


# --------------------------------------------------------------------------- layers


def dense(
    inputs: Any,
    units: int,
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = None,
    bias_initializer: Any = None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    bias_constraint: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """activation(inputs @ kernel + bias) over the last dimension; variables `NAME/kernel`
    (in, units) and `NAME/bias` (units,)."""
    (x,) = _tensors(inputs)
    if x._dims is None or x._dims[-1] is None:
        raise InvalidArgumentError(f"dense: the last dimension of '{x.name}' (shape {x.shape}) must be known")
    d_in = x._dims[-1]
    lname = _layer_name(name, "dense", reuse)
    with variable_scope(lname, reuse=reuse):
        kernel = _kernel([d_in, units], x.dtype, kernel_initializer, kernel_regularizer, trainable)
        y = matmul(x, kernel, name="MatMul" if len(x._dims) == 2 else "Tensordot")  # any leading dimensions
        return _bias_activation(y, use_bias, units, bias_initializer, bias_regularizer, trainable, activation)


def _regularize(reg: Any, var: Tensor) -> None:
    if reg is not None:
        loss = reg(var)
        if loss is not None:
            var.graph.add_to_collection("regularization_losses", loss)


def _kernel(shape: list[Any], dtype: Any, initializer: Any, regularizer: Any, trainable: bool) -> Tensor:
    """A layer's `kernel` variable (Glorot uniform unless told), its regularization loss noted."""
    kernel = get_variable("kernel", shape, dtype, _init(initializer, glorot_uniform_initializer()), trainable=trainable)
    _regularize(regularizer, kernel)
    return kernel


def _bias_activation(
    y: Tensor,
    use_bias: bool,
    units: int,
    initializer: Any,
    regularizer: Any,
    trainable: bool,
    activation: Any,
    channels_first: bool = False,
) -> Tensor:
    """The end of dense and the convolutions: `+ bias` (a `bias` variable, zeros unless told,
    over the channel axis) when `use_bias`, then `activation` if any."""
    if use_bias:
        bias = get_variable("bias", [units], y.dtype, _init(initializer, zeros_initializer()), trainable=trainable)
        _regularize(regularizer, bias)
        y = add(y, reshape(bias, [units, 1, 1]) if channels_first else bias, name="BiasAdd")
    return activation(y) if activation is not None else y


def _pair(v: Any) -> tuple[int, int]:
    return (
        (builtins.int(v), builtins.int(v))
        if isinstance(v, (int, np.integer))
        else (builtins.int(v[0]), builtins.int(v[1]))
    )


def _df(data_format: str) -> str:
    if data_format not in ("channels_last", "channels_first"):
        raise InvalidArgumentError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    return "NHWC" if data_format == "channels_last" else "NCHW"


def conv2d(
    inputs: Any,
    filters: int,
    kernel_size: Any,
    strides: Any = (1, 1),
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: Any = (1, 1),
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = None,
    bias_initializer: Any = None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    bias_constraint: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """A 2-D convolution layer: variables `NAME/kernel` (kh, kw, in, filters) and `NAME/bias`."""
    (x,) = _tensors(inputs)
    fmt = _df(data_format)
    c_axis = -1 if fmt == "NHWC" else 1
    if x._dims is None or len(x._dims) != 4 or x._dims[c_axis] is None:
        raise InvalidArgumentError(f"conv2d: '{x.name}' (shape {x.shape}) must be 4-D with known channels")
    kh, kw = _pair(kernel_size)
    lname = _layer_name(name, "conv2d", reuse)
    with variable_scope(lname, reuse=reuse):
        kernel = _kernel([kh, kw, x._dims[c_axis], filters], x.dtype, kernel_initializer, kernel_regularizer, trainable)
        y = _conv2d(
            x, kernel, strides=_pair(strides), padding=padding.upper(), data_format=fmt, dilations=_pair(dilation_rate)
        )
        return _bias_activation(
            y,
            use_bias,
            filters,
            bias_initializer,
            bias_regularizer,
            trainable,
            activation,
            channels_first=fmt == "NCHW",
        )


def conv2d_transpose(
    inputs: Any,
    filters: int,
    kernel_size: Any,
    strides: Any = (1, 1),
    padding: str = "valid",
    data_format: str = "channels_last",
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = None,
    bias_initializer: Any = None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    bias_constraint: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """A transposed 2-D convolution layer (upsampling): variables `NAME/kernel` (kh, kw,
    filters, in) and `NAME/bias`; the output is in * stride ("same") or (in - 1) * stride + k."""
    from .nn_ops import conv2d_transpose as _conv_t
    from .ops import shape, strided_slice

    (x,) = _tensors(inputs)
    fmt = _df(data_format)
    h_ax, c_ax = (1, 3) if fmt == "NHWC" else (2, 1)
    if x._dims is None or len(x._dims) != 4 or x._dims[c_ax] is None or None in x._dims[h_ax : h_ax + 2]:
        raise InvalidArgumentError(
            f"conv2d_transpose: '{x.name}' (shape {x.shape}) must be 4-D with known height, width and channels"
        )
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(strides)
    h, w = x._dims[h_ax], x._dims[h_ax + 1]
    if padding.lower() == "same":
        oh, ow = h * sh, w * sw
    else:
        oh, ow = (h - 1) * sh + kh, (w - 1) * sw + kw
    lname = _layer_name(name, "conv2d_transpose", reuse)
    with variable_scope(lname, reuse=reuse):
        kernel = _kernel([kh, kw, filters, x._dims[c_ax]], x.dtype, kernel_initializer, kernel_regularizer, trainable)
        batch = x._dims[0] if x._dims[0] is not None else strided_slice(shape(x), 0)
        out_shape = [batch, oh, ow, filters] if fmt == "NHWC" else [batch, filters, oh, ow]
        y = _conv_t(x, kernel, out_shape, (sh, sw), padding.upper(), data_format=fmt)
        return _bias_activation(
            y,
            use_bias,
            filters,
            bias_initializer,
            bias_regularizer,
            trainable,
            activation,
            channels_first=fmt == "NCHW",
        )


def max_pooling2d(
    inputs: Any,
    pool_size: Any,
    strides: Any,
    padding: str = "valid",
    data_format: str = "channels_last",
    name: str | None = None,
) -> Tensor:
    return max_pool(
        inputs,
        _pair(pool_size),
        _pair(strides),
        padding.upper(),
        _df(data_format),
        name=name or unique_layer_name("max_pooling2d"),
    )


def average_pooling2d(
    inputs: Any,
    pool_size: Any,
    strides: Any,
    padding: str = "valid",
    data_format: str = "channels_last",
    name: str | None = None,
) -> Tensor:
    return avg_pool(
        inputs,
        _pair(pool_size),
        _pair(strides),
        padding.upper(),
        _df(data_format),
        name=name or unique_layer_name("average_pooling2d"),
    )


def dropout(
    inputs: Any,
    rate: Any = 0.5,
    noise_shape: Any = None,
    seed: int | None = None,
    training: Any = False,
    name: str | None = None,
) -> Tensor:
    """Drops with probability `rate` only while `training` (a Python bool or a bool tensor)."""
    name = name or unique_layer_name("dropout")
    if isinstance(training, Tensor):
        (x,) = _tensors(inputs)
        rate_t = multiply(cast(training, x.dtype), rate)  # rate 0 (identity) when not training
        return _dropout(x, rate=rate_t, noise_shape=noise_shape, seed=seed, name=name)
    if not training:
        return _tensors(inputs)[0]
    return _dropout(inputs, rate=rate, noise_shape=noise_shape, seed=seed, name=name)


def flatten(inputs: Any, name: str | None = None, data_format: str = "channels_last") -> Tensor:
    """(batch, everything else): needs the non-batch dimensions to be known."""
    (x,) = _tensors(inputs)
    if x._dims is None or any(d is None for d in x._dims[1:]):
        raise InvalidArgumentError(f"flatten: '{x.name}' (shape {x.shape}) needs known non-batch dimensions")
    return reshape(x, [-1, math.prod(x._dims[1:])], name=name or unique_layer_name("flatten"))


def batch_normalization(
    inputs: Any,
    axis: int = -1,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    beta_initializer: Any = None,
    gamma_initializer: Any = None,
    moving_mean_initializer: Any = None,
    moving_variance_initializer: Any = None,
    beta_regularizer: Any = None,
    gamma_regularizer: Any = None,
    beta_constraint: Any = None,
    gamma_constraint: Any = None,
    training: Any = False,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
    **_ignored: Any,
) -> Tensor:
    """Batch statistics while `training` (a Python bool or a bool tensor), the moving ones
    otherwise. The moving averages are updated by ops put in `tf.GraphKeys.UPDATE_OPS`:
    run them with the train op (`with tf.control_dependencies(update_ops): ...`)."""
    (x,) = _tensors(inputs)
    if x._dims is None:
        raise InvalidArgumentError(f"batch_normalization: '{x.name}' needs a known rank")
    nd = len(x._dims)
    ax = axis % nd
    c = x._dims[ax]
    if c is None:
        raise InvalidArgumentError(f"batch_normalization: axis {axis} of '{x.name}' (shape {x.shape}) is unknown")
    red = [i for i in range(nd) if i != ax]
    bshape = [c if i == ax else 1 for i in range(nd)]
    lname = _layer_name(name, "batch_normalization", reuse)
    with variable_scope(lname, reuse=reuse):
        gamma = (
            get_variable("gamma", [c], x.dtype, _init(gamma_initializer, ones_initializer()), trainable=trainable)
            if scale
            else None
        )
        beta = (
            get_variable("beta", [c], x.dtype, _init(beta_initializer, zeros_initializer()), trainable=trainable)
            if center
            else None
        )
        mm = get_variable(
            "moving_mean", [c], x.dtype, _init(moving_mean_initializer, zeros_initializer()), trainable=False
        )
        mv = get_variable(
            "moving_variance", [c], x.dtype, _init(moving_variance_initializer, ones_initializer()), trainable=False
        )

        def shaped(t: Any) -> Any:
            return t if t is None or ax == nd - 1 else reshape(t, bshape)

        if training is False or training is None:
            mean, var = mm, mv
        else:
            bm, bv = moments(x, red, name="moments")
            if isinstance(training, Tensor):
                decay = multiply(cast(training, x.dtype), 1.0 - momentum)
                mean, var = where(training, bm, mm), where(training, bv, mv)
            else:
                decay, mean, var = 1.0 - momentum, bm, bv
            g = x.graph
            g.add_to_collection(UPDATE_OPS, mm.assign_sub(multiply(subtract(mm, bm), decay), name="AssignMovingAvg"))
            g.add_to_collection(UPDATE_OPS, mv.assign_sub(multiply(subtract(mv, bv), decay), name="AssignMovingAvg_1"))
        return _batch_norm(x, shaped(mean), shaped(var), shaped(beta), shaped(gamma), epsilon)


def l2_regularizer(scale: float, scope: str | None = None) -> Any:
    """tf.contrib.layers.l2_regularizer: w -> scale * sum(w ** 2) / 2, for `kernel_regularizer=`."""
    from .ops import l2_loss

    def reg(w: Tensor) -> Tensor:
        return multiply(l2_loss(w), float(scale), name="l2_regularizer")

    return reg


def l1_regularizer(scale: float, scope: str | None = None) -> Any:
    """tf.contrib.layers.l1_regularizer: w -> scale * sum(|w|)."""
    from .ops import abs as _abs
    from .ops import reduce_sum

    def reg(w: Tensor) -> Tensor:
        return multiply(reduce_sum(_abs(w)), float(scale), name="l1_regularizer")

    return reg


def get_regularization_loss(scope: str | None = None, name: str = "total_regularization_loss") -> Tensor:
    """tf.losses.get_regularization_loss: the sum of the layers' regularization losses (0 if none)."""
    from .ops import add_n
    from .variables import get_collection

    losses = get_collection("regularization_losses", scope)
    return add_n(losses, name=name) if losses else constant(0.0, name=name)


class _Namespace:
    pass


def _init_namespace() -> Any:
    """`tf.initializers` / `tf.keras.initializers`-style names for the classes above."""
    ns = _Namespace()
    for k, v in {
        "zeros": zeros_initializer,
        "ones": ones_initializer,
        "constant": constant_initializer,
        "random_normal": random_normal_initializer,
        "truncated_normal": truncated_normal_initializer,
        "random_uniform": random_uniform_initializer,
        "variance_scaling": variance_scaling_initializer,
        "glorot_uniform": glorot_uniform_initializer,
        "glorot_normal": glorot_normal_initializer,
    }.items():
        setattr(ns, k, v)
    return ns


initializers = _init_namespace()
