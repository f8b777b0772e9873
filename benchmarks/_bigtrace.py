"""A large eager recording for the debugger-at-scale benchmark and its CI test: a tiny MLP
trained with SGD (one run per `optimizer.step()`), recorded with summaries and stacks,
with a NaN made late (a `log` of negative values: the culprit).

Recording a million events takes the engine about a minute, so the file is made from a
real recording of two steps (a healthy one and the NaN one): their events, with fresh
seqs, runs and times, are written once per step through the trace writer, as the recorder
would have written them. `make(path, events)` returns (path, the culprit's run) and reuses
a file it made before."""

from __future__ import annotations

import json
import os

import numpy as np

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace
from tracetensor.trace.store import VERSION, TraceWriter


def _template() -> tuple[list[list[ev.OpEvent]], list[float | None]]:
    """The op events and losses of two real steps: a healthy one, then one that makes a NaN."""
    rng = np.random.default_rng(0)
    tt.manual_seed(0)
    model = tt.nn.Sequential(tt.nn.Linear(4, 8), tt.nn.ReLU(), tt.nn.Linear(8, 1))
    opt = tt.optim.SGD(model.parameters(), lr=1e-3)
    tt.step()
    with np.errstate(all="ignore"), MemoryTrace(summaries=True, stacks=True) as tr:
        for bad in (False, True):
            opt.zero_grad()
            out = model(tt.tensor(rng.standard_normal((8, 4)).astype(np.float32)))
            if bad:
                out = (out - 1e6).log()  # log of negatives: the NaN this trace is about
            loss = (out * out).mean()
            loss.backward()
            opt.step()
    runs = tr.runs()
    return [tr.events(r.run) for r in runs], [r.loss for r in runs]


def make(path: str, events: int = 1_000_000, *, nan_share: float = 0.9) -> tuple[str, int]:
    """Writes (or reuses) a trace of about `events` op events; the step at `nan_share` of the
    way makes the NaN, and every later step's loss is NaN too (as a diverged run's would be)."""
    tag = path + ".json"
    (good, bad), (loss_good, _) = _template()
    # a file made by another engine's step, or in an earlier trace format, is stale
    kinds = [f"{e.phase}:{e.name}" for e in good + bad]
    if os.path.exists(path) and os.path.exists(tag):
        with open(tag) as f:
            info = json.load(f)
        if info.get("events") == events and info.get("ops") == kinds and info.get("version") == VERSION:
            return path, int(info["culprit_run"])
    steps = max(2, events // len(good))
    bad_step = int(steps * nan_share)
    w = TraceWriter(path, meta={"values": "summary"})
    try:
        seq, t = 1, w.t0
        tid = good[0].thread
        batch: list[ev.Event] = []
        for i in range(steps):
            run = i + 1
            src = bad if i == bad_step else good
            base = src[0].start_ns
            batch.append(ev.RunStart(run, "eager", "step", "step", (), (), None, t, tid))
            for e in src:
                batch.append(
                    ev.OpEvent(
                        seq,
                        run,
                        e.mode,
                        e.phase,
                        e.op,
                        e.name,
                        e.inputs,
                        e.outputs,
                        t + e.start_ns - base,
                        t + e.end_ns - base,
                        tid,
                        e.device,
                        e.flops,
                        e.forward,
                        e.grad_of,
                        e.iteration,
                        e.stack,
                        e.summaries,
                        e.input_summaries,
                    )
                )
                seq += 1
            t += src[-1].end_ns - base + 1000
            loss = float("nan") if i >= bad_step else (loss_good or 0.0) * (1 + 1 / (i + 1))
            batch.append(ev.RunEnd(run, t, tid, None, loss))
            if len(batch) > 20_000:
                w.write(batch)
                batch = []
        w.write(batch)
    finally:
        w.close()
    with open(tag, "w") as f:
        json.dump({"events": events, "culprit_run": bad_step + 1, "ops": kinds, "version": VERSION}, f)
    return path, bad_step + 1


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    p, run = make(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    print(f"{p}: culprit in run {run}, made in {time.perf_counter() - t:.1f} s")
