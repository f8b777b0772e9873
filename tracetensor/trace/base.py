"""The read side shared by live and recorded runs: one `Trace` interface that the
debugger, the profiler and the pytest plugin query, whether the events are still in
memory (`MemoryTrace`, subscribed to the live stream) or in a trace file."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import events as ev


@dataclass(frozen=True)
class RunInfo:
    """One run as a trace knows it (a RunStart joined with its RunEnd and counts)."""

    run: int
    mode: str
    kind: str
    name: str
    fetches: tuple[str, ...]
    feeds: tuple[str, ...]
    graph: int | None
    start_ns: int
    end_ns: int | None
    error: str | None
    n_events: int
    wall_ns: int = 0
    loss: float | None = None  # the scalar `.backward()` was called on (eager steps), when known
    nonfinite: int = 0  # op events with a NaN/inf output

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns


MAX_SOURCE_BYTES = 2 << 20  # a "source file" larger than this is not shown


def read_source(filename: str, limit: int = MAX_SOURCE_BYTES) -> str | None:
    """The text of `filename` if it is a regular file of at most `limit` bytes, else None:
    a stack frame's file name may be `/dev/zero`, a FIFO or a directory, which must not be
    read (or waited on). O_NONBLOCK: opening a FIFO does not wait for a writer."""
    try:
        fd = os.open(filename, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if len(data) > limit else data.decode("utf-8", errors="replace")


class ValueNotRecorded(LookupError):
    """`Trace.value` of a tensor whose value the trace does not hold; the message says why."""


class _NotRecorded:
    def __repr__(self) -> str:
        return "<raise ValueNotRecorded>"


NOT_RECORDED: Any = _NotRecorded()  # `value()`'s default: raise rather than return a silent None


def output_name(tensor: str) -> str:
    """A tensor as outputs are named: `name:i`, or `PARAM.grad` for an accumulated gradient;
    a bare op name means its first output."""
    return tensor if ":" in tensor or tensor.endswith(".grad") else tensor + ":0"


def op_pattern(op: str | None) -> str | None:
    """`events(op=...)`'s regex made to find an op under either mode's name, in any case:
    `op="MatMul"` finds eager `matmul` events and `op="relu"` graph `Relu` ones (each
    registered op has one eager and one TF name)."""
    if op is None:
        return None
    from .._registry import REGISTRY

    try:
        rx = re.compile(op, re.IGNORECASE)
    except re.error:
        return op  # the caller's own regex error is reported where it is used
    alts = sorted(
        {
            re.escape(n)
            for d in REGISTRY.values()
            if rx.search(d.name) or (d.tf_name and rx.search(d.tf_name))
            for n in (d.name, d.tf_name)
            if n
        }
    )
    pattern = f"(?i:{op})" + (f"|^(?:{'|'.join(alts)})$" if alts else "")
    try:
        re.compile(pattern)
    except re.error:  # e.g. global flags inside the user's pattern
        return op
    return pattern


def _rx(pattern: str | None) -> Callable[[str], bool]:
    if pattern is None:
        return lambda s: True
    r = re.compile(pattern)
    return lambda s: r.search(s) is not None


class Trace(ABC):
    """Queries over the events of one process. Events come back as the same
    `tracetensor.events` objects the live stream carries, in execution (seq) order."""

    path: str | None = None

    # -- what every backend provides
    @abstractmethod
    def runs(self) -> list[RunInfo]: ...

    @abstractmethod
    def events(
        self,
        run: int | None = None,
        *,
        phase: str | None = None,
        op: str | None = None,
        name: str | None = None,
        start: int = 0,
        limit: int | None = None,
    ) -> list[ev.OpEvent]:
        """Op events, filtered: `op`/`name` are regexes searched in the op type / op name;
        `start`/`limit` page through the result (by position)."""

    @abstractmethod
    def count(self, run: int | None = None) -> int: ...

    @abstractmethod
    def value(self, tensor: str, run: int | None = None, default: Any = NOT_RECORDED) -> np.ndarray | None:
        """The recorded value of tensor `tensor` (`name:i`) in `run` (the last run holding
        it when None). When the trace does not hold it (values were not kept, were dropped,
        or no such tensor) raises ValueNotRecorded saying which, or returns `default`."""

    def _values_level(self) -> str:
        """What this trace keeps of tensors: "none", "summary" or "full"."""
        return "?"

    def _no_value(self, tensor: str, run: int | None, default: Any) -> Any:
        if default is not NOT_RECORDED:
            return default
        want = output_name(tensor)
        where = f" in run {run}" if run is not None else ""
        hit = self.find(tensor, run)
        if hit is None:
            raise ValueNotRecorded(f"no tensor named {want!r}{where} in this trace")
        if hit[0].outputs[hit[1]].dtype == "none":
            raise ValueNotRecorded(f"{want}{where} is an empty output slot (a gradient not computed): no value")
        level = self._values_level()
        if level != "full":
            raise ValueNotRecorded(
                f"{want}{where}: this trace kept no tensor values (values={level!r}); its numeric summary is in "
                f'the event\'s .summaries. Record with values="full" to keep values.'
            )
        raise ValueNotRecorded(
            f"{want}{where}: its value was dropped to stay within the recording's byte "
            "budget (max_bytes; the oldest values go first)"
        )

    @abstractmethod
    def device_times(self, run: int | None = None) -> dict[int, int]:
        """seq -> GPU nanoseconds for ops that ran on a GPU."""

    @abstractmethod
    def graphs(self) -> list[ev.GraphDef]: ...

    @abstractmethod
    def ranges(self, run: int | None = None) -> list[ev.UserRange]: ...

    def source(self, filename: str) -> str | None:
        """The text of a user file seen in stacks (as it was when recorded, for files).
        Live, it is read from disk: regular files only, at most MAX_SOURCE_BYTES."""
        return read_source(filename)

    def dropped(self) -> dict[str, int]:
        """What a byte budget made the recorder drop: {'values': n, 'bytes': b}."""
        return {"values": 0, "bytes": 0}

    def close(self) -> None:  # noqa: B027  (optional hook: most traces hold nothing to release)
        pass

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- derived queries, the same for every backend
    def run_info(self, run: int) -> RunInfo:
        for r in self.runs():
            if r.run == run:
                return r
        raise KeyError(f"run {run} is not in this trace")

    def run_ids(self, *, nonfinite: bool = False) -> list[int]:
        """The run numbers, in order (`nonfinite`: only runs with a NaN/inf output); a file
        answers from its runs table without building every RunInfo."""
        return [r.run for r in self.runs() if not nonfinite or r.nonfinite]

    def run_infos(self, ids: list[int]) -> list[RunInfo]:
        """RunInfo of the given runs (a page of a run list), in run order."""
        want = set(ids)
        return [r for r in self.runs() if r.run in want]

    def last_run(self) -> int | None:
        rs = self.runs()
        return rs[-1].run if rs else None

    def iter_events(self, run: int | None = None, **filters: Any) -> Iterator[ev.OpEvent]:
        """Like `events()`, one at a time (a file decodes them a block at a time)."""
        return iter(self.events(run, **filters))

    def first(self, predicate: Callable[[ev.OpEvent], bool], run: int | None = None) -> ev.OpEvent | None:
        return next((e for e in self.iter_events(run) if predicate(e)), None)

    def iter_nonfinite(self, run: int | None = None) -> Iterator[ev.OpEvent]:
        """The events with a NaN/inf output, in execution order (a file reads only the blocks
        its index marks as holding one)."""
        return (e for e in self.iter_events(run) if e.summaries and e.nonfinite)

    def first_nonfinite(self, run: int | None = None) -> ev.OpEvent | None:
        """The culprit: the first event (execution order) with a NaN or inf output."""
        return self.first(lambda e: e.nonfinite > 0, run)

    def find(self, tensor: str, run: int | None = None) -> tuple[ev.OpEvent, int] | None:
        """The event that produced `tensor` (or op name; `:0` is implied) and the output index.
        A name printed without `:i` (a parameter update's `0.weight`) is found as printed."""
        want = output_name(tensor)
        hit = exact = None
        for e in self.events(run):
            for i, m in enumerate(e.outputs):
                if m.name == want:
                    hit = (e, i)
                elif m.name == tensor:
                    exact = (e, i)
        return hit or exact

    def graph(self, graph_id: int | None = None) -> ev.GraphDef | None:
        gs = self.graphs()
        if graph_id is None:
            return gs[-1] if gs else None
        found = [g for g in gs if g.graph == graph_id]
        return found[-1] if found else None

    def node(self, name: str, graph_id: int | None = None) -> ev.NodeDef | None:
        name = name.split(":")[0]
        g = self.graph(graph_id)
        if g is not None:
            for n in g.nodes:
                if n.name == name:
                    return n
        return None

    def inputs(self, name: str, run: int | None = None) -> tuple[str, ...]:
        """Input tensor names of a node (graph) or op (eager)."""
        n = self.node(name)
        if n is not None:
            return n.inputs
        hit = self.find(name, run)
        return hit[0].inputs if hit else ()

    def consumers(self, name: str, run: int | None = None) -> list[str]:
        """Names of the nodes/ops that take any output of `name` as an input."""
        base = name.split(":")[0]
        g = self.graph()
        if g is not None and any(n.name == base for n in g.nodes):
            return [n.name for n in g.nodes if any(i.split(":")[0] == base for i in n.inputs)]
        out = []
        for e in self.events(run):
            if any(i.split(":")[0] == base for i in e.inputs) and e.name not in out:
                out.append(e.name)
        return out


class MemoryTrace(Trace):
    """Keeps the live stream in memory: `with MemoryTrace(values=True) as tr: ...`.
    `max_value_bytes` bounds kept values (oldest dropped first)."""

    def __init__(
        self,
        *,
        values: bool = False,
        summaries: bool = True,
        stacks: bool = True,
        max_value_bytes: int = 256 << 20,
        start: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._events: list[ev.OpEvent] = []
        self._by_run: dict[int, list[ev.OpEvent]] = {}
        self._starts: dict[int, ev.RunStart] = {}
        self._ends: dict[int, ev.RunEnd] = {}
        self._dev: dict[int, int] = {}
        self._graphs: list[ev.GraphDef] = []
        self._ranges: list[ev.UserRange] = []
        self._values: dict[tuple[int, str], Any] = {}
        self._value_bytes = 0
        self._dropped = {"values": 0, "bytes": 0}
        self.max_value_bytes = max_value_bytes
        self._opts = dict(values=values, summaries=summaries, stacks=stacks)
        self._listener: ev.Listener | None = None
        if start:
            self.start()

    def start(self) -> MemoryTrace:
        if self._listener is None:
            self._listener = ev.subscribe(self.add, **self._opts)
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    close = stop

    def add(self, e: ev.Event) -> None:
        """Takes one event (the listener callback; also used to replay events)."""
        with self._lock:
            if isinstance(e, ev.OpEvent):
                if e.values is not None:
                    self._keep_values(e)
                    e = _without_values(e)
                self._events.append(e)
                run = self._by_run.get(e.run)
                if run is None:  # (not setdefault: that would build a list for every event)
                    run = self._by_run[e.run] = []
                run.append(e)
            elif isinstance(e, ev.RunStart):
                self._starts[e.run] = e
            elif isinstance(e, ev.RunEnd):
                self._ends[e.run] = e
            elif isinstance(e, ev.DeviceTime):
                self._dev[e.seq] = e.device_ns
            elif isinstance(e, ev.GraphDef):
                self._graphs.append(e)
            elif isinstance(e, ev.UserRange):
                self._ranges.append(e)

    def extend(self, es: Iterable[ev.Event]) -> None:
        for e in es:
            self.add(e)

    def _keep_values(self, e: ev.OpEvent) -> None:
        for m, v in zip(e.outputs, e.values or ()):
            if v is None:
                continue
            self._values[(e.run, m.name)] = v
            self._value_bytes += int(v.nbytes)
        while self._value_bytes > self.max_value_bytes and self._values:
            k = next(iter(self._values))
            v = self._values.pop(k)
            self._value_bytes -= int(v.nbytes)
            self._dropped["values"] += 1
            self._dropped["bytes"] += int(v.nbytes)

    def runs(self) -> list[RunInfo]:
        with self._lock:
            ids = sorted(set(self._starts) | set(self._by_run))
            out = []
            for r in ids:
                s = self._starts.get(r)
                end = self._ends.get(r)
                evs = self._by_run.get(r, [])
                if s is None:  # a run seen only through its ops: an eager run that began earlier
                    first = evs[0] if evs else None
                    s = ev.RunStart(
                        r,
                        first.mode if first else "eager",
                        "eager",
                        "",
                        (),
                        (),
                        None,
                        first.start_ns if first else 0,
                        0,
                    )
                out.append(
                    RunInfo(
                        r,
                        s.mode,
                        s.kind,
                        s.name,
                        s.fetches,
                        s.feeds,
                        s.graph,
                        s.t_ns,
                        end.t_ns if end else None,
                        end.error if end else None,
                        len(evs),
                        s.wall_ns,
                        end.loss if end else None,
                        sum(1 for e in evs if e.summaries and e.nonfinite),
                    )
                )
            return out

    def events(
        self,
        run: int | None = None,
        *,
        phase: str | None = None,
        op: str | None = None,
        name: str | None = None,
        start: int = 0,
        limit: int | None = None,
    ) -> list[ev.OpEvent]:
        with self._lock:
            src = self._events if run is None else self._by_run.get(run, [])
            if phase is None and op is None and name is None:
                sel = src[start : None if limit is None else start + limit]
                return list(sel)
        mo, mn = _rx(op_pattern(op)), _rx(name)
        sel2 = [e for e in src if (phase is None or e.phase == phase) and mo(e.op) and mn(e.name)]
        return sel2[start : None if limit is None else start + limit]

    def count(self, run: int | None = None) -> int:
        return len(self._events) if run is None else len(self._by_run.get(run, []))

    def value(self, tensor: str, run: int | None = None, default: Any = NOT_RECORDED) -> np.ndarray | None:
        want = output_name(tensor)
        with self._lock:
            for name in (want, tensor):  # `relu` means `relu:0`; `0.weight` (an update) is itself
                if run is not None:
                    v = self._values.get((run, name))
                else:
                    cands = [k for k in self._values if k[1] == name]
                    v = self._values[max(cands)] if cands else None
                if v is not None:
                    break
        return self._no_value(tensor, run, default) if v is None else ev.to_numpy(v)

    def _values_level(self) -> str:
        return "full" if self._opts["values"] else "summary" if self._opts["summaries"] else "none"

    def device_times(self, run: int | None = None) -> dict[int, int]:
        if run is None:
            return dict(self._dev)
        seqs = {e.seq for e in self._by_run.get(run, [])}
        return {s: t for s, t in self._dev.items() if s in seqs}

    def graphs(self) -> list[ev.GraphDef]:
        return list(self._graphs)

    def ranges(self, run: int | None = None) -> list[ev.UserRange]:
        return [r for r in self._ranges if run is None or r.run == run]

    def dropped(self) -> dict[str, int]:
        return dict(self._dropped)


def _without_values(e: ev.OpEvent) -> ev.OpEvent:
    return dataclasses.replace(e, values=None)
