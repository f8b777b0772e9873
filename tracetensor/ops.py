"""Every op's forward and backward, side by side: the one place ops are defined.

Forward functions take the array module `xp` (numpy on the CPU, cupy on the GPU) and
arrays, never Tensors; the same code runs on both devices. A VJP gets a `Ctx`
(`ctx.args`, `ctx.out`, `ctx.attrs`, `ctx.needs`, `ctx.xp`) and the output gradient,
and returns one gradient per array input (None where not needed or not defined);
broadcast dimensions are reduced by the autograd engine, not here.

One section per topic, in this order (a new op goes in its topic's section; the helpers
every section uses, promotion, broadcast errors and costs, come first): binary arithmetic;
elementwise math (rounding, logs, powers, special functions); identity, copies and
casts; comparisons and logic; reductions; shape, joining and reordering; indexing; linear
algebra and matrices; sorting and searching; activations; normalization and norms; losses;
convolution and pooling (NCHW, and TF's NHWC layouts); FFT; random sampling; optimizer
updates; shapes as values.
"""

from __future__ import annotations

import math

import numpy as np

from ._registry import Ctx, register
from .dtypes import get_default_dtype, promote
from .errors import Invalid, InvalidDType


def _same(a, b):
    """PyTorch's promotion for two arrays (int64 + float32 -> float32)."""
    if a.dtype is not b.dtype and a.dtype != b.dtype:  # builtin dtypes are singletons: `is` is the fast path
        dt = promote(a.dtype, b.dtype)
        return a.astype(dt, copy=False), b.astype(dt, copy=False)
    return a, b


def _conj(x):
    """Complex VJPs take conjugates (PyTorch's convention: grad = dL/dRe + i dL/dIm)."""
    return x.conj() if x.dtype.kind == "c" else x


def _bcast_explain(verb):
    def explain(shapes, dtypes, attrs):
        if all(isinstance(s, tuple) for s in shapes):
            try:
                np.broadcast_shapes(*shapes)
            except ValueError:
                return f"cannot {verb} shapes {shapes[0]} and {shapes[1]}: they do not broadcast"
        return None

    return explain


def _no_cost(arrays, out, attrs):
    return 0


def _in_cost(k):
    """FLOPs of a reduction-like op: about k per input element (the output is smaller)."""
    return lambda arrays, out, attrs: k * arrays[0].size


def _index_cost(arrays, out, attrs):
    return arrays[0].size


# ----------------------------------------------------------------- binary arithmetic


@register("add", tf="AddV2", explain=_bcast_explain("add"))
def add(xp, a, b):
    a, b = _same(a, b)
    return a + b


_ONES: dict[tuple, np.ndarray] = {}


def _ones(xp, shape, dtype):
    """A ones array for sums done as BLAS products; numpy's are cached (read-only, so they
    cannot be corrupted), since np.ones costs as much as the product itself here."""
    if xp is not np:
        return xp.ones(shape, dtype)
    key = (shape, dtype.char)
    o = _ONES.get(key)
    if o is None:
        if len(_ONES) > 64:  # a bound for programs that see many shapes
            _ONES.clear()
        o = _ONES[key] = np.ones(shape, dtype)
        o.flags.writeable = False
    return o


def _bias_grad(xp, g, b):
    """The gradient of a bias b (C,) added to a batch (N, C): g.sum(0), as a product with a
    ones vector (BLAS gemv is 2-3x faster than numpy's column reduction); None if b is not
    such a bias (the engine then reduces broadcast dimensions itself)."""
    if g.ndim == 2 and b.ndim == 1 and g.shape[0] > 1 and b.shape[0] == g.shape[1] and g.dtype.char in "fd":
        return _ones(xp, g.shape[0], g.dtype) @ g
    return None


@add.defvjp
def _(ctx: Ctx, g):
    gb = _bias_grad(ctx.xp, g, ctx.args[1]) if ctx.needs[1] else None
    return g, (g if gb is None else gb)


@register("sub", tf="Sub", explain=_bcast_explain("subtract"))
def sub(xp, a, b):
    a, b = _same(a, b)
    return a - b


@sub.defvjp
def _(ctx, g):
    return g, (-g if ctx.needs[1] else None)


@register("mul", tf="Mul", explain=_bcast_explain("multiply"))
def mul(xp, a, b):
    a, b = _same(a, b)
    return a * b


@mul.defvjp
def _(ctx, g):
    a, b = _same(*ctx.args)  # promoted as the forward was: float32 * int64 gives float32 gradients
    return (g * _conj(b) if ctx.needs[0] else None), (g * _conj(a) if ctx.needs[1] else None)


@register("div", tf="RealDiv", explain=_bcast_explain("divide"))
def div(xp, a, b):
    """True division; integer inputs give the default float dtype, as in PyTorch."""
    a, b = _same(a, b)
    if a.dtype.kind in "biu":
        dt = get_default_dtype().np
        a, b = a.astype(dt), b.astype(dt)
    return a / b


@div.defvjp
def _(ctx, g):
    a, b = _same(*ctx.args)
    ga = g / _conj(b) if ctx.needs[0] else None
    gb = -g * _conj(ctx.out / b) if ctx.needs[1] else None
    return ga, gb


@register("floordiv", tf="FloorDiv", explain=_bcast_explain("divide"))
def floordiv(xp, a, b):
    a, b = _same(a, b)
    return a // b


@floordiv.defvjp
def _(ctx, g):
    return None, None  # piecewise constant: zero almost everywhere, as in PyTorch's floor_divide


@register("remainder", errstate="all", tf="FloorMod", explain=_bcast_explain("divide"))
def remainder(xp, a, b):
    """Python's `%`: the result has the sign of the divisor (torch.remainder, tf.math.floormod)."""
    a, b = _same(a, b)
    return xp.remainder(a, b)


@remainder.defvjp
def _(ctx, g):
    a, b = ctx.args
    gb = None
    if ctx.needs[1]:
        gb = -g * ctx.xp.floor(a / b)  # a % b = a - floor(a / b) * b
    return g, gb


@register("pow", errstate="vjp", tf="Pow", explain=_bcast_explain("raise"))
def pow(xp, a, b):
    a, b = _same(a, b)
    return a**b


@pow.defvjp
def _(ctx, g):
    a, b = _same(*ctx.args)
    xp = ctx.xp
    ga = gb = None
    if ctx.needs[0]:
        ga = g * b * a ** (b - 1)
    if ctx.needs[1]:
        # d/db a**b = a**b * log(a); defined as 0 where a == 0 (as PyTorch does)
        gb = g * ctx.out * xp.where(a > 0, xp.log(xp.where(a > 0, a, 1)), 0)
    return ga, gb


@register("maximum", tf="Maximum", explain=_bcast_explain("compare"))
def maximum(xp, a, b):
    a, b = _same(a, b)
    return xp.maximum(a, b)


@maximum.defvjp
def _(ctx, g):
    a, b = ctx.args
    # ties share the gradient equally, as PyTorch does (weights in g's dtype: no float64)
    wa = ((a > b) + 0.5 * (a == b)).astype(g.dtype, copy=False)
    return (g * wa if ctx.needs[0] else None), (g * (1 - wa) if ctx.needs[1] else None)


@register("minimum", tf="Minimum", explain=_bcast_explain("compare"))
def minimum(xp, a, b):
    a, b = _same(a, b)
    return xp.minimum(a, b)


@minimum.defvjp
def _(ctx, g):
    a, b = ctx.args
    wa = ((a < b) + 0.5 * (a == b)).astype(g.dtype, copy=False)
    return (g * wa if ctx.needs[0] else None), (g * (1 - wa) if ctx.needs[1] else None)


@register("add_n", tf="AddN", explain=_bcast_explain("add"))
def add_n(xp, *arrays):
    """Sum of any number of tensors (TF's add_n, the engine's gradient sums)."""
    if not arrays:
        raise Invalid("add_n needs at least one input")
    out = arrays[0]
    for a in arrays[1:]:
        out, a = _same(out, a)
        out = out + a
    return out if len(arrays) > 1 else out.copy()


@add_n.defvjp
def _(ctx, g):
    return tuple(g if n else None for n in ctx.needs)


# ----------------------------------------------------------------- elementwise math (rounding, logs, powers, special)


@register("neg", tf="Neg")
def neg(xp, a):
    return -a


@neg.defvjp
def _(ctx, g):
    return (-g,)


@register("exp", tf="Exp")
def exp(xp, a):
    return xp.exp(a)


@exp.defvjp
def _(ctx, g):
    return (g * _conj(ctx.out),)


@register("log", errstate="all", tf="Log")
def log(xp, a):
    # log(0) = -inf, as in PyTorch
    return xp.log(a)


@log.defvjp
def _(ctx, g):
    return (g / _conj(ctx.args[0]),)


@register("sqrt", errstate="all", tf="Sqrt")
def sqrt(xp, a):
    return xp.sqrt(a)


@sqrt.defvjp
def _(ctx, g):
    # sqrt'(0) = inf, as in PyTorch
    return (g / (2 * ctx.out),)


@register("abs", tf="Abs")
def abs(xp, a):
    return xp.abs(a)


@abs.defvjp
def _(ctx, g):
    return (g * ctx.xp.sign(ctx.args[0]),)


@register("tanh", tf="Tanh")
def tanh(xp, a):
    return xp.tanh(a)


@tanh.defvjp
def _(ctx, g):
    return (g * (1 - ctx.out * ctx.out),)


@register("sigmoid", errstate="forward", tf="Sigmoid")
def sigmoid(xp, a):
    # split by sign so neither branch overflows
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


@sigmoid.defvjp
def _(ctx, g):
    return (g * ctx.out * (1 - ctx.out),)


@register("sin", tf="Sin")
def sin(xp, a):
    return xp.sin(a)


@sin.defvjp
def _(ctx, g):
    return (g * ctx.xp.cos(ctx.args[0]),)


@register("cos", tf="Cos")
def cos(xp, a):
    return xp.cos(a)


@cos.defvjp
def _(ctx, g):
    return (-g * ctx.xp.sin(ctx.args[0]),)


@register("square", tf="Square")
def square(xp, a):
    return a * a


@square.defvjp
def _(ctx, g):
    return (2 * g * ctx.args[0],)


@register("sign", tf="Sign")
def sign(xp, a):
    return xp.sign(a)


@sign.defvjp
def _(ctx, g):
    return (g * 0,)  # piecewise constant, as in PyTorch


@register("clamp", tf="ClipByValue")
def clamp(xp, a, min=None, max=None):
    """`clamp(a, min, max)`; either bound may be None (TF's clip_by_value uses both)."""
    if min is None and max is None:
        raise Invalid("at least one of min and max must be given")
    return xp.clip(a, min, max).astype(a.dtype, copy=False)


@clamp.defvjp
def _(ctx, g):
    a = ctx.args[0]
    lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
    keep = True
    if lo is not None:
        keep = a >= lo
    if hi is not None:
        keep = keep & (a <= hi)  # the gradient passes where the input was inside the bounds
    return (g * keep,)


@register("real", tf="Real")
def real(xp, a):
    return xp.real(a)


@real.defvjp
def _(ctx, g):
    return (g,)  # d Re(z): the gradient is real, Im part gets none


@register("imag", tf="Imag")
def imag(xp, a):
    return xp.imag(a)


@imag.defvjp
def _(ctx, g):
    return (1j * g,)  # PyTorch's convention: grad = dL/dRe + i dL/dIm


# Piecewise constant: zero gradient almost everywhere, as PyTorch defines them.


def _zero_grad(ctx, g):
    return (ctx.xp.zeros_like(g),)


def _rounding(name, tf, fn):
    def fwd(xp, a):
        return fn(xp, a) if a.dtype.kind in "fc" else a.copy()  # integers are already whole

    fwd.__doc__ = f"Elementwise `{name}`, in the input's dtype."
    op = register(name, tf=tf)(fwd)
    op.defvjp(_zero_grad)
    return op


