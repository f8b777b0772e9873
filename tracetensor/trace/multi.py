"""A set of per-rank traces (`run.rank0.ttrace`, `run.rank1.ttrace`, ...) read as one:
events of all ranks in one time order (by when each op's output came to be: its end
time, each rank's clock shifted by the offset to rank 0
it measured at start), names prefixed `rank1/...`; plus the cross-rank analyses the
debugger and the profiler show: collectives split into waiting and transfer, per-step
straggler table, communication/computation overlap.

Ranks' runs are matched by run number (every rank runs the same program, so its k-th run
is the same step everywhere); collectives by their ordinal (`OpEvent.iteration` of a
"collective" event), which MPI guarantees to be the same on every rank.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import events as ev
from .base import RunInfo, Trace
from .store import SqliteTrace, TraceFileError, TraceWriter

__all__ = [
    "MultiTrace",
    "open_ranks",
    "merge",
    "CollectiveStat",
    "StepStat",
    "collectives",
    "steps",
    "overlap",
    "expand",
]

SEQ_STRIDE = 1_000_000_000  # merged seq = run * SEQ_STRIDE + position in the run's time order
_PREFIX = re.compile(r"^rank(\d+)/(.*)$", re.S)


def expand(paths: Sequence[str]) -> list[str]:
    """File names as given, a glob pattern expanded (quoted `run.rank*.ttrace` works too)."""
    out: list[str] = []
    for p in paths:
        hits = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise TraceFileError(p, "matches no file")
        out += hits
    return out


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    offset_ns: int  # add to this rank's times to get rank 0's clock
    trace: SqliteTrace


class MultiTrace(Trace):
    """The `Trace` interface over one trace per rank. Tensor names are `rank{r}/{name}`;
    `where(event)` says which rank and step an event belongs to."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        opened: list[SqliteTrace] = []
        try:
            for p in paths:
                opened.append(SqliteTrace(p))
            ranks = [_rank_of(t) for t in opened]
        except BaseException:
            for t in opened:
                t.close()
            raise
        seen: dict[int, str] = {}
        for r in ranks:
            if r.rank in seen:
                raise TraceFileError(r.trace.path, f"is rank {r.rank}, like {seen[r.rank]}: give each rank's file once")
            seen[r.rank] = r.trace.path
        worlds = {r.world_size for r in ranks}
        if len(worlds) > 1:
            raise TraceFileError(
                ranks[0].trace.path, f"comes from a different run than the others (world sizes {sorted(worlds)})"
            )
        self.ranks: list[Rank] = sorted(ranks, key=lambda r: r.rank)
        self.world_size = worlds.pop()
        self.missing = sorted(set(range(self.world_size)) - set(seen))
        self.path = self.ranks[0].trace.path
        self._by_rank = {r.rank: r for r in self.ranks}
        self._merged: dict[int, list[ev.OpEvent]] = {}
        self._origin: dict[int, tuple[int, int]] = {}  # merged seq -> (rank, its own seq)
        self._steps: dict[int, dict[int, int]] = {}

    # -- merging
    def _run_events(self, run: int) -> list[ev.OpEvent]:
        got = self._merged.get(run)
        if got is None:
            tagged = []
            for r in self.ranks:
                for e in r.trace.iter_events(run):
                    # ordered by when the output came to be: an async collective started long
                    # before its result (which holds the other ranks' data) existed
                    tagged.append((e.end_ns + r.offset_ns, r.rank, e.seq, e))
            tagged.sort(key=lambda x: x[:3])
            got = []
            for i, (_, rank, seq, e) in enumerate(tagged):
                s = run * SEQ_STRIDE + i
                self._origin[s] = (rank, seq)
                got.append(_tag(e, rank, self._by_rank[rank].offset_ns, s))
            self._merged[run] = got
        return got

    def runs(self) -> list[RunInfo]:
        per: dict[int, list[tuple[Rank, RunInfo]]] = {}
        for r in self.ranks:
            for info in r.trace.runs():
                per.setdefault(info.run, []).append((r, info))
        out = []
        for run in sorted(per):
            rows = per[run]
            first = rows[0][1]
            ends = [i.end_ns + r.offset_ns for r, i in rows if i.end_ns is not None]
            errors = [f"rank {r.rank}: {i.error}" for r, i in rows if i.error]
            out.append(
                dataclasses.replace(
                    first,
                    start_ns=min(i.start_ns + r.offset_ns for r, i in rows),
                    end_ns=max(ends) if len(ends) == len(rows) else None,
                    error="; ".join(errors) or None,
                    n_events=sum(i.n_events for _, i in rows),
                    nonfinite=sum(i.nonfinite for _, i in rows),
                )
            )  # (the loss stays rank 0's: ranks' differ)
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
        runs = [run] if run is not None else [r.run for r in self.runs()]
        mo = re.compile(op) if op else None
        mn = re.compile(name) if name else None
        sel = [
            e
            for rn in runs
            for e in self._run_events(rn)
            if (phase is None or e.phase == phase)
            and (mo is None or mo.search(e.op))
            and (mn is None or mn.search(e.name))
        ]
        return sel[start : None if limit is None else start + limit]

    def count(self, run: int | None = None) -> int:
        return sum(r.trace.count(run) for r in self.ranks)

    def first_nonfinite(self, run: int | None = None) -> ev.OpEvent | None:
        """The first event with a NaN/inf output in time order across ranks (each rank's
        own index finds its candidate; the one whose output came first, on rank 0's clock, wins)."""
        if run is None:  # the earliest run where any rank has one (runs line up across ranks)
            firsts = [e.run for e in (r.trace.first_nonfinite() for r in self.ranks) if e is not None]
            if not firsts:
                return None
            run = min(firsts)
        cands = []
        for r in self.ranks:
            e = r.trace.first_nonfinite(run)
            if e is not None:
                cands.append((e.end_ns + r.offset_ns, r.rank, e.seq))
        if not cands:
            return None
        _, rank, seq = min(cands)
        rn = run
        return next(e for e in self._run_events(rn) if self._origin[e.seq] == (rank, seq))

    def value(self, tensor: str, run: int | None = None) -> np.ndarray | None:
        m = _PREFIX.match(tensor)
        if m is None or int(m.group(1)) not in self._by_rank:
            return None
        return self._by_rank[int(m.group(1))].trace.value(m.group(2), run)

    def values_of(self, seq: int) -> dict[int, np.ndarray]:
        rank, own = self._origin[seq]
        return self._by_rank[rank].trace.values_of(own)

    def device_times(self, run: int | None = None) -> dict[int, int]:
        back = {v: k for k, v in self._origin.items()}
        if run is not None:
            self._run_events(run)
        return {
            back[(r.rank, s)]: t
            for r in self.ranks
            for s, t in r.trace.device_times(run).items()
            if (r.rank, s) in back
        }

    def graphs(self) -> list[ev.GraphDef]:
        return []  # node names differ per rank (prefixed); `ni`/`li` fall back to the events

    def ranges(self, run: int | None = None) -> list[ev.UserRange]:
        out = [
            dataclasses.replace(
                u, name=f"rank{r.rank}/{u.name}", start_ns=u.start_ns + r.offset_ns, end_ns=u.end_ns + r.offset_ns
            )
            for r in self.ranks
            for u in r.trace.ranges(run)
        ]
        return sorted(out, key=lambda u: u.start_ns)

    def source(self, filename: str) -> str | None:
        for r in self.ranks:
            text = r.trace.source(filename)
            if text is not None:
                return text
        return None

    def dropped(self) -> dict[str, int]:
        out = {"values": 0, "bytes": 0}
        for r in self.ranks:
            for k, v in r.trace.dropped().items():
                out[k] += v
        return out

    def close(self) -> None:
        for r in self.ranks:
            r.trace.close()

    # -- ranks and steps
    def rank_of(self, e: ev.OpEvent) -> int:
        return self._origin[e.seq][0]

    def step_of(self, rank: int, run: int) -> int:
        """A run's step number on a rank: its position among the rank's runs of kind "step"
        (DDP calls, profiler steps), counted from 0; the run number when it is not a step."""
        steps = self._steps.get(rank)
        if steps is None:
            ids = [i.run for i in self._by_rank[rank].trace.runs() if i.kind == "step"]
            steps = self._steps[rank] = {run_id: k for k, run_id in enumerate(ids)}
        return steps.get(run, run)

    def where(self, e: ev.OpEvent) -> str:
        """ "rank 1, step 5, op log at train.py:23 in main": an event's place in the job."""
        rank = self.rank_of(e)
        text = f"rank {rank}, step {self.step_of(rank, e.run)}, op {e.op}"
        f = e.frame
        if f is not None:
            text += f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
        return text


