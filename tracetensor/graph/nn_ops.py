"""TF1's `tf.nn` convolution, pooling and dropout, and the smaller TF1 names training
scripts use (`tf.unstack`, `split`, `pad`, `sequence_mask`, `clip_by_global_norm`, `assign`,
...), as graph builders over the registry (TF's layouts: NHWC, (kh, kw, in, out) filters)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from .core import InvalidArgumentError, Tensor
from .ops import (
    _tensors,
    add,
    apply,
    as_dtype,
    cast,
    divide,
    floor,
    greater,
    less,
    maximum,
    minimum,
    multiply,
    name_scope,
    one_hot,
    random_uniform,
    reduce_sum,
    shape,
    strided_slice,
    subtract,
)

__all__ = [
    "conv2d",
    "conv2d_transpose",
    "max_pool",
    "avg_pool",
    "dropout",
    "in_top_k",
    "relu6",
    "xw_plus_b",
    "unstack",
    "split",
    "stop_gradient",
    "pad",
    "slice",
    "sequence_mask",
    "count_nonzero",
    "cumsum",
    "squared_difference",
    "to_float",
    "to_int32",
    "to_int64",
    "log_sigmoid",
    "assign",
    "assign_add",
    "assign_sub",
    "clip_by_norm",
    "global_norm",
    "clip_by_global_norm",
    "local_variables_initializer",
    "tables_initializer",
    "arg_max",
    "arg_min",
    "boolean_mask",
    "Print",
    "lrn",
    "local_response_normalization",
]


def _spatial(v: Any, data_format: str, what: str) -> tuple[int, int]:
    """TF's strides/ksize/dilations (an int, [h, w] or the 4-long [1, h, w, 1]) as (h, w)."""
    if isinstance(v, (int, builtins.float)):
        return builtins.int(v), builtins.int(v)
    v = [builtins.int(x) for x in v]
    if len(v) == 2:
        return v[0], v[1]
    if len(v) == 4:
        n, c = (0, 3) if data_format == "NHWC" else (0, 1)
        if v[n] != 1 or v[c] != 1:
            raise InvalidArgumentError(f"{what} {v} must be 1 in the batch and channel dimensions ({data_format})")
        return (v[1], v[2]) if data_format == "NHWC" else (v[2], v[3])
    raise InvalidArgumentError(f"{what} must be an int, [h, w] or a 4-long list, got {v}")


def _padding(padding: Any, data_format: str) -> Any:
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise InvalidArgumentError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
        return p
    pairs = [tuple(builtins.int(x) for x in p) for p in padding]
    if len(pairs) == 4:  # TF's explicit form: a pair per dimension, batch and channels 0
        pairs = pairs[1:3] if data_format == "NHWC" else pairs[2:4]
    if len(pairs) != 2 or builtins.any(len(p) != 2 for p in pairs):
        raise InvalidArgumentError(f"explicit padding must be [[top, bottom], [left, right]] pairs, got {padding}")
    return tuple(pairs)


