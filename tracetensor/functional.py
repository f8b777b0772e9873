"""`tt.<op>(tensor, ...)` functions: one-line delegators to Tensor methods, under
PyTorch's names, for the ops PyTorch offers both ways."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._registry import REGISTRY as _R
from .tensor import Tensor, _wrap_other, apply, tensor


def _as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return _wrap_other(x, like) if like is not None else tensor(x)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    return input.matmul(other)


mm = matmul


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """`tt.where(cond, a, b)`: elementwise choice; gradients flow to a and b."""
    like = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else None
    if like is None:
        like = tensor(input)
    cond = _as_tensor(condition, like)
    return apply(_R["where"], cond, _as_tensor(input, like), _as_tensor(other, like))


def maximum(input: Tensor, other: Any) -> Tensor:
    return input.maximum(other)


def minimum(input: Tensor, other: Any) -> Tensor:
    return input.minimum(other)


def pow(input: Any, exponent: Any) -> Tensor:
    if isinstance(input, Tensor):
        return input.pow(exponent)
    return _as_tensor(input, exponent) ** exponent


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Joins tensors along an existing dimension."""
    ts = _coerce(tensors)
    return apply(_R["cat"], *ts, axis=int(dim))


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Joins tensors along a new dimension."""
    ts = _coerce(tensors)
    return apply(_R["stack"], *ts, axis=int(dim))


def add_n(tensors: Sequence[Tensor]) -> Tensor:
    ts = _coerce(tensors)
    return apply(_R["add_n"], *ts)


def _coerce(tensors: Sequence[Any]) -> list[Tensor]:
    ts = list(tensors)
    like = next((t for t in ts if isinstance(t, Tensor)), None)
    return [_as_tensor(t, like) for t in ts]


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding along a new last dimension, as torch.nn.functional.one_hot."""
    if num_classes < 0:
        num_classes = int(tensor.max().item()) + 1 if tensor.numel() else 0
    return apply(_R["one_hot"], tensor, num_classes=int(num_classes))


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    return input.gather(dim, index)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    return input.index_select(dim, index)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    return input.clamp(min, max)


clip = clamp


def var(
    input: Tensor,
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: int | None = None,
) -> Tensor:
    return input.var(dim, unbiased, keepdim, correction=correction)


def std(
    input: Tensor,
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: int | None = None,
) -> Tensor:
    return input.std(dim, unbiased, keepdim, correction=correction)


def flip(input: Tensor, dims: Any) -> Tensor:
    return input.flip(dims)


def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    return input.squeeze(dim)


def equal(input: Tensor, other: Tensor) -> bool:
    return input.equal(other)


def clamp_min(input: Tensor, min: Any) -> Tensor:
    return input.clamp(min=min)


def clamp_max(input: Tensor, max: Any) -> Tensor:
    return input.clamp(max=max)


def numel(input: Tensor) -> int:
    return input.numel()


