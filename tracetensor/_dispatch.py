"""The one dispatch point: every forward op, backward op and optimizer update of
both modes runs through `run_op`, which times it, names it and emits its event.

Callers keep a fast path (`if not STATE.listeners: fn(...)`) so that with nobody
listening the cost of observability is that single check; errors from either path
go through `fail`, which names the op, phase, shapes and the user's line.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from . import _gpu
from ._registry import Ctx, OpDef
from ._source import Frame, user_frame, user_frames
from .errors import DTypeError, Invalid, InvalidDType, OpError, ShapeError, TraceTensorError
from .events import _SEQ, RUN, STATE, OpEvent, Summary, TensorMeta, auto_run, summarize

_perf = time.perf_counter_ns
_tuple_new = tuple.__new__  # NamedTuple's own __new__ is Python code; this is the C one
_tid = threading.get_ident
_next_seq = _SEQ.__next__


def run_op(op: OpDef, phase: str, fn: Any, args: tuple, arrays: tuple, attrs: dict, *, mode: str, name: str,
           inputs: tuple[str, ...], device: Any, stack: tuple[Frame, ...] | None = None,
           forward: str | None = None, grad_of: tuple[str, ...] = (), iteration: int | None = None,
           op_label: str | None = None, out_names: tuple[str, ...] | None = None, saves: bool = False) -> Any:
    """Runs `fn(*args, **attrs)` (an op's forward, VJP or update) and emits its OpEvent.

    `arrays` are the op's array inputs (for summaries, cost and errors). `name` is the op
    instance's name; outputs are named `name:i` unless `out_names` says otherwise.
    Returns what `fn` returned (an array, or a tuple for several outputs; with `saves`,
    fn is a `saves=True` op's forward and returns (output, residuals)).
    """
    gpu = device.type == "cuda"
    if gpu:
        ev0 = _gpu.start()
    t0 = _perf()
    try:
        out = fn(*args, **attrs)
    except Exception as e:
        raise fail(op, phase, arrays, attrs, e, mode=mode, name=name,
                   frame=stack[0] if stack else None) from None
    t1 = _perf()
    seq = _next_seq()
    if gpu:
        _gpu.stop(seq, ev0)
    dev = device.name
    result = out
    if saves:
        out = out[0]  # fn returned (output, residuals): only the output is observed
    if out.__class__ is not tuple:
        outs = (out,)
        dt = out.dtype
        metas = (_tuple_new(TensorMeta, (out_names[0] if out_names else name + ":0", out.shape,
                                         _DTNAMES.get(dt) or _dtname(dt), dev, out.nbytes)),)
    else:
        outs = out
        if out_names is None:
            out_names = [name + (_SUFFIX[i] if i < 64 else f":{i}") for i in range(len(outs))]
        metas = tuple([_tuple_new(TensorMeta, (n, o.shape, _DTNAMES.get(o.dtype) or _dtname(o.dtype), dev, o.nbytes))
                       if o is not None else _tuple_new(TensorMeta, (n, (), "none", dev, 0))
                       for n, o in zip(out_names, outs)])
    summaries = input_summaries = values = None
    st = STATE
    if st.summaries:
        summaries = tuple(_summary(o) for o in outs)
        if any(s is not None and not s.finite for s in summaries):
            input_summaries = tuple(_summary(a) for a in arrays)
    if st.values:
        # updates change arrays in place afterwards: keep a copy of what they were
        values = tuple(o.copy() for o in outs) if phase == "update" else outs
    if stack is None and st.stacks:
        stack = user_frames()
    flops = 0
    if st.flops:
        ctx = args[0] if args else None
        if phase == "backward" and isinstance(ctx, Ctx) and ctx.args is not None:
            # a VJP costs about twice its forward (two products for a matmul, and so on)
            flops = 2 * _flops(op, ctx.args, ctx.out, ctx.attrs)
        elif phase == "backward" and mode == "graph" and forward is not None and len(arrays) >= 2:
            # a graph gradient node's inputs are (forward inputs..., forward output, grad)
            flops = 2 * _flops(op, arrays[:-2], arrays[-2], attrs)
        else:
            flops = _flops(op, arrays, out, attrs)
    # an eager op outside every run begins a step (auto_run); one check per event otherwise
    e = OpEvent(seq, RUN.run or auto_run(t0), mode, phase,
                op_label or (op.tf_name if mode == "graph" else op.name),
                name, inputs, metas, t0, t1, _tid(), dev, flops, forward, grad_of,
                iteration, stack, summaries, input_summaries, values)
    for lis in STATE.listeners:
        lis.callback(e)
    return result


_DTNAMES: dict[Any, str] = {}
_SUFFIX = [f":{i}" for i in range(64)]  # output-name suffixes, made once


def _dtname(dt: Any) -> str:
    """numpy's dtype.name is a slow Python property; names are cached per dtype."""
    n = _DTNAMES.get(dt)
    if n is None:
        n = _DTNAMES[dt] = dt.name
    return n


def _summary(a: Any) -> Summary | None:
    return summarize(a) if hasattr(a, "dtype") else None


def _flops(op: OpDef, arrays: tuple, out: Any, attrs: dict) -> int:
    cost = op.cost
    try:
        if cost is None:
            return out.size if out.__class__ is not tuple else 0
        return int(cost(arrays, out, attrs))
    except Exception:  # a cost estimate must never break the op it describes
        return 0


def fail(op: OpDef, phase: str, arrays: tuple, attrs: dict, exc: BaseException, *, mode: str = "eager",
         name: str | None = None, frame: Frame | None = None) -> BaseException:
    """Turns whatever an op raised into one OpError naming the op, phase, what was
    expected and what came, and the user's source line."""
    if isinstance(exc, TraceTensorError):
        return exc
    if frame is None:
        frame = user_frame()
    shapes = tuple(getattr(a, "shape", type(a).__name__) for a in arrays)
    dtypes = tuple(str(getattr(a, "dtype", type(a).__name__)) for a in arrays)
    detail = None
    if isinstance(exc, Invalid):
        detail = str(exc)
    elif op.explain is not None and phase == "forward":
        try:
            detail = op.explain(shapes, dtypes, attrs)
        except Exception:
            detail = None
    if detail is None:
        detail = f"{type(exc).__name__}: {exc} (input shapes {_fmt(shapes)}, dtypes {', '.join(dtypes)})"
    label = op.tf_name if mode == "graph" else op.name
    msg = str(exc).lower()
    if isinstance(exc, (TypeError, InvalidDType)) or "dtype" in msg or "ufunc" in msg and "type" in msg:
        cls: type[OpError] = DTypeError
    elif isinstance(exc, (ValueError, IndexError, Invalid)):
        cls = ShapeError
    else:
        cls = OpError
    err = cls(label, detail, phase=phase, name=name, frame=frame, mode=mode)
    err.original = exc  # kept for debugging; not chained, so no numpy traceback is shown
    return err


def _fmt(shapes: tuple) -> str:
    return ", ".join(str(tuple(s)) if isinstance(s, tuple) else str(s) for s in shapes)
