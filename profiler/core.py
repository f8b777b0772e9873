"""The profiler: `profile` collects op events (and steps, user ranges, device times,
memory) from the event stream; `Report` turns them into torch.profiler-style tables.

Self and total, defined once so nothing is counted twice:
- an op (forward, backward or update) never contains another op: its self time is
  its total time, the host time between its start and end;
- a range (a `record_function` block, a profiler step, a graph execution: one
  `Session.run` or `tt.function` call) has a total time equal to its wall time; its
  self time is that total minus the total time of the ops and ranges directly inside
  it, i.e. the Python time spent in it outside any op.
So the self times of all rows add up to the wall time the profile covers (ops
outside any range plus the top-level ranges), and the self times of the op rows
alone add up to the time spent in ops. Percentages are of the sum of self times.
Device (GPU) time follows the same rule: ranges have no device time of their own.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import operator
import os
import struct
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace, Trace, format_bytes, format_ns, printable

__all__ = [
    "ProfilerAction",
    "ProfilerActivity",
    "schedule",
    "profile",
    "record_function",
    "step",
    "Report",
    "EventList",
    "Row",
    "SortKeyError",
]


class ProfilerActivity(enum.Enum):
    """Accepted for torch.profiler compatibility: CPU is always profiled, CUDA whenever
    an op runs on a GPU."""

    CPU = "cpu"
    CUDA = "cuda"


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


class SortKeyError(ValueError):
    """`table(sort_by=...)` got a key it does not know."""


def schedule(
    *, wait: int, warmup: int, active: int, repeat: int = 0, skip_first: int = 0
) -> Callable[[int], ProfilerAction]:
    """torch.profiler.schedule: after `skip_first` steps, cycles of `wait` idle steps,
    `warmup` steps profiled then discarded, `active` steps recorded (the last one saves:
    `on_trace_ready` is called); `repeat` cycles (0: forever)."""
    if wait < 0 or warmup < 0 or active <= 0 or repeat < 0 or skip_first < 0:
        raise ValueError(
            f"schedule expects wait, warmup, repeat, skip_first >= 0 and active > 0; got "
            f"wait={wait} warmup={warmup} active={active} repeat={repeat} "
            f"skip_first={skip_first}"
        )
    cycle = wait + warmup + active

    def action(step: int) -> ProfilerAction:
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if repeat and step // cycle >= repeat:
            return ProfilerAction.NONE
        pos = step % cycle
        if pos < wait:
            return ProfilerAction.NONE
        if pos < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD_AND_SAVE if pos == cycle - 1 else ProfilerAction.RECORD

    return action


def _always_record(step: int) -> ProfilerAction:
    return ProfilerAction.RECORD


_ACTIVE: list[profile] = []  # the innermost running profiler, for the module-level `step()`


def step() -> None:
    """Marks the end of a training step for the running profiler (`tracetensor profile`
    or a `with profile()` block); does nothing when none runs. Scripts call this so the
    same code runs profiled and unprofiled."""
    if _ACTIVE:
        _ACTIVE[-1].step()
    else:
        ev.step()  # no profiler: still the end of an eager step (a run) for a recorder


@contextmanager
def record_function(name: str) -> Iterator[None]:
    """A named user range: shows as a row (self = its Python time outside ops) and as a
    slice that the ops inside nest under in the Chrome trace."""
    _OPEN_RANGES[0] += 1  # a profile folds its events only where no range is open
    try:
        with ev.record_range(name):
            yield
    finally:
        _OPEN_RANGES[0] -= 1


_OPEN_RANGES = [0]
_FOLD_EVERY = 4096  # buffered records that make a step end fold them into the aggregates
# buffered records that make an eager step's end fold them, in a window whose steps are not
# marked (see profile._step_ended): more than a marked step's, since a program that marks
# its steps, once an epoch say, has not yet when its first step's eager steps end
_FOLD_UNMARKED = 65_536


class profile:
    """`with profile() as prof: ... prof.step()`, then `prof.key_averages().table()`.

    By default only timings are collected, of the program on its unprofiled path: no op
    names, no module scopes, an event named after its op (see `tracetensor.events.subscribe`'s
    `names`). Output shapes are in every event. `record_shapes` adds the input shapes
    (`key_averages(group_by_input_shape=True)`) and `with_modules` the module path of each
    op (`MLP/fc1/linear`), the names every other listener sees (`with_stack` and
    `with_flops` bring them too).
    `activities` is accepted for torch compatibility: the CPU is always profiled, and the GPU whenever an
    op runs there. `with_stack` records the user's source frames (a Source Location
    column, folded stacks); `profile_memory` tracks the bytes each op's outputs allocate
    and live bytes over time (frees seen through weak references to the arrays);
    `with_flops` adds FLOPs and GFLOP/s columns. Results are those of the last recorded
    window (`schedule`), or of the whole block without one.

    Memory stays bounded at any length: at step ends the profiler folds its events into
    per-row aggregates (the tables) and keeps only the last `max_trace_events` op events
    (whole steps; None: all) for `events()` and the exports, which say what they left
    out.
    """

    def __init__(
        self,
        *,
        activities: Iterable[ProfilerActivity] | None = None,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
        with_flops: bool = False,
        with_modules: bool = False,
        schedule: Callable[[int], ProfilerAction] | None = None,
        on_trace_ready: Callable[[profile], Any] | None = None,
        max_trace_events: int | None = 20_000,
    ) -> None:
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self.with_stack = with_stack
        self.with_flops = with_flops
        self.with_modules = with_modules
        self.schedule = schedule or _always_record
        self.on_trace_ready = on_trace_ready
        self.step_num = 0
        self._action = ProfilerAction.NONE
        self._listener: ev.Listener | None = None
        self._buf: list[ev.Event] = []
        self._mem = _MemoryTracker() if profile_memory else None
        self._run: int | None = None  # the run id of the current step while recording
        self._steps_marked = False
        self._report: Report | None = None
        self._pending: profile | None = None  # a finished window not analysed yet (see _save)
        self.max_trace_events = max_trace_events
        self._reset_folded()

    def _reset_folded(self) -> None:
        self._agg: _Aggregate | None = None
        # per fold kept for export: (records, op events, steps, memory series, pool samples)
        self._kept: list[tuple[list[Any], int, int, dict, list]] = []
        self._kept_ops = self._dropped_ops = self._dropped_steps = 0

    # -- lifecycle
    def __enter__(self) -> profile:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.stop(exc)

    def start(self) -> None:
        _ACTIVE.append(self)
        self._transition(self.schedule(self.step_num))

    def stop(self, error: BaseException | None = None) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        recording = self._action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
        self._end_step(error)
        self._unsubscribe()
        if recording:
            self._save()
        self._action = ProfilerAction.NONE

    def step(self) -> None:
        """Ends step `step_num` and starts the next one (call it at the end of each step)."""
        if not self._steps_marked:
            self._steps_marked = True
            self._unhook()  # (marked steps fold here: nothing to do where an eager step ends)
        ev.step()  # an eager step begun outside the profiler's window ends here too
        prev = self._action
        self._end_step()
        if len(self._buf) >= _FOLD_EVERY and not _OPEN_RANGES[0] and prev is not ProfilerAction.RECORD_AND_SAVE:
            self._fold()
        self.step_num += 1
        if prev is ProfilerAction.RECORD and self.schedule is _always_record and self._listener is not None:
            # (no schedule: the next step records as this one did; its run is all there is to begin:
            # `begin_run`, inline, whose reset of the op names `ev.step()` above made already)
            self._run = ev._start("step", "eager", f"ProfilerStep#{self.step_num}", (), (), None, 0)
            return
        if prev is ProfilerAction.RECORD_AND_SAVE:
            self._unsubscribe()
            self._save()
            self._action = ProfilerAction.NONE
        self._transition(self.schedule(self.step_num), stepped=True)

    def _transition(self, action: ProfilerAction, stepped: bool = False) -> None:
        if action is ProfilerAction.NONE:
            self._unsubscribe()
        else:
            if self._listener is None:
                self._subscribe()
            if action is not ProfilerAction.WARMUP and self._action is ProfilerAction.WARMUP:
                self._buf.clear()  # warm-up steps run profiled, then are thrown away
                self._reset_folded()
                if self._mem is not None:
                    self._mem.reset()
            if not stepped:  # (step() just did)
                ev.step()  # a profiler step is an explicit run: an open implicit one ends first
            self._run = ev.begin_run("step", name=f"ProfilerStep#{self.step_num}")
        self._action = action

    def _end_step(self, error: BaseException | None = None) -> None:
        if self._run is not None:
            ev.end_run(self._run, error)
            self._run = None

    def _subscribe(self) -> None:
        self._buf = []
        self._reset_folded()
        if self._mem is not None:
            self._mem.reset()
            cb = self._mem.wrap(self._buf.append)
        else:
            cb = self._buf.append  # the cheapest listener there is: no Python frame per event
        # raw: ops arrive as compact records, made into events when the report is built
        self._listener = ev.subscribe(
            cb,
            stacks=self.with_stack,
            outputs=self.profile_memory,
            flops=self.with_flops,
            raw=True,
            names=self.record_shapes or self.with_modules,  # input shapes are found by input names
        )
        if not self._steps_marked:
            ev.STEP_HOOKS.append(self._step_ended)

    def _unsubscribe(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._unhook()

    def _unhook(self) -> None:
        if self._step_ended in ev.STEP_HOOKS:
            ev.STEP_HOOKS.remove(self._step_ended)

    def _step_ended(self) -> None:
        """An eager step ended (`optimizer.step()`, an inference batch: events.STEP_HOOKS) in a
        window whose steps the program does not mark with `prof.step()`: past _FOLD_UNMARKED
        records the buffer folds there, as at a marked step, and from then on past
        _FOLD_EVERY (such a program marks none). So a script that never calls it (`tracetensor
        profile` of an unmodified script) runs in bounded memory too: before, the whole run
        stayed buffered, about 200 bytes an op event, and all of it went to the exports. (A
        program that marks its first step only after that many records loses that step's span
        in the steps row.)"""
        if (
            not self._steps_marked
            and len(self._buf) >= (_FOLD_UNMARKED if self._agg is None else _FOLD_EVERY)
            and not _OPEN_RANGES[0]
            and self._action is ProfilerAction.RECORD
        ):
            self._fold()

    def _analyse(self, events: list[Any], mem_taken: tuple[list, list] | None = None) -> Report:
        return Report.from_events(
            ev.materialize(events),
            mem_taken=mem_taken,
            steps_marked=self._steps_marked,
            memory=self._mem,
            with_flops=self.with_flops,
            with_stack=self.with_stack,
            profile_memory=self.profile_memory,
        )

    def _fold(self) -> None:
        """Adds the buffered records (whole steps, no range open) into the aggregates and
        keeps them for export within the budget, dropping the oldest whole folds."""
        n = len(self._buf)
        recs = self._buf[:n]
        del self._buf[:n]  # in place (the listener appends to this list), and past what another thread added since
        mem = self._mem
        if self._agg is None:
            self._agg = _Aggregate()
        fast = _fold_raw(recs, self._steps_marked, self._agg, self.profile_memory)
        if fast is not None:
            n_ops, steps = fast
            series: dict = {}
            if mem is not None:  # the live-bytes series and peak, from the deltas the tracker took
                deltas, _ = mem.take()
                by_seq = _RecordsBySeq({x[1]: x for x in recs if x.__class__ is tuple})
                series, mem.peak, mem.live = _memory_series(deltas, by_seq, mem.live, mem.peak)
            self._kept.append((recs, n_ops, steps, series, []))
        else:
            rep = self._analyse(recs, mem.take() if mem is not None else None)
            self._agg.add(rep)
            if mem is not None:
                mem.live, mem.peak = rep.live, rep.peak
            n_ops = len(rep.ops)
            self._kept.append((recs, n_ops, len(rep.steps), rep.mem_series, rep.pool))
            del rep
        self._kept_ops += n_ops
        budget = self.max_trace_events
        while budget is not None and len(self._kept) > 1 and self._kept_ops > budget:
            _, n, k, _, _ = self._kept.pop(0)
            self._kept_ops -= n
            self._dropped_ops += n
            self._dropped_steps += k

    def _final(self, pending: list[Any], done: bool = False) -> Report:
        """The window's report: aggregates of what was folded plus `pending` (not yet folded)."""
        if self._agg is None:
            agg = _Aggregate()
            if self._mem is not None or _fold_raw(pending, self._steps_marked, agg) is None:
                return self._analyse(pending)
        else:
            agg = self._agg if done else self._agg.copy()  # a window still recording keeps folding into its own
            n_before = agg.op_count
            if self._mem is not None or _fold_raw(pending, self._steps_marked, agg) is None:
                rep = self._analyse(pending)
                agg.add(rep)
                del rep
        n_ops = agg.op_count - n_before if self._agg is not None else agg.op_count
        dropped_ops, dropped_steps = self._dropped_ops, self._dropped_steps
        budget = self.max_trace_events
        # the pending records stay whole; older folds go while the budget is exceeded
        kept_parts = list(self._kept)
        kept_ops = self._kept_ops + n_ops
        while budget is not None and kept_parts and kept_ops > budget:
            _, n, k, _, _ = kept_parts.pop(0)
            kept_ops -= n
            dropped_ops += n
            dropped_steps += k
        kept = [r for part in kept_parts for r in part[0]]
        if self._mem is None:  # the tables come from `agg`: spans and events wait for an export or `events()`
            out = Report.deferred(
                kept + list(pending),
                steps_marked=self._steps_marked,
                with_flops=self.with_flops,
                with_stack=self.with_stack,
                profile_memory=self.profile_memory,
            )
        else:
            out = self._analyse(kept + list(pending))
        if self._mem is not None:  # the memory series of the kept folds, then of `pending`
            series: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for part in [*kept_parts, (None, 0, 0, out.mem_series, out.pool)]:
                for dev, pts in part[3].items():
                    series[dev] += pts
            out.mem_series = dict(series)
            out.pool = [p for part in kept_parts for p in part[4]] + out.pool
        out.agg = agg
        out.omitted_ops, out.omitted_steps = dropped_ops, dropped_steps
        out.max_trace_events = budget or 0
        return out

    def _save(self) -> None:
        # the analysis waits for the first read (a table, an export, `events()`): ending a
        # window costs nothing, and a window nobody reads is never analysed. The window's
        # state moves to a detached copy (rebinding, not clearing: the copy keeps it; the
        # memory tracker carries on into the next window, so the copy takes a snapshot)
        pending = copy.copy(self)
        pending._pending = pending._report = None  # (no chain of earlier unread windows)
        if self._mem is not None:
            pending._mem = self._mem.snapshot()
        self._report, self._pending = None, pending
        self._buf = []
        self._reset_folded()
        if self.on_trace_ready is not None:
            self.on_trace_ready(self)

    # -- results (of the last recorded window)
    @property
    def report(self) -> Report:
        if self._report is None and self._pending is not None:
            p, self._pending = self._pending, None
            self._report = p._final(p._buf, done=True)
        if self._report is None:
            if self._listener is not None or self._buf:
                return self._final(list(self._buf))  # a window still recording: what it has so far
            raise RuntimeError(
                "the profiler has recorded nothing yet: run code inside `with profile():` "
                "(with a schedule, results exist once an active window ends)"
            )
        return self._report

    def events(self) -> list[ev.Event]:
        """The events of the last recorded window: its last `max_trace_events` op events
        (whole steps) with their steps and ranges, or all of them for a shorter window."""
        return self.report.raw

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0) -> EventList:
        return self.report.key_averages(group_by_input_shape, group_by_stack_n)

    def export_chrome_trace(self, path: str) -> None:
        from .export import export_chrome_trace

        export_chrome_trace(self.report, path)

    def export_speedscope(self, path: str) -> None:
        from .export import export_speedscope

        export_speedscope(self.report, path)

    def export_stacks(self, path: str) -> None:
        """Folded stacks: the user's source frames then the op, valued by op time (us)."""
        from .export import export_stacks

        export_stacks(self.report, path)


