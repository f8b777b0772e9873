"""The trace file's event blocks: what a recording from raw records holds is, event for
event, what those records stand for (over many blocks and threads), block columns survive
their extremes, and files written by the previous format version still read the same."""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import struct
import sys
import threading
import time
import zlib

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor import events
from tracetensor.trace import store
from tracetensor.trace.recorder import FLUSH_S
from tracetensor.trace.store import _NO_ITER, _pack, unpack_block

# the project's pytest plugin listens (not raw) during every test: records need it off
pytestmark = pytest.mark.tracetensor_nan("off")


def _trainer(seed: int):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = tt.optim.SGD(model.parameters(), lr=0.1)
    x = tt.tensor(rng.standard_normal((5, 8)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 3, 5))

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _ops(evs: list) -> list:
    return sorted((e for e in evs if isinstance(e, events.OpEvent)), key=lambda e: e.seq)


@pytest.mark.parametrize("stacks,values", [(True, "none"), (False, "none"), (True, "summary")])
def test_a_long_recording_holds_exactly_the_events_its_records_stand_for(tmp_path, stacks, values):
    """Several blocks and batches, two threads at once: the file's events are the records'
    events (a raw listener beside the recorder gets the very same records, as tuples, while
    the recorder's column queue gets them as rows)."""
    path = str(tmp_path / "long.ttrace")
    steps = [_trainer(0), _trainer(1)]
    for s in steps:
        s()  # names every leaf
    got: list = []

    def keep(rec: object) -> None:  # (as events: records kept here would keep their Sites alive)
        got.extend(events.materialize([rec]))

    def loop(step, n: int) -> None:
        for i in range(n):
            step()  # (optimizer.step() ends each step's run)
            if i % 50 == 49:
                time.sleep(2 * FLUSH_S)  # the writer takes a batch: the next one comes from new Sites

    with events.listen(keep, raw=True, stacks=stacks), tt.record(path, values=values, stacks=stacks):
        assert events.STATE.raw is not None, "the recorder was not given raw records"
        t = threading.Thread(target=loop, args=(steps[1], 80))
        t.start()
        loop(steps[0], 200)
        t.join()
    want = _ops(got)
    assert len(want) > 2 * 2048 and len({e.thread for e in want}) == 2
    starts = {e.run: e for e in got if isinstance(e, events.RunStart)}
    ends = {e.run: e for e in got if isinstance(e, events.RunEnd)}
    counts: dict[int, int] = {}
    for e in want:
        counts[e.run] = counts.get(e.run, 0) + 1
    with tt.trace.open(path) as tr:
        assert tr.count() == len(want)
        assert _ops(tr.events()) == want
        # the runs too: two threads' steps interleaved, cut by blocks and batches (the writer
        # makes a batch's runs column by column)
        runs = {r.run: r for r in tr.runs()}
    assert len(starts) == 280 and set(starts) == set(runs) == set(ends)  # (200 + 80 steps)
    for run, r in runs.items():
        s, e = starts[run], ends[run]
        assert (r.mode, r.kind, r.name, r.start_ns, r.wall_ns) == (s.mode, s.kind, s.name, s.t_ns, s.wall_ns)
        assert (r.end_ns, r.error, r.loss, r.n_events) == (e.t_ns, e.error, e.loss, counts.get(run, 0))


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_batch_that_mixes_records_and_events_keeps_its_new_call_sites_for_the_next(tmp_path, monkeypatch, writer):
    """A batch holding an event beside records (a NaN op under "check", a collective) is
    written as events; the call sites its records saw first are still numbered in the file,
    so the next batch's records of the same sites read back (they once failed to)."""
    monkeypatch.setenv("TRACETENSOR_WRITER", writer)
    path = str(tmp_path / "mixed.ttrace")
    x = tt.tensor(np.ones((4, 4), np.float32))
    with tt.record(path, values="check"):
        for i in range(6):
            r = events.begin_run("step")
            y = (x @ x).tanh()
            with np.errstate(all="ignore"):
                (y - 2).log() if i == 0 else y.sum()  # (a NaN in the first step only)
            events.end_run(r)
            if i in (0, 2):
                time.sleep(2 * FLUSH_S)  # (the writer takes a batch)
    with tt.trace.open(path) as tr:
        runs = tr.runs()
        assert tr.complete and [r.n_events for r in runs] == [4, 3, 3, 3, 3, 3]  # (matmul, tanh, sub, log)
        assert [e.op for e in tr.events(runs[-1].run)] == ["matmul", "tanh", "sum"]
        assert tr.first_nonfinite().op == "log"


