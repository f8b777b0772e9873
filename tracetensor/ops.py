"""Every op's forward and backward, side by side: the one place ops are defined.

Forward functions take the array module `xp` (numpy on the CPU, cupy on the GPU) and
arrays, never Tensors; the same code runs on both devices. A VJP gets a `Ctx`
(`ctx.args`, `ctx.out`, `ctx.attrs`, `ctx.needs`, `ctx.xp`) and the output gradient,
and returns one gradient per array input (None where not needed or not defined);
broadcast dimensions are reduced by the autograd engine, not here.
"""
from __future__ import annotations

import math

import numpy as np

from ._registry import Ctx, register
from .dtypes import get_default_dtype, promote
from .errors import Invalid


def _same(a, b):
    """PyTorch's promotion for two arrays (int64 + float32 -> float32)."""
    if a.dtype != b.dtype:
        dt = promote(a.dtype, b.dtype)
        return a.astype(dt, copy=False), b.astype(dt, copy=False)
    return a, b


def _bcast_explain(verb):
    def explain(shapes, dtypes, attrs):
        if all(isinstance(s, tuple) for s in shapes):
            try:
                np.broadcast_shapes(*shapes)
            except ValueError:
                return f"cannot {verb} shapes {shapes[0]} and {shapes[1]}: they do not broadcast"
        return None
    return explain


def _elementwise_cost(arrays, out, attrs):
    return out.size


# ----------------------------------------------------------------- binary arithmetic

@register("add", tf="AddV2", explain=_bcast_explain("add"), cost=_elementwise_cost)
def add(xp, a, b):
    a, b = _same(a, b)
    return a + b


@add.defvjp
def _(ctx: Ctx, g):
    return g, g


@register("sub", tf="Sub", explain=_bcast_explain("subtract"), cost=_elementwise_cost)
def sub(xp, a, b):
    a, b = _same(a, b)
    return a - b


@sub.defvjp
def _(ctx, g):
    return g, (-g if ctx.needs[1] else None)


@register("mul", tf="Mul", explain=_bcast_explain("multiply"), cost=_elementwise_cost)
def mul(xp, a, b):
    a, b = _same(a, b)
    return a * b


@mul.defvjp
def _(ctx, g):
    a, b = ctx.args
    return (g * b if ctx.needs[0] else None), (g * a if ctx.needs[1] else None)


@register("div", tf="RealDiv", explain=_bcast_explain("divide"), cost=_elementwise_cost)
def div(xp, a, b):
    """True division; integer inputs give the default float dtype, as in PyTorch."""
    a, b = _same(a, b)
    if a.dtype.kind in "biu":
        dt = get_default_dtype().np
        a, b = a.astype(dt), b.astype(dt)
    return a / b


@div.defvjp
def _(ctx, g):
    a, b = ctx.args
    ga = g / b if ctx.needs[0] else None
    gb = -g * ctx.out / b if ctx.needs[1] else None
    return ga, gb


@register("floordiv", tf="FloorDiv", explain=_bcast_explain("divide"), cost=_elementwise_cost)
def floordiv(xp, a, b):
    a, b = _same(a, b)
    return a // b


@floordiv.defvjp
def _(ctx, g):
    return None, None  # piecewise constant: zero almost everywhere, as in PyTorch's floor_divide


@register("pow", tf="Pow", explain=_bcast_explain("raise"), cost=_elementwise_cost)
def pow(xp, a, b):  # noqa: A001
    a, b = _same(a, b)
    return a ** b


@pow.defvjp
def _(ctx, g):
    a, b = ctx.args
    xp = ctx.xp
    ga = gb = None
    if ctx.needs[0]:
        ga = g * b * a ** (b - 1)
    if ctx.needs[1]:
        # d/db a**b = a**b * log(a); defined as 0 where a == 0 (as PyTorch does)
        with np.errstate(divide="ignore", invalid="ignore"):
            gb = g * ctx.out * xp.where(a > 0, xp.log(xp.where(a > 0, a, 1)), 0)
    return ga, gb


