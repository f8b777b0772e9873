"""`tt.nn.functional`: the stateless side of tt.nn (PyTorch's torch.nn.functional names).
Each function is a short composition of registered ops; losses use the fused, stable ones."""

from __future__ import annotations

from typing import Any

from .._registry import REGISTRY as _R
from .._source import user_frame
from ..errors import ShapeError
from ..functional import one_hot, where
from ..tensor import Tensor, _wrap_other, apply, rand

__all__ = [
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "conv2d",
    "max_pool2d",
    "dropout",
    "mse_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "embedding",
    "one_hot",
    "softmax_cross_entropy_with_logits",
    "l1_loss",
    "pad",
    "softplus",
    "gelu",
    "leaky_relu",
    "elu",
    "silu",
    "layer_norm",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "smooth_l1_loss",
    "normalize",
]

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
    if bias is not None:
        # one fused op (one tape node, one event: torch's aten::linear), observed or not, so a
        # listener sees the program that runs unobserved, to the last bit. If anything fails,
        # the two ops below run and raise their own error
        try:
            x, w, b = input._data, weight._data, bias._data
            if w.ndim == 2 and x.ndim >= 2 and x.dtype is w.dtype is b.dtype:
                return apply(_R["linear"], input, weight, bias)
        except Exception:
            pass
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


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, the identity where beta x > threshold."""
    return apply(_R["softplus"], input, beta=float(beta), threshold=float(threshold))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact, via erf), or the tanh approximation with approximate="tanh"."""
    return apply(_R["gelu"], input, approximate=approximate)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return apply(_R["leaky_relu"], input, negative_slope=float(negative_slope))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return apply(_R["elu"], input, alpha=float(alpha))


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    return apply(_R["silu"], input)


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(
    input: Tensor, normalized_shape: Any, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalizes over the trailing `normalized_shape` dimensions, then scales and shifts."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if tuple(input.shape[input.ndim - k :]) != shape or k > input.ndim:
        raise ShapeError(
            "layer_norm",
            f"normalized_shape {shape} does not match the last dimensions of input of shape {tuple(input.shape)}",
            frame=user_frame(),
        )
    out = apply(_R["layer_norm"], input, axis=tuple(range(input.ndim - k, input.ndim)), eps=float(eps))
    return _affine(out, weight, bias, shape)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalizes each channel (dimension 1) of (N, C, ...) input: with the batch's statistics
    while training (updating the running ones in place), with the running ones otherwise."""
    if input.ndim < 2:
        raise ShapeError(
            "batch_norm", f"expected input of shape (N, C) or (N, C, L), got {tuple(input.shape)}", frame=user_frame()
        )
    axes = (0, *range(2, input.ndim))
    shape = (input.shape[1],) + (1,) * (input.ndim - 2)
    if training or running_mean is None or running_var is None:
        out = apply(_R["batch_norm"], input, axis=axes, eps=float(eps))
        if training and running_mean is not None and running_var is not None:
            x = input._data  # statistics outside autograd: the running buffers are not on the tape
            n = x.size // input.shape[1]
            mean, var = x.mean(axis=axes), x.var(axis=axes) * (n / max(n - 1, 1))  # unbiased, as PyTorch
            running_mean._data *= 1 - momentum
            running_mean._data += momentum * mean.astype(running_mean._data.dtype, copy=False)
            running_var._data *= 1 - momentum
            running_var._data += momentum * var.astype(running_var._data.dtype, copy=False)
    else:
        out = (input - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
    return _affine(out, weight, bias, shape)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(norm(input, p, dim), eps) (PyTorch's definition)."""
    return input / input.norm(p, dim, keepdim=True).clamp_min(eps)


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    return input.softmax(dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    return input.log_softmax(dim)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0) -> Tensor:
    """2-D cross-correlation over NCHW input with an (out, in, kh, kw) weight, plus a bias per
    output channel: one op with its bias (one tape node, one event: torch's aten::conv2d)."""
    if bias is None:
        return apply(_R["conv2d"], input, weight, stride=stride, padding=padding)
    return apply(_R["conv2d"], input, weight, bias, stride=stride, padding=padding)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    return apply(_R["max_pool2d"], input, kernel_size=kernel_size, stride=stride, padding=padding)


def avg_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> Tensor:
    if ceil_mode or not count_include_pad or divisor_override is not None:
        raise NotImplementedError(
            "avg_pool2d: only ceil_mode=False, count_include_pad=True and no divisor_override "
            "are supported by tracetensor"
        )
    return apply(_R["avg_pool2d"], input, kernel_size=kernel_size, stride=stride, padding=padding)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a given (H, W); sizes that divide the input's (global pooling: 1)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    h, w = input.shape[-2:]
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise ShapeError(
            "adaptive_avg_pool2d",
            f"output size ({oh}, {ow}) must divide the input size ({h}, {w}) in tracetensor",
            frame=user_frame(),
        )
    k = (h // oh, w // ow)
    return avg_pool2d(input, k, k)


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


def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Softmax cross-entropy from logits (fused and stable). `target` holds class indices,
    or class probabilities of the input's shape."""
    r = _check_reduction(reduction)
    ax = _class_dim(input)
    if target._data.dtype.kind == "f":
        loss = apply(_R["softmax_cross_entropy"], input, target, axis=ax)
        return _reduce(loss if weight is None else loss, r)
    w = None if weight is None else weight._data
    return apply(
        _R["sparse_softmax_cross_entropy"], input, target, axis=ax, ignore_index=ignore_index, weight=w, reduction=r
    )


def nll_loss(
    input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood from log-probabilities (use after log_softmax)."""
    r = _check_reduction(reduction)
    w = None if weight is None else weight._data
    return apply(
        _R["nll_loss"], input, target, axis=_class_dim(input), ignore_index=ignore_index, weight=w, reduction=r
    )


def softmax_cross_entropy_with_logits(logits: Tensor, labels: Tensor, dim: int = -1) -> Tensor:
    """Per-example cross-entropy against label distributions (TF's op of the same name)."""
    return apply(_R["softmax_cross_entropy"], logits, labels, axis=dim)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).square(), reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).abs(), reduction)


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities p (after a sigmoid)."""
    loss = apply(_R["binary_cross_entropy"], input, _wrap_other(target, input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy from logits, fused and stable (no sigmoid, no log of 0)."""
    target = _wrap_other(target, input)
    if pos_weight is None:
        loss = apply(_R["sigmoid_cross_entropy"], input, target)
    else:  # PyTorch's formula: (1 - y) x + (1 + (pw - 1) y) softplus(-x)
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * softplus(-input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d**2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    d = input - target
    if beta == 0:
        return _reduce(d.abs(), reduction)
    ad = d.abs()
    return _reduce(where(ad < beta, d.square() * (0.5 / beta), ad - 0.5 * beta), reduction)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of `weight` picked by the integer tensor `input`."""
    return apply(_R["embedding"], weight, _wrap_other(input, weight))


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(q k^T * scale + mask) v, as torch.nn.functional.scaled_dot_product_attention."""
    from .transformer import scaled_dot_product_attention as sdpa

    return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


__all__ += ["scaled_dot_product_attention", "avg_pool2d", "adaptive_avg_pool2d"]


# ----------------------------------------------------------------- more of torch.nn.functional, composed
# from registered ops (each step an event)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    return input.clamp(min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return input.clamp(0.0, 6.0)


def logsigmoid(input: Tensor) -> Tensor:
    return -softplus(-input)


def softsign(input: Tensor) -> Tensor:
    return input / (input.abs() + 1)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return input * softplus(input).tanh()


def glu(input: Tensor, dim: int = -1) -> Tensor:
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    w = weight.reshape(-1, *([1] * (input.ndim - 2))) if input.ndim > 1 and weight.numel() > 1 else weight
    return where(input >= 0, input, input * w)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1 . x2 / (max(|x1|, eps) * max(|x2|, eps)) along `dim`."""
    return (x1 * x2).sum(dim) / (x1.norm(dim=dim).clamp_min(eps) * x2.norm(dim=dim).clamp_min(eps))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    d = (input - target).abs()
    return _reduce(where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """target * (log target - input) pointwise (input holds log-probabilities); 0 where target is 0."""
    if log_target:
        loss = target.exp() * (target - input)
    else:
        safe = where(target > 0, target, target * 0 + 1)
        loss = where(target > 0, target * (safe.log() - input), target * 0)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zeroes whole channels (N, C, ...) with probability p, scaling the rest by 1/(1-p)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0:
        return input
    keep = rand(input.shape[:2] + (1,) * (input.ndim - 2), dtype=input.dtype, device=input.device) >= p
    return input * (keep.type(input.dtype) * (1 / (1 - p)))


__all__ += [
    "hardtanh",
    "relu6",
    "logsigmoid",
    "softsign",
    "mish",
    "glu",
    "prelu",
    "cosine_similarity",
    "huber_loss",
    "kl_div",
    "dropout2d",
]