def test_a_batch_that_only_starts_the_key_numbering_over_still_reaches_the_writer(tmp_path):
    """Past 100,000 call sites a column queue numbers them afresh with its next batch, which
    says so; a batch that says so and holds nothing else (the writer thread took the queue
    between two ops) must still restart the writer's slots, or the next batch's first keys
    would name the old numbering's call sites."""
    if events._ColumnQueue is None:
        pytest.skip("the C accelerator is not in use")
    x = tt.tensor(np.ones((4, 4), np.float32))
    batches = []
    for op in ("relu", "tanh"):
        q = events.column_queue(1 << 20, lambda: None, True)
        with events.listen(q, raw=True):
            r = events.begin_run("step")
            getattr(x, op)()
            events.end_run(r)
        batches.append(q.take())
    path = str(tmp_path / "reset.ttrace")
    w = store.TraceWriter(path)
    w.write(batches[0])
    w.write((b"", None, [], True, []))  # (the numbering starts over: nothing else in this batch)
    w.write(batches[1])  # (its keys numbered from 0 again)
    w.close()
    with tt.trace.open(path) as tr:
        assert [e.op for e in tr.events()] == ["relu", "tanh"]


@pytest.mark.parametrize("values", ["none", "summary"])
def test_the_c_and_python_first_pass_over_records_write_the_same_file(tmp_path, monkeypatch, values):
    """The writer's first pass over a batch of records (columns and distinct keys) and its
    summary rows run in C when the accelerator is built: the same batch, both ways, reads
    back the same events, two threads' records, out-of-order sequence numbers and summaries
    (a VJP's missing gradient among them) included."""
    if events._record_columns is None:
        pytest.skip("the C accelerator is not in use")
    step = _trainer(2)
    step()
    got: list = []
    with events.listen(got.append, raw=True, stacks=True, summaries=values == "summary"):
        for _ in range(5):
            step()
        t = threading.Thread(target=step)
        t.start()
        t.join()
    recs = [r for r in got if events.is_raw(r)]
    assert len({r[5] for r in recs}) == 2 and all(len(r) == (11 if values == "summary" else 10) for r in recs)
    batch = [*got[:3], recs[5], *got[3:]]  # (a record again, out of seq order: the writer sorts)
    read = []
    for columns, summary_rows in ((events._record_columns, store._summary_columns_c), (None, None)):
        monkeypatch.setattr(events, "_record_columns", columns)
        monkeypatch.setattr(store, "_summary_columns_c", summary_rows)
        path = str(tmp_path / f"{values}-{columns is None}.ttrace")
        w = store.TraceWriter(path, max_bytes=1 << 20)
        w.keep_summaries = values == "summary"
        w.write(batch)
        w.close()
        with tt.trace.open(path) as tr:
            read.append(_ops(tr.events()))
    assert read[0] == read[1] and len(read[0]) == len(recs) + 1
    assert (read[0][0].summaries is not None) == (values == "summary")
    if values == "summary":
        assert any(None in e.summaries for e in read[0]) and any(e.summaries[0].neg for e in read[0] if e.summaries[0])


def _v2_block(data: bytes, n: int, m: int, t0: int) -> bytes:
    """A block as the previous version wrote it: fixed-width columns, seq/run/start delta-coded
    with the first value absolute."""
    b = unpack_block(data, n, m, t0)

    def delta(a: np.ndarray) -> np.ndarray:
        d = a.astype(np.int64).copy()
        d[1:] -= a[:-1]
        return d

    cols = (
        delta(b.seq),
        delta(b.run),
        b.sig.astype(np.int32),
        delta(b.start - t0),
        b.dur.astype(np.int64),
        b.iteration.astype(np.int64),
        b.nsumm.astype(np.int32),
        b.flags.astype(np.uint8),
        np.ascontiguousarray(b.sints, np.int64),
        np.ascontiguousarray(b.sfloats, np.float64),
    )
    return zlib.compress(b"".join(c.tobytes() for c in cols), 1)


