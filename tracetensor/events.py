"""The event stream: plain-data records of everything the engine runs, and the one
subscription API that the debugger, the profiler, the recorder and the pytest plugin use.

Consumers import this module (and the public user API) only. Events are frozen
dataclasses of ints, strings and tuples (plus array references when a listener asks
for values); they never hold engine objects.

Cost model: with no listener the engine pays one truthiness check per op. A listener
says what it needs (`values`, `stacks`, `summaries`, `checks`); the engine computes the
union of what current listeners asked for and nothing more.
"""

from __future__ import annotations

import cmath
import gc
import itertools
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import _gpu, _naming  # (neither imports anything of the engine)
from ._source import Frame

__all__ = [
    "Frame",
    "TensorMeta",
    "Summary",
    "OpEvent",
    "RunStart",
    "RunEnd",
    "DeviceTime",
    "GraphDef",
    "NodeDef",
    "UserRange",
    "Event",
    "Listener",
    "listen",
    "subscribe",
    "summarize",
    "check",
    "finite",
    "current_run",
    "begin_run",
    "end_run",
    "clock_base",
    "record_range",
    "is_listening",
    "step",
    "auto_run",
    "materialize",
    "timings",
    "OpTiming",
    "is_raw",
    "appender",
    "router",
    "record_columns",
]


class TensorMeta(NamedTuple):
    """What an event says of one output tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    nbytes: int


class Summary(NamedTuple):
    """Numeric summary of a tensor, computed where it lives. min/max/mean/std are over
    the finite values only (NaN when there are none)."""

    size: int
    nan: int
    neginf: int
    posinf: int
    neg: int
    zero: int
    pos: int
    min: float
    max: float
    mean: float
    std: float

    @property
    def nonfinite(self) -> int:
        return self.nan + self.neginf + self.posinf

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.neginf == 0 and self.posinf == 0

    def brief(self) -> str:
        head = f"n={self.size}"
        if not self.finite:
            head += f" nan={self.nan} -inf={self.neginf} +inf={self.posinf}"
        return (
            f"{head} min={self.min:.4g} max={self.max:.4g} mean={self.mean:.4g} std={self.std:.4g}"
            f" neg={self.neg} zero={self.zero} pos={self.pos}"
        )


# A summarized raw record carries its outputs' summaries as packed rows, one bytes object
# (see `summary_rows`): on the hot path that is one object per op, where Summaries are a
# tuple, eleven numbers and a tuple per output to make and, later, to free
SUMMARY_ROW = struct.Struct("<7q4d")  # size, nan, neginf, posinf, neg, zero, pos; min, max, mean, std
_NONE_ROW = (-1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)  # an output without a summary (size -1)


def summary_rows(ss: tuple[Summary | None, ...]) -> bytes:
    """Summaries (None for an output without one) as the packed rows a record carries."""
    pack = SUMMARY_ROW.pack
    return b"".join([pack(*(_NONE_ROW if s is None else s)) for s in ss])


def summaries_of_rows(rows: bytes) -> tuple[Summary | None, ...]:
    """`summary_rows`' Summaries back (the same numbers: integers and float64 both way)."""
    return tuple([None if r[0] < 0 else Summary._make(r) for r in SUMMARY_ROW.iter_unpack(rows)])


@dataclass(slots=True)
class OpEvent:
    """One op run in one phase. Read-only by convention: it is the one event type made
    on the hot path, and a frozen dataclass's __init__ costs ~3x more per event.

    phase: "forward" | "backward" | "update". For backward events `forward` names the
    forward op, `stack` is that forward op's stack (so a NaN found in backward still
    points at the user's forward line), and `grad_of[i]` names the tensor that output
    i is the gradient of. Times are `time.perf_counter_ns()`; see `clock_base()`.
    phase "collective" (tt.distributed): `inputs` are the peer ranks, `forward` says how the
    bytes went, `iteration` is the collective's ordinal (see tracetensor.distributed).
    """

    seq: int
    run: int
    mode: str
    phase: str
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[TensorMeta, ...]
    start_ns: int
    end_ns: int
    thread: int
    device: str = "cpu"
    flops: int = 0
    forward: str | None = None
    grad_of: tuple[str, ...] = ()
    iteration: int | None = None
    stack: tuple[Frame, ...] | None = None
    summaries: tuple[Summary, ...] | None = None
    input_summaries: tuple[Summary | None, ...] | None = None
    values: tuple[Any, ...] | None = field(default=None, compare=False)
    # a backward op whose NaN/inf check failed (`checks`): its forward op's inputs, summarized
    # as they are when the gradient went bad (the forward op itself was finite: not summarized)
    forward_summaries: tuple[Summary | None, ...] | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def frame(self) -> Frame | None:
        """The user's innermost source frame, when stacks were recorded."""
        return self.stack[0] if self.stack else None

    @property
    def nonfinite(self) -> int:
        return sum(s.nonfinite for s in self.summaries if s is not None) if self.summaries else 0


