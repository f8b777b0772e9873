"""TF1's `tf.nn` convolution, pooling and dropout, plus `tf.unstack` and `tf.split`, as
graph builders over the registry (TF's layouts: NHWC by default, (kh, kw, in, out) filters)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from .core import InvalidArgumentError, Tensor
from .ops import (
    _tensors,
    add,
    apply,
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

__all__ = ["conv2d", "max_pool", "avg_pool", "dropout", "in_top_k", "relu6", "xw_plus_b", "unstack", "split"]


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
            raise InvalidArgumentError(
                f"{what} {v} must be 1 in the batch and channel dimensions ({data_format})"
            )
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


def _pool(kind: str, value: Any, ksize: Any, strides: Any, padding: Any, data_format: str, name: str) -> Tensor:
    attrs = {
        "ksize": _spatial(ksize, data_format, "ksize"),
        "strides": _spatial(strides, data_format, "strides"),
        "padding": _padding(padding, data_format),
        "nchw": _format(data_format),
    }
    return apply(kind, (value,), attrs, name=name)


def max_pool(value: Any = None, ksize: Any = None, strides: Any = None, padding: Any = None,
             data_format: str = "NHWC", name: str | None = None, input: Any = None) -> Tensor:
    """tf.nn.max_pool over NHWC (or NCHW) input."""
    return _pool("tf_max_pool", value if value is not None else input, ksize, strides, padding, data_format,
                 name or "MaxPool")


def avg_pool(value: Any = None, ksize: Any = None, strides: Any = None, padding: Any = None,
             data_format: str = "NHWC", name: str | None = None, input: Any = None) -> Tensor:
    """tf.nn.avg_pool: the mean of each window's real elements (SAME padding is not counted)."""
    return _pool("tf_avg_pool", value if value is not None else input, ksize, strides, padding, data_format,
                 name or "AvgPool")


def dropout(x: Any, keep_prob: Any = None, noise_shape: Any = None, seed: int | None = None,
            name: str | None = None, rate: Any = None) -> Tensor:
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
    lead = (slice(None),) * axis
    with name_scope(name):
        return [strided_slice(t, (*lead, i)) for i in builtins.range(n)]


def split(value: Any, num_or_size_splits: Any, axis: int = 0, num: int | None = None,
          name: str = "split") -> list[Tensor]:
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
    lead = (slice(None),) * axis
    out, start = [], 0
    with name_scope(name):
        for s in sizes:
            out.append(strided_slice(t, (*lead, slice(start, start + s))))
            start += s
    return out

