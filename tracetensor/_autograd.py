"""Reverse-mode autograd over the dynamic tape: each op output keeps a Node that
remembers its op, inputs and saved arrays; `backward` walks the tape in reverse
topological order, calls each op's VJP through the dispatch point, reduces
broadcast dimensions once, and accumulates into leaves' `.grad`."""

from __future__ import annotations

import itertools
import operator
from typing import TYPE_CHECKING, Any

from . import _source
from ._dispatch import _BACKWARD, Site, dispatch, named_site, site_of
from ._naming import accumulate_names, grad_names
from ._registry import REGISTRY, Ctx, OpDef, register, unbroadcast
from ._source import Frame
from .errors import TraceTensorError
from .events import STATE

if TYPE_CHECKING:
    from .tensor import Tensor


# tensor.py sets this to its `_new` (it imports this module, so we can't import it)
_new_tensor: Any = None


class Node(Ctx):
    """The tape entry of one op output."""

    __slots__ = ("op", "inputs", "name", "ins", "stack", "freed", "seq")

    def __init__(
        self,
        op: OpDef,
        inputs: tuple,
        xp: Any,
        args: tuple,
        out: Any,
        attrs: dict,
        needs: tuple[bool, ...],
        name: str | None,
        stack: tuple[Frame, ...] | None,
        saved: Any = None,
        ins: tuple[str, ...] = (),
    ) -> None:
        self.xp = xp
        self.args = args
        self.out = out
        self.attrs = attrs
        self.needs = needs
        self.saved = saved
        self.op = op
        self.inputs = inputs
        self.name = name
        self.ins = ins  # (named: the inputs' names, as its forward site gave them)
        self.stack = stack
        self.freed = False
        self.seq = next(_node_ids)  # creation order is a topological order of the tape


# AccumulateGrad is an op like any other so that its event passes the dispatch point.
@register("accumulate_grad", tf="AccumulateGrad", cost=lambda arrays, out, attrs: out.size)
def _accumulate(xp, old, g):
    return g if old is None else old + g


_ACCUMULATE = site_of(REGISTRY["accumulate_grad"], "backward")  # (the unnamed site, made once)
_ACCUMULATE_FN = _ACCUMULATE.op.forward  # (its forward, `old + g`, read once: xp unused)


def _grad_site(fname: str, op: OpDef, stack: Any, dev: Any, grad_of: tuple[str, ...]) -> Site:
    """The named Site of the backward op of forward op `fname` (see `named_site`)."""
    gname, gins = grad_names(fname)
    return _tuple_new(
        Site, (op, "backward", "eager", op.name, gname, gins, dev, stack, fname, grad_of, None, None, False)
    )


def _accumulate_site(pname: str, dev: Any, stack: Any) -> Site:
    """The named Site of the AccumulateGrad into leaf `pname` (see `named_site`); `stack`: the
    user's `backward()` line that the pass holds, or None (each accumulation looks)."""
    aname, ains, aouts = accumulate_names(pname)
    op = _ACCUMULATE.op
    return _tuple_new(Site, (op, "backward", "eager", op.name, aname, ains, dev, stack, None, ains, aouts, None, False))


_tuple_new = tuple.__new__  # Sites are made in their field order (see _dispatch.Site)
_generation = itertools.count(1)
_node_ids = itertools.count()
_node_seq = operator.attrgetter("_node.seq")


def _toposort(roots: list[Tensor]) -> list[Tensor]:
    """Tensors reachable from `roots` through the tape, outputs before inputs.
    Nodes are numbered as the tape grows, so creation order is already topological:
    one walk collects what is reachable (marks on the tensors, no hashing; iterative, so
    long tapes don't hit the recursion limit), a C-level sort orders it, leaves go last."""
    gen = next(_generation)
    nodes: list[Tensor] = []
    leaves: list[Tensor] = []
    stack = []
    for r in roots:
        if r._mark != gen:
            r._mark = gen
            r._g = None  # (no gradient parked yet: the pass parks them in `_g`)
            stack.append(r)
    while stack:
        t = stack.pop()
        node = t._node
        if node is None:
            leaves.append(t)
            continue
        nodes.append(t)
        for inp in node.inputs:
            if inp._requires_grad and inp._mark != gen:
                inp._mark = gen
                inp._g = None
                stack.append(inp)
    nodes.sort(key=_node_seq, reverse=True)
    if POST_ACCUMULATE:
        return _hooked_leaves_early(nodes, leaves)
    nodes += leaves
    return nodes


# id(leaf) -> (weakref to it, hooks): `Tensor.register_post_accumulate_grad_hook`. Such a leaf
# is accumulated as soon as its last consumer's VJP ran (not after the whole backward), so
# DDP can start reducing its gradient while the rest of backward still runs.
POST_ACCUMULATE: dict[int, tuple[Any, tuple]] = {}


def _hooked_leaves_early(nodes: list[Tensor], leaves: list[Tensor]) -> list[Tensor]:
    last_use: dict[int, tuple[int, Tensor]] = {}  # hooked leaf -> smallest seq of a node using it
    for t in nodes:
        node = t._node
        for inp in node.inputs:
            if id(inp) in POST_ACCUMULATE and inp._node is None:
                k = last_use.get(id(inp))
                if k is None or node.seq < k[0]:
                    last_use[id(inp)] = (node.seq, inp)
    if not last_use:
        return nodes + leaves
    hooked = sorted(last_use.values(), key=operator.itemgetter(0), reverse=True)
    out: list[Tensor] = []
    j = 0
    for t in nodes:  # newest node first: a leaf goes right after its last consumer is processed
        seq = t._node.seq
        while j < len(hooked) and hooked[j][0] > seq:
            out.append(hooked[j][1])
            j += 1
        out.append(t)
    out += [h[1] for h in hooked[j:]]
    out += [t for t in leaves if id(t) not in last_use]
    return out