# --------------------------------------------------------------------------- memory


_ROW = struct.Struct("<4q")  # a memory delta, flat: t_ns, device code, +/-bytes, seq or 0


class _Deltas:
    """The memory deltas (t_ns, device, +/-bytes, seq or 0) of a profile, kept flat: int64
    quadruples in one bytearray (the device as an index into `devices`; "cpu" is 0), read back
    as tuples. Held as tuples, a long profile's hundreds of thousands of them would each
    count toward the next garbage collection, and set off full ones (about 0.1x of a small
    training step). The C memory hook appends CPU rows to `buf` itself."""

    __slots__ = ("buf", "devices", "_codes")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.devices: list[str] = ["cpu"]
        self._codes: dict[str, int] = {"cpu": 0}

    def append(self, row: tuple[int, str, int, int]) -> None:
        t, dev, nb, seq = row
        code = self._codes.get(dev)
        if code is None:
            code = self._codes[dev] = len(self.devices)
            self.devices.append(dev)
        self.buf += _ROW.pack(t, code, nb, seq)

    def __len__(self) -> int:
        return len(self.buf) // _ROW.size

    def __iter__(self) -> Iterator[tuple[int, str, int, int]]:
        rows, devs = self.array()
        return iter([(t, devs[c], nb, seq) for t, c, nb, seq in rows.tolist()])

    def array(self) -> tuple[np.ndarray, list[str]]:
        """The rows so far as an int64 (n, 4) matrix, and the device names its codes index."""
        n = len(self.buf) // _ROW.size * _ROW.size
        return np.frombuffer(bytes(self.buf[:n]), "<i8").reshape(-1, 4), list(self.devices)

    def take(self) -> tuple[np.ndarray, list[str]]:
        """`array()`, removed (rows appended meanwhile stay)."""
        rows, devs = self.array()
        del self.buf[: rows.nbytes]
        return rows, devs

    def clear(self) -> None:
        del self.buf[:]

    def copy(self) -> _Deltas:
        other = _Deltas()
        other.buf, other.devices, other._codes = bytearray(self.buf), list(self.devices), dict(self._codes)
        return other


