"""Reverse-mode autograd over the dynamic tape: each op output keeps a Node that
remembers its op, inputs and saved arrays; `backward` walks the tape in reverse
topological order, calls each op's VJP through the dispatch point, reduces
broadcast dimensions once, and accumulates into leaves' `.grad`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._dispatch import fail, run_op
from ._registry import Ctx, OpDef, REGISTRY, register, unbroadcast
from ._source import Frame
from .errors import TraceTensorError
from .events import STATE

if TYPE_CHECKING:
    from .tensor import Tensor


class Node(Ctx):
    """The tape entry of one op output."""
    __slots__ = ("op", "inputs", "name", "stack", "freed")

    def __init__(self, op: OpDef, inputs: tuple, xp: Any, args: tuple, out: Any, attrs: dict,
                 needs: tuple[bool, ...], name: str | None, stack: tuple[Frame, ...] | None) -> None:
        Ctx.__init__(self, xp, args, out, attrs, needs)
        self.op, self.inputs, self.name, self.stack, self.freed = op, inputs, name, stack, False

    def free(self) -> None:
        self.args = self.out = None  # type: ignore[assignment]
        self.freed = True


# AccumulateGrad is an op like any other so that its event passes the dispatch point.
@register("accumulate_grad", tf="AccumulateGrad", cost=lambda arrays, out, attrs: out.size)
def _accumulate(xp, old, g):
    return g if old is None else old + g


def _toposort(roots: list[Tensor]) -> list[Tensor]:
    """Tensors reachable from `roots` through the tape, outputs before inputs."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in roots]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        node = t._node
        if node is not None:
            for inp, need in zip(node.inputs, node.needs):
                if need and id(inp) not in seen:
                    stack.append((inp, False))
    order.reverse()
    return order


def run_backward(roots: list[Tensor], grads: list[Any], *, retain_graph: bool = False,
                 capture: list[Tensor] | None = None) -> list[Any] | None:
    """The backward pass. With `capture` (autograd.grad), returns the gradients of
    those tensors instead of accumulating into leaves."""
    from .tensor import Tensor

    gmap: dict[int, Any] = {}
    for r, g in zip(roots, grads):
        gmap[id(r)] = g if id(r) not in gmap else gmap[id(r)] + g
    want = {id(t) for t in capture} if capture is not None else None
    captured: dict[int, Any] = {}
    listening = bool(STATE.listeners)
    handed_out: set[int] = set()
    for t in _toposort(roots):
        g = gmap.pop(id(t), None)
        if g is None:
            continue
        if t._hooks:
            for hook in t._hooks:
                r = hook(Tensor._make(g, t._device))
                if r is not None:
                    g = r._data
        if want is not None and id(t) in want:
            captured[id(t)] = g if id(t) not in captured else captured[id(t)] + g
        node = t._node
        if node is None or t._retain:
            if want is None and (node is None and t._requires_grad or t._retain):
                _accumulate_into(t, g, listening, handed_out)
            if node is None:
                continue
        if node.freed:
            raise TraceTensorError(
                f"backward through '{node.name or node.op.name}' a second time: its saved values were "
                "freed after the first backward; pass retain_graph=True to the first backward")
        op = node.op
        if op.vjp is None:
            raise TraceTensorError(f"op '{op.name}' has no gradient rule (it is not differentiable)")
        if listening:
            fname = node.name or op.name
            in_names = tuple(getattr(i, "_name", None) or "" for i in node.inputs)
            gin = run_op(op, "backward", op.vjp, (node, g), (g,), {}, mode="eager",
                         name=f"gradients/{fname}_grad", inputs=(f"gradients/{fname}:0",),
                         device=t._device, stack=node.stack, forward=fname, grad_of=in_names,
                         op_label=op.name)
        else:
            try:
                gin = op.vjp(node, g)
            except Exception as e:
                raise fail(op, "backward", (g,), {}, e, frame=node.stack[0] if node.stack else None) from None
        for inp, gi, arr, need in zip(node.inputs, gin, node.args, node.needs):
            if not need or gi is None:
                continue
            shape = getattr(arr, "shape", ())
            if gi.shape != shape:
                gi = unbroadcast(node.xp, gi, shape)
            dt = getattr(arr, "dtype", None)
            if dt is not None and gi.dtype != dt and dt.kind in "fc":
                gi = gi.astype(dt)
            k = id(inp)
            prev = gmap.get(k)
            gmap[k] = gi if prev is None else prev + gi
        if not retain_graph:
            node.free()
    if capture is not None:
        return [captured.get(id(t)) for t in capture]
    return None


def _accumulate_into(t: Tensor, g: Any, listening: bool, handed_out: set[int]) -> None:
    """Adds `g` to `t.grad`, never sharing one array between two leaves' grads."""
    from .tensor import Tensor

    if g.__class__ is not t._data.__class__:
        g = t._device.xp.asarray(g)  # a numpy scalar from a full reduction
    if g.shape != t._data.shape:
        g = unbroadcast(t._device.xp, g, t._data.shape)
    if g.dtype != t._data.dtype:
        g = g.astype(t._data.dtype)
    old = t.grad._data if t.grad is not None else None
    if old is None and (id(g) in handed_out or not g.flags.writeable or g.base is not None):
        g = g.copy()
    handed_out.add(id(g))
    op = REGISTRY["accumulate_grad"]
    if listening:
        pname = t._name or "tensor"
        new = run_op(op, "backward", op.forward, (t._device.xp, old, g), (g,), {}, mode="eager",
                     name=f"gradients/{pname}/AccumulateGrad", inputs=(pname,), device=t._device,
                     grad_of=(pname,), op_label="accumulate_grad", out_names=(f"{pname}.grad",))
    else:
        new = g if old is None else old + g
    if t.grad is None:
        t.grad = Tensor._make(new, t._device)
    else:
        t.grad._data = new
