"""A recorded trace as TensorBoard event files (`tracetensor trace export --tensorboard`,
`tracetensor profile --tensorboard`): per training step the loss, each parameter's
gradient and weight norms and histograms (the debugger's gradient flow), non-finite
counts and time per op type; the graph with step stats. Reads the trace only through
the public `Trace` API, as every consumer does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import events as ev
from ...trace import Trace
from . import summary as sm
from .writer import EventWriter


@dataclass
class ExportReport:
    """What was written: steps, and how many points per kind."""

    log_dir: str
    steps: int = 0
    scalars: int = 0
    histograms: int = 0
    graphs: int = 0
    run_metadata: int = 0
    tags: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        return (
            f"{self.log_dir}: {self.steps} steps, {self.scalars} scalar points, {self.histograms} histograms, "
            f"{self.graphs} graph(s), {self.run_metadata} step stats; `tensorboard --logdir {self.log_dir}`"
        )


def steps_of(trace: Trace) -> Iterator[tuple[int, list[ev.OpEvent]]]:
    """(run, events) per training step: each run, split after each block of optimizer
    updates (an eager program that marks no runs is still cut into its steps)."""
    for r in trace.runs():
        if not r.n_events:
            continue
        cur: list[ev.OpEvent] = []
        for e in trace.iter_events(r.run):
            if cur and cur[-1].phase == "update" and e.phase != "update":
                yield r.run, cur
                cur = []
            cur.append(e)
        if cur:
            yield r.run, cur


def export_trace(trace: Trace, log_dir: str, *, histograms: bool = True, max_run_metadata: int = 100) -> ExportReport:
    """Writes `trace` to `log_dir` as one TensorBoard run; steps are numbered from 0."""
    rep = ExportReport(str(log_dir))
    values_of = getattr(trace, "values_of", None)  # the exact values of one event (trace files)
    base_perf, base_wall = ev.clock_base()
    with EventWriter(log_dir, max_queue=1000) as w:
        g = _main_graph(trace)
        if g is not None:
            w.add_graph_def(sm.graph_proto(g))
            rep.graphs += 1
        dev_times = trace.device_times()
        for step, (run, events) in enumerate(steps_of(trace)):
            wall = (base_wall + events[0].start_ns - base_perf) / 1e9
            info = trace.run_info(run)
            if info.wall_ns:  # the recording process's own clock
                wall = (info.wall_ns + events[0].start_ns - info.start_ns) / 1e9

            def scalar(tag: str, value: float, _step: int = step, _wall: float = wall) -> None:
                w.add_summary(sm.scalar(tag, value), _step, _wall)
                rep.scalars += 1
                rep.tags.add(tag)

            def histo(tag: str, value: np.ndarray | None, _step: int = step, _wall: float = wall) -> None:
                if histograms and value is not None and value.size and value.dtype.kind in "fiu":
                    w.add_summary(sm.histogram(tag, value), _step, _wall)
                    rep.histograms += 1
                    rep.tags.add(tag)

            def value(e: ev.OpEvent, i: int, _run: int = run) -> np.ndarray | None:
                if values_of is not None:
                    return values_of(e.seq).get(i)
                return trace.value(e.outputs[i].name, _run)

            loss = _loss(events)
            if loss is None and len(events) == info.n_events:  # the run is this step: what it says of its loss
                loss = getattr(info, "loss", None)
            if loss is not None:
                scalar("loss", loss)
            for param, (ge, gi), wt in _grad_flow(events):
                gs = ge.summaries[gi] if ge.summaries else None
                if gs is not None:
                    scalar(f"grad_norm/{param}", sm.norm(gs))
                    if gs.nonfinite:
                        scalar(f"grad_nonfinite/{param}", gs.nonfinite)
                ws = wt[0].summaries[wt[1]] if wt is not None and wt[0].summaries else None
                if ws is not None:
                    scalar(f"weight_norm/{param}", sm.norm(ws))
                    if gs is not None and sm.norm(ws) > 0:
                        scalar(f"grad_to_weight/{param}", sm.norm(gs) / sm.norm(ws))
                histo(f"gradients/{param}", value(ge, gi))
                if wt is not None:
                    histo(f"weights/{param}", value(*wt))
            summarized = [e for e in events if e.summaries]
            if summarized:
                scalar("nonfinite/tensors", sum(1 for e in summarized for s in e.summaries if s and s.nonfinite))
                scalar("nonfinite/values", sum(e.nonfinite for e in summarized))
            per_op: dict[str, int] = defaultdict(int)
            for e in events:
                per_op[e.op] += dev_times.get(e.seq) or e.duration_ns
            for op, ns in sorted(per_op.items()):
                scalar(f"op_time_ms/{op}", ns / 1e6)
            scalar("time/ops_ms", sum(per_op.values()) / 1e6)
            if events[0].mode == "graph" and rep.run_metadata < max_run_metadata:
                w.add_run_metadata(sm.run_metadata(events, dev_times), f"step {step}", step)
                rep.run_metadata += 1
            rep.steps += 1
    return rep


def _main_graph(trace: Trace) -> ev.GraphDef | None:
    """The graph to show: the newest version of the largest graph the trace holds."""
    latest: dict[int, ev.GraphDef] = {}
    for g in trace.graphs():
        latest[g.graph] = g
    return max(latest.values(), key=lambda g: len(g.nodes), default=None)


def _loss(events: list[ev.OpEvent]) -> float | None:
    """The value a backward pass started from: the forward op named by the step's first
    backward event, when its output is a scalar with a known value."""
    first = next((e for e in events if e.phase == "backward" and e.forward), None)
    if first is None:
        return None
    fwd = next((e for e in events if e.phase == "forward" and e.name == first.forward), None)
    if fwd is None or not fwd.outputs or fwd.outputs[0].shape not in ((), (1,)) or not fwd.summaries:
        return None
    s = fwd.summaries[0]
    if s is None or s.size != 1:
        return None
    return float(s.mean) if s.finite else float("nan") if s.nan else (float("inf") if s.posinf else float("-inf"))


Where = tuple[ev.OpEvent, int]


def _grad_flow(events: list[ev.OpEvent]) -> list[tuple[str, Where, Where | None]]:
    """(parameter, where its gradient is, where its weight is) for each trained parameter:
    eager `accumulate_grad` events and the update that follows; in graph mode the update
    op's inputs (variable, ..., gradient)."""
    produced: dict[str, Where] = {}
    for e in events:
        for i, m in enumerate(e.outputs):
            produced[m.name] = (e, i)
    updates = {e.inputs[0].split(":")[0]: (e, 0) for e in events if e.phase == "update" and e.inputs}
    out: dict[str, tuple[Where, Where | None]] = {}
    for e in events:
        if e.op == "accumulate_grad":
            param = (e.grad_of or e.inputs or (e.name,))[0]
            out[param] = ((e, 0), updates.get(param))
    if out:
        return [(p, g, w) for p, (g, w) in out.items()]
    for e in events:
        if e.phase != "update" or not e.inputs:
            continue
        grads = [i for i in e.inputs[1:] if i.startswith("gradients")]
        if grads and grads[0] in produced:
            param = e.inputs[0].split(":")[0]
            out[param] = (produced[grads[0]], produced.get(e.inputs[0]) or (e, 0))
    return [(p, g, w) for p, (g, w) in out.items()]


def export_file(path: str, log_dir: str, **kw: Any) -> ExportReport:
    """`export_trace` of a trace file."""
    from ...trace import open as open_trace

    with open_trace(path) as t:
        return export_trace(t, log_dir, **kw)
