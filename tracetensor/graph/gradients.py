"""`tf.gradients`: adds gradient nodes (`gradients/<forward>_grad`) that call each
registry op's VJP, so backward ops are graph nodes one can fetch and inspect."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._registry import REGISTRY, Ctx, unbroadcast
from .core import Graph, InvalidArgumentError, Operation, Tensor
from .session import Step, executor

# kind -> builder(op, out_grads, needs) -> one gradient tensor (or None) per input
GRAD_BUILDERS: dict[str, Callable[[Operation, list[Tensor | None], list[bool]], list[Tensor | None]]] = {}


def grad_builder(kind: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        GRAD_BUILDERS[kind] = fn
        return fn

    return deco


def _differentiable(t: Tensor) -> bool:
    return t.dtype.np.kind in "fc"


def gradients(
    ys: Any,
    xs: Any,
    grad_ys: Any = None,
    name: str = "gradients",
    stop_gradients: Sequence[Tensor] | None = None,
) -> list[Tensor | None]:
    """d(sum of ys)/d(x) for each x in xs, as new graph nodes; None where x does not
    affect ys (TensorFlow's convention)."""
    from .ops import constant, convert_to_tensor, ones_like

    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    if not ys:
        raise InvalidArgumentError("gradients() needs at least one y")
    for t in (*ys, *xs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradients() takes graph tensors or Variables, got {type(t).__name__}")
    g: Graph = ys[0].graph
    for t in (*ys, *xs):
        g.as_graph_element(t)
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    elif not isinstance(grad_ys, (list, tuple)):
        grad_ys = [grad_ys]
    stop = set(stop_gradients or ())

    # ops between xs and ys: reachable backwards from ys, depending forwards on xs
    back: set[Operation] = set()
    todo = [y.op for y in ys]
    while todo:
        op = todo.pop()
        if op in back:
            continue
        back.add(op)
        todo.extend(t.op for t in op.inputs if t not in stop)
        todo.extend(t.op for t in op.attrs.get("_deps", ()))
    xset = set(xs)
    depends: set[Tensor] = set(xs)
    order = [op for op in g._order if op in back and op.ctx is None]  # creation order is topological
    for op in order:
        if any(t in depends for t in op.inputs if t not in stop) and op.kind not in ("assign",):
            depends.update(t for t in op.outputs if _differentiable(t))

    grads: dict[Tensor, list[Tensor]] = {}
    with g.name_scope(name):
        for y, gy in zip(ys, grad_ys):
            if gy is None and y.shape.is_fully_defined():
                gy = constant(1, dtype=y.dtype, shape=y._dims, name="grad_ys")  # built once, not per run
            elif gy is None:
                gy = ones_like(y, name="grad_ys")
            else:
                gy = convert_to_tensor(gy, dtype=y.dtype, graph=g)
            grads.setdefault(y, []).append(gy)
        for op in reversed(order):
            if not any(t in grads for t in op.outputs) or op.kind not in GRAD_BUILDERS:
                continue
            needs = [t in depends and t not in stop and _differentiable(t) for t in op.inputs]
            if not any(needs):
                continue
            out_grads = [_aggregate(grads.get(t)) for t in op.outputs]
            in_grads = GRAD_BUILDERS[op.kind](op, out_grads, needs)
            for t, gi, need in zip(op.inputs, in_grads, needs):
                if gi is not None and need:
                    grads.setdefault(t, []).append(gi)
        result = []
        for x in xs:
            gl = grads.get(x)
            result.append(_aggregate(gl) if gl and x in xset else None)
    return result


def _aggregate(gl: list[Tensor] | None) -> Tensor | None:
    if not gl:
        return None
    if len(gl) == 1:
        return gl[0]
    from .ops import add_n

    s = add_n(gl, name="AddN")
    gl[:] = [s]
    return s


@grad_builder("op")
def _op_grad(op: Operation, out_grads: list[Tensor | None], needs: list[bool]) -> list[Tensor | None]:
    gout = out_grads[0]
    opdef = op.opdef
    if gout is None or opdef.vjp is None:
        return [None] * len(op.inputs)
    g = op.graph
    outs = [(t._dims, t.dtype) for t, n in zip(op.inputs, needs) if n]
    gop = g.create_op(
        "grad",
        f"{op.type}Grad",
        (*op.inputs, op.outputs[0], gout),
        {"forward": op.name, "op": opdef.name, "fattrs": op.attrs, "needs": tuple(needs)},
        name=f"{op.name}_grad",
        out=outs,
        stack=op.stack,
    )
    it = iter(gop.outputs)
    return [next(it) if n else None for n in needs]


@grad_builder("check")
def _check_grad(op: Operation, out_grads: list[Tensor | None], needs: list[bool]) -> list[Tensor | None]:
    return [out_grads[0]]


@grad_builder("placeholder")
def _default_grad(op: Operation, out_grads: list[Tensor | None], needs: list[bool]) -> list[Tensor | None]:
    return [out_grads[0]]  # PlaceholderWithDefault passes the gradient to its default


@executor("grad")
def _grad_step(sess: Any, op: Operation, xp: Any) -> Step:
    a = op.attrs
    fwd = REGISTRY[a["op"]]
    vjp, fattrs, needs = fwd.vjp, a["fattrs"], a["needs"]
    n = len(needs)
    idx = [i for i, nd in enumerate(needs) if nd]

    def grad_saved(saved: Any, *arrays: Any) -> tuple:
        """The gradients, given the forward's residuals (`saves` ops; None: recomputed)."""
        args = arrays[:n]
        gs = vjp(Ctx(xp, args, arrays[n], fattrs, needs, saved), arrays[n + 1])
        out = []
        for i in idx:
            gi, x = gs[i], args[i]
            if gi is None or gi.shape != x.shape or gi.dtype != x.dtype:
                gi = fix_grad(xp, gi, x)
            out.append(gi)
        return tuple(out)

    def grad(*arrays: Any) -> tuple:
        return grad_saved(None, *arrays)

    step = Step(
        op,
        grad,
        phase="backward",
        evop=fwd,
        multi=True,
        forward=a["forward"],
        grad_of=tuple(op.inputs[i].name for i in idx),
    )
    step.extra["vjp"] = (vjp, fattrs, needs, idx, fix_grad)  # lets the plan inline this node's call
    step.extra["grad_saved"] = grad_saved  # a listened-to plan hands it the forward's residuals
    return step


def fix_grad(xp: Any, gi: Any, x: Any) -> Any:
    """A VJP's gradient made to fit its input: zeros for None, broadcast dimensions summed
    away (once, here), and the input's floating dtype."""
    if gi is None:
        return xp.zeros_like(x)
    if gi.shape != x.shape:
        gi = unbroadcast(xp, gi, x.shape)
    if gi.dtype != x.dtype and x.dtype.kind in "fc":
        gi = gi.astype(x.dtype)
    return gi