def _v3_block(data: bytes, n: int, m: int, t0: int) -> bytes:
    """A block as version 3 wrote it: tag 3, the event columns' widths, then one deflate of
    their heads and narrowed columns and of the summary matrices, whole int64 and float64."""
    b = unpack_block(data, n, m, t0)
    heads: list[int] = []
    parts: list[bytes] = []
    widths = bytearray()
    cols = (b.seq, b.run, b.sig, b.start - t0, b.dur, b.iteration, b.nsumm, b.flags)
    for a, delta in zip(cols, store._DELTA):
        first = int(a[0])
        if delta:
            a = np.diff(a, prepend=a[:1])
        lo, w = store._narrowed(a, parts)
        heads += (first, lo)
        widths.append(w)
    payload = b"".join(
        [
            np.array(heads, "<i8").tobytes(),
            *parts,
            store._shuffled(np.ascontiguousarray(b.sints, "<i8")),
            store._shuffled(np.ascontiguousarray(b.sfloats, "<f8")),
        ]
    )
    return bytes((3,)) + bytes(widths) + zlib.compress(payload, 1)


def _unpack_run_packs(con: sqlite3.Connection) -> None:
    """A version-6 file's run packs as the `runs` rows version 5 wrote (its version is the
    caller's to set)."""
    cols = "run, mode, kind, name, fetches, feeds, graph, thread, error, start_ns, wall_ns, end_ns, loss, n_events"
    for n, mode, kind, name, fetches, feeds, graph, thread, error, data in con.execute(
        "SELECT n, mode, kind, name, fetches, feeds, graph, thread, error, data FROM run_packs"
    ).fetchall():
        con.executemany(
            f"INSERT INTO runs({cols}, nonfinite, block) VALUES ({','.join('?' * 16)})",
            [
                (
                    r,
                    mode,
                    kind,
                    name,
                    fetches,
                    feeds,
                    graph,
                    thread,
                    error,
                    t0,
                    wall,
                    t1,
                    loss,
                    k,
                    bad,
                    blk,
                )
                for r, t0, wall, t1, loss, k, bad, blk in store.unpack_runs(data, n)
            ],
        )
    con.execute("DELETE FROM run_packs")


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("values", ["none", "summary"])
def test_a_file_of_a_previous_format_version_reads_back_the_same(tmp_path, values, version):
    path = str(tmp_path / "v.ttrace")
    step = _trainer(0)
    step()
    with tt.record(path, values=values):
        for _ in range(600):  # (more than one block's events)
            step()
    with tt.trace.open(path) as t:
        before, t0, runs = t.events(), t.t0, t.runs()
    con = sqlite3.connect(path)
    with con:
        _unpack_run_packs(con)
        rows = con.execute("SELECT id, data, n, m FROM blocks").fetchall()
        assert len(rows) > 1
        for bid, data, n, m in rows:
            old = (_v2_block if version == 2 else _v3_block)(data, n, m, t0)
            con.execute("UPDATE blocks SET data = ? WHERE id = ?", (old, bid))
        con.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
    con.close()
    with tt.trace.open(path) as t:
        assert t.version == version
        assert t.events() == before and t.runs() == runs


