"""`tt.nn.functional`: the stateless side of tt.nn (PyTorch's torch.nn.functional names).
Each function is a short composition of registered ops; losses use the fused, stable ones."""
from __future__ import annotations

from typing import Any

from .._registry import REGISTRY as _R
from ..functional import one_hot
from ..tensor import Tensor, _wrap_other, apply, rand

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "conv2d", "max_pool2d", "dropout",
           "mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy", "embedding", "one_hot",
           "softmax_cross_entropy_with_logits", "l1_loss", "pad"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    r = _check_reduction(reduction)
    return loss if r == "none" else loss.mean() if r == "mean" else loss.sum()


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias, with weight of shape (out_features, in_features)."""
    if weight.ndim == 2:  # matmul multiplies by the transpose itself: no separate permute op
        out = apply(_R["matmul"], input, weight, transpose_b=True)
    else:
        out = apply(_R["matmul"], input, weight)
    return out if bias is None else apply(_R["add"], out, bias)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu()


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    return input.softmax(dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    return input.log_softmax(dim)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0) -> Tensor:
    """2-D cross-correlation over NCHW input with an (out, in, kh, kw) weight."""
    out = apply(_R["conv2d"], input, weight, stride=stride, padding=padding)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    return apply(_R["max_pool2d"], input, kernel_size=kernel_size, stride=stride, padding=padding)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zeroes each element with probability p and scales the rest by 1/(1-p) while training:
    a multiplication by a mask drawn here (so the op stream shows one `mul`)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    r = rand(input.shape, dtype=input.dtype, device=input.device)._data
    mask = (r >= p).astype(input._data.dtype) * (1 / (1 - p))
    return input * Tensor._make(mask, input.device)


def pad(input: Tensor, pad: tuple[int, ...], value: float = 0.0) -> Tensor:
    """Constant padding, last dimension first (PyTorch's order), as a cat of constant blocks."""
    out = input
    for k in range(len(pad) // 2):
        dim = input.ndim - 1 - k
        lo, hi = pad[2 * k], pad[2 * k + 1]
        parts = []
        for n in (lo, hi):
            shape = list(out.shape)
            shape[dim] = n
            parts.append(_wrap_other(value, out).expand(*shape) if n else None)
        from ..functional import cat

        out = cat([t for t in (parts[0], out, parts[1]) if t is not None], dim)
    return out


def _class_dim(input: Tensor) -> int:
    return 0 if input.ndim == 1 else 1  # (C,) unbatched, else (N, C, ...) as in PyTorch


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy from logits (fused and stable). `target` holds class indices,
    or class probabilities of the input's shape."""
    r = _check_reduction(reduction)
    ax = _class_dim(input)
    if target._data.dtype.kind == "f":
        loss = apply(_R["softmax_cross_entropy"], input, target, axis=ax)
        return _reduce(loss if weight is None else loss, r)
    w = None if weight is None else weight._data
    return apply(_R["sparse_softmax_cross_entropy"], input, target, axis=ax, ignore_index=ignore_index,
                 weight=w, reduction=r)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood from log-probabilities (use after log_softmax)."""
    r = _check_reduction(reduction)
    w = None if weight is None else weight._data
    return apply(_R["nll_loss"], input, target, axis=_class_dim(input), ignore_index=ignore_index, weight=w,
                 reduction=r)


def softmax_cross_entropy_with_logits(logits: Tensor, labels: Tensor, dim: int = -1) -> Tensor:
    """Per-example cross-entropy against label distributions (TF's op of the same name)."""
    return apply(_R["softmax_cross_entropy"], logits, labels, axis=dim)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).square(), reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).abs(), reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities p (after a sigmoid)."""
    loss = apply(_R["binary_cross_entropy"], input, _wrap_other(target, input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of `weight` picked by the integer tensor `input`."""
    return apply(_R["embedding"], weight, _wrap_other(input, weight))
