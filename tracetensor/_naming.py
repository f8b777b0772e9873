"""Stable, human-readable names for eager ops: module path + op + per-run counter,
e.g. `MLP/fc1/matmul`, `MLP/fc1/matmul_1`. Only computed while someone listens."""

from __future__ import annotations

import threading


class _Scopes(threading.local):
    prefix = ""  # "MLP/fc1/" inside those scopes; per thread
    # the step's outermost module calls (nn.Module._call_inference): None (none yet), True (a
    # training call), or the module of the first of its inference calls
    calls: object = None

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}  # per thread, like runs: names are unique within a step


_tls = _Scopes()


def scopes() -> list[str]:
    return [p for p in _tls.prefix.split("/") if p]


class name_scope:
    """`with tt.name_scope("encoder"):` prefixes the names of the ops inside.
    (A class, not a generator: nn.Module enters one per call while listening.)"""

    __slots__ = ("name", "_prev")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> str:
        self._prev = p = _tls.prefix
        _tls.prefix = p = p + self.name.strip("/") + "/"
        return p[:-1]

    def __exit__(self, *exc: object) -> None:
        _tls.prefix = self._prev


# prefix -> op -> [base, base_1, base_2 ...]: a step's names repeat every step, so they are
# made once and shared (cheaper per op, and a profile holding many steps holds one copy)
_made: dict[str, dict[str, list[str]]] = {}
_MAX_MADE = 50_000  # prefixes x ops kept; past it the cache starts over (programs that make names)


def op_name_py(op: str) -> str:
    """`prefix + op`, then `_1`, `_2` ... for its next uses in this run (per thread)."""
    t = _tls
    p = t.prefix
    by_op = _made.get(p)
    if by_op is None:
        if len(_made) > _MAX_MADE:
            _made.clear()
        by_op = _made[p] = {}
    names = by_op.get(op)
    if names is None:
        names = by_op[op] = [p + op if p else op]
    base = names[0]
    c = t.counters
    n = c.get(base, 0)
    c[base] = n + 1
    if n < len(names):
        return names[n]
    name = f"{base}_{n}"
    if n == len(names) and n < 1024:
        names.append(name)
    return name


op_name = op_name_py  # (the C accelerator replaces it when built: the same, hits in C; see _dispatch)


_out0: dict[str, str] = {}


def output_name(name: str) -> str:
    """`name:0`, the first output of op `name` (made once per name)."""
    r = _out0.get(name)
    if r is None:
        if len(_out0) > _MAX_MADE:
            _out0.clear()
        r = _out0[name] = name + ":0"
    return r


_grad: dict[str, tuple[str, tuple[str]]] = {}
_acc: dict[str, tuple[str, tuple[str], tuple[str]]] = {}
_upd: dict[str, tuple[str, tuple[str, str], tuple[str]]] = {}


def grad_names(fname: str) -> tuple[str, tuple[str]]:
    """(name, inputs) of the backward event of forward op `fname` (made once per name)."""
    r = _grad.get(fname)
    if r is None:
        if len(_grad) > _MAX_MADE:
            _grad.clear()
        r = _grad[fname] = (f"gradients/{fname}_grad", (f"gradients/{fname}:0",))
    return r


def accumulate_names(pname: str) -> tuple[str, tuple[str], tuple[str]]:
    """(name, inputs and grad_of, out_names) of the AccumulateGrad event into leaf `pname`."""
    r = _acc.get(pname)
    if r is None:
        if len(_acc) > _MAX_MADE:
            _acc.clear()
        r = _acc[pname] = (f"gradients/{pname}/AccumulateGrad", (pname,), (pname + ".grad",))
    return r


def update_names(pname: str) -> tuple[str, tuple[str, str], tuple[str]]:
    """(name, inputs, out_names) of the optimizer update event of parameter `pname`."""
    r = _upd.get(pname)
    if r is None:
        if len(_upd) > _MAX_MADE:
            _upd.clear()
        r = _upd[pname] = ("update/" + pname, (pname, pname + ".grad"), (pname,))
    return r


_LEAF = "\0leaf"  # (the leaf names' counter among the step's op counters: no op is named so)
_LEAF_NAMES = [f"tensor_{i}" for i in range(64)]


def leaf_name() -> str:
    """A name for a tensor no op produced (the user's inputs, a number an op wrapped):
    `tensor_0`, `tensor_1` ... counted per step and thread, as op names are, so that a
    loop's fresh inputs (a batch a step, `x ** 2`'s 2) are named alike from step to step:
    their ops' call sites (and a recording's signatures) repeat, where a name per tensor made
    new ones every step (a recording of the small MLP fed a batch a step took 2.1x its CPU and
    82 bytes an op event, against 1.27x and 6.4). Unique within a step; a tensor keeps the
    name it was first given, so one kept from an earlier step can share its name with a new
    one of a later step."""
    c = _tls.counters
    n = c.get(_LEAF, 0)
    c[_LEAF] = n + 1
    return _LEAF_NAMES[n] if n < 64 else f"tensor_{n}"


def reset() -> None:
    """Called at each step's end and run start so a step's op names repeat from run to run."""
    _tls.counters.clear()
    _tls.calls = None
