"""`tf.while_loop` and `tf.cond`: their bodies are ordinary nodes of the graph (under
`while/body/...`, `cond/true/...`), run by one While/If node; every op of every
iteration is an event carrying `iteration=i`. Both are differentiable: the loop keeps
each iteration's values when its gradient is in the same run, and the gradient node
replays the body's VJPs in reverse."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import events as _events
from .._dispatch import Site, dispatch
from .._registry import Ctx, unbroadcast
from .core import Graph, GraphError, InvalidArgumentError, Operation, Tensor, get_default_graph
from .gradients import grad_builder
from .ops import convert_to_tensor, zeros_like
from .session import EXECUTORS, PSEUDO, Step, _prune, executor, run_step, run_step_fast


class _Local(threading.local):
    """Per thread: the innermost running loop's iteration (a cond inside a loop reports
    it) and the records loops/conds keep for their gradient steps, so concurrent runs
    of one session do not mix."""

    def __init__(self) -> None:
        self.iteration: int | None = None
        self.tapes: dict[int, dict[str, Any]] = {}


_LOCAL = _Local()


def _flat(x: Any) -> tuple[list[Any], bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def _captured(ops: Sequence[Operation], inner: set[Tensor], outs: Sequence[Tensor]) -> list[Tensor]:
    """Outer tensors the body reads: they become inputs of the While/If node."""
    own = set(ops)
    seen: dict[Tensor, None] = {}
    for op in ops:
        for t in (*op.inputs, *op.attrs.get("_deps", ())):
            if t.op not in own and t not in inner:
                seen[t] = None
    for t in outs:
        if t.op not in own and t not in inner:
            seen[t] = None
    return list(seen)


def _merge(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(x if x == y else None for x, y in zip(a, b))


def while_loop(
    cond: Callable[..., Any],
    body: Callable[..., Any],
    loop_vars: Any,
    shape_invariants: Any = None,
    parallel_iterations: int = 10,
    back_prop: bool = True,
    swap_memory: bool = False,
    maximum_iterations: int | None = None,
    name: str | None = None,
) -> Any:
    """Repeats `loop_vars = body(*loop_vars)` while `cond(*loop_vars)`; returns the final
    loop_vars in the same structure (a list/tuple, or a single tensor)."""
    flat, is_seq = _flat(loop_vars)
    g: Graph = next((v.graph for v in flat if isinstance(v, Tensor)), get_default_graph())
    init = [convert_to_tensor(v, graph=g) for v in flat]
    with g.name_scope(name or "while") as scope:
        with g._cf_context(scope[:-1]) as ctx:
            lvs = [
                g.create_op(
                    "loop_var",
                    "LoopVar",
                    (),
                    {"index": i},
                    name="loop_var",
                    out=[(t._dims if shape_invariants is None else None, t.dtype)],
                ).outputs[0]
                for i, t in enumerate(init)
            ]
            with g.name_scope("cond"):
                c = convert_to_tensor(cond(*lvs), graph=g)
            with g.name_scope("body"):
                res, _ = _flat(body(*lvs))
                outs = [convert_to_tensor(r, graph=g, like=t) for r, t in zip(res, init)]
        if len(outs) != len(init):
            raise InvalidArgumentError(
                f"while_loop body returned {len(outs)} value(s) for {len(init)} loop variable(s)"
            )
        for t, o in zip(init, outs):
            if o.dtype != t.dtype:
                raise InvalidArgumentError(
                    f"while_loop body changes the dtype of loop variable '{t.name}' from "
                    f"{t.dtype.name} to {o.dtype.name}"
                )
        if c.dtype.np.kind != "b" or (c._dims not in (None, ()) and c._dims != (1,)):
            raise InvalidArgumentError(f"while_loop cond must return a scalar bool tensor, got {c}")
        cap = _captured(ctx.ops, set(lvs), [c, *outs])
        out_spec = [(_merge(t._dims, o._dims), t.dtype) for t, o in zip(init, outs)]
        op = g.create_op(
            "while",
            "While",
            (*init, *cap),
            {
                "n_vars": len(init),
                "loop_vars": tuple(t.name for t in lvs),
                "cond": c.name,
                "body_outs": tuple(o.name for o in outs),
                "ops": tuple(o.name for o in ctx.ops),
                "maximum_iterations": maximum_iterations,
            },
            name=scope[:-1],
            exact_name=True,
            out=out_spec,
        )
    res_t = list(op.outputs)
    return (type(loop_vars)(res_t) if isinstance(loop_vars, tuple) else res_t) if is_seq else res_t[0]


def cond(
    pred: Any,
    true_fn: Callable[[], Any],
    false_fn: Callable[[], Any],
    name: str | None = None,
    strict: bool = False,
) -> Any:
    """`true_fn()` where `pred` holds, else `false_fn()`; only the chosen branch runs."""
    g: Graph = pred.graph if isinstance(pred, Tensor) else get_default_graph()
    p = convert_to_tensor(pred, graph=g)
    if p.dtype.np.kind != "b":
        raise InvalidArgumentError(f"cond's pred must be a bool tensor, got {p}")
    with g.name_scope(name or "cond") as scope:
        branches = []
        for label, fn in (("true", true_fn), ("false", false_fn)):
            with g._cf_context(scope + label) as ctx, g.name_scope(label):
                res, is_seq = _flat(fn())
                outs = [convert_to_tensor(r, graph=g) for r in res]
            branches.append((ctx, outs, is_seq))
        (tctx, touts, seq), (fctx, fouts, _) = branches
        if len(touts) != len(fouts):
            raise InvalidArgumentError(f"cond branches return {len(touts)} and {len(fouts)} values")
        for a, b in zip(touts, fouts):
            if a.dtype != b.dtype:
                raise InvalidArgumentError(
                    f"cond branches return dtypes {a.dtype.name} and {b.dtype.name} ('{a.name}' and '{b.name}')"
                )
        cap = _captured([*tctx.ops, *fctx.ops], set(), [*touts, *fouts])
        op = g.create_op(
            "cond",
            "If",
            (p, *cap),
            {
                "true_ops": tuple(o.name for o in tctx.ops),
                "false_ops": tuple(o.name for o in fctx.ops),
                "true_outs": tuple(t.name for t in touts),
                "false_outs": tuple(t.name for t in fouts),
            },
            name=scope[:-1],
            exact_name=True,
            out=[(_merge(a._dims, b._dims), a.dtype) for a, b in zip(touts, fouts)],
        )
    res_t = list(op.outputs)
    return res_t if seq else res_t[0]


# --------------------------------------------------------------------------- running


def _sub_steps(sess: Any, g: Graph, targets: Sequence[Tensor], given: set[Tensor], xp: Any) -> list[Step]:
    ops = _prune([t for t in targets if t not in given], given)
    return [EXECUTORS[o.kind](sess, o, xp) for o in ops if o.kind != "noop"]


def _run_steps(steps: list[Step], env: dict, xp: Any, dev: Any, listening: bool, it: int | None) -> None:
    for st in steps:
        arrays = tuple(env[t] for t in st.ins)
        out = run_step(st, arrays, xp, dev, it) if listening else run_step_fast(st, arrays, xp)
        if st.multi:
            env.update(zip(st.outs, out))
        elif st.outs:
            env[st.outs[0]] = out


@executor("while")
def _while_step(sess: Any, op: Operation, xp: Any) -> Step:
    a, g = op.attrs, op.graph
    n = a["n_vars"]
    lvs = [g.get_tensor_by_name(x) for x in a["loop_vars"]]
    cond_t = g.get_tensor_by_name(a["cond"])
    outs = [g.get_tensor_by_name(x) for x in a["body_outs"]]
    cap = op.inputs[n:]
    given = {*lvs, *cap}
    cond_steps = _sub_steps(sess, g, [cond_t], given, xp)
    body_steps = _sub_steps(sess, g, outs, given, xp)
    maxit = a["maximum_iterations"]
    dev = sess.device
    step = Step(op, None, multi=True)

    def run(*arrays: Any) -> tuple:
        env = dict(zip(cap, arrays[n:]))
        vals = list(arrays[:n])
        tape: list[dict] | None = [] if step.extra.get("record") else None
        if tape is not None:
            _LOCAL.tapes[id(step.extra)] = {"tape": tape, "cap": dict(env)}
        listening = bool(_events.STATE.listeners)
        i = 0
        prev = _LOCAL.iteration
        try:
            while maxit is None or i < maxit:
                _LOCAL.iteration = i
                env.update(zip(lvs, vals))
                _run_steps(cond_steps, env, xp, dev, listening, i)
                if not bool(env[cond_t]):
                    break
                _run_steps(body_steps, env, xp, dev, listening, i)
                if tape is not None:
                    tape.append(dict(env))
                vals = [env[t] for t in outs]
                i += 1
        finally:
            _LOCAL.iteration = prev
        return tuple(vals)

    step.fn = run
    return step


@executor("cond")
def _cond_step(sess: Any, op: Operation, xp: Any) -> Step:
    a, g = op.attrs, op.graph
    cap = op.inputs[1:]
    given = set(cap)
    branches = []
    for label in ("true", "false"):
        outs = [g.get_tensor_by_name(x) for x in a[f"{label}_outs"]]
        branches.append((_sub_steps(sess, g, outs, given, xp), outs))
    dev = sess.device
    step = Step(op, None, multi=True)

    def run(pred: Any, *arrays: Any) -> tuple:
        env = dict(zip(cap, arrays))
        b = 0 if bool(pred) else 1
        steps, outs = branches[b]
        _run_steps(steps, env, xp, dev, bool(_events.STATE.listeners), _LOCAL.iteration)
        if step.extra.get("record"):
            _LOCAL.tapes[id(step.extra)] = {"tape": (b, env)}
        return tuple(env[t] for t in outs)

    step.fn = run
    return step


@executor("loop_var")
def _loop_var_step(sess: Any, op: Operation, xp: Any) -> Step:
    raise GraphError(f"'{op.name}' is a loop variable of a while_loop body; it has a value only inside the loop")


# --------------------------------------------------------------------------- gradients


def _cf_grad(kind: str, type_: str, op: Operation, out_grads: list[Tensor | None], needs: list[bool]) -> list:
    g = op.graph
    gouts = [og if og is not None else zeros_like(t) for og, t in zip(out_grads, op.outputs)]
    outs = [(t._dims, t.dtype) for t, nd in zip(op.inputs, needs) if nd]
    gop = g.create_op(
        kind,
        type_,
        (*gouts, *op.outputs),
        {"forward": op.name, "needs": tuple(needs)},
        name=f"{op.name}_grad",
        out=outs,
        stack=op.stack,
    )
    it = iter(gop.outputs)
    return [next(it) if nd else None for nd in needs]


@grad_builder("while")
def _while_grad(op: Operation, out_grads: list, needs: list[bool]) -> list:
    return _cf_grad("while_grad", "WhileGrad", op, out_grads, needs)


@grad_builder("cond")
def _cond_grad(op: Operation, out_grads: list, needs: list[bool]) -> list:
    return _cf_grad("cond_grad", "IfGrad", op, out_grads, needs)


def _backprop(
    steps: list[Step], env: dict, gmap: dict, xp: Any, dev: Any, gname: str, listening: bool, it: int | None
) -> None:
    """Reverse pass over one recorded body run: each op's VJP, broadcast reduction, sums."""
    for st in reversed(steps):
        op = st.op
        if op.kind in ("check", "placeholder"):
            gout = gmap.pop(op.outputs[0], None)
            if gout is not None and op.inputs:
                _acc(gmap, op.inputs[0], gout)
            continue
        if op.kind in ("while", "cond"):
            if any(t in gmap for t in op.outputs):
                raise GraphError(
                    f"the gradient through '{op.name}', control flow nested inside '{gname}', is not supported"
                )
            continue
        if op.kind != "op":
            continue
        gout = gmap.pop(op.outputs[0], None)
        vjp = op.opdef.vjp
        if gout is None or vjp is None or op.outputs[0].dtype.np.kind not in "fc":
            continue
        args = tuple(env[t] for t in op.inputs)
        needs = tuple(t.dtype.np.kind in "fc" for t in op.inputs)
        ctx = Ctx(xp, args, env[op.outputs[0]], op.attrs, needs)
        site = Site(
            op.opdef,
            "backward",
            "graph",
            label=f"{op.type}Grad",
            name=f"{gname}/{op.name}_grad",
            inputs=(op.outputs[0].name,),
            device=dev,
            stack=op.stack,
            forward=op.name,
            grad_of=tuple(t.name for t in op.inputs),
            iteration=it,
        )
        gs = dispatch(site, vjp, (ctx, gout), (gout,))
        for t, gi, x, nd in zip(op.inputs, gs, args, needs):
            if gi is None or not nd:
                continue
            if gi.shape != x.shape:
                gi = unbroadcast(xp, gi, x.shape)
            _acc(gmap, t, gi)