def _format(data_format: str) -> builtins.bool:
    if data_format not in ("NHWC", "NCHW"):
        raise InvalidArgumentError(f"data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return data_format == "NCHW"


def conv2d(
    input: Any,
    filter: Any = None,
    strides: Any = None,
    padding: Any = None,
    use_cudnn_on_gpu: builtins.bool = True,
    data_format: str = "NHWC",
    dilations: Any = (1, 1, 1, 1),
    name: str | None = None,
    filters: Any = None,
) -> Tensor:
    """tf.nn.conv2d: `input` (N, H, W, C) or NCHW, `filter` (kh, kw, in, out); padding
    'SAME' (output size ceil(in / stride)) or 'VALID'."""
    w = filter if filter is not None else filters
    if w is None or strides is None or padding is None:
        raise InvalidArgumentError("conv2d needs filter, strides and padding")
    nchw = _format(data_format)
    attrs = {
        "strides": _spatial(strides, data_format, "strides"),
        "padding": _padding(padding, data_format),
        "dilations": _spatial(dilations, data_format, "dilations"),
        "nchw": nchw,
    }
    return apply("tf_conv2d", (input, w), attrs, name=name or "Conv2D")


def conv2d_transpose(
    value: Any = None,
    filter: Any = None,
    output_shape: Any = None,
    strides: Any = None,
    padding: str = "SAME",
    data_format: str = "NHWC",
    name: str | None = None,
    input: Any = None,
    filters: Any = None,
    dilations: Any = None,
) -> Tensor:
    """tf.nn.conv2d_transpose: `filter` (kh, kw, out_channels, in_channels); `output_shape`
    [batch, height, width, channels] (NCHW order with data_format="NCHW") with a static height
    and width (the batch may be a tensor)."""
    v = value if value is not None else input
    w = filter if filter is not None else filters
    if v is None or w is None or output_shape is None or strides is None:
        raise InvalidArgumentError("conv2d_transpose needs value, filter, output_shape and strides")
    if dilations is not None and _spatial(dilations, data_format, "dilations") != (1, 1):
        raise InvalidArgumentError("conv2d_transpose supports dilations of 1 only")
    nchw = _format(data_format)
    dims = list(output_shape) if not isinstance(output_shape, Tensor) else None
    if dims is None or len(dims) != 4 or any(isinstance(d, Tensor) for d in dims[1:]):
        raise InvalidArgumentError(
            "conv2d_transpose needs output_shape as a list of 4 with a static height, "
            "width and channel count (the batch may be a tensor)"
        )
    hw = (dims[2], dims[3]) if nchw else (dims[1], dims[2])
    attrs = {
        "out_hw": tuple(builtins.int(d) for d in hw),
        "strides": _spatial(strides, data_format, "strides"),
        "padding": _padding(padding, data_format),
        "nchw": nchw,
    }
    (vt, wt) = _tensors(v, w)
    out = apply("tf_conv2d_transpose", (vt, wt), attrs, name=name or "conv2d_transpose")
    out.set_shape([None if isinstance(d, Tensor) else builtins.int(d) for d in dims])
    return out


def _pool(kind: str, value: Any, ksize: Any, strides: Any, padding: Any, data_format: str, name: str) -> Tensor:
    attrs = {
        "ksize": _spatial(ksize, data_format, "ksize"),
        "strides": _spatial(strides, data_format, "strides"),
        "padding": _padding(padding, data_format),
        "nchw": _format(data_format),
    }
    return apply(kind, (value,), attrs, name=name)


def max_pool(
    value: Any = None,
    ksize: Any = None,
    strides: Any = None,
    padding: Any = None,
    data_format: str = "NHWC",
    name: str | None = None,
    input: Any = None,
) -> Tensor:
    """tf.nn.max_pool over NHWC (or NCHW) input."""
    return _pool(
        "tf_max_pool", value if value is not None else input, ksize, strides, padding, data_format, name or "MaxPool"
    )


def avg_pool(
    value: Any = None,
    ksize: Any = None,
    strides: Any = None,
    padding: Any = None,
    data_format: str = "NHWC",
    name: str | None = None,
    input: Any = None,
) -> Tensor:
    """tf.nn.avg_pool: the mean of each window's real elements (SAME padding is not counted)."""
    return _pool(
        "tf_avg_pool", value if value is not None else input, ksize, strides, padding, data_format, name or "AvgPool"
    )


def dropout(
    x: Any,
    keep_prob: Any = None,
    noise_shape: Any = None,
    seed: int | None = None,
    name: str | None = None,
    rate: Any = None,
) -> Tensor:
    """TF1's dropout: keeps each element with probability `keep_prob` (or 1 - `rate`), scaled
    by 1/keep_prob: x / keep_prob * floor(keep_prob + uniform). `keep_prob` may be a
    placeholder (1.0 at test time)."""
    if (keep_prob is None) == (rate is None):
        raise InvalidArgumentError("dropout needs exactly one of keep_prob and rate")
    with name_scope(name or "dropout"):
        (t,) = _tensors(x)
        if rate is not None:
            keep = subtract(1.0, rate) if isinstance(rate, Tensor) else 1.0 - builtins.float(rate)
        else:
            keep = keep_prob
        if not isinstance(keep, Tensor):
            keep = builtins.float(keep)
            if not 0 < keep <= 1:
                raise InvalidArgumentError(f"keep_prob must be in (0, 1], got {keep}")
            if keep == 1.0:
                return t
        elif keep.dtype != t.dtype:
            keep = cast(keep, t.dtype)
        noise = random_uniform(shape(t) if noise_shape is None else noise_shape, dtype=t.dtype, seed=seed)
        mask = floor(add(noise, keep))
        out = multiply(divide(t, keep), mask, name="mul")
        out.set_shape(t.shape)  # as TF: a keep_prob placeholder of unknown shape does not hide x's shape
        return out


def in_top_k(predictions: Any, targets: Any, k: int, name: str | None = None) -> Tensor:
    """Whether each row's target class is among its k largest predictions (bool, per row)."""
    with name_scope(name or "in_top_k"):
        p, y = _tensors(predictions, targets)
        depth = p._dims[-1] if p._dims is not None else None
        if depth is None:
            raise InvalidArgumentError(f"in_top_k needs the class count of '{p.name}' (its last dimension)")
        target = reduce_sum(multiply(p, one_hot(y, depth, dtype=p.dtype)), 1, keepdims=True)
        above = reduce_sum(cast(greater(p, target), "int32"), 1)
        return less(above, builtins.int(k))


def relu6(features: Any, name: str | None = None) -> Tensor:
    return minimum(maximum(features, 0.0), 6.0, name=name or "Relu6")


def xw_plus_b(x: Any, weights: Any, biases: Any, name: str | None = None) -> Tensor:
    from .ops import matmul

    return add(matmul(x, weights), biases, name=name or "xw_plus_b")


def _axis_size(t: Tensor, axis: int, what: str) -> int:
    if t._dims is None or t._dims[axis] is None:
        raise InvalidArgumentError(
            f"{what} of '{t.name}' with shape {t.shape} needs the size of axis {axis}: pass num="
        )
    return t._dims[axis]


def unstack(value: Any, num: int | None = None, axis: int = 0, name: str = "unstack") -> list[Tensor]:
    """The `num` slices of `value` along `axis` (each without that axis)."""
    (t,) = _tensors(value)
    if t._dims is None:
        raise InvalidArgumentError(f"unstack of '{t.name}' needs a known rank")
    axis = axis % len(t._dims)
    n = num if num is not None else _axis_size(t, axis, "unstack")
    lead = (builtins.slice(None),) * axis
    with name_scope(name):
        return [strided_slice(t, (*lead, i)) for i in builtins.range(n)]


def split(
    value: Any, num_or_size_splits: Any, axis: int = 0, num: int | None = None, name: str = "split"
) -> list[Tensor]:
    """Pieces of `value` along `axis`: `num_or_size_splits` equal ones, or ones of the listed sizes."""
    (t,) = _tensors(value)
    if t._dims is None:
        raise InvalidArgumentError(f"split of '{t.name}' needs a known rank")
    if isinstance(axis, Tensor):
        raise InvalidArgumentError("split needs a Python int axis")
    axis = builtins.int(axis) % len(t._dims)
    if isinstance(num_or_size_splits, (int,)):
        n = builtins.int(num_or_size_splits)
        total = _axis_size(t, axis, "split")
        if total % n:
            raise InvalidArgumentError(
                f"split: axis {axis} of '{t.name}' (size {total}) does not divide into {n} equal pieces"
            )
        sizes: Sequence[int] = [total // n] * n
    else:
        sizes = [builtins.int(s) for s in num_or_size_splits]
        if -1 in sizes:
            rest = _axis_size(t, axis, "split") - builtins.sum(s for s in sizes if s != -1)
            sizes = [rest if s == -1 else s for s in sizes]
    lead = (builtins.slice(None),) * axis
    out, start = [], 0
    with name_scope(name):
        for s in sizes:
            out.append(strided_slice(t, (*lead, builtins.slice(start, start + s))))
            start += s
    return out


# --------------------------------------------------------------------------- smaller TF1 names


def stop_gradient(input: Any, name: str | None = None) -> Tensor:
    """`input`, with no gradient flowing back through it."""
    return apply("stop_gradient", (input,), name=name or "StopGradient")


def pad(
    tensor: Any, paddings: Any, mode: str = "CONSTANT", name: str | None = None, constant_values: Any = 0
) -> Tensor:
    """`paddings[i] = [before, after]` for dimension i; CONSTANT, REFLECT or SYMMETRIC."""
    if isinstance(paddings, Tensor):
        raise InvalidArgumentError("pad needs static paddings (a list of [before, after] pairs)")
    pairs = tuple((builtins.int(a), builtins.int(b)) for a, b in paddings)
    return apply(
        "tf_pad",
        (tensor,),
        {"paddings": pairs, "mode": mode.upper(), "constant_values": constant_values},
        name=name or "Pad",
    )


def slice(input_: Any, begin: Sequence[int], size: Sequence[int], name: str | None = None) -> Tensor:
    """`input_[begin[i] : begin[i] + size[i]]` per dimension (size -1: to the end)."""
    index = tuple(
        builtins.slice(builtins.int(b), None if builtins.int(n) == -1 else builtins.int(b) + builtins.int(n))
        for b, n in zip(begin, size)
    )
    return strided_slice(_tensors(input_)[0], index, name=name or "Slice")


def sequence_mask(lengths: Any, maxlen: Any = None, dtype: Any = "bool", name: str | None = None) -> Tensor:
    """mask[i, j] = j < lengths[i], over `maxlen` columns (the longest length when None)."""
    from .ops import expand_dims, range, reduce_max

    with name_scope(name or "SequenceMask"):
        (lens,) = _tensors(lengths)
        top = reduce_max(lens) if maxlen is None else maxlen
        cols = range(0, top, 1, dtype=lens.dtype) if isinstance(top, Tensor) else range(builtins.int(top))
        mask = less(cols, expand_dims(lens, -1))
        return mask if as_dtype(dtype) == mask.dtype else cast(mask, dtype)


def count_nonzero(
    input_tensor: Any,
    axis: Any = None,
    keepdims: builtins.bool = False,
    dtype: Any = "int64",
    name: str | None = None,
    reduction_indices: Any = None,
) -> Tensor:
    from .ops import not_equal

    (t,) = _tensors(input_tensor)
    nz = cast(not_equal(t, False if t.dtype.np.kind == "b" else 0), dtype)
    return reduce_sum(
        nz, axis if reduction_indices is None else reduction_indices, keepdims=keepdims, name=name or "count_nonzero"
    )


def cumsum(
    x: Any, axis: int = 0, exclusive: builtins.bool = False, reverse: builtins.bool = False, name: str | None = None
) -> Tensor:
    if exclusive or reverse:
        raise InvalidArgumentError("cumsum supports exclusive=False, reverse=False only")
    return apply("cumsum", (x,), {"axis": builtins.int(axis)}, name=name or "Cumsum")


def squared_difference(x: Any, y: Any, name: str | None = None) -> Tensor:
    from .ops import square

    return square(subtract(x, y), name=name or "SquaredDifference")


def to_float(x: Any, name: str = "ToFloat") -> Tensor:
    return cast(x, "float32", name=name)


def to_int32(x: Any, name: str = "ToInt32") -> Tensor:
    return cast(x, "int32", name=name)


def to_int64(x: Any, name: str = "ToInt64") -> Tensor:
    return cast(x, "int64", name=name)


def log_sigmoid(x: Any, name: str | None = None) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    from .ops import negative, softplus

    return negative(softplus(negative(x)), name=name or "LogSigmoid")


def assign(
    ref: Any, value: Any, validate_shape: Any = None, use_locking: Any = None, name: str | None = None
) -> Tensor:
    return ref.assign(value, name=name)


def assign_add(ref: Any, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return ref.assign_add(value, name=name)


def assign_sub(ref: Any, value: Any, use_locking: Any = None, name: str | None = None) -> Tensor:
    return ref.assign_sub(value, name=name)


def _sq_sum(t: Tensor) -> Tensor:
    from .ops import square

    return reduce_sum(square(t))


def clip_by_norm(t: Any, clip_norm: Any, axes: Any = None, name: str | None = None) -> Tensor:
    """t * clip_norm / max(norm(t), clip_norm): t unchanged when its L2 norm is within clip_norm."""
    from .ops import sqrt, square

    with name_scope(name or "clip_by_norm"):
        (x,) = _tensors(t)
        n = sqrt(reduce_sum(square(x), axes, keepdims=True))
        return multiply(x, divide(clip_norm, maximum(n, clip_norm)))


def global_norm(t_list: Sequence[Any], name: str | None = None) -> Tensor:
    """sqrt(sum of every tensor's squared L2 norm); None entries are skipped."""
    from .ops import add_n, sqrt

    with name_scope(name or "global_norm"):
        ts = [_tensors(t)[0] for t in t_list if t is not None]
        return sqrt(add_n([_sq_sum(t) for t in ts]))


def clip_by_global_norm(
    t_list: Sequence[Any], clip_norm: Any, use_norm: Any = None, name: str | None = None
) -> tuple[list[Any], Tensor]:
    """Every tensor scaled by clip_norm / max(global_norm, clip_norm); returns (list, global norm)."""
    with name_scope(name or "clip_by_global_norm"):
        norm = use_norm if use_norm is not None else global_norm(t_list)
        scale = divide(clip_norm, maximum(norm, clip_norm))
        return [None if t is None else multiply(t, cast(scale, _tensors(t)[0].dtype)) for t in t_list], norm


def local_variables_initializer() -> Any:
    """Initializes the local variables; tracetensor graphs have none, so this is a no-op."""
    from .ops import no_op

    return no_op(name="init_1")


def tables_initializer(name: str = "init_all_tables") -> Any:
    """No lookup tables exist here: a no-op, so scripts that run it work."""
    from .ops import no_op

    return no_op(name=name)


def arg_max(input: Any, dimension: int, name: str | None = None, output_type: Any = "int64") -> Tensor:
    from .ops import argmax

    return argmax(input, dimension, name=name, output_type=output_type)


def arg_min(input: Any, dimension: int, name: str | None = None, output_type: Any = "int64") -> Tensor:
    from .ops import argmin

    return argmin(input, dimension, name=name, output_type=output_type)


def boolean_mask(tensor: Any, mask: Any, name: str = "boolean_mask", axis: Any = None) -> Tensor:
    """The entries of `tensor` where the bool `mask` (its leading dimensions) is True, as one
    leading dimension whose size is known only at run time."""
    from .ops import gather, reshape, where

    if axis not in (None, 0):
        raise InvalidArgumentError("boolean_mask supports axis=0 (the mask covers the leading dimensions)")
    with name_scope(name):
        t, m = _tensors(tensor, mask)
        if m._dims is None or t._dims is None or builtins.any(d is None for d in t._dims[len(m._dims) :]):
            raise InvalidArgumentError(
                f"boolean_mask needs the mask's rank and the remaining dimensions of "
                f"'{t.name}' (shape {t.shape}) to be known"
            )
        k = len(m._dims)
        flat = reshape(t, [-1, *t._dims[k:]]) if k != 1 else t
        idx = reshape(where(reshape(m, [-1])), [-1])
        return gather(flat, idx)


def Print(
    input_: Any,
    data: Sequence[Any],
    message: str | None = None,
    first_n: Any = None,
    summarize: int | None = None,
    name: str | None = None,
) -> Tensor:
    """tf.Print: `input_`, writing `message` and the first `summarize` (3) values of each of
    `data` to standard error each time it runs (`first_n` is not supported)."""
    if first_n not in (None, -1):
        raise InvalidArgumentError("tf.Print's first_n is not supported (it prints every time)")
    ts = _tensors(input_, *data)
    x = ts[0]
    return apply(
        "tf_print",
        tuple(ts),
        {"message": message or "", "summarize": builtins.int(summarize or 3)},
        name=name or "Print",
        out=(x._dims, x.dtype),
    )


def lrn(
    input: Any, depth_radius: int = 5, bias: float = 1.0, alpha: float = 1.0, beta: float = 0.5, name: str | None = None
) -> Tensor:
    """Local response normalization over the last (channel) dimension of NHWC input:
    x / (bias + alpha * sum of x**2 over channels d-r..d+r) ** beta."""
    from .ops import add_n, pow, square

    with name_scope(name or "LRN"):
        (x,) = _tensors(input)
        if x._dims is None or len(x._dims) != 4 or x._dims[3] is None:
            raise InvalidArgumentError(f"lrn needs a 4-D NHWC input with known channels, got '{x.name}' {x.shape}")
        c, r = x._dims[3], builtins.int(depth_radius)
        sq = pad(square(x), [[0, 0], [0, 0], [0, 0], [r, r]])
        window = add_n([strided_slice(sq, (Ellipsis, builtins.slice(i, i + c))) for i in builtins.range(2 * r + 1)])
        return divide(x, pow(add(multiply(window, builtins.float(alpha)), builtins.float(bias)), builtins.float(beta)))


local_response_normalization = lrn
