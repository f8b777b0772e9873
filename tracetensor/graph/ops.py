"""TensorFlow-1-named graph builders (`tf.matmul`, `tf.reduce_mean`, `tf.nn.relu`, ...):
each adds one node that runs the same registry op eager mode runs."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import dtypes as _dt
from .._registry import REGISTRY
from ..tensor import Tensor as _EagerTensor
from .core import Graph, InvalidArgumentError, Operation, Tensor, get_default_graph

__all__ = [
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
    "DType",
    "as_dtype",
    "constant",
    "convert_to_tensor",
    "add",
    "subtract",
    "multiply",
    "divide",
    "truediv",
    "div",
    "realdiv",
    "sub",
    "mul",
    "floordiv",
    "floormod",
    "mod",
    "pow",
    "maximum",
    "minimum",
    "matmul",
    "negative",
    "neg",
    "square",
    "sqrt",
    "exp",
    "log",
    "abs",
    "sign",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "is_nan",
    "is_inf",
    "is_finite",
    "logical_not",
    "identity",
    "real",
    "imag",
    "rsqrt",
    "reciprocal",
    "floor",
    "ceil",
    "round",
    "log1p",
    "expm1",
    "erf",
    "softplus",
    "elu",
    "leaky_relu",
    "silu",
    "swish",
    "norm",
    "reduce_euclidean_norm",
    "tile",
    "shape",
    "size",
    "rank",
    "range",
    "linspace",
    "lin_space",
    "argsort",
    "sort",
    "top_k",
    "sigmoid_cross_entropy_with_logits",
    "l2_normalize",
    "moments",
    "batch_normalization",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "logical_and",
    "logical_or",
    "logical_xor",
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
    "cast",
    "reshape",
    "transpose",
    "matrix_transpose",
    "reverse",
    "reverse_v2",
    "concat",
    "stack",
    "squeeze",
    "expand_dims",
    "clip_by_value",
    "where",
    "where_v2",
    "add_n",
    "one_hot",
    "gather",
    "strided_slice",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
    "bias_add",
    "l2_loss",
    "embedding_lookup",
    "diag",
    "diag_part",
    "fft",
    "ifft",
    "check_numerics",
    "no_op",
    "group",
    "control_dependencies",
    "name_scope",
    "device",
    "zeros",
    "ones",
    "fill",
    "zeros_like",
    "ones_like",
    "placeholder",
    "placeholder_with_default",
    "random_normal",
    "truncated_normal",
    "random_uniform",
    "set_random_seed",
]

# --------------------------------------------------------------------------- dtypes

float16, float32, float64 = _dt.float16, _dt.float32, _dt.float64
int8, int16, int32, int64, uint8 = _dt.int8, _dt.int16, _dt.int32, _dt.int64, _dt.uint8
bool = _dt.bool
complex64, complex128 = _dt.complex64, _dt.complex128
DType = _dt.dtype


_TF_NAMES = {"float": _dt.float32, "double": _dt.float64, "half": _dt.float16}


def as_dtype(d: Any) -> _dt.dtype:
    """A tracetensor dtype from a dtype, numpy dtype, Python type or name ('float32')."""
    if isinstance(d, _dt.dtype):
        return d
    if d is builtins.float:
        return float32
    if d is builtins.int:
        return int32
    if d is builtins.bool:
        return bool
    if isinstance(d, str) and d in _TF_NAMES:  # TF's names: "float" is float32 (numpy reads float64)
        return _TF_NAMES[d]
    try:
        return _dt.from_numpy(np.dtype(d))
    except (TypeError, KeyError):
        raise TypeError(f"cannot interpret {d!r} as a dtype") from None


# --------------------------------------------------------------------------- conversion


def _graph_of(values: Sequence[Any]) -> Graph:
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
    return get_default_graph()


def _np_value(value: Any, dtype: _dt.dtype | None) -> np.ndarray:
    """TF's constant rules: Python floats become float32 and ints int32 unless a dtype says otherwise."""
    if isinstance(value, _EagerTensor):
        value = np.asarray(value)
    if dtype is not None:
        return np.array(value, dtype=dtype.np)
    a = np.array(value)
    if not isinstance(value, (np.ndarray, np.generic)):
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        elif a.dtype == np.int64:
            a = a.astype(np.int32)
        elif a.dtype == np.complex128:
            a = a.astype(np.complex64)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"cannot make a tensor of {type(value).__name__} values (dtype {a.dtype})")
    return a


