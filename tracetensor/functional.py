"""`tt.<op>(tensor, ...)` functions: one-line delegators to Tensor methods, under
PyTorch's names, for the ops PyTorch offers both ways."""
from __future__ import annotations

from typing import Any

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


def pow(input: Any, exponent: Any) -> Tensor:  # noqa: A001
    if isinstance(input, Tensor):
        return input.pow(exponent)
    return _as_tensor(input, exponent) ** exponent


def _delegate(name: str):
    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`tt.{name}(t, ...)` is `t.{name}(...)`."
    return fn


_METHODS = ("exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sum", "mean", "max", "min", "amax",
            "amin", "argmax", "argmin", "softmax", "log_softmax", "reshape", "transpose", "permute", "t",
            "flatten")
for _n in _METHODS:
    globals()[_n] = _delegate(_n)

__all__ = ["matmul", "mm", "where", "maximum", "minimum", "pow", *_METHODS]