def _rank_of(t: SqliteTrace) -> Rank:
    m = t.meta()
    if "rank" not in m:
        raise TraceFileError(t.path, "was not recorded under MPI (it names no rank): open it on its own")
    try:
        return Rank(int(m["rank"]), int(m.get("world_size", "0")), int(m.get("clock_offset_ns", "0")), t)
    except ValueError:
        raise TraceFileError(t.path, "has an unreadable rank, world_size or clock_offset_ns") from None


def _tag(e: ev.OpEvent, rank: int, off: int, seq: int) -> ev.OpEvent:
    p = f"rank{rank}/"
    coll = e.phase == "collective"
    return dataclasses.replace(
        e,
        seq=seq,
        name=p + e.name,
        start_ns=e.start_ns + off,
        end_ns=e.end_ns + off,
        inputs=e.inputs if coll else tuple(p + i for i in e.inputs),
        outputs=tuple(m._replace(name=p + m.name) for m in e.outputs),
        forward=e.forward if coll or e.forward is None else p + e.forward,
        grad_of=tuple(p + g for g in e.grad_of),
    )


def open_ranks(paths: Sequence[str | os.PathLike] | str) -> MultiTrace:
    """Opens per-rank trace files (a list, or a glob such as `run.rank*.ttrace`) as one trace."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [os.fspath(paths)]
    return MultiTrace(expand([os.fspath(p) for p in paths]))


def merge(paths: Sequence[str], output: str) -> str:
    """Writes one trace file holding every rank's events (time-ordered, names `rank{r}/...`,
    times on rank 0's clock), readable by every tool as a single trace."""
    with open_ranks(paths) as mt:
        assert isinstance(mt, MultiTrace)
        meta = {
            "values": mt.ranks[0].trace.meta().get("values", "summary"),
            "ranks": json.dumps([r.rank for r in mt.ranks]),
            "world_size_merged": mt.world_size,
            "merged_from": json.dumps([r.trace.path for r in mt.ranks]),
        }
        w = TraceWriter(output, meta=meta)
        try:
            for info in mt.runs():
                batch: list[ev.Event] = [
                    ev.RunStart(
                        info.run,
                        info.mode,
                        info.kind,
                        info.name,
                        info.fetches,
                        info.feeds,
                        info.graph,
                        info.start_ns,
                        0,
                        info.wall_ns,
                    )
                ]
                evs = mt.events(info.run)
                batch += evs
                batch += mt.ranges(info.run)
                if info.end_ns is not None:
                    batch.append(ev.RunEnd(info.run, info.end_ns, 0, info.error))
                vals = {}
                for e in evs:
                    got = mt.values_of(e.seq)
                    if got:
                        vals[e.seq] = tuple(got.get(i) for i in range(len(e.outputs)))
                w.write(batch, vals or None)
                for r in mt.ranks:  # the user's sources, for `ps`
                    for fn in r.trace.sources():
                        if fn not in w._files:
                            w._files.add(fn)
                            text = r.trace.source(fn)
                            if text is not None:
                                w.db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?)", (fn, text))
            w.close(complete=True)
        except BaseException:
            w.close(complete=False)
            raise
    return output