floor = _rounding("floor", "Floor", lambda xp, a: xp.floor(a))


ceil = _rounding("ceil", "Ceil", lambda xp, a: xp.ceil(a))


trunc = _rounding("trunc", "Trunc", lambda xp, a: xp.trunc(a))


round_ = _rounding("round", "Round", lambda xp, a: xp.round(a))  # half to even, as PyTorch and TF


def _floating(a):
    """Integer inputs of float-valued math give the default float dtype, as in PyTorch."""
    return a.astype(get_default_dtype().np) if a.dtype.kind in "biu" else a


@register("log1p", errstate="all", tf="Log1p")
def log1p(xp, a):
    return xp.log1p(_floating(a))


@log1p.defvjp
def _(ctx, g):
    return (g / _conj(1 + ctx.args[0]),)


@register("expm1", tf="Expm1")
def expm1(xp, a):
    return xp.expm1(_floating(a))


@expm1.defvjp
def _(ctx, g):
    return (g * _conj(ctx.out + 1),)


@register("log2", errstate="all", tf="Log2")
def log2(xp, a):
    return xp.log2(_floating(a))


@log2.defvjp
def _(ctx, g):
    return (g / (_conj(ctx.args[0]) * math.log(2)),)


@register("log10", errstate="all", tf="Log10")
def log10(xp, a):
    return xp.log10(_floating(a))


@log10.defvjp
def _(ctx, g):
    return (g / (_conj(ctx.args[0]) * math.log(10)),)


@register("rsqrt", errstate="forward", tf="Rsqrt")
def rsqrt(xp, a):
    return 1 / xp.sqrt(_floating(a))


@rsqrt.defvjp
def _(ctx, g):
    y = ctx.out
    return (-0.5 * g * _conj(y * y * y),)


@register("reciprocal", errstate="forward", tf="Reciprocal")
def reciprocal(xp, a):
    return 1 / _floating(a)


@reciprocal.defvjp
def _(ctx, g):
    y = ctx.out
    return (-g * _conj(y * y),)


# erfc(z) for z >= 0 by Chebyshev fit (Numerical Recipes 3rd ed., `Erf::erfccheb`): absolute
# error ~3e-16 in float64 with nothing but exp, so numpy and cupy run the same code
# (numpy has no erf; scipy is not a dependency). Near 0, 1 - erfc loses relative
# precision, so there a short Taylor series is used instead.
_ERFC_COF = (
    -1.3026537197817094,
    6.4196979235649026e-1,
    1.9476473204185836e-2,
    -9.561514786808631e-3,
    -9.46595344482036e-4,
    3.66839497852761e-4,
    4.2523324806907e-5,
    -2.0278578112534e-5,
    -1.624290004647e-6,
    1.303655835580e-6,
    1.5626441722e-8,
    -8.5238095915e-8,
    6.529054439e-9,
    5.059343495e-9,
    -9.91364156e-10,
    -2.27365122e-10,
    9.6467911e-11,
    2.394038e-12,
    -6.886027e-12,
    8.94487e-13,
    3.13092e-13,
    -1.12708e-13,
    3.81e-16,
    7.106e-15,
    -1.523e-15,
    -9.4e-17,
    1.21e-16,
    -2.8e-17,
)


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _erf(xp, x, near0=True):
    """erf in x's dtype; `near0=False` skips the series that keeps the relative precision
    near 0 (not needed where erf is added to 1, as in gelu)."""
    wide = x.dtype.itemsize >= 8  # float32 needs only the larger half of each series
    z = xp.abs(x)
    t = 2 / (2 + z)
    ty = 4 * t - 2
    d, dd = xp.zeros_like(z), xp.zeros_like(z)
    for c in _ERFC_COF[(27 if wide else 13) : 0 : -1]:  # Clenshaw's recurrence, in place
        nxt = ty * d
        nxt -= dd
        nxt += c
        d, dd = nxt, d
    e = ty * d
    e += _ERFC_COF[0]
    e *= 0.5
    e -= dd
    e -= z * z
    with np.errstate(under="ignore"):
        out = xp.copysign(1 - t * xp.exp(e), x).astype(x.dtype, copy=False)
    if not near0:
        return out
    x2 = x * x  # |x| < 0.5: sum of (-1)^n x^(2n+1) / (n! (2n+1)), 11 terms reach 1e-17
    term, small = x, x.copy()
    for n in range(1, 12 if wide else 7):
        term = term * (-x2 / n)
        small += term / (2 * n + 1)
    return xp.where(z < 0.5, small * _TWO_OVER_SQRT_PI, out)


@register("erf", tf="Erf", cost=_in_cost(60))
def erf(xp, a):
    return _erf(xp, _floating(a))


@erf.defvjp
def _(ctx, g):
    a = ctx.args[0]
    return (g * (_TWO_OVER_SQRT_PI * ctx.xp.exp(-a * a)),)


# ----------------------------------------------------------------- identity, copies and casts


@register("identity", tf="Identity", cost=_no_cost)
def identity(xp, a):
    return a.view()  # a new view of the same storage, as TF's Identity


@identity.defvjp
def _(ctx, g):
    return (g,)


@register("clone", tf="Identity")
def clone(xp, a):
    return a.copy()


@clone.defvjp
def _(ctx, g):
    return (g,)


@register("stop_gradient", tf="StopGradient", cost=_no_cost)
def stop_gradient(xp, a):
    """Passes `a` through; no gradient flows back (no VJP on purpose)."""
    return a


@register("cast", tf="Cast", cost=lambda arrays, out, attrs: 0)
def cast(xp, a, dtype):
    return a.astype(dtype)


@cast.defvjp
def _(ctx, g):
    src = ctx.args[0].dtype
    return (g.astype(src) if src.kind in "fc" else None,)


@register("to_device", tf="Copy", cost=lambda arrays, out, attrs: 0)
def to_device_op(xp, a, device):
    from .device import to_device

    return to_device(a, device)


@to_device_op.defvjp
def _(ctx, g):
    from .device import to_device

    return (to_device(g, ctx.attrs["device"]),)


@register("tf_print", tf="Print", cost=_no_cost)
def tf_print(xp, a, *data, message="", summarize=3):
    """tf.Print: passes `a` through and writes `message` and the first `summarize` values of
    each of `data` to standard error when it runs (graph builders give its shape: the shape
    inference must not print)."""
    import sys

    parts = []
    for d in data:
        flat = [str(v) for v in np.asarray(d.get() if hasattr(d, "get") else d).reshape(-1)[:summarize].tolist()]
        parts.append("[" + " ".join(flat) + ("..." if d.size > summarize else "") + "]")
    sys.stderr.write(message + "".join(parts) + "\n")
    return a


@tf_print.defvjp
def _(ctx, g):
    return (g, *[None] * (len(ctx.args) - 1))


# ----------------------------------------------------------------- comparisons and logic
# Boolean results have no gradient: these ops register no VJP, so the engine records no tape.


def _compare(name, tf, fn):
    def fwd(xp, a, b):
        a, b = _same(a, b)
        return fn(a, b)

    fwd.__doc__ = f"Elementwise `{name}`, a bool tensor."
    return register(name, tf=tf, explain=_bcast_explain("compare"))(fwd)


eq = _compare("eq", "Equal", lambda a, b: a == b)


ne = _compare("ne", "NotEqual", lambda a, b: a != b)


lt = _compare("lt", "Less", lambda a, b: a < b)


le = _compare("le", "LessEqual", lambda a, b: a <= b)


gt = _compare("gt", "Greater", lambda a, b: a > b)


ge = _compare("ge", "GreaterEqual", lambda a, b: a >= b)


@register("logical_and", tf="LogicalAnd", explain=_bcast_explain("combine"))
def logical_and(xp, a, b):
    return xp.logical_and(a, b)


@register("logical_or", tf="LogicalOr", explain=_bcast_explain("combine"))
def logical_or(xp, a, b):
    return xp.logical_or(a, b)


@register("logical_xor", tf="LogicalXor", explain=_bcast_explain("combine"))
def logical_xor(xp, a, b):
    return xp.logical_xor(a, b)


@register("logical_not", tf="LogicalNot")
def logical_not(xp, a):
    return xp.logical_not(a)


@register("isnan", tf="IsNan")
def isnan(xp, a):
    return xp.isnan(a)


@register("isinf", tf="IsInf")
def isinf(xp, a):
    return xp.isinf(a)


@register("isfinite", tf="IsFinite")
def isfinite(xp, a):
    return xp.isfinite(a)


@register("isclose", tf="IsClose", explain=_bcast_explain("compare"))
def isclose(xp, a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """|a - b| <= atol + rtol * |b|, elementwise (torch.isclose)."""
    a, b = _same(a, b)
    return xp.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


@register("all", tf="All", cost=_index_cost)
def all_(xp, a, axis=None, keepdims=False):  # not `all`: ops.py uses the builtin
    return a.all(axis=axis, keepdims=keepdims)


@register("any", tf="Any", cost=_index_cost)
def any_(xp, a, axis=None, keepdims=False):  # not `any`: ops.py uses the builtin
    return a.any(axis=axis, keepdims=keepdims)


@register("where", tf="SelectV2", explain=_bcast_explain("select between"))
def where(xp, cond, a, b):
    a, b = _same(a, b)
    return xp.where(cond, a, b)


@where.defvjp
def _(ctx, g):
    c = ctx.args[0]
    z = ctx.xp.zeros((), dtype=g.dtype)
    return (None, ctx.xp.where(c, g, z) if ctx.needs[1] else None, ctx.xp.where(c, z, g) if ctx.needs[2] else None)


# ----------------------------------------------------------------- reductions


def _axis_back(xp, g, shape, axis, keepdims):
    """Reshapes a reduced gradient so it broadcasts against the input."""
    if axis is None:
        if g.ndim and not keepdims:
            return g
        # a small filled array costs less than numpy's broadcast_to machinery; big ones stay views
        if xp is np and math.prod(shape) <= 4096:
            return np.full(shape, g, dtype=g.dtype)
        return xp.broadcast_to(g, shape)
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
def sum(xp, a, axis=None, keepdims=False):
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
        raise InvalidDType(f"mean needs a floating point or complex input, got {a.dtype}")
    if axis is None and a.dtype.itemsize >= 4 and a.size:
        # sum / n is what ndarray.mean computes for these dtypes, minus its Python-level overhead
        s = a.sum(keepdims=keepdims)
        return s / s.dtype.type(a.size)
    return a.mean(axis=axis, keepdims=keepdims)


@mean.defvjp
def _(ctx, g):
    a = ctx.args[0]
    n = a.size // max(ctx.out.size, 1)
    axis, keepdims = ctx.attrs["axis"], ctx.attrs["keepdims"]
    if axis is None and g.size == 1 and a.size <= 4096:
        # g / n broadcast straight into a fresh array: one ufunc call, none of numpy's slow
        # 0-d arithmetic or broadcast_to machinery
        return (ctx.xp.divide(g, n, out=ctx.xp.empty(a.shape, dtype=g.dtype)),)
    return (_axis_back(ctx.xp, g / n, a.shape, axis, keepdims),)


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


# the core reductions cost about one FLOP per input element, not per output element
for _op in (sum, mean, amax, amin):
    _op.cost = _in_cost(1)


def _reduced_count(a, out):
    return a.size // max(out.size, 1)


def _var_check(a, correction):
    if a.dtype.kind not in "fc":
        raise InvalidDType(f"var/std need a floating point input, got {a.dtype}")


@register("var", errstate="forward", tf="Variance", cost=_in_cost(3))
def var(xp, a, axis=None, keepdims=False, correction=1):
    """Variance; `correction=1` (Bessel's, PyTorch's default) divides by n - 1."""
    _var_check(a, correction)
    # n <= correction gives nan/inf, as in PyTorch
    return a.var(axis=axis, keepdims=keepdims, ddof=correction)


@var.defvjp
def _(ctx, g):
    a = ctx.args[0]
    axis = ctx.attrs.get("axis", None)
    d = a - a.mean(axis=axis, keepdims=True)
    n = _reduced_count(a, ctx.out) - ctx.attrs.get("correction", 1)
    return (_axis_back(ctx.xp, g, a.shape, axis, ctx.attrs.get("keepdims", False)) * (2 / n) * d,)


@register("std", errstate="all", tf="Std", cost=_in_cost(4))
def std(xp, a, axis=None, keepdims=False, correction=1):
    _var_check(a, correction)
    return a.std(axis=axis, keepdims=keepdims, ddof=correction)


@std.defvjp
def _(ctx, g):
    a = ctx.args[0]
    axis, keep = ctx.attrs.get("axis", None), ctx.attrs.get("keepdims", False)
    d = a - a.mean(axis=axis, keepdims=True)
    n = _reduced_count(a, ctx.out) - ctx.attrs.get("correction", 1)
    # std'(0) is inf, as in PyTorch
    s = _axis_back(ctx.xp, g / (n * ctx.out), a.shape, axis, keep)
    return (s * d,)


@register("prod", tf="Prod", cost=_in_cost(1))
def prod(xp, a, axis=None, keepdims=False):
    if a.dtype.kind in "bu" or (a.dtype.kind == "i" and a.dtype.itemsize < 8):
        return a.prod(axis=axis, keepdims=keepdims, dtype=np.int64)
    return a.prod(axis=axis, keepdims=keepdims)


@prod.defvjp
def _(ctx, g):
    a = ctx.args[0]
    xp = ctx.xp
    axis, keep = ctx.attrs.get("axis", None), ctx.attrs.get("keepdims", False)
    # product of the *other* elements, by exclusive cumprods from both sides (exact with zeros)
    axes = tuple(range(a.ndim)) if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
    axes = tuple(ax % max(a.ndim, 1) for ax in axes)
    rest = tuple(i for i in range(a.ndim) if i not in axes)
    t = a.transpose(rest + axes)
    flat = t.reshape(t.shape[: len(rest)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=a.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1), -1), axis=-1), -1)
    others = (left * right).reshape(t.shape).transpose(np.argsort(rest + axes))
    return (_axis_back(xp, g, a.shape, axis, keep) * others,)