class _MemoryTracker:
    """Bytes that ops' outputs allocate and, through weak references to those arrays,
    when they are freed. Views (arrays with a `.base`) allocate nothing and are skipped;
    arrays that cannot be weakly referenced (numpy scalars) count as freed at once.
    On cupy, the memory pool's used/total bytes are sampled at every op as well."""

    def __init__(self) -> None:
        self.deltas = _Deltas()  # (t_ns, device, +/-bytes, seq or 0) rows
        self.pool: list[tuple[int, int, int]] = []  # (t_ns, used, total) for cupy
        self._refs: dict[int, Any] = {}
        # where the deltas already folded into a profile's aggregates left off
        self.live: dict[str, int] = {}
        self.peak: dict[str, tuple[int, str]] = {}

    def reset(self) -> None:
        """Forgets what was seen (in place: the listener made by `wrap` holds these)."""
        self.deltas.clear()
        self.pool.clear()
        self._refs.clear()
        self.live, self.peak = {}, {}

    def take(self) -> tuple[tuple[np.ndarray, list[str]], list[tuple[int, int, int]]]:
        """The deltas (see `_Deltas.take`) and pool samples so far, removed (in place: frees
        keep arriving)."""
        pool = self.pool[:]
        del self.pool[: len(pool)]
        return self.deltas.take(), pool

    def snapshot(self) -> _MemoryTracker:
        """A detached copy of what was seen so far (a finished window analysed later)."""
        snap = _MemoryTracker()
        snap.deltas, snap.pool = self.deltas.copy(), list(self.pool)
        snap.live, snap.peak = dict(self.live), dict(self.peak)
        return snap

    def wrap(self, append: Callable[[Any], None]) -> Callable[..., None]:
        """The listener (`outputs=True`): each op's outputs arrive beside its record or event."""
        deltas, refs, pool = self.deltas, self._refs, self.pool
        perf = time.perf_counter_ns

        def freed(r: Any) -> None:
            dev_nb = refs.pop(id(r), None)
            if dev_nb is not None:
                deltas.append((perf(), dev_nb[0], -dev_nb[1], 0))

        ndarray, ref = np.ndarray, weakref.ref

        def on_event(e: Any, out: Any = None) -> None:
            if out is not None:
                if e.__class__ is tuple:  # a raw record: (site, seq, run, t0, t1, ...)
                    site = e[0]
                    phase, t, seq = site.phase, e[4], e[1]
                    dev = site.device.name if site.device is not None else "cpu"
                else:
                    phase, dev, t, seq = e.phase, e.device, e.end_ns, e.seq
                if phase != "update":  # updates work in place
                    if out.__class__ is ndarray:  # (the common case, without the general loop)
                        nb = out.nbytes
                        if nb and out.base is None:
                            r = ref(out, freed)
                            refs[id(r)] = (dev, nb, r)
                            deltas.append((t, dev, nb, seq))
                    else:
                        for v in out if out.__class__ is tuple else (out,):
                            nb = getattr(v, "nbytes", 0) if v is not None else 0
                            if not nb or getattr(v, "base", None) is not None:
                                continue
                            try:
                                r = ref(v, freed)
                            except TypeError:
                                continue
                            refs[id(r)] = (dev, nb, r)
                            deltas.append((t, dev, nb, seq))
                if dev != "cpu" and dev.startswith("cuda"):
                    pool.append((t, tt.cuda.memory_allocated(), tt.cuda.memory_reserved()))
            append(e)

        if ev.MemoryHook is not None:  # the common case (a CPU op's arrays, a record) in C, the rest in on_event
            return ev.MemoryHook(on_event, append, deltas.buf, refs)
        return on_event