# --------------------------------------------------------------------------- analyses


@dataclass
class CollectiveStat:
    """One collective across ranks: when each rank entered and left it (rank 0's clock),
    how long each waited for the last one to arrive, and how long the transfer took after."""

    ordinal: int
    op: str
    name: str
    run: int
    nbytes: int
    via: str
    start: dict[int, int]
    end: dict[int, int]

    @property
    def last(self) -> int:
        """The rank that arrived last: the one the others waited for."""
        return max(self.start, key=lambda r: (self.start[r], r))

    def wait(self, rank: int) -> int:
        return min(max(0, self.start[self.last] - self.start[rank]), self.end[rank] - self.start[rank])

    def transfer(self, rank: int) -> int:
        return self.end[rank] - self.start[rank] - self.wait(rank)


def collectives(mt: MultiTrace, run: int | None = None) -> list[CollectiveStat]:
    """Every collective of `run` (all runs when None), matched across ranks by ordinal."""
    by: dict[object, CollectiveStat] = {}
    for r in mt.ranks:
        n = 0
        for e in r.trace.iter_events(run, phase="collective"):
            # eager collectives carry their ordinal; graph nodes (whose `iteration` is the loop's)
            # are matched by their position among the rank's graph collectives
            k: object = e.iteration if e.mode == "eager" else ("graph", n)
            n += e.mode != "eager"
            c = by.get(k)
            if c is None:
                m = e.outputs[0] if e.outputs else None
                c = by[k] = CollectiveStat(len(by), e.op, e.name, e.run, m.nbytes if m else 0, e.forward or "", {}, {})
            c.start[r.rank] = e.start_ns + r.offset_ns
            c.end[r.rank] = e.end_ns + r.offset_ns
    return sorted((c for c in by.values() if len(c.start) == len(mt.ranks)), key=lambda c: min(c.start.values()))