def _acc(gmap: dict, t: Tensor, g: Any) -> None:
    prev = gmap.get(t)
    gmap[t] = g if prev is None else prev + g


@executor("while_grad")
def _while_grad_step(sess: Any, op: Operation, xp: Any) -> Step:
    g = op.graph
    fwd = g.get_operation_by_name(op.attrs["forward"])
    a = fwd.attrs
    n = a["n_vars"]
    lvs = [g.get_tensor_by_name(x) for x in a["loop_vars"]]
    outs = [g.get_tensor_by_name(x) for x in a["body_outs"]]
    cap = fwd.inputs[n:]
    body_steps = _sub_steps(sess, g, outs, {*lvs, *cap}, xp)
    needs = op.attrs["needs"]
    dev = sess.device
    step = Step(
        op,
        None,
        phase="backward",
        evop=PSEUDO["while_grad"],
        multi=True,
        forward=fwd.name,
        grad_of=tuple(t.name for t, nd in zip(fwd.inputs, needs) if nd),
    )

    def run(*arrays: Any) -> tuple:
        link = step.extra.get("fwd")
        # popped: the recorded iterations are released once replayed
        rec = _LOCAL.tapes.pop(id(link), None) if link is not None else None
        tape = rec["tape"] if rec else None
        if tape is None:
            raise GraphError(
                f"'{op.name}' needs the values of the loop '{fwd.name}' from the same run: fetch them "
                "together (as an optimizer's train op does)"
            )
        grads = list(arrays[:n])
        gcap: dict[Tensor, Any] = {}
        listening = bool(_events.STATE.listeners)
        for i in reversed(range(len(tape))):
            env = tape[i]
            gmap: dict[Tensor, Any] = {}
            for t, gv in zip(outs, grads):
                if t.dtype.np.kind in "fc":  # integer loop variables (counters) carry no gradient
                    _acc(gmap, t, gv)
            _backprop(body_steps, env, gmap, xp, dev, op.name, listening, i)
            grads = [gmap.pop(t, None) for t in lvs]
            grads = [gv if gv is not None else xp.zeros_like(env[t]) for gv, t in zip(grads, lvs)]
            for t in cap:
                if t in gmap:
                    _acc(gcap, t, gmap[t])
        res = []
        for k, (t, nd) in enumerate(zip(fwd.inputs, needs)):
            if not nd:
                continue
            gv = grads[k] if k < n else gcap.get(t)
            res.append(gv if gv is not None else xp.zeros_like(rec["cap"][t]))
        return tuple(res)

    step.fn = run
    # the gradient reads the loop's outputs only to run after it; initial values come from the tape
    return step


