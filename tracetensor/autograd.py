"""`tt.autograd`: `grad`, `Function`, `Variable` (an alias kept for old code), `gradcheck`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._autograd import run_backward
from ._grad_mode import no_grad
from ._registry import OpDef
from .errors import TraceTensorError
from .tensor import Tensor, _wrap_other

Variable = Tensor  # old PyTorch code wraps tensors in Variable(...); a tensor is one already


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
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
                raise TraceTensorError(
                    "one of the inputs was not used to compute the outputs; pass allow_unused=True to get None for it"
                )
            out.append(None)
        else:
            out.append(Tensor._make(g, t._device))
    return tuple(out)


# ---------------------------------------------------------------- custom functions


class FunctionCtx:
    """What `forward` and `backward` of a `Function` share: saved tensors, which inputs
    need a gradient, and any attributes the user sets on it."""

    def __init__(self, needs: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs
        self.saved_tensors: tuple[Tensor, ...] = ()
        self.non_differentiable: set[int] = set()
        self.output_marked = False

    def save_for_backward(self, *tensors: Tensor) -> None:
        self.saved_tensors = tuple(tensors)

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """The marked outputs of `forward` get no gradient (requires_grad False), as in PyTorch."""
        self.non_differentiable = {id(t) for t in tensors}


class Function:
    """A user-defined op with its own gradient, as torch.autograd.Function:

        class Square(tt.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g

        y = Square.apply(x)

    It runs through the same dispatch point as built-in ops (one event per phase, named
    after the class); `forward` returns one tensor, `backward` one gradient per argument.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: FunctionCtx, *grads: Tensor) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        from .tensor import apply

        op = cls.__dict__.get("_tt_op")
        if op is None:
            op = OpDef(cls.__name__, _fn_forward, cls.__name__, None, None)
            op.defvjp(_fn_backward)
            cls._tt_op = op
        pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        if not pos:
            raise TraceTensorError(f"{cls.__name__}.apply needs at least one tensor argument")
        tensors = [args[i] for i in pos]
        fctx = FunctionCtx(tuple(isinstance(a, Tensor) and a.requires_grad for a in args))
        out = apply(op, *tensors, fn=cls, fctx=fctx, template=args, positions=tuple(pos), kwargs=kwargs)
        if fctx.output_marked:  # forward marked its output non-differentiable: off the tape
            out._node, out._requires_grad = None, False
        return out


def _fn_forward(
    xp: Any,
    *arrays: Any,
    fn: type[Function],
    fctx: FunctionCtx,
    template: tuple,
    positions: tuple[int, ...],
    kwargs: dict,
) -> Any:
    """The op forward of a Function: the user's forward on plain tensors, off the tape."""
    args = list(template)
    for i, a in zip(positions, arrays):
        args[i] = Tensor._make(a, template[i]._device)
    with no_grad():
        out = fn.forward(fctx, *args, **kwargs)
    if not isinstance(out, Tensor):
        raise TraceTensorError(f"{fn.__name__}.forward must return one tensor, got {type(out).__name__}")
    fctx.output_marked = id(out) in fctx.non_differentiable
    return out._data


def _fn_backward(ctx: Any, g: Any) -> tuple:
    attrs = ctx.attrs
    fn, fctx, positions = attrs["fn"], attrs["fctx"], attrs["positions"]
    dev = attrs["template"][positions[0]]._device
    with no_grad():
        res = fn.backward(fctx, Tensor._make(g, dev))
    if not isinstance(res, tuple):
        res = (res,)
    if len(res) != len(attrs["template"]):
        raise TraceTensorError(
            f"{fn.__name__}.backward returned {len(res)} gradients, but forward took {len(attrs['template'])} arguments"
        )
    return tuple(None if res[i] is None else _wrap_other(res[i], Tensor._make(g, dev))._data for i in positions)


# ---------------------------------------------------------------- gradient checking


class GradcheckError(TraceTensorError, AssertionError):
    """Analytical and numerical gradients disagree."""


def gradcheck(
    func: Callable[..., Any],
    inputs: Any,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Checks the gradients of `func(*inputs)` against central finite differences.

    The analytical gradient is computed in the inputs' own dtype; the numerical one on
    float64 (complex128) copies, so float32 code can be checked too (with a looser
    tolerance). Every floating tensor input with requires_grad is checked. The scalar
    checked is sum(Re(conj(w) * out)) for a fixed random w, so every output element counts.
    """
    ins = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, t in enumerate(ins) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise TraceTensorError("gradcheck: no input requires grad")
    outs = _outputs(func(*ins))
    rng = np.random.default_rng(seed)
    ws = []
    for o in outs:
        w = rng.standard_normal(o.shape)
        if o._data.dtype.kind == "c":
            w = w + 1j * rng.standard_normal(o.shape)
        ws.append(w)
    diff = [o for o, _ in zip(outs, ws) if o.requires_grad]
    if not diff:
        raise GradcheckError("gradcheck: no output depends differentiably on the inputs")
    gw = [
        Tensor._make(o._device.xp.asarray(w.astype(o._data.dtype)), o._device)
        for o, w in zip(outs, ws)
        if o.requires_grad
    ]
    analytic = grad(diff, [ins[i] for i in checked], gw, allow_unused=True)

    def objective(arrays: list[Any]) -> float:
        args = list(ins)
        for i, a in zip(checked, arrays):
            args[i] = Tensor._make(a, ins[i]._device)
        with no_grad():
            res = _outputs(func(*args))
        total = 0.0
        for o, w in zip(res, ws):
            v = np.asarray(o.detach().cpu()._data, dtype=np.complex128)
            total += float(np.real(np.conj(w) * v).sum())
        return total

    base = []
    for i in checked:
        a = ins[i]._data
        base.append(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64))
    for k, i in enumerate(checked):
        a = base[k]
        flat = a.reshape(-1)
        num = np.zeros(a.shape, dtype=a.dtype)
        numf = num.reshape(-1)
        steps = (eps, 1j * eps) if a.dtype.kind == "c" else (eps,)
        for j in range(flat.size):
            for step in steps:
                old = flat[j]
                flat[j] = old + step
                hi = objective(base)
                flat[j] = old - step
                lo = objective(base)
                flat[j] = old
                d = (hi - lo) / (2 * eps)
                numf[j] += d if step == eps else 1j * d
        an = analytic[k]
        an = np.zeros(a.shape) if an is None else np.asarray(an.detach().cpu()._data, dtype=num.dtype)
        num = np.asarray(num.get() if hasattr(num, "get") else num)
        if not np.allclose(an, num, atol=atol, rtol=rtol):
            j = int(np.argmax(np.abs(an - num)))
            msg = (
                f"gradcheck: the gradient of input {i} (shape {tuple(ins[i].shape)}, {ins[i].dtype}) does "
                f"not match finite differences; worst element {np.unravel_index(j, a.shape)}: analytical "
                f"{an.reshape(-1)[j]:.6g}, numerical {num.reshape(-1)[j]:.6g} (max abs diff "
                f"{np.abs(an - num).max():.3g}, atol={atol}, rtol={rtol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def _outputs(out: Any) -> list[Tensor]:
    outs = [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]
    return [o for o in outs if o._data.dtype.kind in "fc"]
