"""The op registry: each op is declared once (forward against `xp`, its VJP, its
error explanation and its cost) and both eager tensors and graph nodes run it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any


class Ctx:
    """What a VJP sees: the array module, the forward inputs and output, the op's
    attributes, which inputs need a gradient (so unneeded work is skipped), and
    `saved`: the residuals of an op registered with `saves=True` (None where the caller
    kept none, e.g. graph mode: the VJP then recomputes them)."""
    __slots__ = ("xp", "args", "out", "attrs", "needs", "saved")

    def __init__(self, xp: Any, args: tuple, out: Array, attrs: dict, needs: tuple[bool, ...],
                 saved: Any = None) -> None:
        self.xp, self.args, self.out, self.attrs, self.needs, self.saved = xp, args, out, attrs, needs, saved


class OpDef:
    """One op. `forward(xp, *arrays, **attrs)`; `vjp(ctx, g) -> tuple` with one gradient
    (or None) per array input, in the input's shape or broadcast to the output's (the
    autograd engine reduces broadcast dimensions, once, for every op)."""

    __slots__ = ("name", "tf_name", "forward", "vjp", "cost", "explain", "doc", "saves")

    def __init__(self, name: str, forward: Callable, tf_name: str | None, cost: Callable | None,
                 explain: Callable | None, saves: bool = False) -> None:
        self.name = name
        # saves=True: forward returns (output, residuals) and eager mode hands the residuals
        # to the VJP as ctx.saved (e.g. cross-entropy keeps its log-softmax)
        self.saves = saves
        self.tf_name = tf_name or "".join(p.capitalize() for p in name.split("_"))
        self.forward = forward
        self.vjp: Callable[[Ctx, Array], tuple] | None = None
        self.cost = cost
        self.explain = explain
        self.doc = forward.__doc__

    def defvjp(self, fn: Callable[[Ctx, Array], tuple]) -> Callable[[Ctx, Array], tuple]:
        self.vjp = fn
        return fn

    def defexplain(self, fn: Callable) -> Callable:
        """`explain(shapes, dtypes, attrs) -> str | None`: the detail of an error."""
        self.explain = fn
        return fn

    def flops(self, arrays: tuple, out: Array, attrs: dict) -> int:
        if self.cost is not None:
            return int(self.cost(arrays, out, attrs))
        return int(getattr(out, "size", 1))

    def __repr__(self) -> str:
        return f"<op {self.name}>"


REGISTRY: dict[str, OpDef] = {}


def register(name: str, *, tf: str | None = None, cost: Callable | None = None,
             explain: Callable | None = None, saves: bool = False) -> Callable[[Callable], OpDef]:
    """Decorator: `@register("exp")` over `def exp(xp, a): return xp.exp(a)`."""
    def deco(fwd: Callable) -> OpDef:
        if name in REGISTRY:
            raise ValueError(f"op {name!r} is registered twice")
        d = OpDef(name, fwd, tf, cost, explain, saves)
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