# --------------------------------------------------------------------------- analysis


@dataclasses.dataclass
class Row:
    """One line of `key_averages()`: all occurrences of one key summed."""

    key: str
    is_range: bool = False
    count: int = 0
    self_cpu_time_total: int = 0  # ns
    cpu_time_total: int = 0
    self_device_time_total: int = 0
    device_time_total: int = 0
    self_cpu_memory_usage: int = 0  # bytes of outputs allocated (ranges: 0)
    cpu_memory_usage: int = 0
    self_device_memory_usage: int = 0
    device_memory_usage: int = 0
    flops: int = 0
    input_shapes: str = ""
    stack: tuple[ev.Frame, ...] = ()

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / self.count if self.count else 0.0

    @property
    def device_time(self) -> float:
        return self.device_time_total / self.count if self.count else 0.0

    # torch's names
    self_cuda_time_total = property(lambda self: self.self_device_time_total)
    cuda_time_total = property(lambda self: self.device_time_total)


def op_label(e: ev.OpEvent) -> str:
    """The row name of an op event: its type, with the phase when not forward."""
    return e.op if e.phase == "forward" else f"{e.op} ({e.phase})"


@dataclasses.dataclass(slots=True)  # a long profile keeps one per step
class _Span:
    """An op or a range with its nesting resolved (parent = innermost enclosing range)."""

    kind: str  # "op" | "range" | "step"
    name: str
    start: int
    end: int
    thread: int
    event: ev.OpEvent | None = None
    child_ns: int = 0
    child_dev_ns: int = 0
    child_mem: int = 0
    child_dev_mem: int = 0
    child_flops: int = 0
    parent: _Span | None = None
    depth: int = 0

    @property
    def dur(self) -> int:
        return self.end - self.start


GRAPH_RUNS = ("session.run", "tt.function")  # run kinds shown as ranges (synchronous calls)

SORT_KEYS = (
    "self_cpu_time_total",
    "cpu_time_total",
    "cpu_time",
    "count",
    "self_device_time_total",
    "device_time_total",
    "device_time",
    "self_cuda_time_total",
    "cuda_time_total",
    "self_cpu_memory_usage",
    "cpu_memory_usage",
    "self_device_memory_usage",
    "device_memory_usage",
    "flops",
)