def add(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    """input + alpha * other."""
    return _as_tensor(input, other if isinstance(other, Tensor) else None).add(other, alpha=alpha)


def sub(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    """input - alpha * other."""
    return _as_tensor(input, other if isinstance(other, Tensor) else None).sub(other, alpha=alpha)


subtract = sub


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    return _as_tensor(input, other if isinstance(other, Tensor) else None).div(other, rounding_mode=rounding_mode)


divide = div


def _binary_fn(name: str):
    def fn(input: Any, other: Any) -> Tensor:
        return getattr(_as_tensor(input, other if isinstance(other, Tensor) else None), name)(other)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`tt.{name}(a, b)` is `a.{name}(b)` (either may be a number)."
    return fn


mul = multiply = _binary_fn("mul")
true_divide = _binary_fn("true_divide")
remainder = _binary_fn("remainder")


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    return input.norm(p, dim, keepdim)


def isclose(input: Tensor, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    return input.isclose(other, rtol, atol, equal_nan)


def allclose(input: Tensor, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    return input.allclose(other, rtol, atol, equal_nan)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """`data` itself when it is already a tensor of that dtype and device, else a new tensor."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else data
    return tensor(data, dtype=dtype, device=device)


def is_floating_point(input: Tensor) -> bool:
    return input.is_floating_point()


def lerp(input: Tensor, end: Any, weight: Any) -> Tensor:
    return input.lerp(end, weight)


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
    return input.addmm(mat1, mat2, beta=beta, alpha=alpha)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    return input.masked_select(mask)


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    return input.unflatten(dim, sizes)


def std_mean(
    input: Tensor,
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: int | None = None,
) -> tuple[Tensor, Tensor]:
    return input.std(dim, unbiased, keepdim, correction=correction), input.mean(dim, keepdim)


def var_mean(
    input: Tensor,
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: int | None = None,
) -> tuple[Tensor, Tensor]:
    return input.var(dim, unbiased, keepdim, correction=correction), input.mean(dim, keepdim)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    return input.roll(shifts, dims)


def bernoulli(input: Tensor, p: Any = None, *, generator: Any = None) -> Tensor:
    """0/1 draws with the probabilities in `input` (no gradient, as in PyTorch)."""
    return input.bernoulli(p, generator=generator)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator: Any = None) -> Tensor:
    return input.multinomial(num_samples, replacement, generator=generator)


def normal(
    mean: Any = 0.0,
    std: Any = 1.0,
    size: Any = None,
    *,
    generator: Any = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """PyTorch's overloads: normal(mean_t, std_t), normal(mean_t, 1.0), normal(0.0, std_t),
    normal(0.0, 1.0, size). No gradient flows to mean and std (use mean + std * randn for that)."""
    from .tensor import no_grad, randn

    like = mean if isinstance(mean, Tensor) else std if isinstance(std, Tensor) else None
    if like is None:
        if size is None:
            raise TypeError("normal(mean, std) with numbers needs a size")
        out = randn(size, generator=generator, dtype=dtype, device=device) * std + mean
        return out.requires_grad_(True) if requires_grad else out
    m, s = _as_tensor(mean, like), _as_tensor(std, like)
    shape = tuple(np.broadcast_shapes(m.shape, s.shape))
    with no_grad():
        eps = randn(shape, generator=generator, dtype=like.dtype, device=like.device)
        return m.detach() + s.detach() * eps


def _delegate(name: str):
    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`tt.{name}(t, ...)` is `t.{name}(...)`."
    return fn


_METHODS = (
    "exp",
    "log",
    "sqrt",
    "abs",
    "tanh",
    "sigmoid",
    "relu",
    "sum",
    "mean",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "softmax",
    "log_softmax",
    "reshape",
    "transpose",
    "permute",
    "t",
    "flatten",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "isnan",
    "isinf",
    "isfinite",
    "all",
    "any",
    "prod",
    "logsumexp",
    "cumsum",
    "unsqueeze",
    "sign",
    "sin",
    "cos",
    "square",
    "rsqrt",
    "clone",
    "chunk",
    "split",
    "real",
    "imag",
    "neg",
    "negative",
    "floor",
    "ceil",
    "trunc",
    "round",
    "log1p",
    "expm1",
    "log2",
    "log10",
    "reciprocal",
    "erf",
    "dot",
    "inner",
    "outer",
    "ger",
    "bmm",
    "tril",
    "triu",
    "diag",
    "masked_fill",
    "sort",
    "argsort",
    "topk",
    "nonzero",
    "count_nonzero",
    "tile",
)
for _n in _METHODS:
    globals()[_n] = _delegate(_n)

__all__ = [
    "matmul",
    "mm",
    "where",
    "maximum",
    "minimum",
    "pow",
    "cat",
    "concat",
    "concatenate",
    "stack",
    "add_n",
    "one_hot",
    "gather",
    "index_select",
    "clamp",
    "clip",
    "var",
    "std",
    "flip",
    "squeeze",
    "equal",
    "clamp_min",
    "clamp_max",
    "numel",
    "add",
    "sub",
    "subtract",
    "div",
    "divide",
    "mul",
    "multiply",
    "true_divide",
    "remainder",
    "norm",
    "isclose",
    "allclose",
    "roll",
    "bernoulli",
    "as_tensor",
    "is_floating_point",
    "lerp",
    "addmm",
    "masked_select",
    "unflatten",
    "std_mean",
    "var_mean",
    "multinomial",
    "normal",
    *_METHODS,
]