@register("logsumexp", errstate="forward", tf="ReduceLogSumExp", cost=_in_cost(4))
def logsumexp(xp, a, axis=None, keepdims=False):
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows give -inf, not nan
    out = xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True)) + m
    if not keepdims:
        out = out.reshape(()) if axis is None else out.squeeze(axis)
    return out


@logsumexp.defvjp
def _(ctx, g):
    a = ctx.args[0]
    axis, keep = ctx.attrs.get("axis", None), ctx.attrs.get("keepdims", False)
    xp = ctx.xp
    out = _axis_back(xp, ctx.out, a.shape, axis, keep)
    return (_axis_back(xp, g, a.shape, axis, keep) * xp.exp(a - out),)


@register("cumsum", tf="Cumsum", cost=_in_cost(1))
def cumsum(xp, a, axis=0):
    if a.dtype.kind in "bui":
        return xp.cumsum(a, axis=axis, dtype=np.int64)
    return xp.cumsum(a, axis=axis)


@cumsum.defvjp
def _(ctx, g):
    ax = ctx.attrs.get("axis", 0)
    xp = ctx.xp
    return (xp.flip(xp.cumsum(xp.flip(g, ax), axis=ax), ax),)  # each input feeds every later output


# ----------------------------------------------------------------- shape, joining and reordering


def _reshape_explain(shapes, dtypes, attrs):
    shape = attrs.get("shape")
    n = math.prod(shapes[0])
    return f"cannot reshape a tensor of shape {tuple(shapes[0])} ({n} elements) into {shape}"


@register("reshape", tf="Reshape", explain=_reshape_explain, cost=lambda arrays, out, attrs: 0)
def reshape(xp, a, shape):
    return a.reshape(shape)


@reshape.defvjp
def _(ctx, g):
    return (g.reshape(ctx.args[0].shape),)


def _permute_explain(shapes, dtypes, attrs):
    axes, nd = tuple(attrs.get("axes", ())), len(shapes[0])
    return f"axes {axes} are not a permutation of the {nd} dimensions of {tuple(shapes[0])}"


@register("permute", tf="Transpose", cost=lambda arrays, out, attrs: 0, explain=_permute_explain)
def permute(xp, a, axes):
    return a.transpose(axes)  # numpy rejects a non-permutation; the explain above words it


@permute.defvjp
def _(ctx, g):
    n = g.ndim
    inv = [0] * n
    for i, ax in enumerate(ctx.attrs["axes"]):
        inv[ax % n] = i
    return (g.transpose(inv),)


@register("transpose_all", tf="Transpose", cost=_no_cost)
def transpose_all(xp, a):
    """All dimensions reversed, whatever the rank (tf.transpose of a tensor of unknown rank)."""
    return a.transpose()


@transpose_all.defvjp
def _(ctx, g):
    return (g.transpose(),)


def _cat_explain(shapes, dtypes, attrs):
    ax = attrs.get("axis", 0)
    nd = {len(s) for s in shapes}
    if len(nd) > 1:
        return f"tensors must have the same number of dimensions, got shapes {', '.join(map(str, shapes))}"
    rest = {tuple(d for i, d in enumerate(s) if i != ax % max(len(s), 1)) for s in shapes}
    if len(rest) > 1:
        return f"tensors must have the same shape except in dimension {ax}, got shapes {', '.join(map(str, shapes))}"
    return None


def _result_dtype(arrays):
    dt = arrays[0].dtype
    for a in arrays[1:]:
        dt = promote(dt, a.dtype)
    return dt


@register("cat", tf="ConcatV2", explain=_cat_explain, cost=_no_cost)
def cat(xp, *arrays, axis=0):
    """Joins tensors along an existing axis (variadic: `apply(op, *tensors, axis=)`)."""
    if not arrays:
        raise Invalid("expected a non-empty list of tensors")
    dt = _result_dtype(arrays)
    return xp.concatenate([a.astype(dt, copy=False) for a in arrays], axis=axis)


@cat.defvjp
def _(ctx, g):
    ax = ctx.attrs.get("axis", 0)
    bounds = np.cumsum([a.shape[ax] for a in ctx.args])[:-1]
    return tuple(p if n else None for p, n in zip(ctx.xp.split(g, bounds.tolist(), axis=ax), ctx.needs))


def _stack_explain(shapes, dtypes, attrs):
    if len(set(shapes)) > 1:
        return f"stack expects each tensor to be equal size, got shapes {', '.join(map(str, shapes))}"
    return None


@register("stack", tf="Pack", explain=_stack_explain, cost=_no_cost)
def stack(xp, *arrays, axis=0):
    if not arrays:
        raise Invalid("expected a non-empty list of tensors")
    dt = _result_dtype(arrays)
    return xp.stack([a.astype(dt, copy=False) for a in arrays], axis=axis)


@stack.defvjp
def _(ctx, g):
    ax = ctx.attrs.get("axis", 0)
    xp = ctx.xp
    return tuple(xp.take(g, i, axis=ax) if n else None for i, n in enumerate(ctx.needs))


@register("flip", tf="ReverseV2", cost=_no_cost)
def flip(xp, a, axis):
    return xp.flip(a, axis=axis)


@flip.defvjp
def _(ctx, g):
    return (ctx.xp.flip(g, axis=ctx.attrs["axis"]),)


@register("squeeze", tf="Squeeze", cost=_no_cost)
def squeeze(xp, a, axis=None):
    """Drops size-1 dimensions; a named dimension of another size is left alone (PyTorch)."""
    if axis is None:
        return a.squeeze()
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for ax in axes:
        if not -max(a.ndim, 1) <= ax < max(a.ndim, 1):
            raise Invalid(f"dimension {ax} is out of range for a tensor of shape {a.shape}")
    axes = tuple(ax % a.ndim for ax in axes if a.ndim and a.shape[ax] == 1)
    return a.squeeze(axes) if axes else a.view()


@squeeze.defvjp
def _(ctx, g):
    return (g.reshape(ctx.args[0].shape),)


@register("unsqueeze", tf="ExpandDims", cost=_no_cost)
def unsqueeze(xp, a, axis):
    if not -(a.ndim + 1) <= axis <= a.ndim:
        raise Invalid(f"dimension {axis} is out of range for unsqueeze of a tensor of shape {a.shape}")
    return xp.expand_dims(a, axis)


@unsqueeze.defvjp
def _(ctx, g):
    return (g.reshape(ctx.args[0].shape),)


def _expand_shape(shape, sizes):
    if len(sizes) < len(shape):
        raise Invalid(f"cannot expand shape {shape} to {tuple(sizes)}: fewer dimensions than the tensor")
    lead = len(sizes) - len(shape)
    out = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise Invalid(f"-1 is not allowed for a new leading dimension (expanding {shape} to {sizes})")
            s = shape[i - lead]
        elif i >= lead and shape[i - lead] not in (1, s):
            raise Invalid(
                f"cannot expand shape {shape} to {tuple(sizes)}: dimension {i} has size "
                f"{shape[i - lead]}, which is not 1"
            )
        out.append(int(s))
    return tuple(out)


@register("expand", tf="BroadcastTo", cost=_no_cost)
def expand(xp, a, shape):
    """Broadcasts to `shape` (-1 keeps a dimension); a view, as in PyTorch."""
    return xp.broadcast_to(a, _expand_shape(a.shape, tuple(shape)))


@expand.defvjp
def _(ctx, g):
    return (g,)  # the engine sums the broadcast dimensions back


@register("tile", tf="Tile", cost=_no_cost)
def tile(xp, a, reps):
    """Repeats the whole tensor `reps[i]` times along dimension i (torch's repeat, tf.tile)."""
    return xp.tile(a, tuple(reps))


@tile.defvjp
def _(ctx, g):
    a = ctx.args[0]
    reps = tuple(ctx.attrs["reps"])
    d = max(a.ndim, len(reps))
    shape = (1,) * (d - a.ndim) + a.shape
    reps = (1,) * (d - len(reps)) + reps
    split = [n for pair in zip(reps, shape) for n in pair]  # (r0, s0, r1, s1, ...): copy index, position
    return (g.reshape(split).sum(axis=tuple(range(0, 2 * d, 2))).reshape(a.shape),)


@register("roll", tf="Roll", cost=_no_cost)
def roll(xp, a, shifts, dims):
    return xp.roll(a, shifts, dims)


@roll.defvjp
def _(ctx, g):
    s, d = ctx.attrs["shifts"], ctx.attrs["dims"]
    neg = tuple(-x for x in s) if isinstance(s, tuple) else -s
    return (ctx.xp.roll(g, neg, d),)


def _pads(paddings):
    return tuple((int(lo), int(hi)) for lo, hi in paddings)


@register("tf_pad", tf="Pad", cost=_no_cost)
def tf_pad(xp, a, paddings, mode="CONSTANT", constant_values=0):
    """tf.pad: (before, after) per dimension; CONSTANT, REFLECT or SYMMETRIC."""
    pads = _pads(paddings)
    if len(pads) != a.ndim:
        raise Invalid(f"paddings must have one (before, after) pair per dimension: {a.ndim}, got {len(pads)}")
    if mode == "CONSTANT":
        return xp.pad(a, pads, constant_values=constant_values)
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise Invalid(f"mode must be CONSTANT, REFLECT or SYMMETRIC, got {mode!r}")
    return xp.pad(a, pads, mode=mode.lower())


@tf_pad.defvjp
def _(ctx, g):
    a, xp = ctx.args[0], ctx.xp
    pads = _pads(ctx.attrs["paddings"])
    mode = ctx.attrs.get("mode", "CONSTANT")
    if mode == "CONSTANT":
        return (g[tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, a.shape))],)
    # REFLECT / SYMMETRIC: each padded element's gradient goes to the element it copies
    src = xp.arange(a.size).reshape(a.shape)
    idx = xp.pad(src, pads, mode=mode.lower()).reshape(-1)
    ga = _scatter_add(xp, xp.zeros(a.size, dtype=g.dtype), idx, g.reshape(-1))
    return (ga.reshape(a.shape),)