class Report:
    """Analysis of one profiled window: spans with nesting, device times, memory."""

    def __init__(
        self,
        trace: Trace,
        *,
        steps_marked: bool = True,
        memory: _MemoryTracker | None = None,
        with_flops: bool = False,
        with_stack: bool = False,
        profile_memory: bool = False,
        raw: list[ev.Event] | None = None,
        mem_taken: tuple[list, list] | None = None,
    ) -> None:
        self.trace = trace
        self.raw = raw if raw is not None else []
        self.agg: _Aggregate | None = None  # set by a profile that let events go as it ran
        self.omitted_ops = self.omitted_steps = self.max_trace_events = 0
        self.with_flops, self.with_stack, self.profile_memory = with_flops, with_stack, profile_memory
        self.ops = trace.events()
        self.device_ns = trace.device_times()
        self.graphs = trace.graphs()
        self.runs = trace.runs()
        spans: list[_Span] = []
        # steps are marked on the thread that runs the training loop: the one most ops ran on
        counts = Counter(e.thread for e in self.ops)
        main_thread = counts.most_common(1)[0][0] if counts else threading.get_ident()
        for r in self.runs:
            if r.end_ns is None:
                continue
            if r.kind == "step" and steps_marked:
                spans.append(_Span("step", r.name, r.start_ns, r.end_ns, main_thread))
            elif r.kind in GRAPH_RUNS:
                # a graph execution is a range: its self time is the session's Python around the ops
                label = f"{r.kind} {r.name}" if r.name else r.kind
                spans.append(_Span("range", label, r.start_ns, r.end_ns, main_thread))
        for u in trace.ranges():
            spans.append(_Span("range", u.name, u.start_ns, u.end_ns, u.thread))
        for e in self.ops:
            spans.append(_Span("op", op_label(e), e.start_ns, e.end_ns, e.thread, e))
        # a step with nothing in it (the one `step()` opens after the last one) is no step
        self.spans = [s for s in _nest(spans, self.device_ns) if not (s.kind == "step" and s.child_ns == 0)]
        self.memory = memory
        self.mem_series: dict[str, list[tuple[int, int]]] = {}
        self.peak: dict[str, tuple[int, str]] = {}
        self.live: dict[str, int] = {}
        self.pool: list[tuple[int, int, int]] = []
        if memory is not None:
            deltas, self.pool = mem_taken if mem_taken is not None else (memory.deltas.array(), list(memory.pool))
            by_seq = {e.seq: e for e in self.ops}
            self.mem_series, self.peak, self.live = _memory_series(deltas, by_seq, memory.live, memory.peak)

    @classmethod
    def deferred(cls, items: list[Any], **kw: Any) -> Report:
        """A report of `items` (raw records and events) whose events, spans and memory are
        made on first use (`__getattr__`); a profile sets `agg`, so its tables need none of them."""
        self = cls.__new__(cls)
        self._items, self._kw = items, kw
        self.agg = None
        self.omitted_ops = self.omitted_steps = self.max_trace_events = 0
        self.with_flops, self.with_stack = kw.get("with_flops", False), kw.get("with_stack", False)
        self.profile_memory = kw.get("profile_memory", False)
        return self

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if name in _DEFERRED and "_items" in d:
            items, kw = d.pop("_items"), d.pop("_kw")
            kept = {k: d[k] for k in ("agg", "omitted_ops", "omitted_steps", "max_trace_events")}
            d.update(Report.from_events(ev.materialize(items), **kw).__dict__)
            d.update(kept)
            return d[name]
        raise AttributeError(f"'Report' object has no attribute '{name}'")

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], **kw: Any) -> Report:
        with ev.gc_paused():  # an object or two per event, no cycles: see gc_paused
            events = list(events)
            tr = MemoryTrace(start=False, summaries=False, stacks=False)
            tr.extend(events)
            return cls(tr, raw=events, **kw)

    @classmethod
    def combined(cls, reports: list[Report], **kw: Any) -> Report:
        """One report of several windows (a `schedule` that repeats): the tables of all
        their steps, the events each kept."""
        out = cls.from_events([e for r in reports for e in r.raw], **kw)
        agg = _Aggregate()
        for r in reports:
            if r.agg is not None:
                agg.merge(r.agg)
            else:
                agg.add(r)
        out.agg = agg
        out.omitted_ops = sum(r.omitted_ops for r in reports)
        out.omitted_steps = sum(r.omitted_steps for r in reports)
        out.max_trace_events = max((r.max_trace_events for r in reports), default=0)
        return out

    @classmethod
    def from_trace(cls, trace: Trace) -> Report:
        """A report of a recorded trace (the same analysis as live)."""
        ops = trace.events()
        return cls(trace, with_stack=any(e.stack for e in ops[:50]))

    # -- totals (of the whole window: a long profile's `spans`/`ops` hold only the events
    # kept for export, its totals come from what it aggregated as it went)
    @property
    def op_time_ns(self) -> int:
        return self.agg.op_ns if self.agg is not None else sum(e.end_ns - e.start_ns for e in self.ops)

    @property
    def op_count(self) -> int:
        return self.agg.op_count if self.agg is not None else len(self.ops)

    @property
    def device_time_ns(self) -> int:
        return self.agg.device_ns if self.agg is not None else sum(self.device_ns.values())

    @property
    def steps(self) -> list[_Span]:
        return self.agg.steps if self.agg is not None else [s for s in self.spans if s.kind == "step"]

    @property
    def has_device(self) -> bool:
        return bool(self.device_ns) or (self.agg is not None and self.agg.device_ns > 0)

    @property
    def left_out(self) -> str:
        """What the event stream (`spans`, `ops`, the Chrome trace) does not hold; "" if nothing."""
        if not self.omitted_ops:
            return ""
        # (steps the program did not mark with prof.step() are not counted: the ops alone)
        first = (
            f"{self.omitted_steps:,} steps ({self.omitted_ops:,} op events)"
            if self.omitted_steps
            else f"{self.omitted_ops:,} op events"
        )
        return (
            f"the first {first} are left out of the "
            f"event stream (max_trace_events={self.max_trace_events:,}); the tables cover all "
            f"{self.op_count:,} op events"
        )

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0) -> EventList:
        if self.agg is not None:
            fine, known = self.agg.fine, self.agg.known
        else:
            fine = _fine_rows(self.spans, self.device_ns, self.profile_memory, {})
            known = _shape_lookup(self.ops) if group_by_input_shape else {}
        rows = _coarse_rows(fine, known, group_by_input_shape, group_by_stack_n)
        return EventList(rows, report=self, shapes=group_by_input_shape, stack_n=group_by_stack_n)

    def top_source_lines(self, n: int = 5) -> list[tuple[ev.Frame, int, int]]:
        """(frame, op ns, op count) of the user lines whose ops took the most time."""
        acc = self.agg.lines if self.agg is not None else _source_lines(self.ops, {})
        return [tuple(a) for a in sorted(acc.values(), key=lambda a: -a[1])[:n]]


_SUMS = (
    "count",
    "self_cpu_time_total",
    "cpu_time_total",
    "self_device_time_total",
    "device_time_total",
    "self_cpu_memory_usage",
    "cpu_memory_usage",
    "self_device_memory_usage",
    "device_memory_usage",
    "flops",
)