def _union(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(iv):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _length(iv: list[tuple[int, int]]) -> int:
    return sum(b - a for a, b in iv)


def _intersect(x: list[tuple[int, int]], y: list[tuple[int, int]]) -> int:
    i = j = tot = 0
    while i < len(x) and j < len(y):
        a, b = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if a < b:
            tot += b - a
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return tot


@dataclass
class RankStep:
    span: int  # the step's wall time on this rank
    compute: int  # time in ops (not overlapped with anything else counted)
    wait: int  # in collectives, waiting for the last rank to arrive
    transfer: int  # in collectives, moving bytes (not hidden behind compute)
    idle: int  # the rest: Python, data loading, sleeping
    overlap: int  # collective time hidden behind compute


@dataclass
class StepStat:
    step: int
    run: int
    name: str
    ranks: dict[int, RankStep]
    slowest: int
    spread: int  # how much longer the fastest rank waited than the slowest


def steps(mt: MultiTrace) -> list[StepStat]:
    """Per step (each run holding ops): per rank compute / wait / transfer / idle, the slowest
    rank (the one whose arrival the others waited for) and the spread of waiting."""
    colls = collectives(mt)
    by_run: dict[int, list[CollectiveStat]] = {}
    for c in colls:
        by_run.setdefault(c.run, []).append(c)
    out = []
    spans: dict[tuple[int, int], tuple[int, int | None]] = {
        (r.rank, i.run): (i.start_ns + r.offset_ns, None if i.end_ns is None else i.end_ns + r.offset_ns)
        for r in mt.ranks
        for i in r.trace.runs()
    }
    for info in mt.runs():
        if not info.n_events or info.run == 0:
            continue
        per: dict[int, RankStep] = {}
        for r in mt.ranks:
            evs = list(r.trace.iter_events(info.run))
            if not evs:
                continue
            off = r.offset_ns
            comp = _union([(e.start_ns + off, e.end_ns + off) for e in evs if e.phase != "collective"])
            comm = _union([(e.start_ns + off, e.end_ns + off) for e in evs if e.phase == "collective"])
            s0, s1 = spans.get((r.rank, info.run), (None, None))
            lo = min(evs[0].start_ns + off, s0 if s0 is not None else evs[0].start_ns + off)
            hi = s1 if s1 is not None else max(e.end_ns for e in evs) + off
            hidden = _intersect(comp, comm)
            exposed = _length(comm) - hidden
            wait = min(exposed, sum(c.wait(r.rank) for c in by_run.get(info.run, [])))
            per[r.rank] = RankStep(
                hi - lo, _length(comp), wait, exposed - wait, max(0, hi - lo - _length(comp) - exposed), hidden
            )
        if not per:
            continue
        if by_run.get(info.run):
            slowest = min(per, key=lambda k: (per[k].wait, -k))
            spread = max(p.wait for p in per.values()) - min(p.wait for p in per.values())
        else:
            slowest = max(per, key=lambda k: per[k].span)
            spread = max(p.span for p in per.values()) - min(p.span for p in per.values())
        out.append(StepStat(mt.step_of(mt.ranks[0].rank, info.run), info.run, info.name, per, slowest, spread))
    return out


def overlap(mt: MultiTrace) -> dict[int, tuple[int, int]]:
    """Per rank: (collective time, part of it hidden behind computation)."""
    out = {}
    for r in mt.ranks:
        evs = list(r.trace.iter_events())
        comp = _union([(e.start_ns, e.end_ns) for e in evs if e.phase != "collective"])
        comm = _union([(e.start_ns, e.end_ns) for e in evs if e.phase == "collective"])
        out[r.rank] = (_length(comm), _intersect(comp, comm))
    return out


def ranks_text(mt: MultiTrace, run: int | None) -> list[list[str]]:
    """Rows of the debugger's `ranks` view for one run: per rank, its events, time in ops and
    in collectives, and its first non-finite tensor."""
    from .text import format_ns

    rows = []
    for r in mt.ranks:
        evs = list(r.trace.iter_events(run))
        comp = sum(e.duration_ns for e in evs if e.phase != "collective")
        comm = sum(e.duration_ns for e in evs if e.phase == "collective")
        bad = r.trace.first_nonfinite(run)
        what = "-" if bad is None else f"{bad.outputs[0].name if bad.outputs else bad.name} ({bad.op})"
        if bad is not None and bad.frame is not None:
            what += f" at {os.path.basename(bad.frame.filename)}:{bad.frame.lineno}"
        step = mt.step_of(r.rank, run) if run is not None else "-"
        rows.append([str(r.rank), str(step), str(len(evs)), format_ns(comp), format_ns(comm), what])
    return rows
