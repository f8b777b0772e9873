"""`Session`: runs a graph. Each distinct (fetches, fed tensors) pair is compiled once
into a plan (pruned to the nodes needed, topologically ordered, each buffer released
after its last use); later runs reuse it. With nobody listening a run is one generated
Python function of straight-line calls (feed checks and fetch conversion included); with
listeners a second generated function calls each node through the dispatch point
(`dispatch`), so it becomes an OpEvent with its node name and definition line."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial
from keyword import iskeyword
from typing import Any

import numpy as np

from .. import events as _events
from .._dispatch import Site, dispatch, fail
from .._registry import Ctx, OpDef, output_only
from ..device import CPU, Device, get_default_device, to_device
from ..device import device as _device
from ..errors import NumericsError, TraceTensorError
from .core import (
    FailedPreconditionError,
    Graph,
    GraphError,
    InvalidArgumentError,
    Operation,
    Tensor,
    as_tf_error,
    fmt_shape,
    get_default_graph,
)


def _pseudo(name: str, tf: str) -> OpDef:
    """An OpDef for a graph-structural node (Placeholder, VariableV2, Assign, ...) so its
    event passes the same dispatch point; these are not registry ops (eager has none)."""
    d = OpDef(name, _ident, tf, lambda arrays, out, attrs: 0, None)
    return d


def _ident(*a: Any) -> Any:
    return a[0] if a else None


PSEUDO = {
    k: _pseudo(k, t)
    for k, t in (
        ("placeholder", "Placeholder"),
        ("variable", "VariableV2"),
        ("const", "Const"),
        ("assign", "Assign"),
        ("fill", "Fill"),
        ("random", "RandomStandardNormal"),
        ("check", "CheckNumerics"),
        ("captured", "Captured"),
        ("while", "While"),
        ("cond", "If"),
        ("loop_var", "LoopVar"),
        ("while_grad", "WhileGrad"),
        ("cond_grad", "IfGrad"),
        ("add_grads", "AddN"),
    )
}

# kinds whose outputs alias a variable's storage: fetched values are copied
_ALIASING = frozenset(("variable", "assign", "update"))


class Step:
    """One node of a plan: `fn(*prefix, *input arrays, **attrs)`; `phase` and `evop`
    describe its event. `const`/`var` let the generated code inline a value or a read."""

    __slots__ = (
        "op",
        "fn",
        "xp_arg",
        "attrs",
        "ins",
        "outs",
        "phase",
        "evop",
        "multi",
        "const",
        "var",
        "forward",
        "grad_of",
        "extra",
        "in_names",
        "site",
    )

    def __init__(
        self,
        op: Operation,
        fn: Callable | None,
        *,
        xp_arg: bool = False,
        attrs: dict | None = None,
        phase: str = "forward",
        evop: OpDef | None = None,
        multi: bool = False,
        const: Any = None,
        var: str | None = None,
        forward: str | None = None,
        grad_of: tuple[str, ...] = (),
    ) -> None:
        self.op, self.fn, self.xp_arg, self.attrs = op, fn, xp_arg, attrs or {}
        self.ins: tuple[Tensor, ...] = op.inputs
        self.outs: tuple[Tensor, ...] = op.outputs
        self.phase, self.evop, self.multi = phase, evop or PSEUDO.get(op.kind) or PSEUDO["const"], multi
        self.const, self.var, self.forward, self.grad_of = const, var, forward, grad_of
        self.extra: dict[str, Any] = {}  # control flow: what a loop shares with its gradient step
        self.in_names = tuple(t.name for t in op.inputs)  # for events, computed once
        self.site: Site | None = None  # its dispatch site, made on the first listened-to run


# kind -> builder(session, op, xp) -> Step; control flow, gradients and training add theirs
EXECUTORS: dict[str, Callable[[Session, Operation, Any], Step]] = {}


def executor(kind: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        EXECUTORS[kind] = fn
        return fn

    return deco


@executor("op")
def _op_step(sess: Session, op: Operation, xp: Any) -> Step:
    return Step(op, output_only(op.opdef), xp_arg=True, attrs=op.attrs, evop=op.opdef)


@executor("const")
def _const_step(sess: Session, op: Operation, xp: Any) -> Step:
    arr = sess._device_const(op)
    return Step(op, lambda: arr, const=arr)


@executor("captured")
def _captured_step(sess: Session, op: Operation, xp: Any) -> Step:
    t = op.attrs["tensor"]  # an eager tensor, read live (its parameters may be trained)
    dev = sess.device
    return Step(op, lambda: to_device(t._data, dev) if t._device != dev else t._data)


@executor("variable")
def _variable_step(sess: Session, op: Operation, xp: Any) -> Step:
    store, key = sess._vars, op.name

    def read() -> Any:
        try:
            return store[key]
        except KeyError:
            raise _uninitialized(op) from None

    return Step(op, read, var=key)


def _uninitialized(op: Operation) -> FailedPreconditionError:
    where = f" defined at {op.stack[0]}" if op.stack else ""
    return FailedPreconditionError(
        f"Attempting to use uninitialized value {op.name} (VariableV2 '{op.name}'{where}); run "
        f"tf.global_variables_initializer() (or {op.name}.initializer) in this session first"
    )


@executor("placeholder")
def _placeholder_step(sess: Session, op: Operation, xp: Any) -> Step:
    return Step(op, _ident)  # PlaceholderWithDefault, not fed: passes its default through


@executor("assign")
def _assign_step(sess: Session, op: Operation, xp: Any) -> Step:
    store, key, mode = sess._vars, op.attrs["var"], op.attrs["mode"]
    var_op = op.graph.get_operation_by_name(key)
    dt = var_op.attrs["dtype"]
    dims = var_op.outputs[0]._dims

    def assign(value: Any) -> Any:
        if mode in ("set", "init"):
            if dims is not None and not _compatible(dims, value.shape):
                raise InvalidArgumentError(
                    f"cannot assign a value of shape {tuple(value.shape)} to variable '{key}' of shape "
                    f"{fmt_shape(dims)}"
                )
            arr = xp.array(value, dtype=dt, copy=True)  # the store owns its arrays (updates are in place)
            store[key] = arr
            return arr
        try:
            arr = store[key]
        except KeyError:
            raise _uninitialized(var_op) from None
        if mode == "add":
            arr += value
        else:
            arr -= value
        return arr

    return Step(op, assign, phase="update")


@executor("fill")
def _fill_step(sess: Session, op: Operation, xp: Any) -> Step:
    value, dt = op.attrs["value"], op.attrs["dtype"]
    return Step(op, lambda a: xp.full(np.shape(a), value, dtype=dt))


@executor("random")
def _random_step(sess: Session, op: Operation, xp: Any) -> Step:
    a = op.attrs
    rng = sess._rng(op)
    dev = sess.device

    def draw(*runtime_shape: Any) -> Any:
        dt = a["dtype"]
        shape = tuple(int(d) for d in runtime_shape[0].tolist()) if runtime_shape else a["shape"]
        if a["dist"] == "normal":
            r = rng.standard_normal(shape) * a["stddev"] + a["mean"]
        elif a["dist"] == "truncated":
            r = rng.standard_normal(shape)
            bad = np.abs(r) > 2
            while bad.any():  # TF redraws values more than two standard deviations out
                r[bad] = rng.standard_normal(int(bad.sum()))
                bad = np.abs(r) > 2
            r = r * a["stddev"] + a["mean"]
        elif dt.kind in "iu":
            r = rng.integers(int(a["minval"]), int(a["maxval"]), shape)
        else:
            r = rng.uniform(a["minval"], a["maxval"], shape)
        return to_device(np.asarray(r, dtype=dt), dev)

    return Step(op, draw)


@executor("check")
def _check_step(sess: Session, op: Operation, xp: Any) -> Step:
    msg = op.attrs["message"]

    def check(a: Any) -> Any:
        if a.dtype.kind in "fc" and not bool(xp.isfinite(a).all()):
            nan, inf = int(xp.isnan(a).sum()), int(xp.isinf(a).sum())
            where = f" defined at {op.stack[0]}" if op.stack else ""
            raise NumericsError(
                f"CheckNumerics '{op.name}'{where}: {msg}: tensor '{op.inputs[0].name}' of shape "
                f"{tuple(a.shape)} has {nan} NaN and {inf} infinite value(s)"
            )
        return a

    return Step(op, check)


def link_tapes(steps: list[Step]) -> None:
    """A while/cond step records what its gradient step (in the same plan) replays."""
    by_name = {st.op.name: st for st in steps}
    for st in steps:
        fwd = st.op.attrs.get("forward") if st.op.kind in ("while_grad", "cond_grad") else None
        if fwd is not None and fwd in by_name:
            by_name[fwd].extra["record"] = True
            st.extra["fwd"] = by_name[fwd].extra


def _compatible(dims: tuple, shape: tuple) -> bool:
    return len(dims) == len(shape) and all(d is None or d == s for d, s in zip(dims, shape))


# --------------------------------------------------------------------------- plans


class Plan:
    """A compiled (fetches, feeds) pair: the steps in order, the slot of every tensor,
    and the generated straight-line function used when nobody listens."""

    def __init__(
        self,
        sess: Session,
        steps: list[Step],
        feeds: list[Tensor],
        fetch_tensors: list[Tensor | None],
        specs: Sequence[tuple] = (),
    ):
        self.sess, self.steps, self.feeds, self.fetches = sess, steps, feeds, fetch_tensors
        self.specs = specs  # one per key of the feed_dict, in its order: (tensor, dtype, ndim, fixed dims, used)
        slot: dict[Tensor, int] = {}
        for t in feeds:
            slot[t] = len(slot)
        for st in steps:
            for t in st.outs:
                slot[t] = len(slot)
        self.slot = slot
        fetch_slots = {slot[t] for t in fetch_tensors if t is not None}
        # last use: a tensor's buffer is dropped right after the last step that reads it
        last: dict[int, int] = {}
        for k, st in enumerate(steps):
            for t in st.ins:
                last[slot[t]] = k
        self.frees: list[list[int]] = [[] for _ in steps]
        for s in range(len(slot)):
            if s in fetch_slots:
                continue
            k = last.get(s)
            if k is None:  # never read: produced by step k (or fed), dropped at once
                k = next((i for i, st in enumerate(steps) if any(slot[t] == s for t in st.outs)), None)
                if k is None:
                    continue
            self.frees[k].append(s)
        self.copy_out = tuple(t is not None and t.op.kind in _ALIASING for t in fetch_tensors)
        self.tapes: dict[str, Any] = {}  # control flow: per-run records its gradient reads
        self.fast = self._generate()
        self._raw: Callable | None = None
        self._listening: Callable | None = None

    @property
    def raw(self) -> Callable:
        """`fast`, but returning the fetched arrays as they are (on the device, 0-d arrays
        kept, variables not copied): what `tt.function` reads. Generated on first use."""
        if self._raw is None:
            self._raw = self._generate(raw=True)
        return self._raw

    def _generate(self, raw: bool = False) -> Callable:
        """Straight-line Python for the whole run: `plan(D, V)` takes the feed_dict's values
        (in the order of `specs`) and the variable store; it checks the feeds, runs every
        step (locals for tensors, `del` at last use) and returns the fetched values, ready
        for the user. Everything a run does when nobody listens is in this one function."""
        dev = self.sess.device
        cpu = dev.type == "cpu"
        ns: dict[str, Any] = {"xp": dev.xp, "_err": self._error, "Ctx": Ctx, "_nd": np.ndarray}
        lines = ["def plan(D, V):", "  _i = -1", "  try:"]
        # ops registered with saves=True keep their residuals in a local `r{k}` that the
        # matching gradient node hands to its VJP (e.g. cross-entropy's log-softmax)
        residual: dict[Any, int] = {}
        have_ctx = False
        lines += self._feed_lines(ns, cpu)
        for k, st in enumerate(self.steps):
            outs = [f"t{self.slot[t]}" for t in st.outs]
            lhs = (", ".join(outs) + ("," if len(outs) == 1 else "")) if st.multi else (outs[0] if outs else "")
            lines.append(f"    _i = {k}")
            if st.var is not None:
                ns[f"k{k}"] = st.var
                call = f"V[k{k}]"
            elif st.const is not None:
                ns[f"c{k}"] = st.const
                call = f"c{k}"
            elif "vjp" in st.extra:  # a gradient node, inlined: the VJP call without a wrapper's loop
                vjp, fattrs, needs, idx, fix = st.extra["vjp"]
                ns[f"v{k}"], ns[f"a{k}"], ns[f"n{k}"], ns["_fix"] = vjp, fattrs, needs, fix
                ins = [f"t{self.slot[t]}" for t in st.ins]
                n = len(needs)
                r = residual.get(st.ins[n])
                # one Ctx per run, refilled for each gradient node (5 stores cost less than a
                # constructor call; a VJP never keeps its ctx past its return)
                if not have_ctx:
                    lines.append("    _c = Ctx(xp, None, None, None, None)")
                    have_ctx = True
                lines.append(
                    f"    _c.args = ({', '.join(ins[:n])},); _c.out = {ins[n]}; _c.attrs = a{k}; _c.needs = n{k}; "
                    f"_c.saved = {f'r{r}' if r is not None else 'None'}"
                )
                lines.append(f"    _g = v{k}(_c, {ins[n + 1]})")
                for o, i in zip(outs, idx):
                    x = ins[i]
                    lines.append(f"    {o} = _g[{i}]")
                    # `is not`: an equal dtype that is another object only takes _fix's exact path
                    lines.append(f"    if {o} is None or {o}.shape != {x}.shape or {o}.dtype is not {x}.dtype:")
                    lines.append(f"      {o} = _fix(xp, {o}, {x})")
                lines.append("    del _g")
                if self.frees[k]:
                    lines.append("    del " + ", ".join(f"t{s}" for s in self.frees[k]))
                    if {self.slot[t] for t in st.ins[: n + 1]} & set(self.frees[k]):  # really free them
                        lines.append("    _c.args = _c.out = None")
                continue
            else:
                ns[f"f{k}"] = st.fn
                if st.op.kind == "op" and st.evop.saves and not st.multi and outs:
                    ns[f"f{k}"] = st.evop.forward  # returns (output, residuals)
                    residual[st.outs[0]] = k
                    lhs = f"{outs[0]}, r{k}"
                fn, xp_arg, attrs = st.extra.get("direct") or (ns[f"f{k}"], st.xp_arg, st.attrs)
                ns[f"f{k}"] = fn
                args = (["xp"] if xp_arg else []) + [f"t{self.slot[t]}" for t in st.ins]
                for i, (name, value) in enumerate(attrs.items()):  # keywords by name: cheaper than **attrs
                    if name.isidentifier() and not iskeyword(name):
                        ns[f"a{k}_{i}"] = value
                        args.append(f"{name}=a{k}_{i}")
                    else:
                        ns.setdefault(f"a{k}", {})[name] = value
                if f"a{k}" in ns:
                    args.append(f"**a{k}")
                call = f"f{k}({', '.join(args)})"
            lines.append(f"    {lhs} = {call}" if lhs else f"    {call}")
            if self.frees[k]:
                lines.append("    del " + ", ".join(f"t{s}" for s in self.frees[k]))
        if raw:
            rets = [f"t{self.slot[t]}" if t is not None else "None" for t in self.fetches]
            lines.append(f"    return ({', '.join(rets)}{',' if rets else ''})")
        else:
            rets = []
            for j, (t, copy) in enumerate(zip(self.fetches, self.copy_out)):
                v = f"t{self.slot[t]}" if t is not None else "None"
                if t is None:
                    rets.append("None")
                elif cpu and not copy:  # _host_value's common case, inline
                    rets.append(f"({v}[()] if {v}.__class__ is _nd and {v}.ndim == 0 else {v})")
                else:
                    ns[f"_o{j}"] = partial(_host_value, copy=copy, cpu=cpu)
                    rets.append(f"_o{j}({v})")
            lines.append(f"    return [{', '.join(rets)}]")
        lines.append("  except Exception as e:")
        lines.append("    raise _err(_i, e, locals()) from None")
        exec(compile("\n".join(lines), f"<plan of graph #{self.sess.graph.id}>", "exec"), ns)
        return ns["plan"]

    def _feed_lines(self, ns: dict[str, Any], cpu: bool) -> list[str]:
        """The feed checks of `_feed_one`, with its common case (a host array of the
        placeholder's dtype, on a CPU session) written inline; anything else calls it."""
        if not self.specs:
            return []
        names = [f"t{self.slot[t]}" if used else "_" for t, _, _, _, used in self.specs]
        lines = [f"    {', '.join(names)}, = D"]
        dev = self.sess.device
        for j, (t, dt, ndim, fixed, used) in enumerate(self.specs):
            if not used:
                continue
            v = names[j]
            ns[f"_f{j}"] = partial(_feed_one, t, dt, ndim, fixed, dev)
            if not cpu:
                lines.append(f"    {v} = _f{j}({v})")
                continue
            ns[f"_dt{j}"], ns[f"_se{j}"] = dt, partial(_feed_shape_error, t)
            lines.append(f"    if {v}.__class__ is _nd and {v}.dtype is _dt{j}:")
            if ndim is not None:
                cond = " or ".join([f"len(_s) != {ndim}", *(f"_s[{i}] != {d}" for i, d in fixed)])
                lines += ["      _s = " + v + ".shape", f"      if {cond}:", f"        raise _se{j}(_s)"]
            else:
                lines.append("      pass")
            lines += ["    else:", f"      {v} = _f{j}({v})"]
        return lines

    def _error(self, k: int, e: Exception, local: dict) -> BaseException:
        if k < 0 or isinstance(e, TraceTensorError):
            return e
        st = self.steps[k]
        if st.var is not None and isinstance(e, KeyError):
            return _uninitialized(st.op)
        arrays = tuple(local.get(f"t{self.slot[t]}") for t in st.ins)
        return _node_error(st, arrays, e)

    def run_listening(self, feeds: Sequence[Any]) -> tuple:
        """The observable path: every node through `dispatch`, an OpEvent each."""
        if self._listening is None:  # generated on the first listened-to run
            self._listening = self._generate_listening()
        return self._listening(feeds)

    def _generate_listening(self) -> Callable:
        """`run_listening` as straight-line Python, like `fast`: each step one `dispatch` call
        through its site (what `run_step` does), feeds already checked, raw values returned.
        A `saves` op hands its residuals to its gradient node, as in `fast`."""
        dev = self.sess.device
        ns: dict[str, Any] = {"xp": dev.xp, "_d": dispatch, "_ident": _ident, "_err": self._listening_error}
        ns["TraceTensorError"] = TraceTensorError
        lines = ["def plan(F):", "  _i = -1", "  try:"]
        if self.feeds:
            lines.append(f"    {', '.join(f't{self.slot[t]}' for t in self.feeds)}, = F")
        for j, t in enumerate(self.feeds):
            if t.op.kind == "placeholder":
                site = Site(
                    PSEUDO["placeholder"],
                    "forward",
                    "graph",
                    label=t.op.type,
                    name=t.op.name,
                    device=dev,
                    stack=t.op.stack,
                )
                ns[f"p{j}"] = site
                lines.append(f"    _d(p{j}, _ident, (t{self.slot[t]},), ())")
        residual: dict[Any, int] = {}
        for k, st in enumerate(self.steps):
            ins = [f"t{self.slot[t]}" for t in st.ins]
            outs = [f"t{self.slot[t]}" for t in st.outs]
            arrays = f"({', '.join(ins)}{',' if len(ins) == 1 else ''})"
            site, fn, attrs = step_site(st, dev), st.fn, st.attrs
            if st.var is not None:
                args, attrs = "()", {}
            else:
                args = f"(xp, {', '.join(ins)})" if st.xp_arg else arrays
            lhs = outs[0] if outs and not st.multi else ("_o" if st.multi else "")
            if st.op.kind == "op" and st.evop.saves and not st.multi and outs:
                site, fn = site._replace(saves=True), st.evop.forward  # returns (output, residuals)
                residual[st.outs[0]] = k
                lhs = f"{outs[0]}, r{k}"
            elif "grad_saved" in st.extra:
                r = residual.get(st.ins[len(st.extra["vjp"][2])])
                if r is not None:
                    fn, args = st.extra["grad_saved"], f"(r{r}, {', '.join(ins)})"
            ns[f"s{k}"], ns[f"f{k}"], ns[f"a{k}"] = site, fn, attrs
            lines.append(f"    _i = {k}")
            call = f"_d(s{k}, f{k}, {args}, {arrays}, a{k})"
            lines.append(f"    {lhs} = {call}" if lhs else f"    {call}")
            if st.multi:
                lines += [f"    {o} = _o[{i}]" for i, o in enumerate(outs)] + ["    del _o"]
            if self.frees[k]:
                lines.append("    del " + ", ".join(f"t{s}" for s in self.frees[k]))
        rets = [f"t{self.slot[t]}" if t is not None else "None" for t in self.fetches]
        lines.append(f"    return ({', '.join(rets)}{',' if rets else ''})")
        lines.append("  except TraceTensorError as e:")
        lines.append("    raise _err(_i, e, locals()) from None")
        exec(compile("\n".join(lines), f"<listened-to plan of graph #{self.sess.graph.id}>", "exec"), ns)
        return ns["plan"]

    def _listening_error(self, k: int, e: TraceTensorError, local: dict) -> BaseException:
        """What `run_step` makes of an error raised at step k."""
        if k < 0:
            return e
        st = self.steps[k]
        if isinstance(e, (GraphError, NumericsError)) or getattr(e, "name", None) == st.op.name:
            return e
        arrays = tuple(local.get(f"t{self.slot[t]}") for t in st.ins)
        return _node_error(st, arrays, getattr(e, "original", e))


def step_site(st: Step, dev: Device) -> Site:
    """The dispatch site of a step's events (outside loops: one per step serves every run)."""
    site = st.site
    if site is None or site.device is not dev:
        op = st.op
        site = st.site = Site(
            st.evop,
            st.phase,
            "graph",
            label=op.type,
            name=op.name,
            inputs=st.in_names,
            device=dev,
            stack=op.stack or None,
            forward=st.forward,
            grad_of=st.grad_of,
        )
    return site


def run_step(st: Step, arrays: tuple, xp: Any, dev: Device, iteration: int | None) -> Any:
    """One step through the dispatch point (the listening path, loops' bodies included)."""
    op = st.op
    if st.var is not None:
        fn, args, attrs = st.fn, (), {}
    elif st.xp_arg:
        fn, args, attrs = st.fn, (xp, *arrays), st.attrs
    else:
        fn, args, attrs = st.fn, arrays, st.attrs
    site = step_site(st, dev)
    if iteration is not None:
        site = site._replace(iteration=iteration)
    try:
        return dispatch(site, fn, args, arrays, attrs)
    except TraceTensorError as e:
        if isinstance(e, (GraphError, NumericsError)) or getattr(e, "name", None) == op.name:
            raise
        raise _node_error(st, arrays, getattr(e, "original", e)) from None


def run_step_fast(st: Step, arrays: tuple, xp: Any) -> Any:
    """One step without events (loop bodies when nobody listens)."""
    try:
        if st.var is not None:
            return st.fn()
        if st.xp_arg:
            return st.fn(xp, *arrays, **st.attrs)
        return st.fn(*arrays, **st.attrs)
    except TraceTensorError:
        raise
    except Exception as e:
        raise _node_error(st, arrays, e) from None


def _node_error(st: Step, arrays: tuple, e: BaseException) -> BaseException:
    """`MatMul 'layer1/MatMul' defined at model.py:14: cannot multiply (2, 3) by (1, 3)`."""
    op = st.op
    err = fail(
        st.evop,
        st.phase,
        arrays,
        st.attrs if st.xp_arg else {},
        e,
        mode="graph",
        name=op.name,
        frame=op.stack[0] if op.stack else None,
    )
    if hasattr(err, "op"):
        err.op = op.type
    if isinstance(err, TraceTensorError) and op.type not in str(err):  # label is the node's type
        err.args = (str(err).replace(st.evop.tf_name, op.type, 1),)
    return err


# --------------------------------------------------------------------------- fetch structures


def _flatten(f: Any, leaves: list[Any]) -> Any:
    if isinstance(f, (Tensor, Operation, str)):
        leaves.append(f)
        return len(leaves) - 1
    if isinstance(f, dict):
        return (type(f), [(k, _flatten(v, leaves)) for k, v in f.items()])
    if isinstance(f, tuple) and hasattr(f, "_fields"):
        return ("namedtuple", type(f), [_flatten(v, leaves) for v in f])
    if isinstance(f, (list, tuple)):
        return (type(f), [_flatten(v, leaves) for v in f])
    raise TypeError(
        f"fetch argument {f!r} has invalid type {type(f).__name__}: fetch a tensor, an operation, "
        "a name, or lists, tuples and dicts of them"
    )


def _rebuild(spec: Any, vals: Sequence[Any]) -> Any:
    if spec.__class__ is int:
        return vals[spec]
    if spec[0] == "namedtuple":
        return spec[1](*(_rebuild(s, vals) for s in spec[2]))
    typ, items = spec
    if issubclass(typ, dict):
        return typ((k, _rebuild(s, vals)) for k, s in items)
    return typ(_rebuild(s, vals) for s in items)


# --------------------------------------------------------------------------- sessions


class _DefaultSession(threading.local):
    def __init__(self) -> None:
        self.stack: list[Session] = []


_default = _DefaultSession()


def get_default_session() -> Session | None:
    return _default.stack[-1] if _default.stack else None


def _clear_default_session() -> None:
    _default.stack = [s for s in _default.stack if not isinstance(s, InteractiveSession)]


def _session_for(session: Session | None, op: Operation) -> Session:
    sess = session or get_default_session()
    if sess is None:
        raise GraphError(
            f"no session to evaluate '{op.name}' in: pass session=, use `with tf.Session() as sess:`, "
            "or create a tf.InteractiveSession()"
        )
    return sess


class Session:
    """Runs ops of `graph` (default: the default graph) on `device` (default: the
    default device); holds the values of its variables between runs."""

    def __init__(
        self,
        target: str = "",
        graph: Graph | None = None,
        config: Any = None,
        *,
        device: str | Device | None = None,
    ) -> None:
        self.graph = graph or get_default_graph()
        self.device = get_default_device() if device is None else _device(device)
        self._vars: dict[str, Any] = {}
        self._rngs: dict[str, np.random.Generator] = {}
        self._consts: dict[Operation, Any] = {}
        self._plans: dict[Any, tuple[Plan, Any]] = {}  # run key -> (plan, fetch structure)
        self._announced: tuple[int, Any] | None = None
        self._closed = False
        self._ctx_count = 0

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._closed = True
        self._vars.clear()
        self._plans.clear()
        if self in _default.stack:
            _default.stack.remove(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Session:
        _default.stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _default.stack:
            _default.stack.remove(self)
        self.close()

    def as_default(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def cm() -> Any:
            _default.stack.append(self)
            try:
                yield self
            finally:
                _default.stack.remove(self)

        return cm()

    # ------------------------------------------------------------------ running
    def run(self, fetches: Any, feed_dict: dict | None = None, options: Any = None, run_metadata: Any = None) -> Any:
        """Computes `fetches` (a tensor, op, name, or nested lists/tuples/dicts of them),
        feeding `feed_dict` ({placeholder or name: value}); returns numpy values in the
        same structure (None for ops). `run_metadata` (a `tf.RunMetadata()`) gets the run's step stats."""
        if run_metadata is not None:
            from .summary import collect_run_metadata

            with collect_run_metadata(run_metadata):
                return self._run(fetches, feed_dict, "session.run", "")
        return self._run(fetches, feed_dict, "session.run", "")

    def _run(self, fetches: Any, feed_dict: dict | None, kind: str, run_name: str, raw: bool = False) -> Any:
        if self._closed:
            raise GraphError("this session is closed: create a new tf.Session")
        feed_keys = tuple(feed_dict) if feed_dict else ()
        cls = fetches.__class__
        # fast key: a tensor/op/name, or a flat list/tuple of them; anything else is flattened
        key = ((cls, *fetches) if cls is list or cls is tuple else fetches, feed_keys)
        try:
            entry = self._plans.get(key)
        except TypeError:  # unhashable (a dict, a nested list ...)
            key = entry = None
        if entry is None:
            entry = self._entry(key, fetches, feed_keys)
        plan, spec = entry
        if not _events.STATE.listeners:  # the generated plan does it all: feeds, steps, outputs
            try:
                out = (plan.raw if raw else plan.fast)(feed_dict.values() if feed_dict else (), self._vars)
            except BaseException as e:
                as_tf_error(e)  # a shape/dtype error of a run is also a tf.errors.InvalidArgumentError
                raise
            if raw:  # tt.function: arrays stay on the device, in plan order
                return out
        else:
            feeds = self._feed_values(plan.specs, feed_dict) if plan.specs else ()
            self._announce()
            run = _events.begin_run(
                kind,
                mode="graph",
                name=run_name,
                fetches=plan.fetch_names,
                feeds=plan.feed_names,
                graph=self.graph.id,
            )
            try:
                vals = plan.run_listening(feeds)
            except BaseException as e:
                as_tf_error(e)
                _events.end_run(run, e)
                raise
            _events.end_run(run, None)
            if raw:
                return vals
            cpu = self.device.type == "cpu"
            out = [_host_value(v, c, cpu) for v, c in zip(vals, plan.copy_out)]
        if spec is None:  # a flat list of fetches: already in order
            return out
        if spec.__class__ is int:
            return out[spec]
        return _rebuild(spec, out)

    def _entry(self, key: Any, fetches: Any, feed_keys: tuple) -> tuple[Plan, Any]:
        """The (plan, fetch structure) of a run's key, compiled on first use; a structure
        of None means a flat list returned as it is."""
        leaves: list[Any] = []
        spec = _flatten(fetches, leaves)
        if spec.__class__ is not int and spec[0] is list and all(i.__class__ is int for i in spec[1]):
            spec = None
        if key is None:
            key = (tuple(leaves), feed_keys, "flattened")
            entry = self._plans.get(key)
            if entry is not None:
                return entry[0], spec
        entry = self._plans[key] = (self._compile(leaves, feed_keys), spec)
        return entry

    def make_callable(self, fetches: Any, feed_list: Sequence[Any] = ()) -> Callable[..., Any]:
        """TF1's `make_callable`: a function of the feed values that runs `fetches`."""
        keys = list(feed_list)

        def call(*values: Any) -> Any:
            return self.run(fetches, dict(zip(keys, values)))

        return call

    # ------------------------------------------------------------------ compiling
    def _resolve(self, leaf: Any) -> Tensor | Operation:
        try:
            return self.graph.as_graph_element(leaf)
        except TypeError as e:
            raise TypeError(f"fetch argument {leaf!r} is not a tensor, an operation or a name: {e}") from None

    def _compile(self, leaves: list[Any], feed_keys: tuple) -> Plan:
        elems = [self._resolve(x) for x in leaves]
        fed: list[Tensor] = []
        for k in feed_keys:
            t = self._resolve(k)
            if not isinstance(t, Tensor):
                raise InvalidArgumentError(f"cannot feed the operation '{t.name}': feed a tensor (e.g. '{t.name}:0')")
            fed.append(t)
        fed_set = set(fed)
        order = _prune(elems, fed_set)
        xp = self.device.xp
        steps = []
        for op in order:
            if op.kind == "noop":
                continue
            build = EXECUTORS.get(op.kind)
            if build is None:
                raise GraphError(f"no executor for node '{op.name}' of kind {op.kind!r}")
            steps.append(build(self, op, xp))
        link_tapes(steps)
        used_feeds = [t for t in fed if t in {i for st in steps for i in st.ins} or t in elems]
        fetch_tensors = [e if isinstance(e, Tensor) else None for e in elems]
        specs = [
            (
                t,
                t.dtype.np,
                None if t._dims is None else len(t._dims),
                () if t._dims is None else tuple((i, d) for i, d in enumerate(t._dims) if d is not None),
                t in used_feeds,
            )
            for t in fed
        ]
        plan = Plan(self, steps, used_feeds, fetch_tensors, specs)
        plan.fetch_names = tuple(e.name for e in elems)
        plan.feed_names = tuple(t.name for t in used_feeds)
        return plan

    def _feed_values(self, specs: list, feed_dict: dict) -> tuple:
        dev = self.device
        return tuple(_feed_one(*sp[:4], dev, v) for sp, v in zip(specs, feed_dict.values()) if sp[4])

    def _announce(self) -> None:
        """Emits the GraphDef before the first run of each graph version (again when
        new listeners arrived, so a debugger attached later still sees the structure)."""
        key = (self.graph.version, _events.STATE.listeners)
        if self._announced is not None and self._announced[0] == key[0] and self._announced[1] is key[1]:
            return
        self._announced = key
        _events.emit(graph_def(self.graph))

    # ------------------------------------------------------------------ state helpers
    def _device_const(self, op: Operation) -> Any:
        a = self._consts.get(op)
        if a is None:
            a = op.attrs["value"]
            if self.device.type != "cpu":
                a = to_device(a, self.device)
            self._consts[op] = a
        return a

    def _rng(self, op: Operation) -> np.random.Generator:
        r = self._rngs.get(op.name)
        if r is None:
            seed, gseed = op.attrs.get("seed"), op.attrs.get("graph_seed")
            if seed is None and gseed is None:
                r = np.random.default_rng()
            else:
                import zlib

                # TF: an op seed alone or the graph seed alone both make the op reproducible
                r = np.random.default_rng([gseed or 0, seed if seed is not None else zlib.crc32(op.name.encode())])
            self._rngs[op.name] = r
        return r

    def _load_variable(self, var: Tensor, value: Any) -> None:
        a = np.asarray(value, dtype=var.dtype.np)
        if var._dims is not None and not _compatible(var._dims, a.shape):
            raise InvalidArgumentError(
                f"cannot load a value of shape {a.shape} into variable '{var.op.name}' of shape {fmt_shape(var._dims)}"
            )
        self._vars[var.op.name] = to_device(a.copy(), self.device)


def _feed_one(t: Tensor, dt: np.dtype, ndim: int | None, fixed: tuple, dev: Device, v: Any) -> Any:
    """One fed value, checked against its placeholder (dtype converted where TF would,
    shape matched) and put on the session's device. The generated plans inline its
    common case (see `Plan._feed_lines`): keep the two alike."""
    gpu = dev.type != "cpu"
    if v.__class__ is np.ndarray and v.dtype == dt:
        a = v
    elif gpu and hasattr(v, "__cuda_array_interface__"):  # already on the GPU (tt.function)
        a = v if v.dtype == dt else _convert_feed(t, v, dt, v.dtype)
    else:
        a = _convert_feed(t, v, dt)
    if ndim is not None:
        shape = a.shape
        if len(shape) != ndim:
            raise _feed_shape_error(t, shape)
        for i, d in fixed:
            if shape[i] != d:
                raise _feed_shape_error(t, shape)
    return to_device(a, dev) if gpu else a


def _host_value(v: Any, copy: bool, cpu: bool) -> Any:
    """A fetched value as `Session.run` returns it: on the host, a copy where it aliases a
    variable's storage, a numpy scalar for a 0-d result (as TF)."""
    if v is None:
        return None
    if not cpu:
        v = to_device(v, CPU)
    elif copy:
        v = v.copy()
    if v.__class__ is np.ndarray and v.ndim == 0:
        v = v[()]
    return v


def _feed_shape_error(t: Tensor, shape: tuple) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"cannot feed a value of shape {tuple(shape)} for {_what(t)}, which has shape {fmt_shape(t._dims)}"
    )


def _what(t: Tensor) -> str:
    """`placeholder 'x' (tensor 'x:0', defined at model.py:12)`: the fed node and the user's line."""
    where = f", defined at {t.op.stack[0]}" if t.op.stack else ""
    if t.op.kind == "placeholder":
        return f"placeholder '{t.op.name}' (tensor '{t.name}'{where})"
    return f"tensor '{t.name}' ({t.op.type} '{t.op.name}'{where})"


def _convert_feed(t: Tensor, v: Any, dt: np.dtype, device_dtype: np.dtype | None = None) -> Any:
    if isinstance(v, Tensor):
        raise InvalidArgumentError(
            f"the value fed for {_what(t)} is the graph tensor '{v.name}': feed numbers or "
            "arrays (run the tensor first)"
        )
    src = getattr(v, "dtype", None)
    if device_dtype is not None:  # a GPU array: cast where it lives, same rule as on the host
        if not (np.can_cast(device_dtype, dt, "same_kind") or (device_dtype.kind in "iub" and dt.kind in "fc")):
            raise InvalidArgumentError(
                f"cannot feed a value of dtype {device_dtype.name} for {_what(t)}, which has dtype {t.dtype.name}"
            )
        return v.astype(dt)
    try:
        a = np.asarray(v)
    except Exception as e:
        raise InvalidArgumentError(f"cannot feed {type(v).__name__} for {_what(t)}: {e}") from None
    src = a.dtype if src is None or not isinstance(src, np.dtype) else src
    if isinstance(v, (list, tuple, int, float, bool)) and a.dtype.kind in "iuf" and dt.kind in "iufc":
        ok = not (a.dtype.kind == "f" and dt.kind in "iu")  # Python numbers: anything but float -> int
    else:
        ok = np.can_cast(src, dt, "same_kind") or (src.kind in "iub" and dt.kind in "fc")
    if not ok or a.dtype.kind not in "biufc":
        raise InvalidArgumentError(
            f"cannot feed a value of dtype {a.dtype.name} for {_what(t)}, which has dtype {t.dtype.name}"
        )
    return a.astype(dt, copy=False)


def _prune(elems: Sequence[Tensor | Operation], fed: set[Tensor]) -> list[Operation]:
    """The ops needed for `elems`, inputs before consumers; a missing feed names the
    placeholder and the fetch that needs it."""
    order: list[Operation] = []
    done: set[Operation] = set()
    for e in elems:
        if isinstance(e, Tensor) and e in fed:
            continue
        root = e.op if isinstance(e, Tensor) else e
        if root in done:
            continue
        stack: list[tuple[Operation, int]] = [(root, 0)]
        onstack = {root}
        while stack:
            op, i = stack[-1]
            deps = _deps(op, fed)
            if i < len(deps):
                stack[-1] = (op, i + 1)
                d = deps[i]
                if d not in done and d not in onstack:
                    if d.kind == "placeholder" and not d.inputs:
                        raise _missing_feed(d, f"fetch '{e.name}' needs it")
                    stack.append((d, 0))
                    onstack.add(d)
                continue
            stack.pop()
            onstack.discard(op)
            done.add(op)
            order.append(op)
        if root.kind == "placeholder" and not root.inputs:
            raise _missing_feed(root, "it is fetched but not fed")
    return order


def _missing_feed(op: Operation, why: str) -> InvalidArgumentError:
    t = op.outputs[0]
    return InvalidArgumentError(
        f"You must feed a value for placeholder '{op.name}' (tensor '{t.name}', dtype {t.dtype.name}, "
        f"shape {t.shape}{f', defined at {op.stack[0]}' if op.stack else ''}): {why}"
    )


def _deps(op: Operation, fed: set[Tensor]) -> list[Operation]:
    deps = [t.op for t in op.inputs if t not in fed]
    deps.extend(op.control_inputs)
    extra = op.attrs.get("_deps")  # control flow: outer ops its bodies read
    if extra:
        deps.extend(t.op for t in extra if t not in fed)
    return deps


class InteractiveSession(Session):
    """A session that makes itself the default on creation, so `t.eval()` and `op.run()` work."""

    def __init__(self, target: str = "", graph: Graph | None = None, config: Any = None, **kw: Any) -> None:
        super().__init__(target, graph, config, **kw)
        _default.stack.append(self)


# --------------------------------------------------------------------------- GraphDef


def _attr_repr(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return np.array2string(v, threshold=20, precision=4, separator=", ") if v.size else f"array({v.shape})"
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_attr_repr(x)}" for k, x in v.items()) + "}"
    r = repr(v)
    return r if len(r) <= 200 else r[:197] + "..."


def node_def(op: Operation) -> _events.NodeDef:
    attrs = tuple((k, _attr_repr(v)) for k, v in op.attrs.items() if not k.startswith("_") and k != "tensor")
    inputs = tuple(t.name for t in op.inputs) + tuple("^" + c.name for c in op.control_inputs)
    return _events.NodeDef(
        op.name,
        op.type,
        inputs,
        attrs,
        op.stack,
        tuple(t._dims for t in op.outputs),
        tuple(t.dtype.name for t in op.outputs),
    )


def graph_def(graph: Graph) -> _events.GraphDef:
    """The graph's structure as plain data (what `GraphDef` events carry)."""
    cache = graph.__dict__.setdefault("_nodedefs", {})
    nodes = []
    for op in graph._order:
        nd = cache.get(op)
        if nd is None:
            nd = cache[op] = node_def(op)
        nodes.append(nd)
    return _events.GraphDef(graph.id, graph.version, tuple(nodes))