def _row(fine: dict, key: tuple) -> Row:
    """The fine row of `key` (name, is range, input names, output shapes, stack), made on first use."""
    row = fine.get(key)
    if row is None:
        row = fine[key] = Row(key[0], key[1])
    return row


def _fine_rows(spans: list[_Span], device_ns: dict[int, int], profile_memory: bool, fine: dict) -> dict:
    """Adds spans into rows keyed as finely as any `key_averages()` grouping needs: (name,
    is range, input names, output shapes, whole stack). Their number is bounded by the
    program's distinct call sites, not its length, so a profile can keep these instead of
    its events; input names become shapes only when asked (`_coarse_rows`)."""
    for s in spans:
        e = s.event
        if e is None:
            key = ("ProfilerStep*" if s.kind == "step" else s.name, True, None, None, ())
        else:
            outs = tuple(None if m.dtype == "none" else m.shape for m in e.outputs)
            key = (s.name, False, e.inputs, outs, tuple(e.stack) if e.stack else ())
        row = _row(fine, key)
        row.count += 1
        row.cpu_time_total += s.dur
        row.self_cpu_time_total += s.dur - s.child_ns
        if e is not None:
            dev = device_ns.get(e.seq, 0)
            host_mem, dev_mem = _allocated(e) if profile_memory else (0, 0)
            row.self_device_time_total += dev
            row.device_time_total += dev
            row.self_cpu_memory_usage += host_mem
            row.cpu_memory_usage += host_mem
            row.self_device_memory_usage += dev_mem
            row.device_memory_usage += dev_mem
            row.flops += e.flops
        else:
            row.device_time_total += s.child_dev_ns
            row.cpu_memory_usage += s.child_mem
            row.device_memory_usage += s.child_dev_mem
            row.flops += s.child_flops
    return fine


def _coarse_rows(fine: dict, known: dict[str, tuple[int, ...]], by_shape: bool, stack_n: int) -> list[Row]:
    """The rows of one `key_averages()` grouping, summed from the fine rows (in the order
    their keys first occurred, as the spans were)."""
    rows: dict[tuple, Row] = {}
    # a row's Source Location: the user line where most of its time went (not the first
    # call's line, which may be a one-off such as the model's initialisation)
    where: dict[tuple, dict[ev.Frame, int]] = {}
    for (name, is_range, ins, outs, stack), f in fine.items():
        sh = _shapes_str(ins, outs, known) if by_shape and ins is not None else ""
        st = stack[:stack_n] if stack_n and stack else ()
        key = (name, is_range, sh, st)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(name, is_range, input_shapes=sh, stack=st)
        if not st and stack:
            w = where.setdefault(key, {})
            w[stack[0]] = w.get(stack[0], 0) + f.cpu_time_total
        for k in _SUMS:
            setattr(row, k, getattr(row, k) + getattr(f, k))
    for key, w in where.items():
        rows[key].stack = (max(w, key=w.__getitem__),)
    return list(rows.values())


def _source_lines(ops: Iterable[ev.OpEvent], acc: dict) -> dict:
    for e in ops:
        if e.stack:
            f = e.stack[0]
            a = acc.setdefault((f.filename, f.lineno), [f, 0, 0])
            a[1] += e.end_ns - e.start_ns
            a[2] += 1
    return acc


class _Aggregate:
    """What a profile keeps of the events it has let go: the fine rows, the shapes of
    named tensors, op totals, the steps and the source lines (all bounded by the
    program's size, except the steps: one small span per step)."""

    def __init__(self) -> None:
        self.fine: dict = {}
        self.known: dict[str, tuple[int, ...]] = {}
        self.lines: dict = {}
        self.steps: list[_Span] = []
        self.op_count = self.op_ns = self.device_ns = 0

    def merge(self, other: _Aggregate) -> None:
        """Adds a later window's aggregates (windows do not overlap in time)."""
        for k, r in other.fine.items():
            row = self.fine.get(k)
            if row is None:
                self.fine[k] = dataclasses.replace(r)
            else:
                for f in _SUMS:
                    setattr(row, f, getattr(row, f) + getattr(r, f))
        self.known.update(other.known)
        for k, (f, ns, n) in other.lines.items():
            a = self.lines.setdefault(k, [f, 0, 0])
            a[1] += ns
            a[2] += n
        self.steps += other.steps
        self.op_count += other.op_count
        self.op_ns += other.op_ns
        self.device_ns += other.device_ns

    def copy(self) -> _Aggregate:
        new = copy.copy(self)
        new.fine = {k: dataclasses.replace(r) for k, r in self.fine.items()}
        new.known, new.steps = dict(self.known), list(self.steps)
        new.lines = {k: list(a) for k, a in self.lines.items()}
        return new

    def add(self, rep: Report) -> None:
        _fine_rows(rep.spans, rep.device_ns, rep.profile_memory, self.fine)
        self.known.update(_shape_lookup(rep.ops))
        _source_lines(rep.ops, self.lines)
        self.steps += rep.steps
        self.op_count += len(rep.ops)
        self.op_ns += rep.op_time_ns
        self.device_ns += sum(rep.device_ns.values())


# what a deferred Report makes on first use
_DEFERRED = frozenset(
    ("trace", "raw", "ops", "device_ns", "graphs", "runs", "spans", "memory", "mem_series", "peak", "live", "pool")
)


class _RecordsBySeq(dict):
    """seq -> raw record, read as seq -> OpEvent (what `_memory_series` names a peak with)."""

    def get(self, seq: int, default: Any = None) -> Any:
        r = dict.get(self, seq)
        return r[0].event(r) if r is not None else default


