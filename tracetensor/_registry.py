"""The op registry: each op is declared once (forward against `xp`, its VJP, its
error explanation and its cost) and both eager tensors and graph nodes run it.

Declaring an op takes its forward and, if it has one, its VJP:

    @register("exp", tf="Exp")
    def exp(xp, a):
        return xp.exp(a)

    @exp.defvjp
    def _(ctx, g):
        return (g * ctx.out,)

Defaults: the cost is one FLOP per output element; the TF name is the CamelCase of the
name. Gradients: a VJP returns None for an input that gets no gradient (zero, or not
needed: see `ctx.needs`); an op with no VJP at all (comparisons, argmax, sampling) gives
outputs that are off the tape. `errstate="forward" | "vjp" | "all"` runs that part with
numpy's floating-point warnings off, for ops whose infinities and NaNs are their answer
(log(0) = -inf, as in PyTorch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

Array = Any


class Ctx:
    """What a VJP sees: the array module, the forward inputs and output, the op's
    attributes, which inputs need a gradient (so unneeded work is skipped), and
    `saved`: the residuals of an op registered with `saves=True` (None where the caller
    kept none, e.g. graph mode: the VJP then recomputes them)."""

    __slots__ = ("xp", "args", "out", "attrs", "needs", "saved")

    def __init__(
        self, xp: Any, args: tuple, out: Array, attrs: dict, needs: tuple[bool, ...], saved: Any = None
    ) -> None:
        self.xp, self.args, self.out, self.attrs, self.needs, self.saved = xp, args, out, attrs, needs, saved


class OpDef:
    """One op. `forward(xp, *arrays, **attrs)`; `vjp(ctx, g) -> tuple` with one gradient
    (or None) per array input, in the input's shape or broadcast to the output's (the
    autograd engine reduces broadcast dimensions, once, for every op)."""

    __slots__ = ("name", "tf_name", "forward", "vjp", "cost", "explain", "doc", "saves", "errstate")

    def __init__(
        self,
        name: str,
        forward: Callable,
        tf_name: str | None,
        cost: Callable | None,
        explain: Callable | None,
        saves: bool = False,
        errstate: str | None = None,
    ) -> None:
        if errstate not in (None, "forward", "vjp", "all"):
            raise ValueError(f"op {name!r}: errstate must be 'forward', 'vjp' or 'all', got {errstate!r}")
        self.name = name
        self.errstate = errstate
        # saves=True: forward returns (output, residuals) and eager mode hands the residuals
        # to the VJP as ctx.saved (e.g. cross-entropy keeps its log-softmax)
        self.saves = saves
        self.tf_name = tf_name or "".join(p.capitalize() for p in name.split("_"))
        self.forward = _quiet(forward) if errstate in ("forward", "all") else forward
        self.vjp: Callable[[Ctx, Array], tuple] | None = None
        self.cost = cost
        self.explain = explain
        self.doc = forward.__doc__

    def defvjp(self, fn: Callable[[Ctx, Array], tuple]) -> Callable[[Ctx, Array], tuple]:
        self.vjp = _quiet(fn) if self.errstate in ("vjp", "all") else fn
        return fn

    def defexplain(self, fn: Callable) -> Callable:
        """`explain(shapes, dtypes, attrs) -> str | None`: the detail of an error."""
        self.explain = fn
        return fn

    def __repr__(self) -> str:
        return f"<op {self.name}>"


REGISTRY: dict[str, OpDef] = {}


def _quiet(fn: Callable) -> Callable:
    """`fn` with numpy's floating-point warnings off (cupy has none to silence)."""

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet


def register(
    name: str,
    *,
    tf: str | None = None,
    cost: Callable | None = None,
    explain: Callable | None = None,
    saves: bool = False,
    errstate: str | None = None,
) -> Callable[[Callable], OpDef]:
    """Decorator: `@register("exp")` over `def exp(xp, a): return xp.exp(a)`."""

    def deco(fwd: Callable) -> OpDef:
        old = REGISTRY.get(name)
        # the same function registering again is its module being imported anew (importlib.reload,
        # pytest's in-process runs that unload modules): the newer definition replaces it
        if old is not None and (old.forward.__module__, old.forward.__qualname__) != (fwd.__module__, fwd.__qualname__):
            raise ValueError(f"op {name!r} is registered twice")
        d = OpDef(name, fwd, tf, cost, explain, saves, errstate)
        REGISTRY[name] = d
        return d

    return deco


def output_only(op: OpDef) -> Callable:
    """The op's forward returning only its output (graph mode keeps no residuals)."""
    if not op.saves:
        return op.forward
    fwd = op.forward

    def forward(*args: Any, **attrs: Any) -> Array:
        return fwd(*args, **attrs)[0]

    return forward


def get(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no op named {name!r} is registered") from None


def unbroadcast(xp: Any, g: Array, shape: tuple[int, ...]) -> Array:
    """Sums a gradient back to the shape of the input it flows into."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:  # a scalar input (shape ()) after a keepdims sum
        g = g.reshape(shape)
    return g