@register("maximum", tf="Maximum", explain=_bcast_explain("compare"), cost=_elementwise_cost)
def maximum(xp, a, b):
    a, b = _same(a, b)
    return xp.maximum(a, b)


@maximum.defvjp
def _(ctx, g):
    a, b = ctx.args
    # ties share the gradient equally, as PyTorch does
    wa = (a > b) + 0.5 * (a == b)
    return (g * wa if ctx.needs[0] else None), (g * (1 - wa) if ctx.needs[1] else None)


@register("minimum", tf="Minimum", explain=_bcast_explain("compare"), cost=_elementwise_cost)
def minimum(xp, a, b):
    a, b = _same(a, b)
    return xp.minimum(a, b)


@minimum.defvjp
def _(ctx, g):
    a, b = ctx.args
    wa = (a < b) + 0.5 * (a == b)
    return (g * wa if ctx.needs[0] else None), (g * (1 - wa) if ctx.needs[1] else None)


# ----------------------------------------------------------------- unary math

@register("neg", tf="Neg", cost=_elementwise_cost)
def neg(xp, a):
    return -a


@neg.defvjp
def _(ctx, g):
    return (-g,)


@register("exp", tf="Exp", cost=_elementwise_cost)
def exp(xp, a):
    return xp.exp(a)


@exp.defvjp
def _(ctx, g):
    return (g * ctx.out,)


@register("log", tf="Log", cost=_elementwise_cost)
def log(xp, a):
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf, as in PyTorch
        return xp.log(a)


@log.defvjp
def _(ctx, g):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (g / ctx.args[0],)


@register("sqrt", tf="Sqrt", cost=_elementwise_cost)
def sqrt(xp, a):
    with np.errstate(invalid="ignore"):
        return xp.sqrt(a)


@sqrt.defvjp
def _(ctx, g):
    with np.errstate(divide="ignore", invalid="ignore"):  # sqrt'(0) = inf, as in PyTorch
        return (g / (2 * ctx.out),)


@register("abs", tf="Abs", cost=_elementwise_cost)
def abs(xp, a):  # noqa: A001
    return xp.abs(a)


@abs.defvjp
def _(ctx, g):
    return (g * ctx.xp.sign(ctx.args[0]),)


@register("tanh", tf="Tanh", cost=_elementwise_cost)
def tanh(xp, a):
    return xp.tanh(a)


@tanh.defvjp
def _(ctx, g):
    return (g * (1 - ctx.out * ctx.out),)


@register("sigmoid", tf="Sigmoid", cost=_elementwise_cost)
def sigmoid(xp, a):
    # split by sign so neither branch overflows
    with np.errstate(over="ignore"):
        e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


@sigmoid.defvjp
def _(ctx, g):
    return (g * ctx.out * (1 - ctx.out),)


@register("relu", tf="Relu", cost=_elementwise_cost)
def relu(xp, a):
    return xp.maximum(a, 0)


@relu.defvjp
def _(ctx, g):
    return (g * (ctx.out > 0),)


# ----------------------------------------------------------------- linear algebra

def _matmul_cost(arrays, out, attrs):
    a = arrays[0]
    k = a.shape[-1] if a.ndim else 1
    return 2 * out.size * k


def _matmul_explain(shapes, dtypes, attrs):
    return f"cannot multiply {tuple(shapes[0])} by {tuple(shapes[1])}"


@register("matmul", tf="MatMul", cost=_matmul_cost, explain=_matmul_explain)
def matmul(xp, a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise Invalid(f"both arguments must be at least 1-D, got shapes {a.shape} and {b.shape}")
    a, b = _same(a, b)
    return a @ b


def _swap(x):
    return x.swapaxes(-1, -2) if x.ndim >= 2 else x


@matmul.defvjp
def _(ctx, g):
    a, b = ctx.args
    xp = ctx.xp
    ga = gb = None
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if ctx.needs[0] else None), (g * a if ctx.needs[1] else None)
    if a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
        if ctx.needs[0]:
            ga = (xp.expand_dims(g, -2) @ _swap(b))[..., 0, :]
        if ctx.needs[1]:
            gb = xp.expand_dims(a, -1) * xp.expand_dims(g, -2)
        return ga, gb
    if b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
        if ctx.needs[0]:
            ga = xp.expand_dims(g, -1) * b
        if ctx.needs[1]:
            gb = (_swap(a) @ xp.expand_dims(g, -1))[..., 0]
        return ga, gb
    if ctx.needs[0]:
        ga = g @ _swap(b)
    if ctx.needs[1]:
        gb = _swap(a) @ g
    return ga, gb