# ----------------------------------------------------------------- indexing


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


def _scatter_add(xp, z, index, g):
    """z[index] += g with repeated indices accumulating. The one per-device fork:
    numpy spells it `np.add.at`, cupy `cupyx.scatter_add` (cupy has no `add.at`)."""
    if xp is np:
        np.add.at(z, index, g)
    else:
        import cupyx

        cupyx.scatter_add(z, index, g)
    return z


def _gather_index(xp, index, axis):
    """An index tuple that picks out[i][j][k] = a[i][index[i][j][k]][k] (for axis=1)."""
    axis %= index.ndim
    grid = []
    for d, n in enumerate(index.shape):
        if d == axis:
            grid.append(index)
        else:
            shp = [1] * index.ndim
            shp[d] = n
            grid.append(xp.arange(n).reshape(shp))
    return tuple(grid)


@register("gather", tf="GatherElements", cost=_no_cost)
def gather(xp, a, index, axis):
    """PyTorch's gather: `out[i][j] = a[i][index[i][j]]` for axis=1."""
    if index.dtype.kind not in "iu":
        raise InvalidDType(f"gather expects an integer index, got {index.dtype}")
    if index.ndim != a.ndim:
        raise Invalid(
            f"index has {index.ndim} dimensions but the input has {a.ndim} (shapes {index.shape} and {a.shape})"
        )
    for d, (i, n) in enumerate(zip(index.shape, a.shape)):
        if d != axis % a.ndim and i > n:
            raise Invalid(f"index shape {index.shape} is larger than input shape {a.shape} in dimension {d}")
    return a[_gather_index(xp, index, axis)]


@gather.defvjp
def _(ctx, g):
    a, index = ctx.args
    z = ctx.xp.zeros(a.shape, dtype=g.dtype)
    return _scatter_add(ctx.xp, z, _gather_index(ctx.xp, index, ctx.attrs["axis"]), g), None


def _check_rows(index, n, what):
    if index.dtype.kind not in "iu":
        raise InvalidDType(f"{what} expects integer indices, got {index.dtype}")
    if index.size and (int(index.min()) < 0 or int(index.max()) >= n):
        bad = int(index.max()) if int(index.max()) >= n else int(index.min())
        raise Invalid(f"index {bad} is out of range for {n} {'rows' if what == 'embedding' else 'entries'}")


@register("index_select", tf="GatherV2", cost=_no_cost)
def index_select(xp, a, index, axis=0):
    """Picks whole slices along `axis` (TF's gather, PyTorch's index_select)."""
    _check_rows(index, a.shape[axis], "index_select")
    return xp.take(a, index, axis=axis)


@index_select.defvjp
def _(ctx, g):
    a, index = ctx.args
    ax = ctx.attrs.get("axis", 0) % a.ndim
    z = ctx.xp.zeros(a.shape, dtype=g.dtype)
    return _scatter_add(ctx.xp, z, (slice(None),) * ax + (index,), g), None


@register("embedding", tf="ResourceGather", cost=_no_cost)
def embedding(xp, weight, index):
    """Rows of `weight` (num_embeddings, dim) picked by integer `index`."""
    if weight.ndim != 2:
        raise Invalid(f"embedding weight must be 2-D (num_embeddings, embedding_dim), got {weight.shape}")
    _check_rows(index, weight.shape[0], "embedding")
    return weight[index]


@embedding.defvjp
def _(ctx, g):
    w, index = ctx.args
    z = ctx.xp.zeros(w.shape, dtype=g.dtype)
    return _scatter_add(ctx.xp, z, index, g), None  # a row used twice gets both gradients


@register("one_hot", tf="OneHot")
def one_hot(xp, index, num_classes, dtype=np.int64):
    if index.dtype.kind not in "iu":
        raise InvalidDType(f"one_hot expects integer indices, got {index.dtype}")
    if index.size and (int(index.min()) < 0 or int(index.max()) >= num_classes):
        raise Invalid(f"class values must be in [0, {num_classes}), got min {int(index.min())} max {int(index.max())}")
    return (index[..., None] == xp.arange(num_classes)).astype(dtype)


# ----------------------------------------------------------------- linear algebra and matrices


def _matmul_cost(arrays, out, attrs):
    a = arrays[0]
    k = a.shape[-1] if a.ndim else 1
    return 2 * out.size * k


def _matmul_explain(shapes, dtypes, attrs):
    return f"cannot multiply {tuple(shapes[0])} by {tuple(shapes[1])}"


def _matmul_explain_t(shapes, dtypes, attrs):
    if attrs.get("transpose_b"):
        return f"cannot multiply {tuple(shapes[0])} by the transpose of {tuple(shapes[1])}"
    return _matmul_explain(shapes, dtypes, attrs)


@register("matmul", tf="MatMul", cost=_matmul_cost, explain=_matmul_explain_t)
def matmul(xp, a, b, transpose_b=False):
    """a @ b, or a @ b.T with `transpose_b` (as TF's MatMul): F.linear multiplies by the
    weight's transpose this way, one op instead of a permute and a matmul."""
    if a.ndim == 0 or b.ndim == 0:
        raise Invalid(f"both arguments must be at least 1-D, got shapes {a.shape} and {b.shape}")
    a, b = _same(a, b)
    return a @ (_swap(b) if transpose_b else b)


def _swap(x):
    return x.swapaxes(-1, -2) if x.ndim >= 2 else x


@matmul.defvjp
def _(ctx, g):
    if ctx.attrs.get("transpose_b"):  # out = a @ b.T
        a, b = _conj(ctx.args[0]), _conj(ctx.args[1])
        if a.ndim >= 2 and b.ndim >= 2:  # F.linear's case: both gradients come out contiguous
            return (g @ b if ctx.needs[0] else None), (_swap(g) @ a if ctx.needs[1] else None)
        ga, gbt = _matmul_grads(ctx.xp, a, _swap(b), g, ctx.needs)  # the gradient of b.T, transposed back
        return ga, (None if gbt is None else _swap(gbt))
    return _matmul_grads(ctx.xp, _conj(ctx.args[0]), _conj(ctx.args[1]), g, ctx.needs)


def _matmul_grads(xp, a, b, g, needs):
    """Gradients of a @ b (a and b already conjugated) for every rank combination."""
    ga = gb = None
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if needs[0] else None), (g * a if needs[1] else None)
    if a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
        if needs[0]:
            ga = (xp.expand_dims(g, -2) @ _swap(b))[..., 0, :]
        if needs[1]:
            gb = xp.expand_dims(a, -1) * xp.expand_dims(g, -2)
        return ga, gb
    if b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
        if needs[0]:
            ga = xp.expand_dims(g, -1) * b
        if needs[1]:
            gb = (_swap(a) @ xp.expand_dims(g, -1))[..., 0]
        return ga, gb
    if needs[0]:
        ga = g @ _swap(b)
    if needs[1]:
        gb = _swap(a) @ g
    return ga, gb


@register("linear", tf="Linear", cost=_matmul_cost)
def linear(xp, x, w, b):
    """x @ w.T + b in one op: what F.linear runs, observed or not (one tape node, one
    dispatch and one event instead of two; torch's aten::linear). The same arithmetic as
    matmul(transpose_b) then add, for x of >= 2 and w of 2 dimensions, all of one dtype
    (F.linear checks; else, or when this one fails, it runs those two ops)."""
    return x @ w.T + b


@linear.defvjp
def _(ctx, g):
    # the matmul(transpose_b) and add VJPs above, chained
    x, w, b = ctx.args
    nx, nw, nb = ctx.needs
    gb = None
    if nb:
        gb = _bias_grad(ctx.xp, g, b)
        if gb is None:
            gb = g  # the engine reduces the broadcast dimensions
    return (g @ _conj(w) if nx else None), (_swap(g) @ _conj(x) if nw else None), gb


def _check_matrix(a):
    if a.ndim < 2:
        raise Invalid(f"expected a tensor of at least 2 dimensions (a matrix or a stack of them), got shape {a.shape}")


@register("tril", tf="MatrixBandPart", cost=_no_cost)
def tril(xp, a, diagonal=0):
    """The lower triangle (of the last two dimensions), the rest zero."""
    _check_matrix(a)
    return xp.tril(a, diagonal)


@tril.defvjp
def _(ctx, g):
    return (ctx.xp.tril(g, ctx.attrs.get("diagonal", 0)),)


@register("triu", tf="MatrixBandPart", cost=_no_cost)
def triu(xp, a, diagonal=0):
    """The upper triangle (of the last two dimensions), the rest zero."""
    _check_matrix(a)
    return xp.triu(a, diagonal)


@triu.defvjp
def _(ctx, g):
    return (ctx.xp.triu(g, ctx.attrs.get("diagonal", 0)),)


@register("diag", tf="Diag", cost=_no_cost)
def diag(xp, a, diagonal=0):
    """torch.diag: a vector becomes a diagonal matrix, a matrix gives its diagonal."""
    if a.ndim == 1:
        return xp.diag(a, diagonal)
    if a.ndim == 2:
        return xp.diagonal(a, diagonal).copy()  # numpy's diagonal is a read-only view
    raise Invalid(f"expected a 1-D or 2-D tensor, got shape {a.shape}")


@diag.defvjp
def _(ctx, g):
    a, xp = ctx.args[0], ctx.xp
    k = ctx.attrs.get("diagonal", 0)
    if a.ndim == 1:
        return (xp.diagonal(g, k).copy(),)
    z = xp.zeros(a.shape, dtype=g.dtype)
    i = xp.arange(g.shape[0])
    z[i + max(-k, 0), i + max(k, 0)] = g
    return (z,)


# ----------------------------------------------------------------- sorting and searching


@register("argsort", tf="ArgSort", cost=_in_cost(8))
def argsort(xp, a, axis=-1, descending=False):
    """int64 indices that sort `a` along `axis`; stable (ties keep their order)."""
    if a.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable").astype(np.int64, copy=False)
    # descending and still stable, for every dtype (no negation): sort the reversed array and
    # map back; NaN, the largest in an ascending sort, comes first, as in PyTorch
    rev = xp.argsort(xp.flip(a, axis), axis=axis, kind="stable")
    return (a.shape[axis] - 1 - xp.flip(rev, axis)).astype(np.int64, copy=False)


@register("nonzero", tf="Where", cost=_index_cost)
def nonzero(xp, a):
    """The (n, ndim) int64 indices of the nonzero elements, in row-major order."""
    return xp.argwhere(a).astype(np.int64, copy=False)


# ----------------------------------------------------------------- activations


@register("relu", tf="Relu")
def relu(xp, a):
    return xp.maximum(a, 0)


@relu.defvjp
def _(ctx, g):
    # a float mask times g in place: ~20% faster than g * bool_mask (numpy's mixed-type loop)
    m = (ctx.out > 0).astype(g.dtype)
    m *= g
    return (m,)


@register("softplus", errstate="forward", tf="Softplus", cost=_in_cost(4))
def softplus(xp, a, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (PyTorch's definition)."""
    bx = a * beta
    soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta
    return xp.where(bx > threshold, a, soft).astype(a.dtype, copy=False)


@softplus.defvjp
def _(ctx, g):
    a = ctx.args[0]
    bx = a * ctx.attrs.get("beta", 1.0)
    s = sigmoid.forward(ctx.xp, bx)
    return (g * ctx.xp.where(bx > ctx.attrs.get("threshold", 20.0), 1, s).astype(g.dtype, copy=False),)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@register("gelu", tf="Gelu", cost=_in_cost(8))
def gelu(xp, a, approximate="none"):
    """x * Phi(x) with Phi the normal CDF (via erf), or PyTorch's tanh approximation."""
    if approximate == "tanh":
        return 0.5 * a * (1 + xp.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a * a * a)))
    if approximate != "none":
        raise Invalid(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * a * (1 + _erf(xp, a * (1 / math.sqrt(2)), near0=False))


@gelu.defvjp
def _(ctx, g):
    a, xp = ctx.args[0], ctx.xp
    if ctx.attrs.get("approximate", "none") == "tanh":
        t = xp.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a * a * a))
        d = 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a)
    else:
        pdf = xp.exp(-0.5 * a * a) * (1 / math.sqrt(2 * math.pi))
        d = 0.5 * (1 + _erf(xp, a * (1 / math.sqrt(2)), near0=False)) + a * pdf
    return (g * d,)