# Run markers are made twice per eager step: read-only by convention, like OpEvent (a frozen
# dataclass's __init__ costs 0.8 us against 0.14), hashable all the same
@dataclass(slots=True, unsafe_hash=True)
class RunStart:
    """A run begins: a `Session.run`, a debugged call, a profiler step, a `tt.function` call.
    `kind` says which; `fetches`/`feeds` are tensor names (empty in eager mode)."""

    run: int
    mode: str
    kind: str
    name: str
    fetches: tuple[str, ...]
    feeds: tuple[str, ...]
    graph: int | None
    t_ns: int
    thread: int
    wall_ns: int = 0


@dataclass(slots=True, unsafe_hash=True)
class RunEnd:
    """A run ends. `loss` is the value of the scalar that `.backward()` was called on in
    this run (eager steps), when there was one."""

    run: int
    t_ns: int
    thread: int
    error: str | None = None
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceTime:
    """GPU time of event `seq`, resolved later from CUDA events (no sync per op)."""

    seq: int
    device_ns: int


@dataclass(frozen=True, slots=True)
class NodeDef:
    """A graph node as the debugger shows it (`ni`, `li`, `lo`)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: tuple[tuple[str, str], ...]
    stack: tuple[Frame, ...]
    shapes: tuple[tuple[int | None, ...] | None, ...] = ()
    dtypes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GraphDef:
    """The structure of a session graph (or a `tt.function` trace), emitted once per
    graph version before the first run that uses it."""

    graph: int
    version: int
    nodes: tuple[NodeDef, ...]


@dataclass(frozen=True, slots=True)
class UserRange:
    """A user range (`profiler.record_function`, a profiler step)."""

    name: str
    run: int
    start_ns: int
    end_ns: int
    thread: int


Event = OpEvent | RunStart | RunEnd | DeviceTime | GraphDef | UserRange


# --------------------------------------------------------------------------- listeners


@dataclass(eq=False)
class Listener:
    callback: Callable[[Event], None]
    values: bool = False
    stacks: bool = False
    summaries: bool = False
    flops: bool = False
    raw: bool = False  # the callback takes compact op records too; `materialize` makes them events
    # the callback gets each op's output (an array, or a tuple of them) as a second argument,
    # at the op: for weak references (a memory tracker), never to keep
    outputs: bool = False
    checks: bool = False  # exact NaN/inf check of every output; summaries only where one fails
    # the ops' names, inputs and module scopes (see `subscribe`); False: timings of the
    # program as it runs unobserved
    names: bool = True
    # with `checks`: only the ops that fail the check (see `subscribe`)
    only_nonfinite: bool = False
    # acts on a failing op at the op itself (raises there): no deferred GPU check (see `subscribe`)
    at_op: bool = False

    def close(self) -> None:
        _remove(self)

    def every_op(self, callback: Callable[[Event], None] | None = None) -> None:
        """An `only_nonfinite` listener takes every op from now on (to `callback`, if given), as
        `checks` alone does. Switched under the listeners' lock: no op reaches it twice, none
        is missed, and the step in progress goes on (closing and subscribing anew would end it)."""
        with STATE.lock:
            if callback is not None:
                self.callback = callback
            self.only_nonfinite = False
            STATE.refresh()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _State:
    """What the dispatch point reads. `listeners` is replaced, never mutated, so the
    hot path can iterate it without a lock."""

    __slots__ = (
        "listeners",
        "values",
        "stacks",
        "summaries",
        "flops",
        "raw",
        "outputs",
        "checks",
        "cheap_check",
        "named",
        "lean",
        "lean_checked",
        "lean_summarized",
        "quiet",
        "plain",
        "deferred",
        "lock",
    )

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self.values = self.stacks = self.summaries = self.flops = self.outputs = False
        self.checks = self.cheap_check = self.named = False
        self.raw: tuple[Listener, ...] | None = None
        self.lean: tuple[Listener, ...] | None = None
        self.lean_checked: tuple[Listener, ...] | None = None
        self.lean_summarized: tuple[Listener, ...] | None = None
        self.quiet: tuple[Listener, ...] | None = None
        self.plain: tuple[Listener, ...] | None = None
        self.deferred: tuple[Listener, ...] | None = None
        self.lock = threading.Lock()

    def refresh(self) -> None:
        ls = self.listeners
        # what any listener asks for, and what all of them do, in one pass (a debugger
        # subscribes once per run: this runs twice a step)
        values = stacks = summaries = flops = outputs = checks = names = at_op = False
        all_raw = all_only_nonfinite = bool(ls)
        for x in ls:
            values |= x.values
            stacks |= x.stacks
            summaries |= x.summaries
            flops |= x.flops
            outputs |= x.outputs
            checks |= x.checks
            names |= x.names
            at_op |= x.at_op
            all_raw &= x.raw
            all_only_nonfinite &= x.only_nonfinite
        self.values, self.stacks, self.summaries, self.flops, self.outputs = values, stacks, summaries, flops, outputs
        # `checks`: an op that fails the NaN/inf check needs a full event and the user's stack;
        # `cheap_check`: the one-reduction check runs (full summaries of every output answer it too)
        self.checks = checks
        self.cheap_check = checks and not summaries
        # `named`: eager call sites take their observed path (op and tensor names, module
        # scopes, named autograd and optimizer sites). Off only when every listener wants
        # timings alone: the program then runs its unobserved path and the dispatch point
        # times what runs
        self.named = bool(ls) and (names or stacks or checks or values or summaries or flops)
        # ops become raw records only when every listener takes them and nobody wants the
        # arrays themselves or a cost estimate (summaries ride in the record). `raw` is the
        # very tuple it was decided for, so the hot path's `STATE.raw is listeners` can never
        # hand a record to a listener added (or removed) meanwhile by another thread
        raw = all_raw and not (values or flops)
        self.raw = ls if raw else None
        # `lean`: a record per op (and its output to an `outputs` listener), no check to run
        self.lean = ls if raw and not self.cheap_check and not self.summaries else None
        # `lean_checked`: the same once the output passed the exact check (the C accelerator's
        # fast case of the plugin and checked traces; a failing op becomes a full event)
        self.lean_checked = ls if raw and self.cheap_check else None
        # `lean_summarized`: a record carrying its outputs' summaries when all are finite
        # (a summary recording; an op with a NaN or an inf becomes a full event)
        self.lean_summarized = ls if raw and self.summaries else None
        # `plain`: not every listener takes records, and every one takes a plain OpEvent as it
        # happens (no summaries, values, cost estimates or check): the C accelerator makes it
        self.plain = ls if ls and not (raw or self.values or self.flops or self.summaries or self.cheap_check) else None
        # `quiet`: nobody wants an op whose outputs pass the check (`only_nonfinite` listeners
        # alone): such an op costs its check and nothing else (a failing one: the full event)
        self.quiet = ls if self.cheap_check and all_only_nonfinite else None
        # `deferred`: a GPU op's check and summaries are computed on the device and read a few
        # ops later (no synchronize per op), while every listener takes records to read later,
        # none wants outputs at the op, and none acts at the op itself (`at_op`)
        checked = self.cheap_check or self.summaries
        self.deferred = ls if raw and checked and not outputs and not at_op else None
        for hook in REFRESH_HOOKS:  # (the C accelerator drops what it derived from the old listeners)
            hook()


REFRESH_HOOKS: list[Callable[[], None]] = []  # called whenever STATE's listeners change
STATE = _State()


class _RunLocal(threading.local):
    """The current run, per thread: a thread's ops belong to the run its own thread began
    (a `Session.run` in one thread never claims another thread's eager ops). The hot path
    reads `RUN.run`; the class attributes are each new thread's defaults (0: outside every run).
    `auto` is the eager step this thread began implicitly (see `auto_run`), `loss` the
    scalar `.backward()` was last called on in the current run (an array: no device sync)."""

    run = 0
    auto = 0
    loss: Any = None
    by_backward = 0  # the eager step a backward pass ended last (see backward_done), or 0
    optimized = False  # an optimizer's step ended one of this thread's steps (see update_done)


RUN = _RunLocal()


def _forget_backward_steps() -> None:
    RUN.by_backward, RUN.optimized = 0, False  # (listeners changed: a loop's steps are found anew)


REFRESH_HOOKS.append(_forget_backward_steps)
_SEQ = itertools.count(1)
_run_ids = itertools.count(1)
_outer: dict[int, int] = {}  # run -> the run that was current when it began
_perf_ns, _time_ns, _get_ident = time.perf_counter_ns, time.time_ns, threading.get_ident
_CLOCK_BASE = (time.perf_counter_ns(), time.time_ns())


def next_seq() -> int:
    return next(_SEQ)


def clock_base() -> tuple[int, int]:
    """(perf_counter_ns, time_ns) taken at the same moment: converts event times to wall time."""
    return _CLOCK_BASE


def subscribe(
    callback: Callable[[Event], None],
    *,
    values: bool = False,
    stacks: bool = False,
    summaries: bool = False,
    flops: bool = False,
    raw: bool = False,
    outputs: bool = False,
    checks: bool = False,
    names: bool = True,
    only_nonfinite: bool = False,
    at_op: bool = False,
) -> Listener:
    """Adds a listener until `.close()`; it receives every event, from every thread.
    Each flag asks the engine for more per event (and costs that): `values` the output
    arrays, `stacks` the user's source frames, `summaries` NaN/inf counts and statistics,
    `flops` the op's cost estimate (`OpEvent.flops` is 0 when no listener asked).

    `raw=True` is for consumers that read events later (timings, a profile, a trace):
    the callback may then get, in place of an OpEvent, a compact record (a tuple) that
    costs a fraction of an event to make; `materialize` turns what the callback got into
    exactly the events a plain listener gets. Consumers that act on each event as it
    happens (a breakpoint) listen without `raw`. Records are made while every listener
    takes them and none asks for `values` or `flops`; with `summaries`, a record carries its
    outputs' summaries (a NaN or an infinity makes the op a full event, as `checks` does).

    `outputs=True`: op events and records reach `callback(item, output)` with the op's
    output array(s), at the op (a memory tracker takes weak references to them); run
    markers and other events still come alone. Cheaper than `values`, which keeps a
    reference in every event and so makes every op a full event.

    `checks=True` is the cheap, exact NaN/inf check (the pytest plugin, `tt.debugging`):
    every floating or complex output is checked with one reduction (see `check`). An op
    whose outputs are all finite costs no more than without it (a raw record where `raw`
    allows one, `summaries` None); an op with a NaN or an infinity in an output always
    reaches the callback as an OpEvent, even when `raw`, with the full `summaries` of its
    outputs, the `input_summaries` of its inputs and, with `stacks` or not, the user's
    `stack` (for a backward op: its forward op's). `summaries=True` means full summaries
    of every output, so it answers the check too.

    `names=False` is for consumers that want what each op costs and nothing about how the
    ops connect (a timings-only profile). While every listener says so (and none asks for
    stacks, checks, values, summaries or flops), the program runs exactly its unobserved
    path: no op or tensor names are made, modules open no name scopes, autograd and the
    optimizer keep their plain loops, and only the dispatch point's timing is added. Such
    an eager event is named after its op type (`name == op`) with no `inputs`; graph-mode
    events keep their node names either way.

    `only_nonfinite=True` (with `checks`) is for consumers that act only on what fails the
    check (the pytest plugin until its first finding): while every listener says so, an op
    whose outputs are all finite reaches nobody and costs its check alone (no record, no
    event, no timing; steps still begin and end). An op that fails it comes as with `checks`.
    Beside listeners that want every op, such a listener may get the others too.

    On a GPU, checks and summaries do not synchronize per op while every listener is `raw`:
    they are computed on the device and the records come a few ops later, in op order, and
    all before their run ends (or before the optimizer's first update, or a listener comes
    or goes). `at_op=True` is for a listener that acts at the failing op itself (raises
    there, as `tt.debugging` does): each GPU op is then checked before the next one runs."""
    if only_nonfinite and not checks:
        raise ValueError("subscribe: only_nonfinite=True needs checks=True (which ops fail is what it asks for)")
    lis = Listener(callback, values, stacks, summaries, flops, raw, outputs, checks, names, only_nonfinite, at_op)
    if _gpu._pending:
        _gpu.flush()  # (queued GPU ops go to the listeners they ran under)
    with STATE.lock:
        STATE.listeners = (*STATE.listeners, lis)
        STATE.refresh()
    return lis


def _remove(lis: Listener) -> None:
    if STATE.listeners == (lis,) and RUN.auto and RUN.run == RUN.auto:
        # the last listener sees this thread's open step end, not a stale run; and, as after
        # any step, the next step's op names start afresh
        step()
    if _gpu._pending:
        _gpu.flush()  # (queued GPU ops go to the listeners they ran under)
    with STATE.lock:
        STATE.listeners = tuple(x for x in STATE.listeners if x is not lis)
        STATE.refresh()


def listen(
    callback: Callable[[Event], None],
    *,
    values: bool = False,
    stacks: bool = False,
    summaries: bool = False,
    flops: bool = False,
    raw: bool = False,
    outputs: bool = False,
    checks: bool = False,
    names: bool = True,
    only_nonfinite: bool = False,
) -> AbstractContextManager[Listener]:
    """`with tt.events.listen(print, summaries=True): ...` — events reach `callback`
    while the block runs (the flags are `subscribe`'s); the listener is subscribed as the
    block begins and closed as it ends."""
    return _Listening(callback, values, stacks, summaries, flops, raw, outputs, checks, names, only_nonfinite)


class _Listening:
    """`listen`'s context manager (a class: a debugger listens once per run, and a generator's
    context manager costs a microsecond more)."""

    __slots__ = ("args", "lis")

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __enter__(self) -> Listener:
        cb, values, stacks, summaries, flops, raw, outputs, checks, names, only_nonfinite = self.args
        self.lis = subscribe(
            cb,
            values=values,
            stacks=stacks,
            summaries=summaries,
            flops=flops,
            raw=raw,
            outputs=outputs,
            checks=checks,
            names=names,
            only_nonfinite=only_nonfinite,
        )
        return self.lis

    def __exit__(self, *exc: object) -> None:
        self.lis.close()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside: for code that makes many objects and no cycles
    (events from records, a report, an export), where each collection part-way would
    only traverse everything alive (a long profile's records) again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def materialize(items: Iterable[Any]) -> list[Event]:
    """What a `raw=True` listener received, as events: records become the OpEvents a
    plain listener would have got (the same fields), events pass through unchanged."""
    with gc_paused():
        return [x[0].event(x) if x.__class__ is tuple else x for x in items]


class OpTiming(NamedTuple):
    """When one op ran (see `timings`): what a timings-only consumer reads."""

    op: str
    phase: str
    name: str
    start_ns: int
    end_ns: int
    thread: int
    run: int
    seq: int


def timings(items: Iterable[Any]) -> list[OpTiming]:
    """The op timings in what a `raw=True` listener received (records and OpEvents alike),
    in order: the fields of `materialize`'s OpEvents that say when each op ran, at a
    fraction of the cost of making the events (about 0.6 us a record against 1.1)."""
    new = tuple.__new__
    got: list[OpTiming] = []
    per_site: dict[int, tuple] = {}  # id(site) -> (site, op, phase, name): a site's are fixed
    for x in items:
        if x.__class__ is tuple:
            site = x[0]
            k = per_site.get(id(site))
            if k is None or k[0] is not site:
                k = per_site[id(site)] = (site, site.op_label, site.phase, site.name or site.op_label)
            got.append(new(OpTiming, (k[1], k[2], k[3], x[3], x[4], x[5], x[2], x[1])))
        elif x.__class__ is OpEvent:
            got.append(new(OpTiming, (x.op, x.phase, x.name, x.start_ns, x.end_ns, x.thread, x.run, x.seq)))
    return got


def record_columns(records: list[tuple], stacks: bool = True) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Raw records as columns, for consumers that aggregate them (a profile, a trace writer):
    an int64 (4, n) matrix of seq, run, start_ns and end_ns; each record's key number, the
    records of one call site, thread and output signature (and stack, with `stacks`) sharing
    one (the Site and the stack by identity, the rest by value); and each key's first record
    (by position), in order of first appearance. In C when built, a tenth of the cost."""
    n = len(records)
    if _record_columns is not None:
        cols, index, firsts = _record_columns(records, stacks)
        return np.frombuffer(cols, np.int64).reshape(4, n), np.frombuffer(index, np.int64), firsts
    keys: dict[tuple, int] = {}
    firsts = []
    index = np.empty(n, np.int64)
    for i, r in enumerate(records):  # (the records keep their Sites and stacks alive meanwhile)
        k = (id(r[0]), r[5], r[7], r[8], r[9], id(r[6]) if stacks else None)
        j = keys.get(k)
        if j is None:
            j = keys[k] = len(firsts)
            firsts.append(i)
        index[i] = j
    cols = np.array([[r[1], r[2], r[3], r[4]] for r in records], np.int64).reshape(n, 4).T
    return np.ascontiguousarray(cols), index, firsts


def is_raw(item: Any) -> bool:
    """True for a compact op record (what a `raw=True` listener may get instead of an OpEvent)."""
    return item.__class__ is tuple


def is_listening() -> bool:
    return bool(STATE.listeners)


def emit(ev: Event) -> None:
    """The one place events leave the engine. A listener may raise (the numerics
    check does): the exception reaches the user's code at the op that caused it."""
    for lis in STATE.listeners:
        lis.callback(ev)


# --------------------------------------------------------------------------- runs


def current_run() -> int:
    """The run the calling thread is in (0 outside every run)."""
    return RUN.run


def begin_run(
    kind: str,
    *,
    mode: str = "eager",
    name: str = "",
    fetches: tuple[str, ...] = (),
    feeds: tuple[str, ...] = (),
    graph: int | None = None,
) -> int:
    """Starts run N (a session run, a debugged step ...); ops until its `end_run` carry N
    (runs nest: a session run inside a debugged step; ops outside every run carry 0)."""
    if not RUN.run:  # an outermost run: op names start afresh, so they are stable across runs;
        _naming.reset()  # a nested one (a Session.run inside an eager step) keeps the step's counters
    return _start(kind, mode, name, fetches, feeds, graph, 0)


# The run markers' steps (`_start`, `_run_end`, `auto_run`, `step`) have C versions in the
# accelerator, swapped in by `_dispatch`: each does exactly what its Python version does, in
# the same order.
def _start(
    kind: str, mode: str, name: str, fetches: tuple[str, ...], feeds: tuple[str, ...], graph: int | None, t_ns: int
) -> int:
    run = next(_run_ids)
    _outer[run] = RUN.run
    RUN.run = run
    if STATE.listeners:
        t_ns = t_ns or _perf_ns()
        start = RunStart(run, mode, kind, name, tuple(fetches), tuple(feeds), graph, t_ns, _get_ident(), _time_ns())
        emit(start)
    return run


def end_run(run: int, error: BaseException | str | None = None) -> None:
    _run_end(run, None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}"))


def _run_end(run: int, error: str | None) -> None:
    if _gpu._pending:
        _gpu.flush()  # device times of this run resolve before its end is announced
    outer = _outer.pop(run, 0)
    if RUN.run == run:
        RUN.run = outer
    loss, RUN.loss = RUN.loss, None
    if RUN.auto == run:
        RUN.auto = 0
    if STATE.listeners:
        emit(RunEnd(run, _perf_ns(), _get_ident(), error, _scalar(loss)))


def auto_run(t_ns: int = 0) -> int:
    """The dispatch point's answer when an eager op runs outside every run: an eager step
    begins implicitly (kind "step"), and lasts until `step()` ends it, so a training
    loop's forward, backward and update ops of one iteration form one run."""
    # names were reset when the previous step ended: this op already has its name
    run = RUN.auto = _start("step", "eager", "step", (), (), None, t_ns)
    return run


def step() -> None:
    """Ends the calling thread's eager step (its implicit run), if one is open and current:
    `optimizer.step()`, `profiler.step()`, `tt.step()` and a debugger-wrapped call call it.
    The next eager op begins the next step. Explicit runs (a `Session.run`, a profiler
    step, a wrapped call) are never ended here: their owners end them."""
    run = RUN.auto
    if run and RUN.run == run:
        _run_end(run, None)
    _naming.reset()  # the next step's names start afresh (they are made before its run begins)
    for hook in STEP_HOOKS:
        hook()


# called at each `step()`, after it: a step's end, even inside an explicit run (a profiler's
# window of unmarked steps folds its buffer there: see tracetensor.profiler)
STEP_HOOKS: list[Callable[[], None]] = []


def note_loss(value: Any) -> bool:
    """`.backward()` on a scalar while someone listens: the run's loss, read at its end.
    Returns whether the step ends once this backward pass is done (see `backward_done`)."""
    r = RUN
    again = r.loss is not None  # (a backward pass in this step already)
    r.loss = value
    # (the step right after one a backward pass ended: no other run began in between)
    if not (r.auto and r.run == r.auto):
        return False
    return (again and not r.optimized) or (r.by_backward != 0 and r.auto == r.by_backward + 1)


def backward_done() -> None:
    """A hand-written loop's step ends with its backward pass. Where no optimizer's step ends
    the steps of an eager loop and no module call marks them (`w -= lr * w.grad` by hand, the
    loop's ops outside any nn.Module), they were one run, in which each op got a name of its
    own (`matmul_4999`): a call site per op, recorded at 9.4x the loop's CPU and 178 bytes an
    op event (now 1.6x and 8: benchmarks/bench_overhead.py's `real_loops`). Once a step holds
    two backward passes it ends after the second, and from then on after each: a step per
    iteration (its update leading the next one), whose names repeat.
    Where an optimizer's step has ended a step (since listeners last changed), it ends them
    as before and two backward passes are gradient accumulation, not a loop without one;
    another run beginning in between ends the pattern too."""
    run = RUN.auto
    step()
    RUN.by_backward = run


def update_done() -> None:
    """An optimizer's step ends the eager step (its run); the next op begins the next."""
    RUN.by_backward, RUN.optimized = 0, True
    step()


def _scalar(v: Any) -> float | None:
    if v is None:
        return None
    try:
        if v.__class__ is np.ndarray and v.size == 1:
            return float(v.reshape(()))  # (the loss of a step: a 0-d array, float() of it is cheap)
        return float(v.reshape(()).item() if hasattr(v, "reshape") else v)
    except (TypeError, ValueError):
        return None


@contextmanager
def record_range(name: str) -> Iterator[None]:
    """Marks a user range (the profiler's `record_function` uses this)."""
    if not STATE.listeners:
        yield
        return
    t0 = time.perf_counter_ns()
    try:
        yield
    finally:
        emit(UserRange(name, RUN.run, t0, time.perf_counter_ns(), threading.get_ident()))


# --------------------------------------------------------------------------- summaries

_min_reduce, _max_reduce, _add_reduce = np.minimum.reduce, np.maximum.reduce, np.add.reduce
_count_nonzero = np.count_nonzero
_NAN_SUMMARY_EMPTY = Summary(0, 0, 0, 0, 0, 0, 0, float("nan"), float("nan"), float("nan"), float("nan"))


def summarize(a: Any) -> Summary:
    """Numeric summary computed on the array's own device (numpy or cupy): only a
    handful of scalars come back to the host, never the tensor."""
    xp = np if isinstance(a, np.ndarray) or np.isscalar(a) else _xp_of(a)
    a = xp.asarray(a)
    n = int(a.size)
    if n == 0:
        return _NAN_SUMMARY_EMPTY
    kind = a.dtype.kind
    if kind == "c":
        a = xp.abs(a)  # magnitudes; NaN/inf carry over
        kind = "f"
    if kind == "b":
        a = a.astype(np.int8)
        kind = "i"
    if kind != "f":
        v = xp.stack([(a < 0).sum(), (a == 0).sum(), a.min(), a.max()]).astype(np.float64)
        af = a.astype(np.float64)
        neg, zero, mn, mx = (float(x) for x in _host(v))
        mean, std = (float(x) for x in _host(xp.stack([af.mean(), af.std()])))
        return Summary(n, 0, 0, 0, int(neg), int(zero), n - int(neg) - int(zero), mn, mx, mean, std)
    if xp is np:
        fast = _fast_summary(a) if _fast_summary is not None else None
        if fast is not None:  # the C accelerator's one pass (a contiguous float32/64 array, all finite)
            return fast
        # fast path on the CPU: min/max propagate NaN, so finite extremes mean all finite;
        # then one sum and one dot give mean and std (float64, so no cancellation worth
        # worrying about in a summary). ~4x fewer numpy calls than mean()/std().
        r = a.reshape(-1)
        mn, mx = float(_min_reduce(r)), float(_max_reduce(r))
        if math.isfinite(mn) and math.isfinite(mx):
            nonzero = int(_count_nonzero(r))  # counting the float array itself: no comparison pass
            neg = int(_count_nonzero(r < 0))
            r64 = r if r.dtype == np.float64 else r.astype(np.float64)
            mean = float(_add_reduce(r64)) / n
            var = max(float(np.dot(r64, r64)) / n - mean * mean, 0.0)
            return Summary(n, 0, 0, 0, neg, n - nonzero, nonzero - neg, mn, mx, mean, math.sqrt(var))
    else:
        from . import _gpu

        st = _gpu.summary_stats(a) if kind == "f" else None
        if st is not None:
            return _summary_from_stats(n, st)
        fast = _device_fast_summary(a, n, xp)
        if fast is not None:
            return fast
    finite = xp.isfinite(a)
    nan = xp.isnan(a).sum()
    posinf = (a == np.inf).sum()
    neginf = (a == -np.inf).sum()
    neg = ((a < 0) & finite).sum()
    zero = (a == 0).sum()
    nf = finite.sum()
    af = xp.where(finite, a, 0).astype(np.float64)
    cnt = xp.maximum(nf, 1)
    mean = af.sum() / cnt
    var = (xp.where(finite, af - mean, 0) ** 2).sum() / cnt
    big = np.finfo(np.float64).max
    fmn = xp.where(finite, a, big).min().astype(np.float64)
    fmx = xp.where(finite, a, -big).max().astype(np.float64)
    vals = _host(
        xp.stack([x.astype(np.float64) for x in (nan, neginf, posinf, neg, zero, nf, fmn, fmx, mean, xp.sqrt(var))])
    )
    nan_, neginf_, posinf_, neg_, zero_, nf_ = (int(v) for v in vals[:6])
    if nf_ == 0:
        mn_ = mx_ = mean_ = std_ = float("nan")
    else:
        mn_, mx_, mean_, std_ = (float(v) for v in vals[6:])
    return Summary(n, nan_, neginf_, posinf_, neg_, zero_, nf_ - neg_ - zero_, mn_, mx_, mean_, std_)


_fast_finite: Callable[[Any], bool | None] | None = None  # the C accelerator's (set by _dispatch)
# the C accelerator's summary pass (set by _dispatch): the fast path's Summary, or None
_fast_summary: Callable[[Any], Summary | None] | None = None


class _Queue:
    """`appender`'s callback without the C accelerator (the same behaviour)."""

    def __init__(self, limit: int, on_full: Callable[[], object]) -> None:
        self.queue: list = []
        self.limit, self.on_full = limit, on_full

    def __call__(self, item: Any) -> object:
        q = self.queue  # (read afresh each call: `take` swaps it)
        q.append(item)
        if len(q) > self.limit:
            return self.on_full()
        return None

    def take(self) -> list:
        q, self.queue = self.queue, []  # (an append meanwhile lands in one of the two: none is lost)
        return q

    def __len__(self) -> int:
        return len(self.queue)


def appender(limit: int, on_full: Callable[[], object]) -> Any:
    """The callback of a listener that only queues what it gets (a recording's): appends each
    item to its queue, then calls `on_full()` while the queue holds more than `limit` items
    (the producer waits for the consumer there). `take()` hands over what is queued (a
    list, in order) and starts afresh; `len()` counts what is queued. The C accelerator's
    costs a tenth of a Python method's call per item."""
    return _Appender(limit, on_full) if _Appender is not None else _Queue(limit, on_full)


def column_queue(limit: int, on_full: Callable[[], object], stacks: bool = True) -> Any:
    """A recording's queue (`appender`'s calls, `take()` and `len()`) that keeps raw records
    as columns: `take()` gives (rows, summary rows or None, new keys, reset, others, run
    marks, their keys), where each record is a row of six int64 (seq, run, start_ns, end_ns,
    key, number of summary rows or -1), its summaries' packed rows (`summary_rows`) are in one
    bytes object, each key (site, thread, shape, dtype, nbytes, stack) is numbered once (`new
    keys`: those not handed over before, in number order; `reset`: numbering started over),
    each RunStart and RunEnd is a row of six int64 too, what they share numbered per batch
    (see trace/store.py's `_run_marks`), and everything else is in `others`. The dispatch
    point hands it records without making them (see _speedups.c).
    Without the C accelerator, an `appender` (trace/store.py's BatchPacker takes either)."""
    return _ColumnQueue(limit, on_full, stacks) if _ColumnQueue is not None else _Queue(limit, on_full)


def router(on_record: Callable[[tuple], object], on_other: Callable[[Any], object]) -> Callable[[Any], object]:
    """The callback of a raw listener that treats records and events apart: each raw record
    goes to `on_record` (a queue's append, say), everything else to `on_other`. The C
    accelerator's has no Python frame per record."""
    if _Router is not None:
        return _Router(on_record, on_other)

    def callback(item: Any) -> object:
        return on_record(item) if item.__class__ is tuple else on_other(item)

    return callback


_Appender: Any = None  # the C accelerator's (set by _dispatch)
_Router: Any = None
_record_columns: Any = None
_ColumnQueue: Any = None  # (the C accelerator's: see column_queue)

# The C accelerator's memory-tracking listener, `MemoryHook(on_event, append, deltas_buffer, refs)`
# (set by _dispatch; None without it): the profiler's `profile_memory` listener takes a CPU
# op's arrays there and hands everything else to its Python `on_event` (see profiler.core)
MemoryHook: Any = None
_NO_CHECK = frozenset("biuSUVOMm")  # dtype kinds that cannot hold NaN or inf
_CHECKS: dict[Any, tuple[Any, Callable[[Any], bool]] | None] = {}  # dtype -> (accumulator, isfinite) or None
_UNSEEN = object()


def _check_of(dt: Any) -> tuple[Any, Callable[[Any], bool]] | None:
    how = None
    if dt.kind not in _NO_CHECK:  # a float32 sum of float16 values cannot overflow; others sum in their own dtype
        how = (np.float32 if dt == np.float16 else None, math.isfinite if dt.kind == "f" else cmath.isfinite)
    _CHECKS[dt] = how
    return how


def finite(a: Any) -> bool:
    """The exact NaN/inf check: True when every value of `a` is finite (always for integer,
    bool and empty arrays). One reduction on the common path: a sum is finite exactly when
    every value is, unless the sum overflows; so a finite sum settles it, and a non-finite
    one is settled by an exact `isfinite` pass (a sum of huge finite values costs a second
    pass, and numpy's overflow warning; a NaN or an inf is never missed). The sum runs in the
    array's own dtype: accumulating float32 in float64 costs ~1.7x more per call. (With the
    C accelerator, a contiguous numpy array is checked by its exponent bits in one pass.)"""
    if _fast_finite is not None:
        r = _fast_finite(a)
        if r is not None:
            return r
    dt = a.dtype
    how = _CHECKS.get(dt, _UNSEEN)
    if how is _UNSEEN:
        how = _check_of(dt)
    if how is None:
        return True
    if a.__class__ is np.ndarray or isinstance(a, np.generic):
        try:
            if how[1](_add_reduce(a, None, how[0])):
                return True
        except (FloatingPointError, RuntimeWarning):  # np.seterr(all="raise") or -W error: not settled
            pass
        with np.errstate(all="ignore"):
            return bool(np.isfinite(a).all())
    xp = _xp_of(a)  # cupy: one reduction on the device, one bool to the host
    return bool(xp.isfinite(a).all())


def check(a: Any) -> Summary | None:
    """None when every value of `a` is finite (see `finite`), else its full `summarize`:
    what a `checks=True` listener's event carries for each output."""
    return None if finite(a) else summarize(a)


def _summary_from_stats(n: int, st: tuple[float, ...]) -> Summary:
    """A Summary from the GPU kernel's (min, max, sum, sumsq, nan, -inf, +inf, neg, zero, pos)."""
    mn, mx, total, sq = st[:4]
    nan, ninf, pinf, neg, zero, pos = (int(v) for v in st[4:])
    nf = neg + zero + pos
    if nf == 0:
        return Summary(n, nan, ninf, pinf, 0, 0, 0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = total / nf
    return Summary(n, nan, ninf, pinf, neg, zero, pos, mn, mx, mean, math.sqrt(max(sq / nf - mean * mean, 0.0)))


def _device_fast_summary(a: Any, n: int, xp: Any) -> Summary | None:
    """The GPU's common case, all finite: six reductions and ONE device-to-host copy (each
    copy is a synchronize, the dominant cost per op); None sends NaN/inf to the full path."""
    r = a.reshape(-1)
    f64 = np.float64
    parts = [
        r.min().astype(f64),
        r.max().astype(f64),
        r.sum(dtype=f64),
        (r.astype(f64) ** 2).sum(),
        (r > 0).sum().astype(f64),
        (r < 0).sum().astype(f64),
    ]
    mn, mx, total, sq, pos, neg = (float(v) for v in _host(xp.stack(parts)))
    if not (math.isfinite(mn) and math.isfinite(mx)):  # min/max propagate NaN, and inf shows as an extreme
        return None
    mean = total / n
    var = max(sq / n - mean * mean, 0.0)
    pos_, neg_ = int(pos), int(neg)
    return Summary(n, 0, 0, 0, neg_, n - pos_ - neg_, pos_, mn, mx, mean, math.sqrt(var))


def _xp_of(a: Any) -> Any:
    import cupy  # only reached for cupy arrays

    return cupy


def _host(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else v.get()


def to_numpy(a: Any) -> np.ndarray:
    """A value from an event as a numpy array (copies from the GPU when needed)."""
    return np.asarray(a) if isinstance(a, np.ndarray) or np.isscalar(a) else a.get()


# (the Python run markers, under their own names: `_dispatch` swaps in the C accelerator's)
_start_py, _run_end_py, auto_run_py, step_py = _start, _run_end, auto_run, step