# ----------------------------------------------------------------- reductions

def _axis_back(xp, g, shape, axis, keepdims):
    """Reshapes a reduced gradient so it broadcasts against the input."""
    if axis is None:
        return xp.broadcast_to(g, shape) if keepdims or g.ndim == 0 else g
    if not keepdims:
        axes = (axis,) if isinstance(axis, int) else axis
        g = xp.expand_dims(g, tuple(ax % len(shape) for ax in axes))
    return xp.broadcast_to(g, shape)


def _norm_axis(axis, ndim):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(int(a) for a in axis)
    return int(axis)


@register("sum", tf="Sum")
def sum(xp, a, axis=None, keepdims=False):  # noqa: A001
    if a.dtype.kind in "bu" or (a.dtype.kind == "i" and a.dtype.itemsize < 8):
        return a.sum(axis=axis, keepdims=keepdims, dtype=np.int64)  # PyTorch sums ints to int64
    return a.sum(axis=axis, keepdims=keepdims)


@sum.defvjp
def _(ctx, g):
    a = ctx.args[0]
    return (_axis_back(ctx.xp, g, a.shape, ctx.attrs["axis"], ctx.attrs["keepdims"]),)


@register("mean", tf="Mean")
def mean(xp, a, axis=None, keepdims=False):
    if a.dtype.kind not in "fc":
        raise Invalid(f"mean needs a floating point or complex input, got {a.dtype}")
    return a.mean(axis=axis, keepdims=keepdims)


@mean.defvjp
def _(ctx, g):
    a = ctx.args[0]
    n = a.size // max(ctx.out.size, 1)
    return (_axis_back(ctx.xp, g / n, a.shape, ctx.attrs["axis"], ctx.attrs["keepdims"]),)


def _extreme_vjp(ctx, g):
    """max/min: the gradient goes to the first extreme element (PyTorch's choice
    for max(dim)); for a full reduction it is shared evenly among ties."""
    a = ctx.args[0]
    xp = ctx.xp
    axis, keepdims = ctx.attrs["axis"], ctx.attrs["keepdims"]
    out = _axis_back(xp, ctx.out, a.shape, axis, keepdims)
    gb = _axis_back(xp, g, a.shape, axis, keepdims)
    mask = a == out
    if axis is None:
        return (gb * mask / max(int(mask.sum()), 1),)
    if isinstance(axis, int):
        first = xp.cumsum(mask, axis=axis) == 1
        return (gb * (mask & first),)
    counts = mask.sum(axis=axis, keepdims=True)
    return (gb * mask / counts,)


@register("amax", tf="Max")
def amax(xp, a, axis=None, keepdims=False):
    if a.size == 0:
        raise Invalid("max of an empty tensor")
    return a.max(axis=axis, keepdims=keepdims)


amax.defvjp(_extreme_vjp)


@register("amin", tf="Min")
def amin(xp, a, axis=None, keepdims=False):
    if a.size == 0:
        raise Invalid("min of an empty tensor")
    return a.min(axis=axis, keepdims=keepdims)


amin.defvjp(_extreme_vjp)


@register("log_softmax", tf="LogSoftmax")
def log_softmax(xp, a, axis=-1):
    m = a.max(axis=axis, keepdims=True)
    s = a - m
    return s - xp.log(xp.exp(s).sum(axis=axis, keepdims=True))


@log_softmax.defvjp
def _(ctx, g):
    axis = ctx.attrs["axis"]
    return (g - ctx.xp.exp(ctx.out) * g.sum(axis=axis, keepdims=True),)