@register("leaky_relu", tf="LeakyRelu")
def leaky_relu(xp, a, negative_slope=0.01):
    return xp.where(a > 0, a, a * negative_slope).astype(a.dtype, copy=False)


@leaky_relu.defvjp
def _(ctx, g):
    return (g * ctx.xp.where(ctx.args[0] > 0, 1, ctx.attrs.get("negative_slope", 0.01)).astype(g.dtype),)


@register("elu", errstate="forward", tf="Elu")
def elu(xp, a, alpha=1.0):
    return xp.where(a > 0, a, alpha * xp.expm1(xp.minimum(a, 0))).astype(a.dtype, copy=False)


@elu.defvjp
def _(ctx, g):
    a, y = ctx.args[0], ctx.out
    return (g * ctx.xp.where(a > 0, 1, y + ctx.attrs.get("alpha", 1.0)).astype(g.dtype, copy=False),)


@register("silu", tf="Silu", cost=_in_cost(4))
def silu(xp, a):
    """x * sigmoid(x) (swish)."""
    return a * sigmoid.forward(xp, a)


@silu.defvjp
def _(ctx, g):
    a = ctx.args[0]
    s = sigmoid.forward(ctx.xp, a)
    return (g * s * (1 + a * (1 - s)),)


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


softmax.cost = log_softmax.cost = _in_cost(4)


# ----------------------------------------------------------------- normalization and norms


def _standardize(xp, a, axis, eps):
    """(x - mean) / sqrt(var + eps), and 1 / sqrt(var + eps) for the VJP (ctx.saved)."""
    mean = a.mean(axis=axis, keepdims=True)
    d = a - mean
    var = (d * d).mean(axis=axis, keepdims=True)  # biased, as layer and batch norm use
    rstd = 1 / xp.sqrt(var + eps)
    d *= rstd
    return d, rstd


def _standardize_vjp(ctx, g):
    """For y = (x - mean) * rstd: (g - mean(g) - y mean(g y)) * rstd."""
    a, y = ctx.args[0], ctx.out
    axis = ctx.attrs["axis"]
    rstd = ctx.saved
    if rstd is None:  # graph mode keeps no residuals
        rstd = 1 / ctx.xp.sqrt(a.var(axis=axis, keepdims=True) + ctx.attrs.get("eps", 1e-5))
    gm = g.mean(axis=axis, keepdims=True)
    gy = (g * y).mean(axis=axis, keepdims=True)
    return ((g - gm - y * gy) * rstd,)


@register("layer_norm", tf="LayerNorm", cost=_in_cost(8), saves=True)
def layer_norm(xp, a, axis, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over the trailing `axis` dimensions (no affine part)."""
    if a.dtype.kind != "f":
        raise InvalidDType(f"layer_norm needs a floating point input, got {a.dtype}")
    return _standardize(xp, a, axis, eps)


layer_norm.defvjp(_standardize_vjp)


@register("batch_norm", tf="FusedBatchNormV3", cost=_in_cost(8), saves=True)
def batch_norm(xp, a, axis, eps=1e-5):
    """(x - mean) / sqrt(var + eps) with the batch's statistics over `axis` (training mode)."""
    if a.dtype.kind != "f":
        raise InvalidDType(f"batch_norm needs a floating point input, got {a.dtype}")
    n = a.size // max(math.prod(a.shape[i] for i in range(a.ndim) if i not in axis), 1)
    if n <= 1:
        raise Invalid(f"expected more than 1 value per channel when training, got input of shape {a.shape}")
    return _standardize(xp, a, axis, eps)


batch_norm.defvjp(_standardize_vjp)


@register("norm", errstate="vjp", tf="EuclideanNorm", cost=_in_cost(2))
def norm(xp, a, axis=None, keepdims=False):
    """The 2-norm (Frobenius for matrices) over `axis` (all elements when None)."""
    if a.dtype.kind not in "fc":
        raise InvalidDType(f"norm needs a floating point or complex input, got {a.dtype}")
    sq = (a * a.conj()).real if a.dtype.kind == "c" else a * a
    return xp.sqrt(sq.sum(axis=axis, keepdims=keepdims))


@norm.defvjp
def _(ctx, g):
    a, xp = ctx.args[0], ctx.xp
    axis, keep = ctx.attrs.get("axis", None), ctx.attrs.get("keepdims", False)
    out = _axis_back(xp, ctx.out, a.shape, axis, keep)
    # the norm of zeros has gradient 0, as in PyTorch
    scale = xp.where(out == 0, 0, _axis_back(xp, g, a.shape, axis, keep) / out)
    return (scale * a,)


# ----------------------------------------------------------------- losses


def _log_softmax(xp, a, axis):
    if xp is np and a.ndim == 2 and axis % 2 == 1 and a.shape[1] <= 64 and a.dtype.char in "fd":
        # (batch, classes) with few classes: numpy's reductions along a short last axis run a
        # slow per-row loop; the max of the transposed copy and a product with ones (BLAS) are
        # 2-4x faster and give the same values (the max exactly, the sum up to rounding)
        s = a - np.ascontiguousarray(a.T).max(0)[:, None]
        return s - np.log(np.exp(s) @ _ones(np, (a.shape[1], 1), a.dtype))
    s = a - a.max(axis=axis, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=axis, keepdims=True))


def _xent_explain(shapes, dtypes, attrs):
    if shapes[0] != shapes[1]:
        return f"logits and labels must have the same shape, got {shapes[0]} and {shapes[1]}"
    return None


@register("softmax_cross_entropy", tf="SoftmaxCrossEntropyWithLogits", explain=_xent_explain, cost=_in_cost(6))
def softmax_cross_entropy(xp, logits, labels, axis=-1):
    """Per-example -sum(labels * log_softmax(logits)) from logits, without overflow."""
    if logits.shape != labels.shape:
        raise Invalid(_xent_explain((logits.shape, labels.shape), (), {}))
    logits, labels = _same(logits, labels)
    return -(labels * _log_softmax(xp, logits, axis)).sum(axis=axis)


@softmax_cross_entropy.defvjp
def _(ctx, g):
    logits, labels = ctx.args
    xp = ctx.xp
    ax = ctx.attrs.get("axis", -1)
    lsm = _log_softmax(xp, logits.astype(ctx.out.dtype, copy=False), ax)
    ge = _along(xp, g, ax)
    gl = ge * (xp.exp(lsm) * labels.sum(axis=ax, keepdims=True) - labels) if ctx.needs[0] else None
    return gl, (-ge * lsm if ctx.needs[1] else None)


def _class_pick(xp, labels, axis, ignore_index, weight, bounds=None):
    """Labels made safe to index with (ignored ones point at class 0), and the per-example
    weights (class weights times the not-ignored mask; None when all are 1). `bounds`
    (the labels' min and max, from `_check_labels`) rules out ignored labels for free."""
    w = None
    if ignore_index is not None and (bounds is None or bounds[0] <= ignore_index <= bounds[1]):
        keep = labels != ignore_index
        if not keep.all():  # the common case (nothing ignored) skips the masking entirely
            labels = xp.where(keep, labels, 0)
            w = keep
    if weight is not None:
        w = weight[labels] if w is None else weight[labels] * w
    return labels, w


def _pick(xp, a, labels, axis):
    """a[..., label, ...] along `axis`: plain fancy indexing for (N, C), the usual case."""
    if a.ndim == 2 and axis % 2 == 1:
        return a[xp.arange(a.shape[0]), labels]
    return xp.take_along_axis(a, xp.expand_dims(labels, axis), axis=axis).squeeze(axis)


def _flat_index(xp, a, labels, axis):
    """For a C-contiguous (N, C) `a` with classes last: the flat positions of the labels
    (one 1-D index is cheaper than a (rows, labels) pair, and the VJP reuses it); else None."""
    if a.ndim == 2 and axis % 2 == 1 and a.flags.c_contiguous:
        n, c = a.shape
        return labels + _row_starts(xp, n, c)
    return None


_ROWS: dict[tuple[int, int], np.ndarray] = {}


def _row_starts(xp, n, c):
    """arange(0, n * c, c): numpy's are cached read-only, as `_ones` (the same every step)."""
    if xp is not np:
        return xp.arange(0, n * c, c)
    r = _ROWS.get((n, c))
    if r is None:
        if len(_ROWS) > 64:  # a bound for programs that see many shapes
            _ROWS.clear()
        r = _ROWS[(n, c)] = np.arange(0, n * c, c)
        r.flags.writeable = False
    return r


def _add_at_labels(xp, a, labels, axis, v):
    """a[..., label, ...] += v in place (each position is hit once, so no scatter-add)."""
    if a.ndim == 2 and axis % 2 == 1:
        if a.flags.c_contiguous:  # one flat index: faster than a (rows, labels) index pair
            n, c = a.shape
            a.reshape(-1)[labels + xp.arange(0, n * c, c)] += v
        else:
            a[xp.arange(a.shape[0]), labels] += v
        return
    shape = [1] * a.ndim
    shape[axis] = a.shape[axis]
    hot = xp.expand_dims(labels, axis) == xp.arange(a.shape[axis]).reshape(shape)  # no put_along_axis in cupy
    v = xp.asarray(v, dtype=a.dtype)
    a += hot * (xp.expand_dims(v, axis) if v.ndim else v)


def _check_labels(labels, logits, axis, ignore_index, what):
    """Raises on non-integer, mis-shaped or out-of-range labels; returns bounds (lo, hi) of
    the labels (None when empty) so `_class_pick` need not look for ignored ones again."""
    kind = labels.dtype.kind
    if kind not in "iu":
        raise InvalidDType(f"{what} expects integer class labels, got {labels.dtype}")
    nd = logits.ndim
    ax = axis % nd if nd else 0
    if labels.ndim != nd - 1 or labels.shape != logits.shape[:ax] + logits.shape[ax + 1 :]:
        exp_shape = logits.shape[:ax] + logits.shape[ax + 1 :]
        raise Invalid(
            f"labels of shape {labels.shape} do not match input of shape {logits.shape} "
            f"(expected labels of shape {exp_shape})"
        )
    if not labels.size:
        return None
    n = logits.shape[ax]
    # one reduction checks both ends: seen as unsigned, a negative label is a huge number
    hi = int((labels.view(f"u{labels.dtype.itemsize}") if kind == "i" else labels).max())
    if hi < n:
        return 0, hi
    lo, hi = int(labels.min()), int(labels.max())  # the rare path: ignored or bad labels
    a, b = lo, hi
    if ignore_index is not None:
        lab = labels[labels != ignore_index]
        a, b = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
    if a < 0 or b >= n:
        raise Invalid(f"label {b if b >= n else a} is out of range for {n} classes")
    return lo, hi


def _reduce_loss(loss, w, reduction):
    """Class weights, ignored labels and the reduction, as PyTorch's losses apply them."""
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    total = loss.sum()
    return total / total.dtype.type(w.sum() if w is not None else max(loss.size, 1))  # keep float32


def _reduce_grad(g, shape, w, reduction, dtype):
    """The per-example gradient of `_reduce_loss`; stays a scalar when every example
    weighs the same (the common case), so the caller broadcasts it for free."""
    if reduction == "mean":
        g = g / g.dtype.type(w.sum() if w is not None else max(math.prod(shape), 1))
    if w is not None:
        g = g * w
    # (a numpy scalar's astype copies even when its dtype is already right: 0.5 us)
    return g if g.dtype == dtype else g.astype(dtype, copy=False)