def constant(
    value: Any,
    dtype: Any = None,
    shape: Sequence[int] | None = None,
    name: str = "Const",
    graph: Graph | None = None,
) -> Tensor:
    """A node whose output is always `value`."""
    dt = as_dtype(dtype) if dtype is not None else None
    a = _np_value(value, dt)
    if shape is not None:
        shape = tuple(shape)
        a = np.broadcast_to(a, shape).copy() if a.size == 1 or a.shape != shape else a.reshape(shape)
    g = graph or get_default_graph()
    op = g.create_op("const", "Const", (), {"value": a}, name=name, out=[(a.shape, _dt.from_numpy(a.dtype))])
    return op.outputs[0]


def convert_to_tensor(
    value: Any,
    dtype: Any = None,
    name: str | None = None,
    *,
    like: Tensor | None = None,
    graph: Graph | None = None,
) -> Tensor:
    """A graph tensor from a tensor, Variable, number, list or array. Next to `like`, a
    Python number takes `like`'s dtype where it fits (so `x * 2` keeps float32)."""
    if isinstance(value, Tensor):
        if dtype is not None and as_dtype(dtype) != value.dtype:
            raise InvalidArgumentError(
                f"tensor '{value.name}' has dtype {value.dtype.name}, {as_dtype(dtype).name} was requested"
            )
        return value
    g = graph or (like.graph if like is not None else get_default_graph())
    if (
        dtype is None
        and like is not None
        and isinstance(value, (builtins.int, builtins.float, builtins.bool, np.number))
    ):
        dtype = _dt.from_numpy(_dt.scalar_dtype(value, like.dtype.np))
    return constant(value, dtype=dtype, name=name or "Const", graph=g)


def _tensors(*values: Any) -> list[Tensor]:
    like = next((v for v in values if isinstance(v, Tensor)), None)
    g = like.graph if like is not None else get_default_graph()
    return [convert_to_tensor(v, like=like, graph=g) for v in values]


def apply(
    opname: str,
    inputs: Sequence[Any],
    attrs: dict | None = None,
    name: str | None = None,
    out: tuple[tuple | None, _dt.dtype] | None = None,
) -> Tensor:
    """Adds a node running registry op `opname`; its type is the op's TensorFlow name.
    `out` gives the output's static (dims, dtype) where the size depends on the values
    (inference, which runs the op on stand-in arrays, would guess it wrong)."""
    opdef = REGISTRY[opname]
    ts = _tensors(*inputs)
    g = _graph_of(ts)
    op = g.create_op("op", opdef.tf_name, ts, attrs or {}, name=name, opdef=opdef, out=None if out is None else [out])
    return op.outputs[0]


def _axis(axis: Any) -> Any:
    if axis is None or isinstance(axis, builtins.int):
        return axis
    if isinstance(axis, Tensor):
        raise InvalidArgumentError(f"axis must be a Python int or list of ints, got the graph tensor '{axis.name}'")
    return tuple(builtins.int(a) for a in axis)


# --------------------------------------------------------------------------- arithmetic