def add_post_accumulate_hook(t: Tensor, hook: Any) -> Any:
    import weakref

    key = id(t)
    ref = weakref.ref(t, lambda _: POST_ACCUMULATE.pop(key, None))
    old = POST_ACCUMULATE.get(key)
    POST_ACCUMULATE[key] = (ref, (*(old[1] if old else ()), hook))

    def remove() -> None:
        cur = POST_ACCUMULATE.get(key)
        if cur is not None:
            rest = tuple(h for h in cur[1] if h is not hook)
            if rest:
                POST_ACCUMULATE[key] = (cur[0], rest)
            else:
                POST_ACCUMULATE.pop(key, None)

    return remove


def run_backward(
    roots: list[Tensor], grads: list[Any], *, retain_graph: bool = False, capture: list[Tensor] | None = None
) -> list[Any] | None:
    """The backward pass. Gradients flowing into a tensor collect in its `_g` slot
    (cleared as soon as it is consumed). With `capture` (autograd.grad), returns the
    gradients of those tensors instead of accumulating into leaves."""
    order = _toposort(roots)  # (which also clears their `_g`)
    for r, g in zip(roots, grads):
        r._g = g if r._g is None else r._g + g
    want = {id(t) for t in capture} if capture is not None else None
    captured: dict[int, Any] = {}
    listening = STATE.named  # (a `names=False` listener alone: unnamed sites, timed all the same)
    handed_out: set[int] = set()
    # the AccumulateGrad events' stack (the user's `backward()` line), taken once (see _source.hold)
    outer = _source.hold() if listening and STATE.stacks else None
    held = outer[2] if outer is not None else None
    try:
        for t in order:
            g = t._g
            if g is None:
                continue
            t._g = None
            if t._hooks:
                for hook in t._hooks:
                    r = hook(_new_tensor(g, t._device))
                    if r is not None:
                        g = r._data
            node = t._node
            if want is not None:
                if id(t) in want:
                    captured[id(t)] = g if id(t) not in captured else captured[id(t)] + g
            elif node is None or t._retain:
                _accumulate_into(t, g, listening, handed_out, held)
                if POST_ACCUMULATE and id(t) in POST_ACCUMULATE:
                    for hook in POST_ACCUMULATE[id(t)][1]:
                        hook(t)
            if node is None:
                continue
            if node.freed:
                raise TraceTensorError(
                    f"backward through '{node.name or node.op.name}' a second time: its saved values were "
                    "freed after the first backward; pass retain_graph=True to the first backward"
                )
            op = node.op
            if listening:
                fname = node.name or op.name
                # a node made while nobody listened has no name: its forward line is unknown,
                # and () says so (None would take backward()'s line)
                stack = node.stack if node.name is not None else ()
                # (its inputs' names: those its forward site gave, unless it was made unnamed)
                grad_of = node.ins if node.name is not None else tuple([i._name or "" for i in node.inputs])
                site = named_site(_grad_site, fname, op, stack, t._device, grad_of)
            elif node.stack:  # (errors point at the forward op's line when its stack was kept)
                site = Site(op, "backward", stack=node.stack)
            else:
                site = _BACKWARD.get(op) or site_of(op, "backward")
            gin = dispatch(site, op.vjp, (node, g), (g,))
            for inp, gi, arr, need in zip(node.inputs, gin, node.args, node.needs):
                if gi is None or not need:
                    continue
                if gi.shape != arr.shape:
                    gi = unbroadcast(node.xp, gi, arr.shape)
                if gi.dtype != arr.dtype and arr.dtype.kind in "fc":
                    gi = gi.astype(arr.dtype)
                prev = inp._g
                inp._g = gi if prev is None else prev + gi
            if not retain_graph:  # free the saved arrays now
                node.args = node.out = node.saved = None
                node.freed = True
    except BaseException:
        for t in order:  # an error mid-way must not leave gradients parked on tensors (a pass
            t._g = None  # that ends normally consumed every one)
        raise
    finally:
        if outer is not None:
            _source.release(outer)
    if capture is not None:
        return [captured.get(id(t)) for t in capture]
    return None


def _accumulate_into(t: Tensor, g: Any, listening: bool, handed_out: set[int], held: Any = None) -> None:
    """Adds `g` to `t.grad`, never sharing one array between two leaves' grads. `held`: the
    stack the backward pass holds (only its own frames lie between it and here)."""
    data = t._data
    if g.__class__ is not data.__class__:
        g = t._device.xp.asarray(g)  # a numpy scalar from a full reduction
    if g.shape != data.shape:
        g = unbroadcast(t._device.xp, g, data.shape)
    if g.dtype != data.dtype:
        g = g.astype(data.dtype)
    grad = t.grad
    old = grad._data if grad is not None else None
    if old is None and (
        g.base is not None or id(g) in handed_out or not getattr(g.flags, "writeable", True)
    ):  # (the cheapest test first; cupy arrays have no such flag)
        g = g.copy()
    handed_out.add(id(g))
    if listening:
        site = named_site(_accumulate_site, t._name or "tensor", t._device, held)
        new = dispatch(site, _ACCUMULATE_FN, (None, old, g), (g,))
    elif STATE.listeners:  # timings only (see events.subscribe's `names`): still an event
        new = dispatch(_ACCUMULATE, _ACCUMULATE_FN, (None, old, g), (g,))
    else:
        new = g if old is None else old + g
    if grad is None:
        t.grad = _new_tensor(new, t._device)
    else:
        grad._data = new