@register("softmax", tf="Softmax")
def softmax(xp, a, axis=-1):
    e = xp.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@softmax.defvjp
def _(ctx, g):
    y = ctx.out
    return (y * (g - (g * y).sum(axis=ctx.attrs["axis"], keepdims=True)),)


# ----------------------------------------------------------------- shape

def _reshape_explain(shapes, dtypes, attrs):
    shape = attrs.get("shape")
    return f"cannot reshape a tensor of shape {tuple(shapes[0])} ({math.prod(shapes[0])} elements) into {shape}"


@register("reshape", tf="Reshape", explain=_reshape_explain, cost=lambda arrays, out, attrs: 0)
def reshape(xp, a, shape):
    return a.reshape(shape)


@reshape.defvjp
def _(ctx, g):
    return (g.reshape(ctx.args[0].shape),)


@register("permute", tf="Transpose", cost=lambda arrays, out, attrs: 0)
def permute(xp, a, axes):
    if sorted(ax % max(a.ndim, 1) for ax in axes) != list(range(a.ndim)) or len(axes) != a.ndim:
        raise Invalid(f"axes {tuple(axes)} are not a permutation of the {a.ndim} dimensions of {a.shape}")
    return a.transpose(axes)


@permute.defvjp
def _(ctx, g):
    axes = [ax % ctx.args[0].ndim for ax in ctx.attrs["axes"]]
    return (g.transpose(np.argsort(axes)),)


def _has_advanced(index):
    return any(not isinstance(i, (slice, int, type(None), type(Ellipsis))) for i in index)


@register("getitem", tf="StridedSlice", cost=lambda arrays, out, attrs: 0)
def getitem(xp, a, index):
    return a[index]


@getitem.defvjp
def _(ctx, g):
    a = ctx.args[0]
    xp = ctx.xp
    index = ctx.attrs["index"]
    z = xp.zeros(a.shape, dtype=g.dtype)
    if _has_advanced(index):
        if xp is np:
            np.add.at(z, index, g)  # repeated indices accumulate
        else:
            import cupyx

            cupyx.scatter_add(z, index, g)
    else:
        z[index] += g
    return (z,)


@register("cast", tf="Cast", cost=lambda arrays, out, attrs: 0)
def cast(xp, a, dtype):
    return a.astype(dtype)


@cast.defvjp
def _(ctx, g):
    src = ctx.args[0].dtype
    return (g.astype(src) if src.kind in "fc" else None,)


@register("where", tf="SelectV2", explain=_bcast_explain("select between"), cost=_elementwise_cost)
def where(xp, cond, a, b):
    a, b = _same(a, b)
    return xp.where(cond, a, b)


@where.defvjp
def _(ctx, g):
    c = ctx.args[0]
    z = ctx.xp.zeros((), dtype=g.dtype)
    return (None, ctx.xp.where(c, g, z) if ctx.needs[1] else None,
            ctx.xp.where(c, z, g) if ctx.needs[2] else None)


@register("to_device", tf="Copy", cost=lambda arrays, out, attrs: 0)
def to_device_op(xp, a, device):
    from .device import to_device

    return to_device(a, device)


@to_device_op.defvjp
def _(ctx, g):
    from .device import to_device

    return (to_device(g, ctx.attrs["device"]),)


def _index_cost(arrays, out, attrs):
    return arrays[0].size


@register("argmax", tf="ArgMax", cost=_index_cost)
def argmax(xp, a, axis=None, keepdims=False):
    if axis is None:
        r = a.argmax()
        return r.reshape((1,) * a.ndim) if keepdims else r
    return xp.expand_dims(a.argmax(axis=axis), axis) if keepdims else a.argmax(axis=axis)


@register("argmin", tf="ArgMin", cost=_index_cost)
def argmin(xp, a, axis=None, keepdims=False):
    if axis is None:
        r = a.argmin()
        return r.reshape((1,) * a.ndim) if keepdims else r
    return xp.expand_dims(a.argmin(axis=axis), axis) if keepdims else a.argmin(axis=axis)