def test_block_columns_survive_their_extremes():
    """Gaps of hours between ops, seqs and runs far apart, iterations beside none at all, a
    single event: each column is stored in its own width and reads back exactly."""
    rng = np.random.default_rng(0)
    n = 300
    t0 = 10**15
    seq = np.cumsum(rng.integers(1, 3, n)) + 2**40
    run = np.sort(rng.integers(1, 2**33, n))
    sig = rng.integers(1, 70_000, n).astype(np.int32)
    start = t0 + np.cumsum(rng.integers(0, 4 * 3600 * 10**9, n))
    dur = rng.integers(0, 2**40, n)
    it = np.where(rng.random(n) < 0.5, _NO_ITER, rng.integers(-(2**62), 2**62, n))
    nsumm = rng.integers(-1, 3, n).astype(np.int32)
    flags = rng.integers(0, 2, n).astype(np.uint8)
    m = int(np.maximum(nsumm, 0).sum())
    sints = rng.integers(-1, 2**40, (m, 7))
    # summary floats: a float64 tensor's (every byte plane stored), and a float32 tensor's
    # (their low planes are all zeros, not stored) with NaN, infinities and -0.0
    f32 = rng.standard_normal((m, 4)).astype(np.float32).astype(np.float64)
    f32[::7, 2], f32[::11, 0], f32[::13, 1], f32[::5, 3] = np.nan, -np.inf, -0.0, np.inf
    # and rows that repeat (a steady loop's, a constant tensor's): their low planes deflate too
    steady = np.tile(rng.standard_normal((7, 4)), (m // 7 + 1, 1))[:m]
    for sfloats, k in ((rng.standard_normal((m, 4)), n), (f32, n), (f32, 1), (steady, n)):
        cols = (seq[:k], run[:k], sig[:k], start[:k], dur[:k], it[:k], nsumm[:k], flags[:k])
        mk = int(np.maximum(nsumm[:k], 0).sum())
        data, m_out, _ = _pack(*cols, sints[:mk], sfloats[:mk], t0)
        assert m_out == mk
        b = unpack_block(data, k, mk, t0)
        for name, want in zip(("seq", "run", "sig", "start", "dur", "iteration", "nsumm", "flags"), cols):
            got = getattr(b, name)
            assert np.array_equal(got, want), name
        assert np.array_equal(b.sints, sints[:mk])
        assert data[1 + 15] == (sfloats is steady)  # the flags byte: low planes deflated
        assert b.sfloats.view(np.uint64).tobytes() == sfloats[:mk].view(np.uint64).tobytes()  # bit for bit
    # a block whose events have no summaries at all (a "none" recording's)
    data, m0, _ = _pack(seq, run, sig, start, dur, it, np.full(n, -1, np.int32), flags, sints[:0], f32[:0], t0)
    b = unpack_block(data, n, 0, t0)
    assert m0 == 0 and b.sints.shape == (0, 7) and b.sfloats.shape == (0, 4) and np.array_equal(b.seq, seq)


def test_a_script_edited_between_two_recordings_is_kept_as_it_was_each_time(tmp_path):
    """The user's source goes into each trace as it was when recorded (a file read once per
    process would show the second trace the first one's text)."""
    script = tmp_path / "train.py"
    for version in ("one", "two, longer"):
        script.write_text(f"# version {version}\nimport tracetensor as tt\n(tt.ones(2, 2) * 3).sum()\n")
        path = str(tmp_path / f"{version[:3]}.ttrace")
        assert tt.trace.record_script(path, str(script)) == 0
        with tt.trace.open(path) as t:
            assert t.source(str(script)).startswith(f"# version {version}\n")


def test_a_steady_loops_blocks_compress_far_and_still_read_back(tmp_path):
    """A long run of identical steps (the debugger-at-scale trace): byte-shuffled columns of
    constant deltas deflate 50x and more, which is not corruption (deflate's ceiling, about
    1032:1, is). (Before version 4 stored summary counts in fewer bytes, 100x: deflate had
    their zero bytes to squeeze.)"""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
    from _bigtrace import make

    path, culprit = make(str(tmp_path / "steady.ttrace"), 20_000)
    con = sqlite3.connect(path)
    blocks = [data for (data,) in con.execute("SELECT data FROM blocks")]
    con.close()
    n = len(store._COLS)  # the deflated part: after the tag, 15 widths, flags, the plane mask and its length
    deflated = [d[17 + n : 17 + n + struct.unpack_from("<I", d, 13 + n)[0]] for d in blocks]
    ratios = [len(zlib.decompress(z)) / len(z) for z in deflated]  # (what the bomb check weighs)
    assert max(ratios) > 40
    with tt.trace.open(path) as tr:
        assert tr.count() == len(tr.events()) >= 20_000 - 30
        assert tr.first_nonfinite().run == culprit


def _recorded_steps(path: str, steps: int, pause_every: int = 0) -> str:
    """`steps` training steps of a small model recorded ("none") into `path`; with
    `pause_every`, a pause past the flush interval after each that many steps (so batches
    end where the writer thread hands them over, mid-run too)."""
    step = _trainer(3)
    step()
    with tt.record(path, values="none"):
        for i in range(steps):
            step()
            if pause_every and i % pause_every == pause_every - 1:
                time.sleep(2 * FLUSH_S)
    return path


def _block_parts(path: str) -> dict[int, list[tuple[int, int]]]:
    """Each run's block_runs rows, (events, position in the run) in block order, checked: each
    block's part starts where the run's earlier parts end."""
    con = sqlite3.connect(path)
    parts: dict[int, list[tuple[int, int]]] = {}
    for run, n, pos in con.execute("SELECT run, n, run_pos FROM block_runs ORDER BY block"):
        parts.setdefault(run, []).append((n, pos))
    con.close()
    for run, p in parts.items():
        assert [pos for _, pos in p] == [sum(n for n, _ in p[:i]) for i in range(len(p))], run
    return parts


def test_past_the_runs_it_keeps_the_writer_asks_the_file_only_about_runs_that_go_on(tmp_path, monkeypatch):
    """The writer keeps the event counts of RUN_POS_KEPT runs (3 here), then forgets them; it
    asks the file for a run's count only where a run it may have seen goes on into a later
    block. A new run (its id above every forgotten one) starts at 0 without a query: before,
    every run after the first forgetting cost one (past 100,000 steps of a long recording)."""
    monkeypatch.setattr(store, "RUN_POS_KEPT", 3)
    monkeypatch.setattr(store, "BLOCK", 50)  # (blocks of a few steps, most steps span two: many forgettings)
    monkeypatch.setenv("TRACETENSOR_WRITER", "thread")  # (the writer patched here: in this process)
    asked: list[str] = []
    index = store.TraceWriter._index_block

    def counting(self, *a, **kw):  # (the file's statements, as SQLite runs them)
        self.db.set_trace_callback(lambda sql: asked.append(sql) if "coalesce(sum(n)" in sql else None)
        return index(self, *a, **kw)

    monkeypatch.setattr(store.TraceWriter, "_index_block", counting)
    path = _recorded_steps(str(tmp_path / "forget.ttrace"), 200)
    parts = _block_parts(path)
    cut = sum(len(p) > 1 for p in parts.values())  # runs that span blocks
    assert cut > 30
    with tt.trace.open(path) as tr:
        runs = [r for r in tr.runs() if r.n_events]
        assert len(runs) == 200 and tr.count() == sum(r.n_events for r in runs)
    assert len(asked) <= cut, f"{len(asked)} queries for {cut} runs that span blocks"


@pytest.mark.parametrize("kept", [store.RUN_POS_KEPT, 3])
def test_a_runs_events_are_found_from_any_position_across_blocks(tmp_path, monkeypatch, kept):
    """Runs that span blocks (and batches) are indexed by where each block's part starts in
    the run, also when the writer keeps counts of only a few runs (3 here: it forgets the
    others, never a run the next block continues), and reading from any position in a run
    gives the same events."""
    monkeypatch.setattr(store, "RUN_POS_KEPT", kept)
    monkeypatch.setattr(store, "BLOCK", 50)  # (small blocks: most steps span two)
    monkeypatch.setenv("TRACETENSOR_WRITER", "thread")  # (the writer patched here: in this process)
    path = _recorded_steps(str(tmp_path / "pos.ttrace"), 60, pause_every=20)  # (batches end mid-run too)
    parts = _block_parts(path)
    assert sum(len(p) > 1 for p in parts.values()) > 10  # (many steps span blocks)
    with tt.trace.open(path) as tr:
        runs = [r.run for r in tr.runs() if r.n_events]
        assert len(runs) >= 60
        for run in runs[::7]:
            whole = tr.events(run=run)
            assert len(whole) == tr.run_info(run).n_events > 10
            for k in (1, 7, len(whole) - 1):
                assert list(tr.iter_events(run, start=k)) == whole[k:]


def _nan_steps(path: str, values: str = "check") -> None:
    """A training loop recorded: 40 steps, the 30th's loss NaN (a log of negatives)."""
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = tt.optim.SGD(model.parameters(), lr=0.01)
    x = tt.tensor(rng.standard_normal((5, 8)).astype(np.float32))
    with tt.record(path, values=values), np.errstate(all="ignore"):
        for i in range(40):
            opt.zero_grad()
            out = model(x)
            loss = (out - 1e9).log().mean() if i == 29 else (out * out).mean()
            loss.backward()
            opt.step()


def test_a_loops_steps_are_packed_and_read_the_same(tmp_path):
    """Version 6: a training loop's steps (whole runs, alike) are `run_packs` rows, not
    `runs` rows; each keeps its one block there. Its runs, their events, its non-finite ones
    and reading from a position find them as before."""
    path = str(tmp_path / "v6.ttrace")
    _nan_steps(path)
    con = sqlite3.connect(path)
    packed = con.execute("SELECT coalesce(sum(n), 0) FROM run_packs").fetchone()[0]
    rows = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    n_block_runs = con.execute("SELECT count(*) FROM block_runs").fetchone()[0]
    con.close()
    assert packed >= 38 and rows <= 2 and n_block_runs <= 1  # (the first run may hold the set-up's ops too)
    with tt.trace.open(path) as t:
        assert t.version == store.VERSION == 6
        runs = [r for r in t.runs() if r.n_events]
        assert len(runs) == 40 and [r.run for r in runs] == sorted(r.run for r in runs)
        assert all(r.kind == "step" and r.end_ns > r.start_ns and r.loss is not None for r in runs)
        assert t.count() == sum(r.n_events for r in runs) == len(t.events())
        bad = [r for r in runs if r.nonfinite]
        assert len(bad) == 1 and t.run_ids(nonfinite=True) == [bad[0].run]
        run = bad[0].run
        assert t.run_info(run) == bad[0] and t.count(run) == bad[0].n_events
        evs = t.events(run=run)
        assert len(evs) == bad[0].n_events and all(e.run == run for e in evs)
        first = t.first_nonfinite(run)
        assert first is not None and first.run == run and first.name.endswith("log")
        assert [e.seq for e in t.iter_nonfinite(run)] == sorted(t.nonfinite_counts(run))
        assert repr(list(t.iter_events(run, start=3))) == repr(evs[3:])  # (repr: NaN summaries)
        assert len(t.run_starts()) == len(t.runs())


@pytest.mark.parametrize("version", [5, 4])
def test_a_file_of_version_5_or_4_reads_the_same(tmp_path, version):
    """A file as version 5 wrote it (a `runs` row per run, a run's one block in it) and as
    version 4 did (every run's blocks in block_runs) reads back the same events, runs and
    non-finite ones."""
    path = str(tmp_path / "v.ttrace")
    _nan_steps(path)
    with tt.trace.open(path) as t:
        runs = t.runs()
        want = {r.run: t.events(run=r.run) for r in runs}
        bad = {r.run: (t.first_nonfinite(r.run), t.nonfinite_counts(r.run)) for r in runs if r.nonfinite}
    con = sqlite3.connect(path)
    with con:
        _unpack_run_packs(con)
        if version == 4:
            con.execute(
                "INSERT INTO block_runs SELECT run, block, n_events, 0, nonfinite FROM runs WHERE block IS NOT NULL"
            )
            con.execute("UPDATE runs SET block = NULL")
        con.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
    con.close()
    with tt.trace.open(path) as t:
        assert t.version == version and repr(t.runs()) == repr(runs)  # (repr: a NaN loss is not equal to itself)
        # (repr: a NaN loss or summary is not equal to itself)
        assert repr({r.run: t.events(run=r.run) for r in runs}) == repr(want)
        assert repr({r: (t.first_nonfinite(r), t.nonfinite_counts(r)) for r in bad}) == repr(bad)
        assert t.count() == sum(r.n_events for r in runs)


def _pack_rows(rows: list[tuple]) -> bytes:
    """A run pack of rows as `unpack_runs` gives them back (the loss a float, "nan" or None;
    the block an int or None), made by the writer's `_pack_run_columns`."""
    run, start, wall, end, loss, n, bad, blk = zip(*rows)
    return store._pack_run_columns(
        np.array(run, np.int64),
        np.array(start, np.int64),
        np.array(wall, np.int64),
        np.array(end, np.int64),
        np.array([x is not None for x in loss], np.int64),
        np.array([0.0 if x is None else float(x) for x in loss], np.float64),
        np.array(n, np.int64),
        np.array(bad, np.int64),
        np.array([-1 if b is None else b for b in blk], np.int64),
    )


def test_run_packs_survive_their_extremes():
    """Runs far apart, hours between them, no loss, a NaN or infinite loss, no block and
    blocks far apart, one run alone: each column reads back exactly."""
    rng = np.random.default_rng(1)
    n = 500
    run = np.sort(rng.choice(2**40, n, replace=False)).tolist()
    start = (10**15 + np.cumsum(rng.integers(0, 4 * 3600 * 10**9, n))).tolist()
    wall = (1_790_000_000 * 10**9 + np.cumsum(rng.integers(0, 10**12, n))).tolist()
    end = [s + int(d) for s, d in zip(start, rng.integers(0, 2**40, n))]
    loss = [None if k % 5 == 0 else float(x) for k, x in enumerate(rng.standard_normal(n))]
    loss[3], loss[7], loss[9] = "nan", float("inf"), -0.0  # (a NaN loss comes as the text "nan")
    nev = rng.integers(0, 2**31, n).tolist()
    bad = rng.integers(0, 3, n).tolist()
    blk = [None if k % 3 == 0 else int(b) for k, b in enumerate(rng.integers(1, 2**35, n))]
    rows = list(zip(run, start, wall, end, loss, nev, bad, blk))
    for part in (rows, rows[:1]):
        got = store.unpack_runs(_pack_rows(part), len(part))
        assert repr(got) == repr(part)  # (a NaN loss read back as the text "nan", as the runs table keeps it)


@pytest.mark.parametrize("damage", ["garbage", "short", "bomb", "count"])
def test_a_damaged_run_pack_is_one_clear_error(tmp_path, damage):
    """A run pack that does not inflate, inflates to other than its header says (a zlib bomb
    among them) or holds another number of runs: TraceFileError naming the file and the pack."""
    path = str(tmp_path / "d.ttrace")
    _nan_steps(path, "none")
    con = sqlite3.connect(path)
    with con:
        pid, n, data = con.execute("SELECT id, n, data FROM run_packs ORDER BY id LIMIT 1").fetchone()
        if damage == "garbage":
            data = data[:10] + b"\x00" * 40
        elif damage == "short":
            data = data[:-3]
        elif damage == "bomb":
            data = bytes((1,)) + bytes([8] * 9) + zlib.compress(b"\x00" * (1 << 24), 9)
        else:
            con.execute("UPDATE run_packs SET n = ? WHERE id = ?", (n + 1, pid))
        con.execute("UPDATE run_packs SET data = ? WHERE id = ?", (data, pid))
    con.close()
    with tt.trace.open(path) as t:
        with pytest.raises(tt.trace.TraceFileError, match=f"{path}.*run pack {pid}"):
            t.runs()


def test_a_reader_open_while_a_loop_is_recorded_sees_the_steps_packed_since(tmp_path):
    """One reader, opened while the file is recorded, finds the runs packed after it read
    the first ones (it unpacks what came since at each query)."""
    path = str(tmp_path / "live.ttrace")
    step = _trainer(2)
    step()

    def wait_for(t: tt.trace.Trace, n: int) -> list:
        deadline = time.time() + 10
        while len(t.runs()) < n and time.time() < deadline:
            time.sleep(0.05)
        return t.runs()

    with tt.record(path, values="none") as rec:
        for _ in range(20):
            step()
        rec._wake.set()
        with tt.trace.open(path) as t:
            first = wait_for(t, 20)
            for _ in range(20):
                step()
            rec._wake.set()
            runs = wait_for(t, 40)
            assert len(first) == 20 and len(runs) == 40 and runs[:20] == first
            assert t.count() == sum(r.n_events for r in runs) > 0 and not t.complete
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*), sum(n) FROM run_packs").fetchone() == (2, 40)
    con.close()


def test_a_file_deflated_by_zlib_reads_the_same_as_one_by_isal(tmp_path, monkeypatch):
    """The writer deflates with ISA-L where it is installed, with zlib where not: both files
    hold the same runs and events."""
    if store._deflate is zlib.compress:
        pytest.skip("isal is not installed here: the writer deflates with zlib")
    got = []
    for name, deflate in (("isal", store._deflate), ("zlib", zlib.compress)):
        monkeypatch.setattr(store, "_deflate", deflate)
        monkeypatch.setenv("TRACETENSOR_WRITER", "thread")  # (the writer in this process: patched)
        path = str(tmp_path / f"{name}.ttrace")
        tt.manual_seed(0)  # (the same model each time)
        _nan_steps(path, "summary")
        with tt.trace.open(path) as t:
            runs = [(r.kind, r.n_events, r.nonfinite) for r in t.runs()]
            evs = [(e.op, e.name, e.outputs, e.summaries, e.nonfinite) for e in t.events()]
            got.append(repr((runs, evs)))  # (repr: NaN summaries; times and seqs differ)
    assert got[0] == got[1]


def _markers() -> list:
    """Run markers of every kind a column queue keeps as rows, and of each kind it cannot: an
    int loss, a subclass, a field it cannot hash. Run 6 starts in one batch and ends in the next."""
    S, E = events.RunStart, events.RunEnd

    @dataclasses.dataclass(slots=True, unsafe_hash=True)
    class MyEnd(E):
        pass

    first = [
        S(1, "eager", "step", "step", (), (), None, 100, 7, 1000),
        E(1, 200, 7, None, 0.5),
        S(2, "eager", "step", "step", (), (), None, 300, 7, 1100),
        E(2, 400, 7, None, 3),
        S(3, "graph", "run", "train", ("loss:0",), ("x:0", "y:0"), 1, 500, 8, 1200),
        E(3, 600, 8, "ValueError: bad feed", float("nan")),
        S(4, "eager", "step", "step", (), (), None, 700, 7, 1300),
        MyEnd(4, 800, 7, None, None),
        S(6, "eager", "step", "step", (), (), None, 900, 7, 1400),
        S(7, "graph", "run", "odd", (["not", "hashable"],), (), 2, 1100, 7, 1500),  # (a hostile feed list)
        E(7, 1200, 7, None, None),
    ]
    return [first, [E(6, 1000, 7, None, -0.0)]]


def test_run_markers_read_back_the_same_as_rows_or_as_objects(tmp_path):
    """A column queue keeps a RunStart or RunEnd as a row, or, where it cannot (a loss that is
    not a float, a subclass), as it is; a Python list batch hands over the objects. Each way,
    every run reads back with its fields: kind, name, fetches, feeds, graph, times, error and
    loss (an int loss as a float, NaN as NaN, -0.0 kept), a run cut between two batches too."""
    if events._ColumnQueue is None:
        pytest.skip("the C accelerator is not in use")
    got = {}
    for way in ("queue", "list"):
        path = str(tmp_path / f"{way}.ttrace")
        w = store.TraceWriter(path)
        for batch, as_rows in zip(_markers(), (8, 1)):  # (all but the int loss, the subclass, the list)
            if way == "queue":
                q = events.column_queue(1 << 20, lambda: None, True)
                for m in batch:
                    q(m)
                taken = q.take()
                assert len(taken[5]) == 48 * as_rows and len(taken[4]) == len(batch) - as_rows
                w.write(taken)
            else:
                w.write(list(batch))
        w.close()
        with tt.trace.open(path) as t:
            got[way] = t.runs()
    assert repr(got["queue"]) == repr(got["list"])
    runs = {r.run: r for r in got["queue"]}
    assert sorted(runs) == [1, 2, 3, 4, 6, 7] and runs[7].fetches == (["not", "hashable"],)
    assert (runs[1].loss, runs[2].loss, runs[4].loss) == (0.5, 3.0, None) and math.isnan(runs[3].loss)
    assert math.copysign(1, runs[6].loss) == -1 and (runs[6].start_ns, runs[6].end_ns) == (900, 1000)
    r3 = runs[3]
    assert (r3.mode, r3.kind, r3.name, r3.fetches, r3.feeds, r3.graph) == (
        "graph",
        "run",
        "train",
        ("loss:0",),
        ("x:0", "y:0"),
        1,
    )
    assert (r3.start_ns, r3.end_ns, r3.error) == (500, 600, "ValueError: bad feed")
