"""`tt.nn.utils`: gradient clipping and parameter/vector conversion, as torch.nn.utils."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..._grad_mode import no_grad
from ...errors import NumericsError
from ...tensor import Tensor, tensor
from . import rnn

__all__ = [
    "rnn",
    "clip_grad_norm_",
    "clip_grad_value_",
    "parameters_to_vector",
    "vector_to_parameters",
    "get_total_norm",
    "clip_grads_with_norm_",
]


def _params(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def get_total_norm(
    tensors: Tensor | Iterable[Tensor], norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach: Any = None
) -> Tensor:
    """The norm of all the tensors' norms: the norm of their concatenation."""
    from ...functional import stack

    ts = _params(tensors)
    if not ts:
        return tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        norms = stack([t.detach().norm(norm_type) for t in ts])
        total = norms.max() if norm_type == float("inf") else norms.norm(norm_type)
    if error_if_nonfinite and not bool(total.isfinite()):
        raise NumericsError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return total


def clip_grads_with_norm_(
    parameters: Tensor | Iterable[Tensor], max_norm: float, total_norm: Tensor, foreach: Any = None
) -> None:
    coef = min(float(max_norm) / (float(total_norm) + 1e-6), 1.0)
    for p in _params(parameters):
        if p.grad is not None:
            p.grad._data *= p.grad._data.dtype.type(coef)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> Tensor:
    """Scales the gradients in place so that their total norm is at most `max_norm`; returns the
    total norm before clipping (PyTorch's formula: factor max_norm / (norm + 1e-6), at most 1)."""
    ps = [p for p in _params(parameters) if p.grad is not None]
    total = get_total_norm([p.grad for p in ps], norm_type, error_if_nonfinite)
    clip_grads_with_norm_(ps, max_norm, total)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: Any = None) -> None:
    """Clamps every gradient element into [-clip_value, clip_value], in place."""
    c = float(clip_value)
    for p in _params(parameters):
        if p.grad is not None:
            p.grad._data[...] = p.grad.clamp(-c, c)._data


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    from ...functional import cat

    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    k = 0
    for p in parameters:
        n = p.numel()
        p._data[...] = vec._data[k : k + n].reshape(p.shape)
        k += n