def _along(xp, ge, axis):
    """ge with a length-1 class axis inserted at `axis` (a reshape: cheaper than expand_dims)."""
    if ge.ndim == 0:
        return ge
    shape = list(ge.shape)
    shape.insert(axis % (ge.ndim + 1), 1)
    return ge.reshape(shape)


@register("sparse_softmax_cross_entropy", tf="SparseSoftmaxCrossEntropyWithLogits", cost=_in_cost(4), saves=True)
def sparse_softmax_cross_entropy(xp, logits, labels, axis=-1, ignore_index=None, weight=None, reduction="none"):
    """-log_softmax(logits)[label] per example (TF's default, reduction="none"), or its
    weighted "sum"/"mean" (PyTorch's cross_entropy); ignored labels count for nothing.
    Keeps its log-softmax for the VJP: recomputing it there was half the op's cost."""
    bounds = _check_labels(labels, logits, axis, ignore_index, "cross_entropy")
    picked, w = _class_pick(xp, labels, axis, ignore_index, weight, bounds)
    lsm = _log_softmax(xp, logits, axis)
    flat = _flat_index(xp, lsm, picked, axis)
    vals = lsm.reshape(-1)[flat] if flat is not None else _pick(xp, lsm, picked, axis)
    return _reduce_loss(-vals, w, reduction), (lsm, picked, w, flat)


@sparse_softmax_cross_entropy.defvjp
def _(ctx, g):
    logits, labels = ctx.args
    xp = ctx.xp
    a = ctx.attrs
    ax = a.get("axis", -1)
    if ctx.saved is not None:
        lsm, labels, w, flat = ctx.saved
    else:  # graph mode keeps no residuals: recompute
        lsm = _log_softmax(xp, logits, ax)
        labels, w = _class_pick(xp, labels, ax, a.get("ignore_index"), a.get("weight"))
        flat = _flat_index(xp, lsm, labels, ax)
    p = xp.exp(lsm)  # a fresh array: the saved log-softmax is never written to
    if flat is not None:  # softmax - onehot
        p.reshape(-1)[flat] -= 1
    else:
        _add_at_labels(xp, p, labels, ax, -1)
    p *= _along(xp, _reduce_grad(g, labels.shape, w, a.get("reduction", "none"), p.dtype), ax)
    return p, None


@register("nll_loss", tf="NllLoss")
def nll_loss(xp, logp, labels, axis=1, ignore_index=None, weight=None, reduction="none"):
    """-logp[label] per example (the input is log-probabilities), or its weighted sum/mean."""
    bounds = _check_labels(labels, logp, axis, ignore_index, "nll_loss")
    labels, w = _class_pick(xp, labels, axis, ignore_index, weight, bounds)
    return _reduce_loss(-_pick(xp, logp, labels, axis), w, reduction)


@nll_loss.defvjp
def _(ctx, g):
    logp, labels = ctx.args
    xp = ctx.xp
    a = ctx.attrs
    ax = a.get("axis", 1)
    labels, w = _class_pick(xp, labels, ax, a.get("ignore_index"), a.get("weight"))
    ge = _reduce_grad(g, labels.shape, w, a.get("reduction", "none"), logp.dtype)
    out = xp.zeros(logp.shape, dtype=logp.dtype)
    _add_at_labels(xp, out, labels, ax, -ge)
    return out, None


@register("binary_cross_entropy", errstate="all", tf="BinaryCrossEntropy", explain=_bcast_explain("compare"))
def binary_cross_entropy(xp, p, y):
    """Per-element -(y log p + (1-y) log(1-p)); logs clamped at -100 as PyTorch does."""
    p, y = _same(p, y)
    return -(y * xp.maximum(xp.log(p), -100) + (1 - y) * xp.maximum(xp.log1p(-p), -100))


@binary_cross_entropy.defvjp
def _(ctx, g):
    p, y = ctx.args
    eps = 1e-12  # PyTorch's backward clamps the denominator the same way
    gp = g * (p - y) / ctx.xp.maximum(p * (1 - p), eps) if ctx.needs[0] else None
    gy = g * (ctx.xp.log1p(-p) - ctx.xp.log(p)) if ctx.needs[1] else None
    return gp, gy


@register(
    "sigmoid_cross_entropy", tf="SigmoidCrossEntropyWithLogits", explain=_bcast_explain("compare"), cost=_in_cost(5)
)
def sigmoid_cross_entropy(xp, logits, labels):
    """Per-element -(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))) from logits, without
    overflow: max(x, 0) - x y + log(1 + exp(-|x|))."""
    logits, labels = _same(logits, labels)
    return xp.maximum(logits, 0) - logits * labels + xp.log1p(xp.exp(-xp.abs(logits)))


@sigmoid_cross_entropy.defvjp
def _(ctx, g):
    x, y = ctx.args
    gx = g * (sigmoid.forward(ctx.xp, x) - y) if ctx.needs[0] else None
    return gx, (-g * x if ctx.needs[1] else None)


# ----------------------------------------------------------------- convolution and pooling (NCHW and TF's NHWC)
# One set of kernels over NCHW arrays; TF's NHWC ops (below) reach them through transposed
# views. Padding is ((top, bottom), (left, right)): PyTorch's is symmetric, TF's SAME is not.


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _sym(padding):
    """PyTorch's padding (one int, or one per side pair) as ((top, bottom), (left, right))."""
    ph, pw = _pair(padding)
    return ((ph, ph), (pw, pw))


def _windows(xp, x, kernel, stride, pads, dilation=(1, 1), fill=0):
    """Every kernel position's window of x (N, C, H, W) padded by `pads`, as a view
    (N, C, kh, kw, Ho, Wo) with strides into it: nothing is copied until the caller reshapes it
    (im2col, one copy laid out for a batched matmul). Strides are numpy's and cupy's alike,
    so the same code runs on both."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = kernel, stride, pads, dilation
    if pt or pb or pl or pr:  # (as xp.pad does, in two calls instead of its thirty microseconds of Python)
        n, c, h, w = x.shape
        padded = xp.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
        padded[:, :, pt : pt + h, pl : pl + w] = x
        x = padded
    n, c, h, w = x.shape
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        dil = f" with dilations {(dh, dw)}" if (dh, dw) != (1, 1) else ""
        raise Invalid(f"the kernel ({kh}, {kw}){dil} is larger than the padded input {(h, w)}")
    s0, s1, s2, s3 = x.strides
    strides = (s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw)
    return xp.lib.stride_tricks.as_strided(x, (n, c, kh, kw, ho, wo), strides), ho, wo


def _unwindow(xp, gcols, shape, stride, pads, dilation=(1, 1)):
    """The adjoint of `_windows`: each kernel position's gradient, gcols (N, C, kh, kw, Ho, Wo),
    added back where its window read, for an input of `shape` (N, C, H, W)."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, pads, dilation
    n, c, h, w = shape
    _, _, kh, kw, ho, wo = gcols.shape
    gx = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=gcols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            gx[:, :, rows, j * dw : j * dw + sw * (wo - 1) + 1 : sw] += gcols[:, :, i, j]
    return gx[:, :, pt : pt + h, pl : pl + w]


def _conv(xp, x, w, stride, pads, dilation=(1, 1)):
    """x (N, C, H, W) cross-correlated with w (O, C, kh, kw): im2col, then one matmul per
    image whose result is already (N, O, Ho, Wo)."""
    o, c, kh, kw = w.shape
    n = x.shape[0]
    view, ho, wo = _windows(xp, x, (kh, kw), stride, pads, dilation)
    cols = view.reshape(n, c * kh * kw, ho * wo)
    return xp.matmul(w.reshape(o, c * kh * kw), cols).reshape(n, o, ho, wo)