def _fold_raw(
    items: list[Any], steps_marked: bool, agg: _Aggregate, profile_memory: bool = False
) -> tuple[int, int] | None:
    """`agg.add(Report(items))` without making an event or a span per op, for what a
    timings-only profile of CPU ops on one thread receives (raw records and run markers):
    records are grouped by (site, stack, output signature) first, so each group's row,
    shapes and source line are made once from one event. Returns (op events, steps), or
    None, touching nothing, when `items` need the full analysis (user ranges, graph runs,
    device times, several threads, full events)."""
    recs = [x for x in items if x.__class__ is tuple]
    starts: list[ev.RunStart] = []
    ends: dict[int, int] = {}
    thread = None
    if len(recs) < len(items):
        for x in [x for x in items if x.__class__ is not tuple]:
            cls = x.__class__
            if cls is ev.RunStart:
                if x.kind in GRAPH_RUNS or (thread is not None and x.thread != thread):
                    return None
                thread = x.thread
                starts.append(x)
            elif cls is ev.RunEnd:
                ends[x.run] = x.t_ns
            else:
                return None
    # the records' groups (site, stack, outputs; one thread), each as [its first record,
    # count, total ns, output bytes, last start], and each run's op time and bytes, with
    # numpy over the records' columns rather than a Python step per record
    groups: list[list] = []
    run_ns: dict[int, int] = {}
    run_mem: dict[int, int] = {}
    if recs:
        cols, index, firsts = ev.record_columns(recs)
        heads = [recs[j] for j in firsts]
        for x in heads:  # (a group's records share their Site, and so their device, and thread)
            dev = x[0].device
            if (dev is not None and dev.type != "cpu") or (thread is not None and x[5] != thread):
                return None
            thread = x[5]
        _, run, start, end = cols
        dur = end - start
        k = len(firsts)
        count = np.bincount(index, minlength=k)
        ns = np.bincount(index, weights=dur, minlength=k).astype(np.int64)  # (exact: sums far below 2**53)
        last_at = len(index) - 1 - np.unique(index[::-1], return_index=True)[1]
        nbytes = np.array(
            [x[9] if x[7] is not None else sum(o[2] for o in x[8] if o is not None) for x in heads], np.int64
        )
        runs, inv = np.unique(run, return_inverse=True)
        run_ns = dict(zip(runs.tolist(), np.bincount(inv, weights=dur).astype(np.int64).tolist()))
        run_mem = dict(zip(runs.tolist(), np.bincount(inv, weights=nbytes[index]).astype(np.int64).tolist()))
        groups = [
            [x, c, t, b, last]
            for x, c, t, b, last in zip(heads, count.tolist(), ns.tolist(), nbytes.tolist(), start[last_at].tolist())
        ]
    # first occurrences in the order the full analysis meets them: by start, a step before its ops
    first: list[tuple[int, int, Any]] = []
    steps: list[_Span] = []
    if steps_marked:
        main = thread if thread is not None else threading.get_ident()
        for r in starts:
            end = ends.get(r.run)
            child = run_ns.get(r.run, 0)
            if r.kind != "step" or end is None or child == 0:  # (a step with nothing in it is no step)
                continue
            s = _Span("step", r.name, r.t_ns, end, main, child_ns=child, child_mem=run_mem.get(r.run, 0))
            steps.append(s)
        if steps:  # (the steps' row is made where the first step comes, and takes them all)
            first.append((steps[0].start, 0, steps))
    for g in groups:
        first.append((g[0][3], 1, g))
    first.sort(key=operator.itemgetter(0, 1))
    fine, lines = agg.fine, agg.lines
    n = total = 0
    for _, is_op, x in first:
        if not is_op:
            row = _row(fine, ("ProfilerStep*", True, None, None, ()))
            row.count += len(x)
            row.cpu_time_total += sum([st.dur for st in x])
            row.self_cpu_time_total += sum([st.dur - st.child_ns for st in x])
            row.cpu_memory_usage += sum([st.child_mem for st in x])
            continue
        rec, count, ns, _, last = x
        e = rec[0].event(rec)  # one event per group: keys made by the full analysis' own rules
        x.append(e)
        outs = tuple(None if m.dtype == "none" else m.shape for m in e.outputs)
        row = _row(fine, (op_label(e), False, e.inputs, outs, tuple(e.stack) if e.stack else ()))
        row.count += count
        row.cpu_time_total += ns
        row.self_cpu_time_total += ns
        if profile_memory:  # (CPU ops only here: what their outputs allocate)
            row.self_cpu_memory_usage += x[3] * count
            row.cpu_memory_usage += x[3] * count
        if e.stack:
            f = e.stack[0]
            a = lines.setdefault((f.filename, f.lineno), [f, 0, 0])
            a[1] += ns
            a[2] += count
        n += count
        total += ns
    for g in sorted(groups, key=operator.itemgetter(4)):  # the latest shape of a name wins
        for m in g[5].outputs:
            agg.known[m.name] = m.shape
    agg.steps += steps
    agg.op_count += n
    agg.op_ns += total
    return n, len(steps)


def _nest(spans: list[_Span], device_ns: dict[int, int]) -> list[_Span]:
    """Resolves which range each span sits in (per thread, by time containment) and
    adds each span's total into its direct parent's `child_*` sums."""
    order = {"step": 0, "range": 1, "op": 2}
    spans.sort(key=lambda s: (s.thread, s.start, -s.end, order[s.kind]))
    stack: list[_Span] = []
    thread = None
    for s in spans:
        if s.thread != thread:
            stack, thread = [], s.thread
        while stack and not (stack[-1].start <= s.start and s.end <= stack[-1].end):
            stack.pop()
        if stack:
            s.parent = stack[-1]
            s.depth = len(stack)
            stack[-1].child_ns += s.dur
        if s.kind != "op":
            stack.append(s)
    # device time, memory and FLOPs roll up bottom-up (deepest spans first)
    for s in sorted(spans, key=lambda s: -s.depth):
        p = s.parent
        if p is None:
            continue
        e = s.event
        if e is not None:
            host_mem, dev_mem = _allocated(e)
            p.child_mem += host_mem
            p.child_dev_mem += dev_mem
            p.child_dev_ns += device_ns.get(e.seq, 0)
            p.child_flops += e.flops
        else:
            p.child_dev_ns += s.child_dev_ns
            p.child_mem += s.child_mem
            p.child_dev_mem += s.child_dev_mem
            p.child_flops += s.child_flops
    spans.sort(key=lambda s: (s.start, s.depth))
    return spans


def _allocated(e: ev.OpEvent) -> tuple[int, int]:
    """(host bytes, device bytes) that an op's outputs take."""
    nb = sum(m.nbytes for m in e.outputs)
    return (0, nb) if e.device.startswith("cuda") else (nb, 0)


def _shape_lookup(ops: list[ev.OpEvent]) -> dict[str, tuple[int, ...]]:
    return {m.name: m.shape for e in ops for m in e.outputs}