@executor("cond_grad")
def _cond_grad_step(sess: Any, op: Operation, xp: Any) -> Step:
    g = op.graph
    fwd = g.get_operation_by_name(op.attrs["forward"])
    a = fwd.attrs
    cap = fwd.inputs[1:]
    branches = []
    for label in ("true", "false"):
        outs = [g.get_tensor_by_name(x) for x in a[f"{label}_outs"]]
        branches.append((_sub_steps(sess, g, outs, set(cap), xp), outs))
    needs = op.attrs["needs"]
    k_out = len(fwd.outputs)
    dev = sess.device
    step = Step(
        op,
        None,
        phase="backward",
        evop=PSEUDO["cond_grad"],
        multi=True,
        forward=fwd.name,
        grad_of=tuple(t.name for t, nd in zip(fwd.inputs, needs) if nd),
    )

    def run(*arrays: Any) -> tuple:
        link = step.extra.get("fwd")
        # popped: the recorded iterations are released once replayed
        rec = _LOCAL.tapes.pop(id(link), None) if link is not None else None
        tape = rec["tape"] if rec else None
        if tape is None:
            raise GraphError(f"'{op.name}' needs the values of '{fwd.name}' from the same run")
        b, env = tape
        steps, outs = branches[b]
        gmap: dict[Tensor, Any] = {}
        for t, gv in zip(outs, arrays[:k_out]):
            _acc(gmap, t, gv)
        _backprop(steps, env, gmap, xp, dev, op.name, bool(_events.STATE.listeners), _LOCAL.iteration)
        res = []
        for t, nd in zip(fwd.inputs, needs):
            if nd:
                gv = gmap.get(t)
                res.append(gv if gv is not None else xp.zeros_like(env[t]))
        return tuple(res)

    step.fn = run
    return step