def _conv_grads(xp, x, w, g, needs, stride, pads, dilation=(1, 1)):
    """`_conv`'s gradients (for x, for w; None where not needed) from g (N, O, Ho, Wo)."""
    o, c, kh, kw = w.shape
    n, _, ho, wo = g.shape
    g3 = g.reshape(n, o, ho * wo)
    gx = gw = None
    if needs[1]:
        view, _, _ = _windows(xp, x.astype(g.dtype, copy=False), (kh, kw), stride, pads, dilation)
        cols = view.reshape(n, c * kh * kw, ho * wo)
        gw = xp.matmul(g3, cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    if needs[0]:
        gx = _conv_input_grad(xp, w.astype(g.dtype, copy=False), g, x.shape, stride, pads, dilation)
    return gx, gw


def _conv_input_grad(xp, w, g, shape, stride, pads, dilation=(1, 1)):
    """The gradient for `_conv`'s input of `shape` (a transposed convolution of g by w)."""
    o, c, kh, kw = w.shape
    n, _, ho, wo = g.shape
    w2t = w.reshape(o, c * kh * kw).T
    if stride != (1, 1):
        gcols = xp.matmul(w2t, g.reshape(n, o, ho * wo))
        return _unwindow(xp, gcols.reshape(n, c, kh, kw, ho, wo), shape, stride, pads, dilation)
    # stride 1: g's rows widened with zeros to the padded input's width, so that each kernel
    # position's gradient lands on one contiguous run of the flattened padded input (a shift
    # by its offset), added whole: `_unwindow`'s strided adds of short rows cost twice that
    (dh, dw), ((pt, pb), (pl, pr)) = dilation, pads
    _, _, h, wi = shape
    hp, wp = h + pt + pb, wi + pl + pr
    wide = xp.zeros((n, o, ho, wp), dtype=g.dtype)
    wide[..., :wo] = g
    gcols = xp.matmul(w2t, wide.reshape(n, o, ho * wp)).reshape(n, c, kh * kw, ho * wp)
    flat = xp.zeros((n, c, hp * wp + wp), dtype=g.dtype)  # (the last runs pass the end by under a row: zeros)
    for i in range(kh):
        for j in range(kw):
            at = i * dh * wp + j * dw
            flat[:, :, at : at + ho * wp] += gcols[:, :, i * kw + j]
    return flat[:, :, : hp * wp].reshape(n, c, hp, wp)[:, :, pt : pt + h, pl : pl + wi]


def _conv_cost(arrays, out, attrs):
    w = arrays[1]
    return 2 * out.size * w.shape[1] * w.shape[2] * w.shape[3] + (out.size if len(arrays) > 2 else 0)


@register("conv2d", tf="Conv2D", cost=_conv_cost)
def conv2d(xp, x, w, b=None, stride=1, padding=0):
    """Cross-correlation of x (N, C, H, W) with w (O, C, kh, kw), plus a bias b (O,) per output
    channel when given, as PyTorch's conv2d (NCHW): one op with its bias (torch's aten::conv2d),
    added into the matmul's fresh result."""
    if x.ndim != 4 or w.ndim != 4:
        raise Invalid(f"expected a 4-D input (N, C, H, W) and a 4-D weight (O, C, kh, kw), got {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise Invalid(f"input has {x.shape[1]} channels but the weight {w.shape} expects {w.shape[1]}")
    if b is not None and b.shape != (w.shape[0],):
        raise Invalid(f"the bias must have shape ({w.shape[0]},), one value per output channel, got {b.shape}")
    x, w = _same(x, w)
    out = _conv(xp, x, w, _pair(stride), _sym(padding))
    if b is not None:
        out += b.astype(out.dtype, copy=False).reshape(1, -1, 1, 1)
    return out


@conv2d.defvjp
def _(ctx, g):
    x, w = ctx.args[:2]
    stride, pads = _pair(ctx.attrs.get("stride", 1)), _sym(ctx.attrs.get("padding", 0))
    grads = _conv_grads(ctx.xp, x, w, g, ctx.needs, stride, pads)
    if len(ctx.args) == 2:
        return grads
    b = ctx.args[2]
    return (*grads, g.sum(axis=(0, 2, 3)).astype(b.dtype, copy=False) if ctx.needs[2] else None)


def _pool_max(xp, x, kernel, stride, pads):
    """(the maximum of each window of x (N, C, H, W), the first of its kh*kw positions that
    holds it). The windows are copied once, position-major (N, C, K, Ho, Wo), then compared
    position by position over whole arrays: a numpy reduction or argmax over a small axis,
    or a masked write, costs several times as much. Ties go to the first position; a NaN
    wins its window, the last NaN where there are several (as PyTorch's CPU kernel). Padding
    never wins (-inf)."""
    kh, kw = kernel
    view, ho, wo = _windows(xp, x, kernel, stride, pads, fill=-np.inf)
    n, c = x.shape[:2]
    cols = view.reshape(n, c, kh * kw, ho, wo)
    best = cols[:, :, 0]
    first = xp.zeros(best.shape, xp.int64)
    for k in range(1, kh * kw):
        cand = cols[:, :, k]
        moves = (cand > best) | (cand != cand)
        first = xp.maximum(first, moves * k)  # (positions only grow: no masked write)
        best = xp.maximum(best, cand)
    return best, first


def _pool_max_grad(xp, g, first, shape, kernel, stride, pads):
    """The gradient of `_pool_max`: each window's to its first maximum."""
    kh, kw = kernel
    gcols = xp.stack([(first == k) * g for k in range(kh * kw)], axis=2).reshape(*g.shape[:2], kh, kw, *g.shape[2:])
    return _unwindow(xp, gcols, shape, stride, pads)


def _pool_args(kernel_size, stride=None, padding=0):
    """max_pool2d's and avg_pool2d's (kernel, stride, pads) from their arguments (or their
    VJP's `**ctx.attrs`), PyTorch's defaults."""
    return _pair(kernel_size), _pair(stride or kernel_size), _sym(padding)


@register("max_pool2d", tf="MaxPool", cost=_in_cost(1), saves=True)
def max_pool2d(xp, x, kernel_size, stride=None, padding=0):
    """The maximum of each window; keeps where it was, for the VJP (PyTorch's indices)."""
    if x.ndim != 4:
        raise Invalid(f"expected a 4-D input (N, C, H, W), got {x.shape}")
    return _pool_max(xp, x, *_pool_args(kernel_size, stride, padding))


@max_pool2d.defvjp
def _(ctx, g):
    x, xp = ctx.args[0], ctx.xp
    geo = _pool_args(**ctx.attrs)
    first = ctx.saved
    if first is None:  # (graph mode keeps no residuals)
        first = _pool_max(xp, x, *geo)[1]
    return (_pool_max_grad(xp, g, first, x.shape, *geo),)


@register("avg_pool2d", tf="AvgPool", cost=_in_cost(1))
def avg_pool2d(xp, x, kernel_size, stride=None, padding=0):
    """The mean of each window; zero padding counts in the mean (PyTorch's count_include_pad=True)."""
    if x.ndim != 4:
        raise Invalid(f"expected a 4-D input (N, C, H, W), got {x.shape}")
    kernel, stride, pads = _pool_args(kernel_size, stride, padding)
    return _windows(xp, x, kernel, stride, pads)[0].mean(axis=(2, 3))


@avg_pool2d.defvjp
def _(ctx, g):
    (kh, kw), stride, pads = _pool_args(**ctx.attrs)
    n, c, ho, wo = g.shape
    gcols = ctx.xp.broadcast_to((g / (kh * kw))[:, :, None, None], (n, c, kh, kw, ho, wo))
    return (_unwindow(ctx.xp, gcols, ctx.args[0].shape, stride, pads),)


# TensorFlow 1 layouts (tf.nn.conv2d, conv2d_transpose, max_pool, avg_pool).
# TF's own conventions over the kernels above: NHWC input by default (NCHW on request), an
# (kh, kw, in, out) filter, `padding` "SAME", "VALID" or explicit ((top, bottom), (left,
# right)) (SAME pads asymmetrically, the extra row at the bottom), strides and dilations.
# Padding is worked out from the real input, so unknown sizes are fine.


def _tf_geometry(attrs, x, kh, kw):
    """(strides, ((top, bottom), (left, right)), dilations) for an NHWC input x (or its shape)."""
    sh, sw = attrs.get("strides", (1, 1))
    dh, dw = attrs.get("dilations", (1, 1))
    padding = attrs.get("padding", "VALID")
    if padding == "VALID":
        pads = ((0, 0), (0, 0))
    elif padding == "SAME":
        pads = []
        shape = x if isinstance(x, tuple) else x.shape
        for size, k, s, d in ((shape[1], kh, sh, dh), (shape[2], kw, sw, dw)):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        pads = tuple(pads)
    else:
        pads = tuple(tuple(int(v) for v in p) for p in padding)
    return (int(sh), int(sw)), pads, (int(dh), int(dw))


def _nhwc(x, nchw):
    return x.transpose(0, 2, 3, 1) if nchw else x


def _nchw(x, nchw):
    """An NHWC array (or an NCHW one, `nchw`) as an NCHW view, for the kernels above."""
    return x if nchw else x.transpose(0, 3, 1, 2)


def _out(xp, y, nchw):
    """A kernel's NCHW result in the op's layout, contiguous."""
    return y if nchw else xp.ascontiguousarray(y.transpose(0, 2, 3, 1))


def _oihw(w):
    """A TF filter (kh, kw, in, out) as the kernels' (out, in, kh, kw)."""
    return w.transpose(3, 2, 0, 1)


def _hwio(xp, w):
    """A kernel's (out, in, kh, kw) filter gradient back in TF's layout, contiguous."""
    return xp.ascontiguousarray(w.transpose(2, 3, 1, 0))


@register("tf_conv2d", tf="Conv2D", cost=lambda arrays, out, attrs: 2 * out.size * arrays[1][..., 0].size)
def tf_conv2d(xp, x, w, strides=(1, 1), padding="VALID", dilations=(1, 1), nchw=False):
    """tf.nn.conv2d: x (N, H, W, C) (or NCHW) cross-correlated with w (kh, kw, C, O)."""
    if x.ndim != 4 or w.ndim != 4:
        raise Invalid(f"expected a 4-D input and a 4-D filter (height, width, in, out), got {x.shape} and {w.shape}")
    x, w = _same(x, w)
    xh = _nhwc(x, nchw)
    kh, kw, c, o = w.shape
    if xh.shape[3] != c:
        raise Invalid(f"input has {xh.shape[3]} channels but the filter {w.shape} expects {c}")
    attrs = {"strides": strides, "padding": padding, "dilations": dilations}
    return _out(xp, _conv(xp, _nchw(x, nchw), _oihw(w), *_tf_geometry(attrs, xh, kh, kw)), nchw)


@tf_conv2d.defvjp
def _(ctx, g):
    x, w = ctx.args
    xp, nchw = ctx.xp, ctx.attrs.get("nchw", False)
    kh, kw = w.shape[:2]
    geo = _tf_geometry(ctx.attrs, _nhwc(x, nchw), kh, kw)
    gx, gw = _conv_grads(xp, _nchw(x, nchw), _oihw(w), _nchw(g, nchw), ctx.needs, *geo)
    return (None if gx is None else _out(xp, gx, nchw)), (None if gw is None else _hwio(xp, gw))


@register(
    "tf_conv2d_transpose",
    tf="Conv2DBackpropInput",
    cost=lambda arrays, out, attrs: 2 * arrays[0].size * arrays[1][..., 0, 0].size * arrays[1].shape[2],
)
def tf_conv2d_transpose(xp, value, w, out_hw, strides=(1, 1), padding="VALID", nchw=False):
    """tf.nn.conv2d_transpose: the gradient of tf_conv2d with respect to its input, for an
    output of spatial size `out_hw`; w is (kh, kw, out_channels, in_channels)."""
    if value.ndim != 4 or w.ndim != 4:
        raise Invalid(f"expected a 4-D input and a 4-D filter, got {value.shape} and {w.shape}")
    value, w = _same(value, w)
    v = _nhwc(value, nchw)
    kh, kw, c, o = w.shape
    if v.shape[3] != o:
        raise Invalid(f"input has {v.shape[3]} channels but the filter {w.shape} expects {o} (its last dimension)")
    shape = (v.shape[0], int(out_hw[0]), int(out_hw[1]), c)
    geo = _tf_geometry({"strides": strides, "padding": padding}, shape, kh, kw)
    (sh, sw), ((pt, pb), (pl, pr)), _ = geo
    ho, wo = (shape[1] + pt + pb - kh) // sh + 1, (shape[2] + pl + pr - kw) // sw + 1
    if (ho, wo) != tuple(v.shape[1:3]):
        raise Invalid(
            f"an output of size {tuple(out_hw)} with this filter, strides and padding gives a "
            f"{(ho, wo)} input, not {tuple(v.shape[1:3])}"
        )
    gx = _conv_input_grad(xp, _oihw(w), _nchw(value, nchw), (shape[0], c, shape[1], shape[2]), *geo)
    return _out(xp, gx, nchw)


@tf_conv2d_transpose.defvjp
def _(ctx, g):
    # the adjoint of the input's gradient is the convolution itself: of g, by the same filter
    v, w = ctx.args
    xp, nchw = ctx.xp, ctx.attrs.get("nchw", False)
    kh, kw = w.shape[:2]
    geo = _tf_geometry(ctx.attrs, _nhwc(g, nchw), kh, kw)
    gc, vc, wo = _nchw(g, nchw), _nchw(v, nchw), _oihw(w).astype(g.dtype, copy=False)
    gv = _out(xp, _conv(xp, gc, wo, *geo), nchw) if ctx.needs[0] else None
    gw = _conv_grads(xp, gc, wo, vc.astype(g.dtype, copy=False), (False, True), *geo)[1] if ctx.needs[1] else None
    return gv, (None if gw is None else _hwio(xp, gw))


def _tf_pool_args(attrs, x, nchw):
    """(x as NCHW, kernel, strides, pads) of a TF pool."""
    kh, kw = attrs["ksize"]
    strides, pads, _ = _tf_geometry(attrs, _nhwc(x, nchw), kh, kw)
    return _nchw(x, nchw), (kh, kw), strides, pads


def _tf_pool_counts(xp, x, kernel, strides, pads):
    """How many real (unpadded) elements each window of NCHW x covers: TF's avg_pool divides by this."""
    ones = xp.ones((1, 1, x.shape[2], x.shape[3]), dtype=x.dtype)
    return _windows(xp, ones, kernel, strides, pads)[0].sum(axis=(2, 3))


@register("tf_max_pool", tf="MaxPool", cost=_in_cost(1))
def tf_max_pool(xp, x, ksize, strides=(1, 1), padding="VALID", nchw=False):
    """tf.nn.max_pool over NHWC (or NCHW) input; padding never wins the max."""
    if x.ndim != 4:
        raise Invalid(f"expected a 4-D input, got {x.shape}")
    xc, *geo = _tf_pool_args({"ksize": ksize, "strides": strides, "padding": padding}, x, nchw)
    return _out(xp, _pool_max(xp, xc, *geo)[0], nchw)


@tf_max_pool.defvjp
def _(ctx, g):
    xp, nchw = ctx.xp, ctx.attrs.get("nchw", False)
    xc, *geo = _tf_pool_args(ctx.attrs, ctx.args[0], nchw)
    first = _pool_max(xp, xc, *geo)[1]
    return (_out(xp, _pool_max_grad(xp, _nchw(g, nchw), first, xc.shape, *geo), nchw),)


@register("tf_avg_pool", tf="AvgPool", cost=_in_cost(1))
def tf_avg_pool(xp, x, ksize, strides=(1, 1), padding="VALID", nchw=False):
    """tf.nn.avg_pool: the mean of each window's real elements (padding is not counted, as TF)."""
    if x.ndim != 4:
        raise Invalid(f"expected a 4-D input, got {x.shape}")
    xc, *geo = _tf_pool_args({"ksize": ksize, "strides": strides, "padding": padding}, x, nchw)
    sums = _windows(xp, xc, *geo)[0].sum(axis=(2, 3))
    return _out(xp, sums / _tf_pool_counts(xp, xc, *geo), nchw)


@tf_avg_pool.defvjp
def _(ctx, g):
    xp, nchw = ctx.xp, ctx.attrs.get("nchw", False)
    xc, kernel, strides, pads = _tf_pool_args(ctx.attrs, ctx.args[0], nchw)
    gc = _nchw(g, nchw) / _tf_pool_counts(xp, xc, kernel, strides, pads)
    n, c, ho, wo = gc.shape
    gcols = xp.broadcast_to(gc[:, :, None, None], (n, c, *kernel, ho, wo))
    return (_out(xp, _unwindow(xp, gcols, xc.shape, strides, pads), nchw),)


# ----------------------------------------------------------------- FFT
# VJPs use PyTorch's complex convention (grad = dL/dRe + i dL/dIm): the VJP of a linear
# map is its adjoint, and the adjoint of an unnormalized DFT is the inverse DFT with the
# opposite normalization.


def _fft_cost(arrays, out, attrs):
    return 5 * out.size * max(1, int(math.log2(max(out.size, 2))))  # the usual 5 n log2 n estimate


_DUAL = {None: "forward", "backward": "forward", "forward": "backward", "ortho": "ortho"}


def _fit(xp, g, m, axis):
    """Truncates or zero-pads `g` along `axis` to length m (the adjoint of fft's `n`)."""
    k = g.shape[axis]
    if k == m:
        return g
    if k > m:
        return xp.take(g, xp.arange(m), axis=axis)
    pad = [(0, 0)] * g.ndim
    pad[axis] = (0, m - k)
    return xp.pad(g, pad)


def _real_grad(g, a):
    return g.real if a.dtype.kind != "c" else g


def _complex_dtype(a):
    return np.complex128 if a.dtype in (np.float64, np.complex128) else np.complex64


@register("fft", tf="FFT", cost=_fft_cost)
def fft(xp, a, n=None, axis=-1, norm=None):
    return xp.fft.fft(a, n=n, axis=axis, norm=norm).astype(_complex_dtype(a), copy=False)


@fft.defvjp
def _(ctx, g):
    a = ctx.args[0]
    ax = ctx.attrs.get("axis", -1)
    gi = ctx.xp.fft.ifft(g, axis=ax, norm=_DUAL[ctx.attrs.get("norm", None)])
    return (_real_grad(_fit(ctx.xp, gi, a.shape[ax], ax), a),)


@register("ifft", tf="IFFT", cost=_fft_cost)
def ifft(xp, a, n=None, axis=-1, norm=None):
    return xp.fft.ifft(a, n=n, axis=axis, norm=norm).astype(_complex_dtype(a), copy=False)


@ifft.defvjp
def _(ctx, g):
    a = ctx.args[0]
    ax = ctx.attrs.get("axis", -1)
    gi = ctx.xp.fft.fft(g, axis=ax, norm=_DUAL[ctx.attrs.get("norm", None)])
    return (_real_grad(_fit(ctx.xp, gi, a.shape[ax], ax), a),)


@register("rfft", tf="RFFT", cost=_fft_cost)
def rfft(xp, a, n=None, axis=-1, norm=None):
    if a.dtype.kind == "c":
        raise InvalidDType(f"rfft expects a real input, got {a.dtype}")
    return xp.fft.rfft(a, n=n, axis=axis, norm=norm).astype(_complex_dtype(a), copy=False)


@rfft.defvjp
def _(ctx, g):
    a = ctx.args[0]
    ax = ctx.attrs.get("axis", -1)
    n = ctx.attrs.get("n", None) or a.shape[ax]
    # rfft keeps the first n//2+1 bins of the full DFT: adjoint = zero-fill the rest, inverse DFT
    gi = ctx.xp.fft.ifft(g, n=n, axis=ax, norm=_DUAL[ctx.attrs.get("norm", None)]).real
    return (_fit(ctx.xp, gi, a.shape[ax], ax),)


@register("irfft", tf="IRFFT", cost=_fft_cost)
def irfft(xp, a, n=None, axis=-1, norm=None):
    out = xp.fft.irfft(a, n=n, axis=axis, norm=norm)
    return out.astype(np.float32 if a.dtype in (np.float32, np.complex64) else np.float64, copy=False)


@irfft.defvjp
def _(ctx, g):
    a = ctx.args[0]
    xp = ctx.xp
    ax = ctx.attrs.get("axis", -1)
    n = ctx.out.shape[ax]
    gi = xp.fft.rfft(g, axis=ax, norm=_DUAL[ctx.attrs.get("norm", None)])
    # bins 1 .. (n-1)//2 stand for two (the bin and its conjugate mirror), so count twice
    w = xp.full(gi.shape[ax], 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    shp = [1] * gi.ndim
    shp[ax] = -1
    gi = gi * w.reshape(shp)
    return (_fit(xp, gi, a.shape[ax], ax).astype(_complex_dtype(a), copy=False),)


# ----------------------------------------------------------------- random sampling
# Sampling ops are pure: the caller draws uniform numbers from a Generator and passes them in,
# so the op is deterministic given its inputs and both modes agree.


@register("bernoulli", tf="Bernoulli")
def bernoulli(xp, p, u):
    """1 where the uniform draw u falls below the probability p, else 0 (in p's dtype)."""
    if p.size and (float(p.min()) < 0 or float(p.max()) > 1):
        raise Invalid("bernoulli needs probabilities in [0, 1]")
    return (u < p).astype(p.dtype)


@register("multinomial", errstate="forward", tf="Multinomial")
def multinomial(xp, probs, u, num_samples, replacement):
    """Category indices drawn from the rows of `probs` (unnormalized weights). With
    replacement: inverse CDF at u (..., num_samples); without: the num_samples largest keys
    u ** (1 / w) (Efraimidis-Spirakis), u (..., categories)."""
    if probs.ndim not in (1, 2):
        raise Invalid(f"multinomial needs a 1-D or 2-D probability tensor, got {probs.ndim}-D")
    if probs.size and (float(probs.min()) < 0 or not bool(xp.all(probs.sum(-1) > 0))):
        raise Invalid("multinomial needs non-negative weights with a positive sum in every row")
    w = probs.astype(np.float64)
    if replacement:
        cdf = xp.cumsum(w, -1)
        cdf = cdf / cdf[..., -1:]
        if w.ndim == 1:
            idx = xp.searchsorted(cdf, u, side="right")
        else:
            idx = xp.stack([xp.searchsorted(c, r, side="right") for c, r in zip(cdf, u)])
        return xp.minimum(idx, w.shape[-1] - 1).astype(np.int64)
    if num_samples > int((w > 0).sum(-1).min()):
        raise Invalid(f"cannot draw {num_samples} samples without replacement from fewer nonzero categories")
    keys = xp.where(w > 0, xp.log(u) / xp.where(w > 0, w, 1), -xp.inf)
    return xp.argsort(-keys, axis=-1, kind="stable")[..., :num_samples].astype(np.int64)


# ----------------------------------------------------------------- optimizer updates
# Forward only, in place on the parameter array (and the optimizer's state arrays); they
# pass the dispatch point as "update"-phase events when someone listens.


@register("sgd_update", tf="ApplyGradientDescent")
def sgd_update(xp, p, g, buf=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, first=False):
    """PyTorch's SGD step; `buf` is the momentum buffer (updated in place)."""
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g if dampening else g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g
    return p


@register("adam_update", tf="ApplyAdam")
def adam_update(
    xp, p, g, m, v, vmax=None, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1, decoupled=False
):
    """PyTorch's Adam (AdamW with `decoupled`); m, v (and vmax for amsgrad) updated in place."""
    if weight_decay:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    denom = xp.sqrt(v / bc2)
    denom += eps
    p -= (lr / bc1) * (m / denom)
    return p


# PyTorch's update rules, in place on the parameter and state arrays (see sgd_update above)


@register("adagrad_update", tf="ApplyAdagrad")
def adagrad_update(xp, p, g, state_sum, *, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    if weight_decay:
        g = g + weight_decay * p
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += g * g
    p -= clr * (g / (xp.sqrt(state_sum) + eps))
    return p


@register("rmsprop_update", tf="ApplyRMSProp")
def rmsprop_update(
    xp,
    p,
    g,
    square_avg,
    grad_avg=None,
    buf=None,
    *,
    lr,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
):
    if weight_decay:
        g = g + weight_decay * p
    square_avg *= alpha
    square_avg += (1 - alpha) * (g * g)
    if centered:
        grad_avg += (1 - alpha) * (g - grad_avg)  # lerp, as PyTorch
        avg = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = xp.sqrt(square_avg) + eps
    if momentum > 0:
        buf *= momentum
        buf += g / avg
        p -= lr * buf
    else:
        p -= lr * (g / avg)
    return p


@register("adadelta_update", tf="ApplyAdadelta")
def adadelta_update(xp, p, g, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    square_avg *= rho
    square_avg += (1 - rho) * (g * g)
    delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * g
    acc_delta *= rho
    acc_delta += (1 - rho) * (delta * delta)
    p -= lr * delta
    return p


@register("lbfgs_update", tf="ApplyLbfgs")
def lbfgs_update(xp, p, d, *, t):
    """One L-BFGS move of a parameter: p += t * d (d: its slice of the search direction)."""
    p += t * d.reshape(p.shape).astype(p.dtype, copy=False)
    return p


@register("tf_rmsprop_update", tf="ApplyRMSProp")
def tf_rmsprop_update(xp, p, g, ms, mom, mg=None, *, lr, decay=0.9, momentum=0.0, eps=1e-10):
    """TF1's RMSProp, in place: ms = decay ms + (1 - decay) g^2 (centered: minus the squared mean
    gradient mg); mom = momentum mom + lr g / sqrt(ms + eps); p -= mom."""
    ms *= decay
    ms += (1 - decay) * (g * g)
    denom = ms + eps
    if mg is not None:
        mg *= decay
        mg += (1 - decay) * g
        denom = denom - mg * mg
    mom *= momentum
    mom += lr * g / xp.sqrt(denom)
    p -= mom
    return p


@register("tf_adagrad_update", tf="ApplyAdagrad")
def tf_adagrad_update(xp, p, g, accum, *, lr):
    """TF1's Adagrad, in place: accum += g^2; p -= lr g / sqrt(accum)."""
    accum += g * g
    p -= lr * g / xp.sqrt(accum)
    return p


# ----------------------------------------------------------------- shapes as values (Shape, Size, Rank, Range, Fill)


@register("shape", tf="Shape", cost=_no_cost)
def shape(xp, a, dtype=np.int32):
    """The runtime shape as a 1-D integer tensor (tf.shape)."""
    return xp.asarray(a.shape, dtype=dtype)


@register("size", tf="Size", cost=_no_cost)
def size(xp, a, dtype=np.int32):
    return xp.asarray(a.size, dtype=dtype)


@register("rank", tf="Rank", cost=_no_cost)
def rank(xp, a):
    return xp.asarray(a.ndim, dtype=np.int32)


@register("range", tf="Range", cost=_no_cost)
def range_(xp, start, limit, delta, dtype=None):  # not `range`: ops.py uses the builtin
    """[start, limit) in steps of delta, from scalar tensors (tf.range of graph tensors)."""
    if float(delta.item()) == 0:
        raise Invalid("range needs a nonzero delta")
    return xp.arange(start.item(), limit.item(), delta.item(), dtype=dtype or _result_dtype((start, limit, delta)))


@register("tf_fill", tf="Fill", cost=_no_cost)
def tf_fill(xp, dims, value=0, dtype=np.float32):
    """tf.fill / tf.zeros with a shape known only at run time (a 1-D integer tensor)."""
    shape = tuple(int(d) for d in dims.reshape(-1).tolist())
    if any(d < 0 for d in shape):
        raise Invalid(f"a shape cannot have negative sizes, got {shape}")
    return xp.full(shape, value, dtype=dtype)