def _shapes_str(ins: tuple[str, ...], outs: tuple, known: dict[str, tuple[int, ...]]) -> str:
    """`[64, 64], [64, 128] -> [64, 128]`: input shapes where an event produced the input
    (the user's own leaf tensors show as `?`), then output shapes (None: no tensor)."""
    left = ", ".join(str(list(known[i])) if i in known else "?" for i in ins)
    right = ", ".join("None" if o is None else str(list(o)) for o in outs)
    return f"{left} -> {right}"


def _memory_series(
    deltas: tuple[np.ndarray, list[str]],
    by_seq: dict[int, ev.OpEvent],
    live0: dict[str, int],
    peak0: dict[str, tuple[int, str]],
) -> tuple[dict[str, list[tuple[int, int]]], dict[str, tuple[int, str]], dict[str, int]]:
    """Live bytes over time per device, the peak with the op that reached it, and the live
    bytes at the end; starting from `live0`/`peak0` (what earlier folded deltas left).
    `deltas`: (t_ns, device code, +/-bytes, seq or 0) rows and the device names (see
    `_Deltas.take`), in time order once sorted (stably, as they came)."""
    rows, devices = deltas
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    series: dict[str, list[tuple[int, int]]] = {}
    live = dict(live0)
    peak = dict(peak0)
    for code in np.unique(rows[:, 1]).tolist():
        dev = devices[code]
        mine = rows[rows[:, 1] == code]
        level = live.get(dev, 0) + np.cumsum(mine[:, 2])
        series[dev] = list(zip(mine[:, 0].tolist(), level.tolist()))
        live[dev] = int(level[-1])
        grew = mine[:, 2] > 0  # the peak: the first allocation that reached the highest level
        if grew.any():
            at = int(np.flatnonzero(grew)[np.argmax(level[grew])])
            if level[at] > peak.get(dev, (0, ""))[0]:
                e = by_seq.get(int(mine[at, 3]))
                peak[dev] = (int(level[at]), f"{e.name} ({op_label(e)})" if e else "?")
    return series, peak, live


# --------------------------------------------------------------------------- tables


class EventList(list):
    """The rows of `key_averages()`, with `table()` like torch.profiler's."""

    def __init__(self, rows: Iterable[Row], *, report: Report, shapes: bool = False, stack_n: int = 0) -> None:
        super().__init__(rows)
        self.report, self.shapes, self.stack_n = report, shapes, stack_n

    def total_self_cpu_ns(self) -> int:
        return sum(r.self_cpu_time_total for r in self)

    def table(
        self,
        sort_by: str = "self_cpu_time_total",
        row_limit: int = 20,
        max_name_width: int = 40,
        max_shapes_width: int = 50,
    ) -> str:
        if sort_by not in SORT_KEYS:
            raise SortKeyError(f"table(sort_by={sort_by!r}): expected one of {', '.join(SORT_KEYS)}")
        rep = self.report
        rows = sorted(self, key=lambda r: -getattr(r, sort_by))
        if row_limit and row_limit > 0:
            rows = rows[:row_limit]
        total_self = self.total_self_cpu_ns() or 1
        total_dev = sum(r.self_device_time_total for r in self) or 1
        cols: list[tuple[str, Callable[[Row], str]]] = [
            ("Name", lambda r: _clip(r.key, max_name_width)),
            ("Self CPU %", lambda r: f"{100 * r.self_cpu_time_total / total_self:.2f}%"),
            ("Self CPU", lambda r: format_ns(r.self_cpu_time_total)),
            ("CPU total %", lambda r: f"{100 * r.cpu_time_total / total_self:.2f}%"),
            ("CPU total", lambda r: format_ns(r.cpu_time_total)),
            ("CPU time avg", lambda r: format_ns(r.cpu_time)),
        ]
        if rep.has_device:
            cols += [
                ("Self GPU", lambda r: format_ns(r.self_device_time_total)),
                ("Self GPU %", lambda r: f"{100 * r.self_device_time_total / total_dev:.2f}%"),
                ("GPU total", lambda r: format_ns(r.device_time_total)),
                ("GPU time avg", lambda r: format_ns(r.device_time)),
            ]
        if rep.profile_memory:
            cols += [
                ("CPU Mem", lambda r: format_bytes(r.cpu_memory_usage)),
                ("Self CPU Mem", lambda r: format_bytes(r.self_cpu_memory_usage)),
            ]
            if any(r.device_memory_usage for r in self):
                cols += [
                    ("GPU Mem", lambda r: format_bytes(r.device_memory_usage)),
                    ("Self GPU Mem", lambda r: format_bytes(r.self_device_memory_usage)),
                ]
        cols.append(("# of Calls", lambda r: str(r.count)))
        if self.shapes:
            cols.append(("Input Shapes -> Outputs", lambda r: _clip(r.input_shapes, max_shapes_width)))
        if rep.with_stack:
            n = max(1, self.stack_n)
            cols.append(("Source Location", lambda r: " <- ".join(_where(f) for f in r.stack[:n])))
        if rep.with_flops:
            cols += [
                ("Total FLOPs", lambda r: f"{r.flops:,}"),
                (
                    "GFLOP/s",
                    lambda r: (
                        f"{r.flops / r.self_cpu_time_total:.3f}"
                        if r.flops and not r.is_range and r.self_cpu_time_total
                        else ""
                    ),
                ),
            ]
        cells = [[printable(f(r)) for _, f in cols] for r in rows]  # names come from user code / traces
        widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (h, _) in enumerate(cols)]
        sep = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def line(vals: list[str]) -> str:
            left = ("Name", "Input Shapes -> Outputs", "Source Location")
            return "  ".join(
                v.ljust(w) if cols[i][0] in left else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths))
            ).rstrip()

        out = [
            sep,
            line([h for h, _ in cols]),
            sep,
            *(line(c) for c in cells),
            sep,
            f"Self CPU time total: {format_ns(self.total_self_cpu_ns())}"
            f"  (ops: {format_ns(rep.op_time_ns)} in {rep.op_count} op events)",
        ]
        if rep.left_out:
            out.append(f"Chrome trace: {rep.left_out}")
        if rep.has_device:
            out.append(f"Self GPU time total: {format_ns(sum(r.self_device_time_total for r in self))}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _clip(s: str, w: int) -> str:
    return s if len(s) <= w else s[: w - 3] + "..."


def _where(f: ev.Frame) -> str:
    return f"{os.path.basename(f.filename)}:{f.lineno}({f.name})"