def add(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("add", (x, y), name=name)


def subtract(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("sub", (x, y), name=name)


def multiply(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("mul", (x, y), name=name)


def divide(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("div", (x, y), name=name)


truediv = div = realdiv = divide
sub, mul = subtract, multiply


def floordiv(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("floordiv", (x, y), name=name)


def floormod(x: Any, y: Any, name: str | None = None) -> Tensor:
    """Python's `%` (the result has the sign of y): one FloorMod node."""
    return apply("remainder", (x, y), name=name)


mod = floormod


def pow(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("pow", (x, y), name=name)


def maximum(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("maximum", (x, y), name=name)


def minimum(x: Any, y: Any, name: str | None = None) -> Tensor:
    return apply("minimum", (x, y), name=name)


def matmul(
    a: Any,
    b: Any,
    transpose_a: builtins.bool = False,
    transpose_b: builtins.bool = False,
    name: str | None = None,
) -> Tensor:
    a, b = _tensors(a, b)
    if transpose_a:
        a = matrix_transpose(a)
    if transpose_b:
        b = matrix_transpose(b)
    return apply("matmul", (a, b), name=name)


def _unary(opname: str, doc: str):
    def fn(x: Any, name: str | None = None) -> Tensor:
        return apply(opname, (x,), name=name)

    fn.__name__ = fn.__qualname__ = doc
    fn.__doc__ = f"`tf.{doc}(x)`: the registry op '{opname}'."
    return fn


negative = neg = _unary("neg", "negative")
square = _unary("square", "square")
sqrt = _unary("sqrt", "sqrt")
exp = _unary("exp", "exp")
log = _unary("log", "log")
abs = _unary("abs", "abs")
sign = _unary("sign", "sign")
sin = _unary("sin", "sin")
cos = _unary("cos", "cos")
tanh = _unary("tanh", "tanh")
sigmoid = _unary("sigmoid", "sigmoid")
relu = _unary("relu", "relu")
is_nan = _unary("isnan", "is_nan")
is_inf = _unary("isinf", "is_inf")
is_finite = _unary("isfinite", "is_finite")
logical_not = _unary("logical_not", "logical_not")
identity = _unary("identity", "identity")
real = _unary("real", "real")
imag = _unary("imag", "imag")


rsqrt = _unary("rsqrt", "rsqrt")
reciprocal = _unary("reciprocal", "reciprocal")
floor = _unary("floor", "floor")
ceil = _unary("ceil", "ceil")
round = _unary("round", "round")  # half to even, as TensorFlow
log1p = _unary("log1p", "log1p")
expm1 = _unary("expm1", "expm1")
erf = _unary("erf", "erf")
softplus = _unary("softplus", "softplus")
elu = _unary("elu", "elu")
swish = silu = _unary("silu", "silu")


def leaky_relu(features: Any, alpha: float = 0.2, name: str | None = None) -> Tensor:
    """max(x, alpha x); TensorFlow's default alpha is 0.2 (PyTorch's is 0.01)."""
    return apply("leaky_relu", (features,), {"negative_slope": float(alpha)}, name=name)


def _binary(opname: str, doc: str):
    def fn(x: Any, y: Any, name: str | None = None) -> Tensor:
        return apply(opname, (x, y), name=name)

    fn.__name__ = fn.__qualname__ = doc
    fn.__doc__ = f"`tf.{doc}(x, y)`: the registry op '{opname}'."
    return fn


equal = _binary("eq", "equal")
not_equal = _binary("ne", "not_equal")
less = _binary("lt", "less")
less_equal = _binary("le", "less_equal")
greater = _binary("gt", "greater")
greater_equal = _binary("ge", "greater_equal")
logical_and = _binary("logical_and", "logical_and")
logical_or = _binary("logical_or", "logical_or")
logical_xor = _binary("logical_xor", "logical_xor")


# --------------------------------------------------------------------------- reductions


def _reduce(opname: str, doc: str):
    def fn(
        input_tensor: Any,
        axis: Any = None,
        keepdims: builtins.bool = False,
        name: str | None = None,
        keep_dims: builtins.bool | None = None,
        reduction_indices: Any = None,
    ) -> Tensor:
        kd = keepdims if keep_dims is None else keep_dims  # TF1's old spelling
        ax = axis if reduction_indices is None else reduction_indices  # and TF1's old name of axis
        return apply(opname, (input_tensor,), {"axis": _axis(ax), "keepdims": builtins.bool(kd)}, name=name)

    fn.__name__ = fn.__qualname__ = doc
    fn.__doc__ = f"`tf.{doc}(x, axis=None, keepdims=False)`: the registry op '{opname}'."
    return fn


reduce_sum = _reduce("sum", "reduce_sum")
reduce_mean = _reduce("mean", "reduce_mean")
reduce_max = _reduce("amax", "reduce_max")
reduce_min = _reduce("amin", "reduce_min")
reduce_prod = _reduce("prod", "reduce_prod")
reduce_logsumexp = _reduce("logsumexp", "reduce_logsumexp")
reduce_all = _reduce("all", "reduce_all")
reduce_any = _reduce("any", "reduce_any")


def norm(
    tensor: Any,
    ord: Any = "euclidean",
    axis: Any = None,
    keepdims: builtins.bool = False,
    name: str | None = None,
    keep_dims: builtins.bool | None = None,
) -> Tensor:
    """The Euclidean (Frobenius) norm over `axis`, all elements when None (`ord` 2 or "euclidean")."""
    if ord not in ("euclidean", "fro", 2, 2.0):
        raise InvalidArgumentError(f"norm supports ord='euclidean' (or 2, 'fro'), got {ord!r}")
    kd = keepdims if keep_dims is None else keep_dims
    return apply("norm", (tensor,), {"axis": _axis(axis), "keepdims": builtins.bool(kd)}, name=name)


reduce_euclidean_norm = norm


def argmax(input: Any, axis: int | None = None, name: str | None = None, output_type: Any = int64) -> Tensor:
    out = apply("argmax", (input,), {"axis": 0 if axis is None else builtins.int(axis), "keepdims": False}, name=name)
    return out if as_dtype(output_type) == out.dtype else cast(out, output_type)


def argmin(input: Any, axis: int | None = None, name: str | None = None, output_type: Any = int64) -> Tensor:
    out = apply("argmin", (input,), {"axis": 0 if axis is None else builtins.int(axis), "keepdims": False}, name=name)
    return out if as_dtype(output_type) == out.dtype else cast(out, output_type)


# --------------------------------------------------------------------------- shapes and selection


def cast(x: Any, dtype: Any, name: str | None = None) -> Tensor:
    return apply("cast", (x,), {"dtype": as_dtype(dtype).np}, name=name)


def reshape(tensor: Any, shape: Sequence[int], name: str | None = None) -> Tensor:
    if isinstance(shape, Tensor):
        raise InvalidArgumentError("reshape needs a static shape (a list of ints, -1 for one inferred size)")
    return apply("reshape", (tensor,), {"shape": tuple(builtins.int(s) for s in shape)}, name=name)


def transpose(a: Any, perm: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    (t,) = _tensors(a)
    if perm is None:
        if t._dims is None:  # the rank is known only at run time: reverse whatever comes
            return apply("transpose_all", (t,), name=name or "transpose")
        perm = tuple(reversed(builtins.range(len(t._dims))))
    return apply("permute", (t,), {"axes": tuple(builtins.int(p) for p in perm)}, name=name)


def matrix_transpose(a: Any, name: str | None = None) -> Tensor:
    (t,) = _tensors(a)
    if t._dims is None:
        raise InvalidArgumentError(f"matrix_transpose of '{t.name}' needs a known rank")
    n = len(t._dims)
    perm = list(builtins.range(n))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(t, perm, name=name)


def reverse(tensor: Any, axis: Any, name: str | None = None) -> Tensor:
    return apply("flip", (tensor,), {"axis": _axis(axis)}, name=name)


reverse_v2 = reverse


def concat(values: Sequence[Any], axis: int, name: str | None = None) -> Tensor:
    return apply("cat", tuple(values), {"axis": builtins.int(axis)}, name=name)


def stack(values: Sequence[Any], axis: int = 0, name: str | None = None) -> Tensor:
    return apply("stack", tuple(values), {"axis": builtins.int(axis)}, name=name)


def squeeze(input: Any, axis: Any = None, name: str | None = None) -> Tensor:
    return apply("squeeze", (input,), {"axis": _axis(axis)}, name=name)


def expand_dims(input: Any, axis: int, name: str | None = None) -> Tensor:
    return apply("unsqueeze", (input,), {"axis": builtins.int(axis)}, name=name)


def clip_by_value(t: Any, clip_value_min: Any, clip_value_max: Any, name: str | None = None) -> Tensor:
    if isinstance(clip_value_min, Tensor) or isinstance(clip_value_max, Tensor):
        return minimum(maximum(t, clip_value_min), clip_value_max, name=name)
    return apply("clamp", (t,), {"min": clip_value_min, "max": clip_value_max}, name=name)


def where(condition: Any, x: Any = None, y: Any = None, name: str | None = None) -> Tensor:
    """`tf.where(c, x, y)` picks elementwise; `tf.where(c)` gives the (n, rank) int64 indices of
    the true elements (TF1's Where)."""
    if x is None and y is None:
        (c,) = _tensors(condition)
        dims = (None, None if c._dims is None else len(c._dims))
        return apply("nonzero", (c,), name=name, out=(dims if c._dims is not None else None, int64))
    if x is None or y is None:
        raise InvalidArgumentError("tf.where needs both x and y, or neither")
    cond, a, b = _tensors(condition, x, y)
    return apply("where", (cond, a, b), name=name)


where_v2 = where


def add_n(inputs: Sequence[Any], name: str | None = None) -> Tensor:
    inputs = list(inputs)
    if not inputs:
        raise InvalidArgumentError("add_n needs at least one input")
    return apply("add_n", tuple(inputs), name=name)


def one_hot(
    indices: Any,
    depth: int,
    on_value: Any = None,
    off_value: Any = None,
    axis: int | None = None,
    dtype: Any = None,
    name: str | None = None,
) -> Tensor:
    dt = as_dtype(dtype) if dtype is not None else float32
    out = apply("one_hot", (indices,), {"num_classes": builtins.int(depth), "dtype": dt.np}, name=name)
    if on_value is not None or off_value is not None:
        on = 1 if on_value is None else on_value
        off = 0 if off_value is None else off_value
        out = where(cast(out, bool), constant(on, dtype=dt), constant(off, dtype=dt))
    if axis not in (None, -1):
        raise InvalidArgumentError("one_hot supports only axis=-1 (the classes last)")
    return out


def gather(params: Any, indices: Any, axis: int = 0, name: str | None = None) -> Tensor:
    return apply("index_select", (params, indices), {"axis": builtins.int(axis)}, name=name)


def tile(input: Any, multiples: Sequence[int], name: str | None = None) -> Tensor:
    """Repeats `input` multiples[i] times along dimension i."""
    if isinstance(multiples, Tensor):
        raise InvalidArgumentError("tile needs static multiples (a list of ints)")
    return apply("tile", (input,), {"reps": tuple(builtins.int(m) for m in multiples)}, name=name)


def shape(input: Any, name: str | None = None, out_type: Any = int32) -> Tensor:
    """The runtime shape of `input` as a 1-D int32 (or `out_type`) tensor."""
    return apply("shape", (input,), {"dtype": as_dtype(out_type).np}, name=name)


def size(input: Any, name: str | None = None, out_type: Any = int32) -> Tensor:
    """The runtime number of elements of `input`."""
    return apply("size", (input,), {"dtype": as_dtype(out_type).np}, name=name)


def rank(input: Any, name: str | None = None) -> Tensor:
    """The runtime number of dimensions of `input` (int32)."""
    return apply("rank", (input,), name=name)


def range(start: Any, limit: Any = None, delta: Any = 1, dtype: Any = None, name: str = "range") -> Tensor:
    """[start, limit) in steps of delta: a constant for Python numbers, a Range node (of size
    known only at run time) when any of them is a graph tensor, as in `tf.range(tf.shape(x)[0])`."""
    if limit is None:
        start, limit = 0, start
    vals = (start, limit, delta)
    if not builtins.any(isinstance(v, Tensor) for v in vals):
        floats = builtins.any(isinstance(v, (builtins.float, np.floating)) for v in vals)
        dt = as_dtype(dtype).np if dtype is not None else np.dtype(np.float32 if floats else np.int32)
        return constant(np.arange(start, limit, delta).astype(dt), name=name)
    like = next(v for v in vals if isinstance(v, Tensor))
    ts = [convert_to_tensor(v, like=like, graph=like.graph) for v in vals]
    dt = as_dtype(dtype) if dtype is not None else ts[0].dtype
    ts = [t if t.dtype == dt else cast(t, dt) for t in ts]
    return apply("range", ts, {"dtype": dt.np}, name=name, out=((None,), dt))


def linspace(start: Any, stop: Any, num: int, name: str = "LinSpace", axis: int = 0) -> Tensor:
    """`num` evenly spaced values from start to stop, both included (float32 for Python numbers)."""
    if builtins.any(isinstance(v, Tensor) for v in (start, stop, num)):
        raise InvalidArgumentError("linspace needs Python numbers for start, stop and num")
    return constant(np.linspace(start, stop, builtins.int(num), dtype=np.float32), name=name)


lin_space = linspace


def argsort(
    values: Any, axis: int = -1, direction: str = "ASCENDING", stable: builtins.bool = False, name: str | None = None
) -> Tensor:
    """int32 indices that sort `values` along `axis` (stable: ties keep their order)."""
    if direction not in ("ASCENDING", "DESCENDING"):
        raise InvalidArgumentError(f"direction must be 'ASCENDING' or 'DESCENDING', got {direction!r}")
    idx = apply("argsort", (values,), {"axis": builtins.int(axis), "descending": direction == "DESCENDING"})
    return cast(idx, int32, name=name)


def sort(values: Any, axis: int = -1, direction: str = "ASCENDING", name: str | None = None) -> Tensor:
    """`values` sorted along `axis`; differentiable (a gather of the sorting indices)."""
    (v,) = _tensors(values)
    idx = apply("argsort", (v,), {"axis": builtins.int(axis), "descending": direction == "DESCENDING"})
    return apply("gather", (v, idx), {"axis": builtins.int(axis)}, name=name or "Sort")


class TopKV2(NamedTuple):
    values: Tensor
    indices: Tensor


def top_k(input: Any, k: int = 1, sorted: builtins.bool = True, name: str | None = None) -> TopKV2:
    """(values, int32 indices) of the k largest entries along the last dimension."""
    (v,) = _tensors(input)
    if v._dims is None:
        raise InvalidArgumentError(f"top_k of '{v.name}' needs a known rank")
    with name_scope(name or "TopKV2"):
        idx = apply("argsort", (v,), {"axis": -1, "descending": True})
        idx = strided_slice(idx, (Ellipsis, slice(0, builtins.int(k))))
        return TopKV2(apply("gather", (v, idx), {"axis": -1}, name="values"), cast(idx, int32, name="indices"))


def strided_slice(x: Tensor, index: Any, name: str | None = None) -> Tensor:
    """`x[1:, ::2, None, ...]`: basic and integer-array indexing with static indices."""
    if not isinstance(index, tuple):
        index = (index,)
    parts = []
    for i in index:
        if isinstance(i, Tensor):
            raise InvalidArgumentError(
                f"indexing '{x.name}' with the graph tensor '{i.name}' is not supported; use tf.gather"
            )
        parts.append(np.asarray(i) if isinstance(i, list) else i)
    return apply("getitem", (x,), {"index": tuple(parts)}, name=name)


# --------------------------------------------------------------------------- nn


def softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    return apply("softmax", (logits,), {"axis": builtins.int(axis)}, name=name)


def log_softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    return apply("log_softmax", (logits,), {"axis": builtins.int(axis)}, name=name)


def softmax_cross_entropy_with_logits(
    _sentinel: Any = None,
    labels: Any = None,
    logits: Any = None,
    axis: int = -1,
    name: str | None = None,
    dim: int | None = None,
) -> Tensor:
    if _sentinel is not None or labels is None or logits is None:
        raise InvalidArgumentError("call softmax_cross_entropy_with_logits with named arguments: labels=, logits=")
    return apply(
        "softmax_cross_entropy",
        (logits, labels),
        {"axis": builtins.int(axis if dim is None else dim)},
        name=name,
    )


softmax_cross_entropy_with_logits_v2 = softmax_cross_entropy_with_logits


def sparse_softmax_cross_entropy_with_logits(
    _sentinel: Any = None, labels: Any = None, logits: Any = None, name: str | None = None
) -> Tensor:
    if _sentinel is not None or labels is None or logits is None:
        raise InvalidArgumentError(
            "call sparse_softmax_cross_entropy_with_logits with named arguments: labels=, logits="
        )
    return apply("sparse_softmax_cross_entropy", (logits, labels), {"axis": -1, "ignore_index": None}, name=name)


def sigmoid_cross_entropy_with_logits(
    _sentinel: Any = None, labels: Any = None, logits: Any = None, name: str | None = None
) -> Tensor:
    """Per-element logistic loss from logits, fused and stable."""
    if _sentinel is not None or labels is None or logits is None:
        raise InvalidArgumentError("call sigmoid_cross_entropy_with_logits with named arguments: labels=, logits=")
    return apply("sigmoid_cross_entropy", (logits, labels), name=name)


def l2_normalize(x: Any, axis: Any = None, epsilon: float = 1e-12, name: str | None = None, dim: Any = None) -> Tensor:
    """x / sqrt(max(sum(x**2, axis), epsilon))."""
    (t,) = _tensors(x)
    ax = _axis(axis if dim is None else dim)
    sq = reduce_sum(square(t), ax, keepdims=True)
    return multiply(t, rsqrt(maximum(sq, epsilon)), name=name or "l2_normalize")


def moments(
    x: Any,
    axes: Any,
    shift: Any = None,
    keepdims: builtins.bool = False,
    name: str | None = None,
    keep_dims: builtins.bool | None = None,
) -> tuple[Tensor, Tensor]:
    """(mean, variance) over `axes` (the biased variance, as TensorFlow)."""
    kd = keepdims if keep_dims is None else keep_dims
    (t,) = _tensors(x)
    with name_scope(name or "moments"):
        mean = reduce_mean(t, axes, keepdims=True, name="mean")
        var = reduce_mean(square(subtract(t, mean)), axes, keepdims=kd, name="variance")
        return (mean if kd else squeeze(mean, axes)), var


def batch_normalization(
    x: Any, mean: Any, variance: Any, offset: Any, scale: Any, variance_epsilon: float, name: str | None = None
) -> Tensor:
    """(x - mean) / sqrt(variance + epsilon) * scale + offset; offset and scale may be None."""
    with name_scope(name or "batchnorm"):
        inv = rsqrt(add(variance, builtins.float(variance_epsilon)))
        if scale is not None:
            inv = multiply(inv, scale)
        out = multiply(subtract(x, mean), inv)
        return out if offset is None else add(out, offset)


def bias_add(value: Any, bias: Any, name: str | None = None) -> Tensor:
    return add(value, bias, name=name or "BiasAdd")


def l2_loss(t: Any, name: str | None = None) -> Tensor:
    return divide(reduce_sum(square(t)), 2.0, name=name)


def diag(diagonal: Any, name: str | None = None) -> Tensor:
    """A square matrix with `diagonal` (a vector) on its diagonal."""
    return apply("diag", (diagonal,), {"diagonal": 0}, name=name)


def diag_part(input: Any, name: str | None = None) -> Tensor:
    """The main diagonal of a matrix."""
    return apply("diag", (input,), {"diagonal": 0}, name=name or "DiagPart")


def embedding_lookup(params: Any, ids: Any, name: str | None = None) -> Tensor:
    return apply("embedding", (params, ids), name=name)


# --------------------------------------------------------------------------- tf.losses (TF1's defaults)


def _weighted_mean(losses: Tensor, weights: Any, name: str) -> Tensor:
    """TF1's SUM_BY_NONZERO_WEIGHTS: sum(weights * losses) / (number of nonzero weights,
    broadcast to the losses' shape); 0 when every weight is 0."""
    with name_scope(name):
        if not isinstance(weights, Tensor) and np.ndim(weights) == 0:
            w = builtins.float(weights)
            return multiply(reduce_mean(losses), w, name="value") if w != 1.0 else reduce_mean(losses, name="value")
        (w,) = _tensors(weights)
        w = cast(w, losses.dtype)
        wb = multiply(w, ones_like(losses))
        total = reduce_sum(multiply(losses, wb))
        count = reduce_sum(cast(not_equal(wb, 0.0), losses.dtype))
        return divide(total, maximum(count, 1.0), name="value")


def mean_squared_error(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None) -> Tensor:
    """tf.losses.mean_squared_error: the (weighted) mean of (predictions - labels)**2."""
    labels, predictions = _tensors(labels, predictions)
    return _weighted_mean(square(subtract(predictions, labels)), weights, scope or "mean_squared_error")


def absolute_difference(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None) -> Tensor:
    labels, predictions = _tensors(labels, predictions)
    return _weighted_mean(abs(subtract(predictions, labels)), weights, scope or "absolute_difference")


def sigmoid_cross_entropy(multi_class_labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None) -> Tensor:
    loss = sigmoid_cross_entropy_with_logits(labels=multi_class_labels, logits=logits)
    return _weighted_mean(loss, weights, scope or "sigmoid_cross_entropy_loss")


def softmax_cross_entropy(onehot_labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None) -> Tensor:
    loss = softmax_cross_entropy_with_logits(labels=onehot_labels, logits=logits)
    return _weighted_mean(loss, weights, scope or "softmax_cross_entropy_loss")


def sparse_softmax_cross_entropy(labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None) -> Tensor:
    loss = sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return _weighted_mean(loss, weights, scope or "sparse_softmax_cross_entropy_loss")


# --------------------------------------------------------------------------- signal


def fft(input: Any, name: str | None = None) -> Tensor:
    return apply("fft", (input,), {"n": None, "axis": -1, "norm": None}, name=name)


def ifft(input: Any, name: str | None = None) -> Tensor:
    return apply("ifft", (input,), {"n": None, "axis": -1, "norm": None}, name=name)


# --------------------------------------------------------------------------- structure


def check_numerics(tensor: Any, message: str, name: str | None = None) -> Tensor:
    """Passes `tensor` through; a NaN or infinity in it fails the run with a
    NumericsError naming this node, `message` and the line that defined it."""
    (t,) = _tensors(tensor)
    op = t.graph.create_op(
        "check", "CheckNumerics", (t,), {"message": str(message)}, name=name, out=[(t._dims, t.dtype)]
    )
    return op.outputs[0]


def no_op(name: str | None = None) -> Operation:
    return get_default_graph().create_op("noop", "NoOp", (), name=name or "NoOp", out=[])


def group(*inputs: Any, name: str | None = None) -> Operation:
    """An op that runs all of `inputs` (tensors or ops, possibly in lists)."""
    flat: list[Any] = []
    for i in inputs:
        if isinstance(i, (list, tuple)):
            flat.extend(i)
        elif i is not None:
            flat.append(i)
    g = _graph_of(flat) if flat else get_default_graph()
    ops = [x.op if isinstance(x, Tensor) else x for x in flat]
    return g.create_op("noop", "NoOp", (), name=name or "group_deps", out=[], control_inputs=ops)


def control_dependencies(control_inputs: Sequence[Any] | None):
    return get_default_graph().control_dependencies(control_inputs)


def name_scope(name: str | None, default_name: str | None = None, values: Any = None):
    """`with tf.name_scope("layer1") as scope:` prefixes node names ("layer1/MatMul")."""
    return get_default_graph().name_scope(name or default_name)


def device(spec: str | None):
    """Recorded on the nodes; a session runs every node on its own device (the default device)."""
    return get_default_graph().device(spec)


def _filled(shape: Any, value: Any, dtype: Any, name: str) -> Tensor:
    """A constant when the shape is static, else a Fill node reading the shape at run time."""
    shape_t, dims = _shape_arg(shape)
    if shape_t is None:
        return constant(value, dtype=dtype, shape=dims, name=name)
    dt = as_dtype(dtype) if dtype is not None else _dt.from_numpy(_np_value(value, None).dtype)
    return apply("tf_fill", (shape_t,), {"value": value, "dtype": dt.np}, name=name, out=(dims, dt))


def zeros(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    return _filled(shape, 0, dtype, name or "zeros")


def ones(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    return _filled(shape, 1, dtype, name or "ones")


def fill(dims: Any, value: Any, name: str | None = None) -> Tensor:
    return _filled(dims, value, None, name or "Fill")


def _like(kind: str, type_: str, tensor: Any, dtype: Any, name: str | None) -> Tensor:
    (t,) = _tensors(tensor)
    dt = as_dtype(dtype) if dtype is not None else t.dtype
    op = t.graph.create_op(
        "fill",
        type_,
        (t,),
        {"value": 0 if kind == "zeros" else 1, "dtype": dt.np},
        name=name,
        out=[(t._dims, dt)],
    )
    return op.outputs[0]


def zeros_like(tensor: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    return _like("zeros", "ZerosLike", tensor, dtype, name)


def ones_like(tensor: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    return _like("ones", "OnesLike", tensor, dtype, name)


def placeholder(dtype: Any, shape: Sequence[int | None] | None = None, name: str | None = None) -> Tensor:
    """A value fed at each run: `tf.placeholder(tf.float32, [None, 784], name="x")`."""
    dt = as_dtype(dtype)
    dims = None if shape is None else tuple(None if s is None or s == -1 else builtins.int(s) for s in shape)
    op = get_default_graph().create_op(
        "placeholder",
        "Placeholder",
        (),
        {"dtype": dt.np, "shape": dims},
        name=name or "Placeholder",
        out=[(dims, dt)],
    )
    return op.outputs[0]


def placeholder_with_default(input: Any, shape: Sequence[int | None], name: str | None = None) -> Tensor:
    """A placeholder that takes `input`'s value when it is not fed."""
    (t,) = _tensors(input)
    dims = tuple(None if s is None or s == -1 else builtins.int(s) for s in shape)
    op = t.graph.create_op(
        "placeholder",
        "PlaceholderWithDefault",
        (t,),
        {"dtype": t.dtype.np, "shape": dims},
        name=name or "PlaceholderWithDefault",
        out=[(dims, t.dtype)],
    )
    return op.outputs[0]


# --------------------------------------------------------------------------- randomness


def _random(dist: str, shape: Sequence[int], dtype: Any, seed: int | None, name: str | None, **params: Any) -> Tensor:
    dt = as_dtype(dtype)
    shape_t, dims = _shape_arg(shape)
    g = shape_t.graph if shape_t is not None else get_default_graph()
    types = {"normal": "RandomStandardNormal", "truncated": "TruncatedNormal", "uniform": "RandomUniform"}
    op = g.create_op(
        "random",
        types[dist],
        () if shape_t is None else (shape_t,),  # a runtime shape is the node's one input
        {"dist": dist, "shape": dims, "dtype": dt.np, "seed": seed, "graph_seed": g.seed, **params},
        name=name or types[dist],
        out=[(dims, dt)],
    )
    return op.outputs[0]


def _shape_arg(shape: Any) -> tuple[Tensor | None, tuple | None]:
    """A shape argument as (runtime shape tensor or None, static dims). Python ints give
    static dims; a tensor (`tf.shape(x)`) or a list holding tensors (`[batch, 128]`) is
    read at run time, its static dims kept where known."""
    if isinstance(shape, Tensor):
        if shape.op.type == "Shape" and shape.op.inputs:  # tf.shape(x): x's own static dims
            return shape, shape.op.inputs[0]._dims
        n = shape._dims[0] if shape._dims else None
        return shape, None if n is None else (None,) * n
    shape = list(shape)
    if not builtins.any(isinstance(s, Tensor) for s in shape):
        return None, tuple(builtins.int(s) for s in shape)
    dims = tuple(None if isinstance(s, Tensor) else builtins.int(s) for s in shape)
    like = next(s for s in shape if isinstance(s, Tensor))
    parts = [
        reshape(cast(s, int32), ()) if isinstance(s, Tensor) else constant(s, int32, graph=like.graph) for s in shape
    ]
    return stack(parts, name="shape"), dims


def random_normal(
    shape: Sequence[int],
    mean: float = 0.0,
    stddev: float = 1.0,
    dtype: Any = float32,
    seed: int | None = None,
    name: str | None = None,
) -> Tensor:
    return _random("normal", shape, dtype, seed, name, mean=float(mean), stddev=float(stddev))


def truncated_normal(
    shape: Sequence[int],
    mean: float = 0.0,
    stddev: float = 1.0,
    dtype: Any = float32,
    seed: int | None = None,
    name: str | None = None,
) -> Tensor:
    return _random("truncated", shape, dtype, seed, name, mean=float(mean), stddev=float(stddev))


def random_uniform(
    shape: Sequence[int],
    minval: float = 0,
    maxval: float | None = None,
    dtype: Any = float32,
    seed: int | None = None,
    name: str | None = None,
) -> Tensor:
    if maxval is None:
        if as_dtype(dtype).np.kind in "iu":
            raise InvalidArgumentError("random_uniform with an integer dtype needs maxval")
        maxval = 1.0
    return _random("uniform", shape, dtype, seed, name, minval=float(minval), maxval=float(maxval))


def set_random_seed(seed: int) -> None:
    """The graph-level seed: ops without their own seed become reproducible per session."""
    get_default_graph().seed = builtins.int(seed)
