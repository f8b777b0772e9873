"""The one dispatch point: every forward op, backward op and optimizer update of
both modes runs through `dispatch(site, fn, args, arrays, attrs)`. With nobody
listening it costs one check; otherwise it times the op, describes it from its `Site`
and emits its event. Either way errors go through `fail`, which names the op, phase,
shapes and the user's line, so an error reads the same whether or not anyone listens.
(Graph plans run as generated straight-line code when nobody listens; their errors
go through the same `fail`.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _gpu, _naming
from . import events as _events
from ._registry import Ctx, OpDef
from ._source import Frame, stack_here, user_frame
from .errors import DTypeError, Invalid, InvalidDType, OpError, ShapeError, TraceTensorError
from .events import _SEQ, RUN, STATE, OpEvent, Summary, TensorMeta, auto_run, summarize
from .events import finite as _finite

_perf = time.perf_counter_ns
_tuple_new = tuple.__new__  # NamedTuple's own __new__ is Python code; this is the C one
_tid = threading.get_ident
_next_seq = _SEQ.__next__
_ndarray = np.ndarray


class Site(NamedTuple):
    """What one call site tells the dispatch point: the op, its phase and mode and, while
    someone listens, how the event names it (name, input names, stack, ...). Graph steps
    and unobserved eager calls reuse one per op; observed eager calls make one per call
    (a tuple: hot callers make it with `tuple.__new__`, in this field order)."""

    op: OpDef
    phase: str = "forward"
    mode: str = "eager"
    label: str | None = None  # the event's op type; default: the op's name (TF name in graph mode)
    name: str | None = None
    inputs: tuple[str, ...] = ()
    device: Any = None
    stack: tuple[Frame, ...] | None = None
    forward: str | None = None
    grad_of: tuple[str, ...] = ()
    out_names: tuple[str, ...] | None = None
    iteration: int | None = None
    saves: bool = False

    @property
    def op_label(self) -> str:
        return self.label or (self.op.tf_name if self.mode == "graph" else self.op.name)

    def event(self, rec: tuple) -> OpEvent:
        """The OpEvent of a raw record made at this site (see `_observed`): exactly what a
        plain listener got for it."""
        _, seq, run, t0, t1, tid, stack, shape, dt, nbytes = rec[:10]
        summaries = rec[10] if len(rec) > 10 else None  # (a summarized record: see `_after`)
        if summaries.__class__ is bytes:  # (packed rows: see events.summary_rows)
            summaries = _events.summaries_of_rows(summaries)
        dev = self.device.name if self.device is not None else "cpu"
        metas = self.metas_of(shape, dt, nbytes, dev)
        return OpEvent(
            seq,
            run,
            self.mode,
            self.phase,
            self.op_label,
            self.name or self.op_label,  # (an unnamed site: a `names=False` listener's, see subscribe)
            self.inputs,
            metas,
            t0,
            t1,
            tid,
            dev,
            0,
            self.forward,
            self.grad_of,
            self.iteration,
            stack,
            summaries,
        )

    def metas_of(self, shape: Any, dt: Any, nbytes: int, dev: str) -> tuple[TensorMeta, ...]:
        """The TensorMetas of this site's outputs of that signature (a record's fields 7-9).
        A site's outputs have the same metas step after step: made once per (site,
        signature) and shared, so events hold no TensorMeta of their own (namedtuples stay
        GC-tracked, and a recording's queue of them would set off full collections)."""
        key = (id(self), shape, dt, nbytes)
        hit = _METAS.get(key)
        if hit is not None and hit[0] is self:
            return hit[1]
        metas = self._metas(shape, dt, nbytes, dev)
        if len(_METAS) > 50_000:
            _METAS.clear()
        _METAS[key] = (self, metas)
        return metas

    def _metas(self, shape: Any, dt: Any, nbytes: int, dev: str) -> tuple[TensorMeta, ...]:
        if shape is None:  # several outputs: dt holds (shape, dtype, nbytes) or None for each
            name = self.name or self.op_label
            names = self.out_names or [name + (_SUFFIX[i] if i < 64 else f":{i}") for i in range(len(dt))]
            metas = tuple(
                [
                    _tuple_new(TensorMeta, (n, o[0], _DTNAMES.get(o[1]) or _dtname(o[1]), dev, o[2]))
                    if o is not None
                    else _tuple_new(TensorMeta, (n, (), "none", dev, 0))
                    for n, o in zip(names, dt)
                ]
            )
        else:
            out = self.out_names[0] if self.out_names else (self.name or self.op_label) + ":0"
            metas = (_tuple_new(TensorMeta, (out, shape, _DTNAMES.get(dt) or _dtname(dt), dev, nbytes)),)
        return metas

    def error(self, arrays: tuple, attrs: dict, exc: BaseException) -> BaseException:
        """The one error an op raising here becomes (the same whether or not anyone listens)."""
        return fail(
            self.op,
            self.phase,
            arrays,
            attrs,
            exc,
            mode=self.mode,
            name=self.name,
            frame=self.stack[0] if self.stack else None,
            label=self.op_label,
        )


# (id(site), shape, dtype, nbytes) -> (site, its outputs' TensorMetas): see Site.event
_METAS: dict[tuple, tuple[Site, tuple[TensorMeta, ...]]] = {}

_STATIC: dict[str, dict[OpDef, Site]] = {"forward": {}, "backward": {}, "update": {}}
_FORWARD = _STATIC["forward"]
_BACKWARD = _STATIC["backward"]


def site_of(op: OpDef, phase: str = "forward") -> Site:
    """The shared eager site of `op` in `phase` (what an unobserved call needs: errors only)."""
    sites = _STATIC[phase]
    s = sites.get(op)
    if s is None:  # (a forward op that saves returns (output, residuals): see Site.saves)
        s = sites[op] = Site(op, phase, saves=op.saves and phase == "forward")
    return s


# (maker, name) -> (what the Site was made from, the Site): see named_site
_SITES: dict[tuple, tuple] = {}


def named_site_py(make: Callable[..., Site], name: str, *parts: Any) -> Site:
    """`make(name, *parts)`, the Site of an observed eager call site, made once and reused
    while `parts` compare equal (item by item, identity first). An observed step makes the
    same sites step after step (names repeat from run to run), so records share one Site
    per call site instead of one per call, and no Site is built for a call that has one.
    Consumers key on it (a profile's aggregates, the trace writer)."""
    key = (make, name)
    hit = _SITES.get(key)
    if hit is not None and hit[0] == parts:
        return hit[1]
    if len(_SITES) > 50_000:  # bounded: programs that make names keep making new sites
        _SITES.clear()
    site = make(name, *parts)
    _SITES[key] = (parts, site)
    return site


named_site = named_site_py  # (the C accelerator's replaces it: its hits, the same lookup)


_NOATTRS: dict = {}


def dispatch(site: Site, fn: Any, args: tuple, arrays: tuple, attrs: dict = _NOATTRS) -> Any:
    """Runs `fn(*args, **attrs)` (an op's forward, VJP or update): the one dispatch point.

    With nobody listening that is all it does (plus turning what the op raised into
    `site.error`); otherwise it times, describes and emits it (`_observed`). `arrays` are
    the op's array inputs (for errors, summaries and cost). Returns what `fn` returned.

    (The C accelerator, `_speedups.dispatch`, replaces this function and `_observed`'s
    lean branch when it is built: see the end of this module.)"""
    if STATE.listeners:
        return _observed(site, fn, args, arrays, attrs)
    try:
        return fn(*args, **attrs)
    except Exception as e:
        raise site.error(arrays, attrs, e) from None


def _observed(site: Site, fn: Any, args: tuple, arrays: tuple, attrs: dict) -> Any:
    """`dispatch` while someone listens: outputs are named `site.name:i` unless
    `site.out_names` says otherwise; a `saves` op's fn returns (output, residuals).
    (The C accelerator runs the CPU cases itself: the lean branch, or the op then `_after`.)"""
    device = site.device
    if device is None and arrays and arrays[0].__class__ is not _ndarray:
        site, device = _placed(site, arrays[0])  # an unnamed site (see `named`) on a GPU array
    listeners = STATE.listeners
    cuda = device is not None and device.type == "cuda"
    # on a GPU, timed by CUDA events, unless nobody wants a finite op (`only_nonfinite`)
    timed = cuda and STATE.quiet is not listeners
    # every listener takes a record (an `outputs` listener the output beside it): no more
    lean = STATE.lean is listeners and not cuda
    if cuda and site.phase == "update" and _gpu.forward_pending():
        _gpu.flush()  # (a deferred finding's inputs are read before the optimizer changes them in place)
    ev0 = _gpu.start() if timed else None
    t0 = _perf()
    try:
        out = fn(*args, **attrs)
    except Exception as e:
        raise site.error(arrays, attrs, e) from None
    t1 = _perf()
    if lean:
        stack = site.stack
        if stack is None and STATE.stacks:
            stack = stack_here()
        _record(site, _next_seq(), t0, t1, stack, out[0] if site.saves else out, listeners)
        return out
    seq = _next_seq()
    if cuda and STATE.deferred is listeners:
        _defer(site, args, arrays, attrs, out, t0, t1, seq, ev0)
        return out
    if timed:
        _gpu.stop(seq, ev0)
    return _after(site, args, arrays, attrs, out, t0, t1, seq)


def _defer(
    site: Site, args: tuple, arrays: tuple, attrs: dict, result: Any, t0: int, t1: int, seq: int, ev0: Any
) -> None:
    """A GPU op whose listeners all read later (`STATE.deferred`): its outputs' statistics
    (or, for the check alone, counts of NaN and inf values) are queued on the device, one
    kernel each, written to pinned host rows. `_after` runs once the device got there
    (`_gpu.poll`, or the run's end), with those summaries as the exact check's answer. No
    synchronize per op; records reach the listeners in op order, a few ops late. What
    `_after` would read at the op is taken now: the run, the thread and the user's stack
    (a failing op's line)."""
    out = result[0] if site.saves else result
    rows = []
    held = 0  # bytes of outputs kept alive until the op is read back (see _gpu.stop)
    full = STATE.summaries  # (else the check alone: a count of NaN and inf values)
    for o in out if out.__class__ is tuple else (out,):
        if o is None or not hasattr(o, "dtype"):
            rows.append(None)
            continue
        held += o.nbytes
        if o.__class__ is _ndarray:
            rows.append(("sync", None, o))  # (a host array: summarized then, as at the op)
        elif full:
            r = _gpu.stats_async(o)
            rows.append(("sync", None, o) if r is None else ("stats", r, o))
        elif o.dtype.kind not in "fc":
            rows.append(("count", None, o))  # (integers and bools are finite)
        else:
            r = _gpu.stats_async(o, count=True)
            rows.append(("sync", None, o) if r is None else ("count", r, o))
    run = RUN.run or auto_run(t0)
    stack = site.stack
    if stack is None:
        stack = stack_here()
    _gpu.stop(seq, ev0, (_after, (site, args, arrays, attrs, result, t0, t1, seq, (run, _tid(), stack)), rows), held)


def _record(
    site: Site,
    seq: int,
    t0: int,
    t1: int,
    stack: Any,
    out: Any,
    listeners: tuple,
    summaries: tuple | None = None,
    run: int = 0,
    tid: int = 0,
) -> None:
    """The raw record of an op that ran (`out`: its output, or tuple of outputs) to every
    listener, beside `out` to an `outputs` one: (site, seq, run, t0, t1, thread, stack, and
    shape, dtype, nbytes, or None, each output's (shape, dtype, nbytes) or None, 0), then
    the outputs' (finite) summaries when listeners asked for them, as packed rows
    (`events.summary_rows`). The C accelerator makes
    the same tuple (_speedups.c). (`run`, `tid`: a deferred GPU op's, taken at the op.)"""
    run = run or RUN.run or auto_run(t0)
    tid = tid or _tid()
    if out.__class__ is not tuple:
        rec = (site, seq, run, t0, t1, tid, stack, out.shape, out.dtype, out.nbytes)
    else:
        sig = tuple([(o.shape, o.dtype, o.nbytes) if o is not None else None for o in out])
        rec = (site, seq, run, t0, t1, tid, stack, None, sig, 0)
    if summaries is not None:
        rec = (*rec, _events.summary_rows(summaries))
    for lis in listeners:
        if lis.outputs:
            lis.callback(rec, out)
        else:
            lis.callback(rec)


def _after(
    site: Site,
    args: tuple,
    arrays: tuple,
    attrs: dict,
    result: Any,
    t0: int,
    t1: int,
    seq: int,
    deferred: tuple | None = None,
    device_summaries: tuple | None = None,
) -> Any:
    """`_observed` once the op ran (`result`, timed t0..t1, numbered `seq`): the NaN/inf
    check, the stack, then a record or an OpEvent to every listener. Returns `result`.
    A deferred GPU op (`_defer`) comes later with `deferred` = (run, thread, stack) as they
    were at the op, and its outputs' summaries from the device, which answer the check."""
    device = site.device
    out = result[0] if site.saves else result  # (a saving op returned (output, residuals))
    st = STATE
    listeners = st.listeners
    run = tid = 0
    if deferred is not None:
        run, tid, stack = deferred
        bad = not all(s is None or s.finite for s in device_summaries)
        if not (bad or st.stacks):
            stack = site.stack  # (what a finite op's record carries when taken at the op)
    else:
        # the exact NaN/inf check (events.finite): an op that fails it becomes a full event below
        bad = st.cheap_check and not (_finite(out) if out.__class__ is not tuple else _all_finite(out))
        stack = site.stack
    if not bad and st.quiet is listeners:  # nobody wants a finite op (subscribe's only_nonfinite)
        if not RUN.run and not run:
            auto_run(t0)  # (it still begins a step, as a recorded op does)
        return result
    if stack is None and (st.stacks or bad):
        stack = stack_here()
    raw = st.raw is listeners  # every listener reads later: a record now, the OpEvent when it is read
    if raw and not bad and not st.summaries:
        _record(site, seq, t0, t1, stack, out, listeners, None, run, tid)
        return result
    phase = site.phase
    outs = out if out.__class__ is tuple else (out,)
    summaries = input_summaries = values = fwd_summaries = None
    if st.summaries or bad:
        if device_summaries is not None:
            summaries = _untrack(device_summaries)
        else:
            summaries = _untrack(tuple([_summary(o) for o in outs]))  # (see _untrack)
        if any(s is not None and not s.finite for s in summaries):
            input_summaries = tuple(_summary(a) for a in arrays)
            if st.checks:  # a checking listener gets the user's line of what failed, and for a backward
                if stack is None:  # op the inputs of its forward op (checked finite, so not summarized)
                    stack = stack_here()
                if phase == "backward" and args and isinstance(args[0], Ctx) and args[0].args is not None:
                    fwd_summaries = tuple(_summary(a) for a in args[0].args)
        elif raw:  # finite: a record carrying the summaries
            _record(site, seq, t0, t1, stack, out, listeners, summaries, run, tid)
            return result
    dev = device.name if device is not None else "cpu"
    name = site.name or site.op_label  # (unnamed: a `names=False` listener's site)
    if out.__class__ is not tuple:
        metas = site.metas_of(out.shape, out.dtype, out.nbytes, dev)
    else:
        sig = tuple([(o.shape, o.dtype, o.nbytes) if o is not None else None for o in out])
        metas = site.metas_of(None, sig, 0, dev)
    if st.values:
        # updates change arrays in place afterwards: keep a copy of what they were
        values = tuple(o.copy() for o in outs) if phase == "update" else outs
    flops = 0
    op = site.op
    if st.flops:
        ctx = args[0] if args else None
        if phase == "backward" and isinstance(ctx, Ctx) and ctx.args is not None:
            # a VJP costs about twice its forward (two products for a matmul, and so on)
            flops = 2 * _flops(op, ctx.args, ctx.out, ctx.attrs)
        elif phase == "backward" and site.mode == "graph" and site.forward is not None and len(arrays) >= 2:
            # a graph gradient node's inputs are (forward inputs..., forward output, grad)
            flops = 2 * _flops(op, arrays[:-2], arrays[-2], attrs)
        else:
            flops = _flops(op, arrays, out, attrs)
    # an eager op outside every run begins a step (auto_run); one check per event otherwise
    e = OpEvent(
        seq,
        run or RUN.run or auto_run(t0),
        site.mode,
        phase,
        site.op_label,
        name,
        site.inputs,
        metas,
        t0,
        t1,
        tid or _tid(),
        dev,
        flops,
        site.forward,
        site.grad_of,
        site.iteration,
        stack,
        summaries,
        input_summaries,
        values,
        fwd_summaries,
    )
    if values is None:
        _untrack(e)  # (see _speedups.untrack: an event without arrays refers to nothing that refers back)
    for lis in STATE.listeners:
        if lis.outputs:
            lis.callback(e, out)
        else:
            lis.callback(e)
    return result


# (id(unnamed site), device number) -> (that site, it with its device): see `_placed` (the
# entry holds the site: an id in a live key is no other site's)
_PLACED: dict[tuple[int, int], tuple[Site, Site]] = {}


def _placed(site: Site, a: Any) -> tuple[Site, Any]:
    """An unnamed (shared, device-less) site running on array `a`: on a GPU, that site for
    `a`'s device (made once), so its event says where it ran and it gets CUDA-event timing."""
    try:
        key = (id(site), a.device.id)  # (a cupy array's device; found per op, so kept cheap)
    except AttributeError:
        return site, None  # a numpy scalar, a Python number: the CPU
    hit = _PLACED.get(key)
    if hit is None or hit[0] is not site:
        from .device import device_of

        hit = _PLACED[key] = (site, site._replace(device=device_of(a)))
    return hit[1], hit[1].device


_DTNAMES: dict[Any, str] = {}
_SUFFIX = [f":{i}" for i in range(64)]  # output-name suffixes, made once


def _dtname(dt: Any) -> str:
    """numpy's dtype.name is a slow Python property; names are cached per dtype."""
    n = _DTNAMES.get(dt)
    if n is None:
        n = _DTNAMES[dt] = dt.name
    return n


def _all_finite(outs: tuple) -> bool:
    """The check of an op's several outputs (arrays, and None for an output not computed;
    a VJP's gradients, one per input). A plain loop: a generator costs more than the check."""
    for o in outs:
        if o is not None and hasattr(o, "dtype") and not _finite(o):
            return False
    return True


def _summary(a: Any) -> Summary | None:
    return _untrack(summarize(a)) if hasattr(a, "dtype") else None


def _untrack(s: Any) -> Any:  # (the C accelerator's `untrack` replaces this: see the end of this module)
    return s


def _flops(op: OpDef, arrays: tuple, out: Any, attrs: dict) -> int:
    cost = op.cost
    try:
        if cost is None:
            return out.size if out.__class__ is not tuple else 0
        return int(cost(arrays, out, attrs))
    except Exception:  # a cost estimate must never break the op it describes
        return 0


def fail(
    op: OpDef,
    phase: str,
    arrays: tuple,
    attrs: dict,
    exc: BaseException,
    *,
    mode: str = "eager",
    name: str | None = None,
    frame: Frame | None = None,
    label: str | None = None,
) -> BaseException:
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
    label = label or (op.tf_name if mode == "graph" else op.name)
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


# The C accelerator (tracetensor/_speedups.c, an optional extension): the same two hot paths
# (nobody listening; every listener lean) without the interpreter's cost per op, about 0.5 us
# per observed op on the small ops of a training step. TRACETENSOR_PURE=1 keeps the Python
# path (the tests run both).
dispatch_py = dispatch
ACCELERATED = False
if not os.environ.get("TRACETENSOR_PURE"):
    try:
        from . import _speedups
    except ImportError:  # no C compiler at install: the Python path, the same behaviour
        pass
    else:
        from .device import CPU

        auto_run = _speedups.auto_run  # (the run markers in C: see events._start)
        _speedups.setup(
            STATE, RUN, _SEQ, auto_run, _observed, _after, stack_here, _finite, _all_finite, np.ndarray, CPU, _NOATTRS
        )
        _speedups.setup_untrack(OpEvent)
        _speedups.setup_summaries(Summary, _summary)
        _speedups.setup_names(_SITES, named_site_py, _naming._tls, _naming._made, _naming.op_name_py)
        _speedups.setup_runs(
            _events._run_ids,
            _events._outer,
            _gpu,
            _events._scalar,
            _events.RunStart,
            _events.RunEnd,
            _events.STEP_HOOKS,
        )
        _events._start, _events._run_end = _speedups.run_start, _speedups.run_end
        _events.auto_run, _events.step = auto_run, _speedups.step
        _naming.op_name = _speedups.op_name  # (the hits of a name already made, in C)
        named_site = _speedups.named_site
        _events.REFRESH_HOOKS.append(_speedups.forget_calls)
        _events._fast_finite = _speedups.finite
        _events._fast_summary = _speedups.summary
        _events.MemoryHook = _speedups.MemoryHook
        _events._Appender = _speedups.Appender
        _events._ColumnQueue = _speedups.ColumnQueue
        _events._Router = _speedups.Router
        _events._record_columns = _speedups.record_columns
        dispatch = _speedups.dispatch  # (the accelerated dispatch point)
        _untrack = _speedups.untrack  # (a Summary: numbers only, in no cycle; see _speedups.c)
        ACCELERATED = True
