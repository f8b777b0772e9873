"""`tt.autograd`: `grad`, `Function`, `Variable` (an alias kept for old code), `gradcheck`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._autograd import run_backward
from .errors import TraceTensorError
from .tensor import Tensor, _wrap_other

Variable = Tensor  # old PyTorch code wraps tensors in Variable(...); a tensor is one already


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """Gradients of `outputs` with respect to `inputs`, without touching `.grad`."""
    if create_graph:
        raise TraceTensorError("create_graph=True (higher-order gradients) is not supported")
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        gos: list[Any] = [None] * len(outs)
    else:
        gos = [grad_outputs] if isinstance(grad_outputs, Tensor) else list(grad_outputs)
    grads = []
    for o, go in zip(outs, gos):
        if not o.requires_grad:
            raise TraceTensorError("an output passed to autograd.grad does not require grad")
        if go is None:
            if o.numel() != 1:
                raise TraceTensorError(f"grad can be implicitly created only for scalar outputs, got {o.shape}")
            grads.append(o._device.xp.ones_like(o._data))
        else:
            grads.append(_wrap_other(go, o)._data)
    res = run_backward(outs, grads, retain_graph=bool(retain_graph), capture=ins)
    out: list[Tensor | None] = []
    for t, g in zip(ins, res or []):
        if g is None:
            if not allow_unused:
                raise TraceTensorError("one of the inputs was not used to compute the outputs; "
                                       "pass allow_unused=True to get None for it")
            out.append(None)
        else:
            out.append(Tensor._make(g, t._device))
    return tuple(out)
