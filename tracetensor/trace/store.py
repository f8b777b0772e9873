"""The trace file: an SQLite database (schema, writer, and `SqliteTrace`, the reader that
gives back the same `tracetensor.events` objects the live stream carries).

Layout, and why. An op event is split into what repeats from step to step (op, name,
inputs, output shapes, stack: one `sigs` row, written once) and what does not (seq, time,
duration, summaries). The latter are stored a block at a time: one `blocks` row holds up
to `BLOCK` consecutive events as compressed numpy columns, so the cost per event is a
few list appends, not an SQLite row (several times cheaper to write, and smaller).
Indexes over blocks answer "events of run N" (`block_runs`, `RUN_BLOCKS`), "event number K"
(`blocks_pos`), "events of op type T" (`block_ops`, which also holds per-op counts and
times) and "the first non-finite tensor": each block (and each run's part of it) stores
the seq of its first event with a NaN/inf output, under a partial index, and each event
its non-finite count.
A training loop's steps (runs) are stored the same way: whole runs that share their mode,
name, thread and so on are packed, their per-run columns compressed, in `run_packs` rows
(a `runs` row was 60% of a small step's file); the reader unpacks them into a table of its
own (`packed_runs`), read beside `runs`.
Tensors are `.npy` bytes in `tensors`, kept within a byte budget (oldest deleted first,
each deletion logged in `dropped`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import json
import operator
import os
import re
import sqlite3
import stat
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

try:  # ISA-L's deflate: the same zlib streams, 4x as fast at level 1 (zlib's took a fifth of
    # the writer's time a step) for 2% more bytes. Readers inflate them with zlib
    from isal.isal_zlib import compress as _deflate
except ImportError:  # (a platform without its wheel)
    _deflate = zlib.compress

from .. import events as ev
from .._npyfile import npy_header
from ..errors import SerializationError
from .base import NOT_RECORDED, RunInfo, Trace, op_pattern, output_name

FORMAT = "tracetensor-trace"
VERSION = 6  # bump on any schema change; readers refuse files newer than they know
# version 2: runs.loss and runs.nonfinite (read as NULL / 0 from version-1 files)
# version 3: blocks store each column in the fewest bytes that hold it (see `_pack`)
# version 4: blocks store summary counts that way too, and summary floats by byte plane;
#   runs.loss holds the float itself ("nan" for a NaN), not its repr
# version 5: a run whose events lie in one block, written in one batch (a step of a training
#   loop), has that block in runs.block and no block_runs row; `RUN_BLOCKS` reads both
# version 6: whole runs written in one batch that share (mode, kind, name, fetches, feeds,
#   graph, thread, error), eight or more, are one `run_packs` row (see `_pack_run_columns`), not
#   `runs` rows: a step's row was about 80 bytes of a small MLP's 130-byte step, and a third
#   of the writer's time
# most events in one block: a recording hands its queue over every 8,192 events, one block each
# (a block's indexing and packing cost about the same at 2,048 events as at 8,192: 4x the
# blocks cost the writer 1.3 us more a step of a small MLP)
BLOCK = 8192
# runs whose event count the writer keeps in memory: past it, it forgets them all, and asks the
# file for one only where a run it may have seen goes on (run ids only grow: a run above every
# one it forgot is new). It asked for every run after that: past 100,000 steps of a small MLP,
# 1-2 us more a step of the writer's CPU, and 100,000 counts held, 10 MB of its memory
RUN_POS_KEPT = 20_000
# fewest whole, alike runs of a batch that are packed (fewer: `runs` rows, about as small)
PACK_MIN = 8
APPLICATION_ID = 0x74747263  # "ttrc", in the SQLite header: marks the file as a trace
# small pages: a short recording's file is mostly its tables' first pages (30 of them, one
# each), and event blocks are blobs of a few KB that span pages as well at any size
PAGE_SIZE = 1024

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE runs(run INTEGER PRIMARY KEY, mode TEXT, kind TEXT, name TEXT, fetches TEXT, feeds TEXT,
                  graph INTEGER, start_ns INTEGER, wall_ns INTEGER, thread INTEGER, end_ns INTEGER,
                  error TEXT, n_events INTEGER NOT NULL DEFAULT 0, loss,
                  nonfinite INTEGER NOT NULL DEFAULT 0, block INTEGER);
CREATE TABLE run_packs(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, mode TEXT, kind TEXT, name TEXT,
                       fetches TEXT, feeds TEXT, graph INTEGER, thread INTEGER, error TEXT, data BLOB NOT NULL);
CREATE TABLE ops(id INTEGER PRIMARY KEY, op TEXT NOT NULL UNIQUE);
CREATE TABLE stacks(id INTEGER PRIMARY KEY, frames TEXT NOT NULL);
CREATE TABLE sigs(id INTEGER PRIMARY KEY, op INTEGER NOT NULL, name TEXT NOT NULL, mode TEXT, phase TEXT,
                  device TEXT, thread INTEGER, flops INTEGER, forward TEXT, inputs TEXT, outputs TEXT,
                  grad_of TEXT, stack INTEGER);
CREATE INDEX sigs_name ON sigs(name);
CREATE TABLE blocks(id INTEGER PRIMARY KEY, seq_lo INTEGER NOT NULL, seq_hi INTEGER NOT NULL,
                    n INTEGER NOT NULL, m INTEGER NOT NULL, pos INTEGER NOT NULL, nonfinite INTEGER NOT NULL,
                    data BLOB NOT NULL);
CREATE INDEX blocks_pos ON blocks(pos);
CREATE INDEX blocks_nonfinite ON blocks(nonfinite) WHERE nonfinite > 0;
CREATE TABLE block_runs(run INTEGER NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,
                        run_pos INTEGER NOT NULL, nonfinite INTEGER NOT NULL,
                        PRIMARY KEY(run, block)) WITHOUT ROWID;
CREATE INDEX block_runs_pos ON block_runs(run, run_pos);
CREATE INDEX block_runs_nonfinite ON block_runs(run, nonfinite) WHERE nonfinite > 0;
CREATE TABLE block_ops(op INTEGER NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,
                       total_ns INTEGER NOT NULL, PRIMARY KEY(op, block)) WITHOUT ROWID;
CREATE TABLE input_summaries(seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE tensors(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, idx INTEGER NOT NULL, run INTEGER,
                     name TEXT NOT NULL, nbytes INTEGER NOT NULL, npy BLOB NOT NULL);
CREATE INDEX tensors_name ON tensors(name, run);
CREATE INDEX tensors_seq ON tensors(seq);
CREATE TABLE dropped(seq INTEGER, idx INTEGER, run INTEGER, name TEXT, nbytes INTEGER, reason TEXT);
CREATE TABLE device_times(seq INTEGER PRIMARY KEY, device_ns INTEGER NOT NULL);
CREATE TABLE graphs(id INTEGER PRIMARY KEY, graph INTEGER, version INTEGER, nodes TEXT);
CREATE TABLE ranges(id INTEGER PRIMARY KEY, name TEXT, run INTEGER, start_ns INTEGER, end_ns INTEGER,
                    thread INTEGER);
CREATE INDEX ranges_run ON ranges(run);
CREATE TABLE sources(filename TEXT PRIMARY KEY, text TEXT NOT NULL);
"""

_RUN_COLUMNS = (
    "run, mode, kind, name, fetches, feeds, graph, start_ns, wall_ns, thread, end_ns, error, n_events, loss,"
    " nonfinite, block"
)
# the packed runs as `runs` rows (a reader's `packed_runs` and the packs' shared columns)
_PACKED_RUNS = (
    "SELECT p.run, k.mode, k.kind, k.name, k.fetches, k.feeds, k.graph, p.start_ns, p.wall_ns, k.thread, p.end_ns,"
    " k.error, p.n_events, p.loss, p.nonfinite, p.block FROM packed_runs p JOIN run_packs k ON k.id = p.pack"
)
_SQLITE_MAGIC = b"SQLite format 3\x00"


# each run's blocks (block, events of the run in it, where they start in the run, non-finite
# ones), from version 5: block_runs rows, and a run's one block in its runs row. (A subquery,
# not a view: a trace file holds no view, see _check_schema.)
def _run_blocks_of(runs: str) -> str:
    return (
        "(SELECT run, block, n, run_pos, nonfinite FROM block_runs"
        f" UNION ALL SELECT run, block, n_events, 0, nonfinite FROM {runs} WHERE block IS NOT NULL)"
    )


RUN_BLOCKS = _run_blocks_of("runs")  # (a version-6 reader's reads its packed runs too)
MAX_SOURCE_BYTES = 4 << 20  # larger "user files" are not copied into the trace
# Python's own files (stdlib, site-packages, console scripts) are not the user's source
_NOT_USER = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


class TraceFileError(SerializationError):
    """A trace file that cannot be read or written: names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path, self.problem = os.fspath(path), problem
        super().__init__(f"trace file {self.path}: {problem}")


# --------------------------------------------------------------------------- summaries
# One summary packs into 45 bytes in the common case (all finite, counts < 2**32; `pos`
# is implied), 89 otherwise. Flag 0 marks an output that has no summary.
_S_SMALL = struct.Struct("<B3I4d")
_S_FULL = struct.Struct("<B7q4d")


def pack_summaries(ss: tuple[ev.Summary | None, ...] | None) -> bytes | None:
    if ss is None:
        return None
    parts = []
    for s in ss:
        if s is None:
            parts.append(b"\x00")
        elif (
            s.nan == 0
            and s.neginf == 0
            and s.posinf == 0
            and s.size < 4294967296
            and s.neg >= 0
            and s.zero >= 0
            and s.pos == s.size - s.neg - s.zero
        ):
            parts.append(_S_SMALL.pack(1, s.size, s.neg, s.zero, s.min, s.max, s.mean, s.std))
        else:
            parts.append(_S_FULL.pack(2, *s))
    return b"".join(parts)


def unpack_summaries(b: bytes | None) -> tuple[ev.Summary | None, ...] | None:
    if b is None:
        return None
    out: list[ev.Summary | None] = []
    i, n = 0, len(b)
    while i < n:
        flag = b[i]
        if flag == 0:
            out.append(None)
            i += 1
        elif flag == 1:
            _, size, neg, zero, mn, mx, mean, std = _S_SMALL.unpack_from(b, i)
            out.append(ev.Summary(size, 0, 0, 0, neg, zero, size - neg - zero, mn, mx, mean, std))
            i += _S_SMALL.size
        elif flag == 2:
            out.append(ev.Summary(*_S_FULL.unpack_from(b, i)[1:]))
            i += _S_FULL.size
        else:
            raise ValueError(f"unknown summary tag {flag}")
    return tuple(out)


@functools.lru_cache(maxsize=4096)  # the same call sites, recording after recording
def _frames_json(stack: tuple[ev.Frame, ...]) -> str:
    return json.dumps([list(f) for f in stack], separators=(",", ":"))


def _frames(js: str | None) -> tuple[ev.Frame, ...] | None:
    return None if js is None else tuple(ev.Frame(*f) for f in json.loads(js))


def _node_json(n: ev.NodeDef) -> list:
    return [
        n.name,
        n.op,
        list(n.inputs),
        [list(a) for a in n.attrs],
        [list(f) for f in n.stack],
        [None if s is None else list(s) for s in n.shapes],
        list(n.dtypes),
    ]


def _node(x: list) -> ev.NodeDef:
    return ev.NodeDef(
        x[0],
        x[1],
        tuple(x[2]),
        tuple(tuple(a) for a in x[3]),
        tuple(ev.Frame(*f) for f in x[4]),
        tuple(None if s is None else tuple(s) for s in x[5]),
        tuple(x[6]),
    )


def npy_bytes(a: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, ev.to_numpy(a), allow_pickle=False)
    return buf.getvalue()


def load_npy(b: bytes) -> np.ndarray:
    """An array from `.npy` bytes, after checking that the header's shape fits the bytes that
    follow (numpy would allocate a declared 4 PiB shape first); never unpickles."""
    if not isinstance(b, bytes):
        raise ValueError(f"expected .npy bytes, found {type(b).__name__}")
    f = io.BytesIO(b)
    npy_header(f, len(b))
    f.seek(0)
    return np.load(f, allow_pickle=False)


# --------------------------------------------------------------------------- event blocks
# A block is up to BLOCK consecutive events, as columns: seq, run and start are delta-coded
# (they grow steadily, so the deltas compress to almost nothing), summaries are an (m, 7) int64 count
# matrix and an (m, 4) float64 min/max/mean/std matrix, one row per output (size -1 marks
# an output without a summary); `nsumm[i]` is how many rows event i has (-1: none at all).

_NO_ITER = -(1 << 63)
_COLS = (
    ("seq", np.int64),
    ("run", np.int64),
    ("sig", np.int32),
    ("start", np.int64),
    ("dur", np.int64),
    ("iteration", np.int64),
    ("nsumm", np.int32),
    ("flags", np.uint8),
)


class Block:
    """The decoded columns of one block (numpy arrays), and its events on demand."""

    __slots__ = (
        "seq",
        "run",
        "sig",
        "start",
        "dur",
        "iteration",
        "nsumm",
        "flags",
        "sints",
        "sfloats",
        "nonfinite",
        "offsets",
        "id",
        "_events",
    )

    def __init__(self, cols: dict[str, np.ndarray], sints: np.ndarray, sfloats: np.ndarray) -> None:
        for k, v in cols.items():
            setattr(self, k, v)
        self.sints, self.sfloats = sints, sfloats
        counts = np.maximum(self.nsumm, 0).astype(np.int64)
        ends = np.cumsum(counts)
        self.offsets = ends - counts
        per_row = sints[:, 1:4].sum(axis=1) if len(sints) else np.zeros(0, np.int64)
        cs = np.concatenate([[0], np.cumsum(per_row)])
        self.nonfinite = cs[ends] - cs[self.offsets]
        self._events: list[ev.OpEvent] | None = None

    def __len__(self) -> int:
        return len(self.seq)


def pack_block(evs: list[ev.OpEvent], sigs: list[int], t0: int) -> tuple[bytes, int, Block]:
    """-> (compressed bytes, number of summary rows, the block's columns)."""
    n = len(evs)
    seq = np.fromiter([e.seq for e in evs], np.int64, n)
    run = np.fromiter([e.run for e in evs], np.int64, n)
    start = np.fromiter([e.start_ns for e in evs], np.int64, n)
    dur = np.fromiter([e.end_ns for e in evs], np.int64, n) - start
    it = np.fromiter([_NO_ITER if e.iteration is None else e.iteration for e in evs], np.int64, n)
    flags = np.fromiter([e.input_summaries is not None for e in evs], np.uint8, n)
    nsumm, sints, sfloats = _summary_columns([e.summaries for e in evs])
    return _pack(seq, run, np.asarray(sigs, np.int32), start, dur, it, nsumm, flags, sints, sfloats, t0)


_summary_columns_c: Any = None  # the C accelerator's summary rows (set below)


_SUMMARY_ROW = np.dtype([("c", "<i8", 7), ("f", "<f8", 4)])  # events.SUMMARY_ROW, as numpy reads it


def _summary_columns(summ: list[tuple | bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events' summaries (each a tuple of Summary or None per output, a record's packed rows
    (`events.summary_rows`), or None) -> the block's summary count per event (-1: none
    kept) and its rows' integer and float columns."""
    if _summary_columns_c is not None:  # the C accelerator's one pass (the same columns)
        ns, ints, floats = _summary_columns_c(summ)
        m = len(floats) // 32
        return (
            np.frombuffer(ns, np.int32),
            np.frombuffer(ints, np.int64).reshape(m, 7),
            np.frombuffer(floats, np.float64).reshape(m, 4),
        )
    summ = [ev.summaries_of_rows(ss) if ss.__class__ is bytes else ss for ss in summ]
    nsumm = np.fromiter([-1 if ss is None else len(ss) for ss in summ], np.int32, len(summ))
    rows = [ev._NONE_ROW if s is None else s for ss in summ if ss is not None for s in ss]
    arr = np.fromiter(itertools.chain.from_iterable(rows), np.float64, len(rows) * 11).reshape(len(rows), 11)
    return nsumm, arr[:, :7].astype(np.int64), np.ascontiguousarray(arr[:, 7:])


def _pack(
    seq: np.ndarray,
    run: np.ndarray,
    sig: np.ndarray,
    start: np.ndarray,
    dur: np.ndarray,
    it: np.ndarray,
    nsumm: np.ndarray,
    flags: np.ndarray,
    sints: np.ndarray,
    sfloats: np.ndarray,
    t0: int,
) -> tuple[bytes, int, Block]:
    """A block's columns -> (its bytes, number of summary rows, the Block).

    The bytes (`_TAG` 4): the tag; one width per event column and per summary count column;
    a flags byte, the summary floats' plane mask (u32) and the deflated part's length (u32);
    the deflated part; then the summary floats' low byte planes, as they are (unless flag 1
    says they are deflated, after the high planes).
    - Event columns: each column's first value and base (int64 pairs), then each column as
      unsigned offsets from its base in that many bytes (0: every value is the base). seq,
      run and start are stored as deltas (first value apart), so a step's 40-odd bytes of
      columns per event shrink to a dozen before deflate sees them.
    - Summary counts (7 per row): the same, without deltas (a count fits a byte or two).
    - Summary floats (min, max, mean, std; float64): by byte plane, each column's plane p
      stored only where the mask's bit 8 * column + p says it is not all zeros (the low
      planes of a float32 tensor's min and max are). Planes 6 and 7 (sign, exponent, top of
      the mantissa) are deflated; planes 0-5 are stored as they are, since deflate makes
      almost nothing of a mean's low bytes and spent four fifths of a summary block's time
      trying to. Where a sample of them does deflate (rows that repeat: a constant tensor's,
      a steady loop's), they are deflated too.
    Columns, counts and planes have their bytes grouped by place (`_shuffled`)."""
    blk = Block(
        {
            "seq": seq,
            "run": run,
            "sig": sig,
            "start": start,
            "dur": dur,
            "iteration": it,
            "nsumm": nsumm,
            "flags": flags,
        },
        sints,
        sfloats,
    )
    heads, parts, widths = [], [], bytearray()
    for a, delta in zip((seq, run, sig, start - t0, dur, it, nsumm, flags), _DELTA):
        first = int(a[0])
        if delta:
            a = np.diff(a, prepend=a[:1])  # (first delta 0: the first value is kept apart)
        lo, w = _narrowed(a, parts)
        heads += (first, lo)
        widths.append(w)
    m = len(sints)
    for j in range(7):
        lo, w = _narrowed(sints[:, j], parts) if m else (0, 0)
        heads.append(lo)
        widths.append(w)
    # (4 columns, 8 planes, m rows): plane p of column c is row [c, p]
    planes = np.ascontiguousarray(sfloats.astype("<f8").view(np.uint8).reshape(m, 4, 8).transpose(1, 2, 0))
    kept = planes.any(axis=2)
    mask = int(np.packbits(kept.ravel(), bitorder="little").view("<u4")[0])
    parts.append(planes[kept & _HIGH_PLANES].tobytes())
    low = planes[kept & ~_HIGH_PLANES]
    flags = 0
    if low.size:
        # a sample of each low plane (its first 64 rows: several steps of a loop) says
        # whether the rest would deflate
        sample = low[:, :64].tobytes()
        if len(_deflate(sample, 1)) < 0.6 * len(sample):
            parts.append(low.tobytes())
            flags, low = 1, low[:0]
    deflated = _deflate(b"".join([struct.pack(f"<{len(heads)}q", *heads), *parts]), 1)
    head = bytes((_TAG,)) + bytes(widths) + struct.pack("<BII", flags, mask, len(deflated))
    return head + deflated + low.tobytes(), m, blk


def _narrowed(a: np.ndarray, parts: list[bytes]) -> tuple[int, int]:
    """Appends column `a` as offsets from its smallest value, in the fewest bytes that hold
    them all (shuffled), to `parts`; -> (that base, the width: 0 when every value is it)."""
    lo, hi = int(a.min()), int(a.max())
    w = next(w for w, lim in _WIDTHS if hi - lo < lim)
    if w:
        # offsets from the base, modulo 2**64 (a column may span all of int64: iteration)
        u = a.astype(np.int64, copy=False).view(np.uint64) - np.uint64(lo & _U64)
        parts.append(_shuffled(u.astype(_UINT[w])))
    return lo, w


_TAG = 4  # first byte of a block written by this version (version 3's: 3; version 2's is bare deflate: 0x78)
_DELTA = (True, True, False, True, False, False, False, False)
_WIDTHS = ((0, 1), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32), (8, 1 << 64))
_UINT = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_U64 = (1 << 64) - 1
_HIGH_PLANES = np.zeros((4, 8), bool)
_HIGH_PLANES[:, 6:] = True  # the summary floats' planes that are deflated (see `_pack`)
_EVENT_BYTES = sum(np.dtype(dt).itemsize for _, dt in _COLS)  # a version-2 block's bytes per event
_SUMMARY_BYTES = 11 * 8


def _shuffled(a: np.ndarray) -> bytes:
    """The bytes of `a` grouped by their place in each item: every item's first byte, then every
    second byte ... (the high bytes of small numbers are alike: deflate makes almost nothing of
    them, several times faster than of the items side by side)."""
    w = a.dtype.itemsize
    return a.view(np.uint8).reshape(-1, w).T.tobytes() if w > 1 else a.tobytes()


def _unshuffled(raw: bytes, dtype: Any, count: int, offset: int) -> np.ndarray:
    dtype = np.dtype(dtype)
    b = np.frombuffer(raw, np.uint8, count * dtype.itemsize, offset)
    return b.reshape(dtype.itemsize, count).T.copy().view(dtype).reshape(count)


def unpack_block(data: bytes, n: int, m: int, t0: int) -> Block:
    if not isinstance(data, bytes) or not isinstance(n, int) or not isinstance(m, int) or n < 0 or m < 0:
        raise ValueError(f"bad block row (n={n!r}, m={m!r}, data of type {type(data).__name__})")
    tag = data[0] if data else None
    raw_planes = b""
    ncols = len(_COLS)
    if tag == 4:
        widths, swidths = data[1 : 1 + ncols], data[1 + ncols : 8 + ncols]
        if len(data) < 17 + ncols:
            raise ValueError("block shorter than its header")
        flags, mask, zlen = struct.unpack_from("<BII", data, 8 + ncols)
        kept = np.unpackbits(np.frombuffer(struct.pack("<I", mask), np.uint8), bitorder="little").astype(bool)
        kept = kept.reshape(4, 8)
        n_high, n_low = int((kept & _HIGH_PLANES).sum()), int((kept & ~_HIGH_PLANES).sum())
        low_deflated = flags & 1
        want = 16 * ncols + n * sum(widths) + 8 * 7 + m * sum(swidths) + m * (n_high + n_low * low_deflated)
        raw_planes = data[17 + ncols + zlen :]
        data = data[17 + ncols : 17 + ncols + zlen]
        if flags > 1 or len(data) != zlen or len(raw_planes) != (0 if low_deflated else m * n_low):
            raise ValueError(f"block's float planes hold {len(raw_planes)} bytes, its header says otherwise")
    elif tag == 3:
        widths, swidths = data[1 : 1 + ncols], b""
        want = 16 * ncols + n * sum(widths) + m * _SUMMARY_BYTES
        data = data[1 + ncols :]
    else:  # version 2: fixed-width columns
        widths = swidths = b""
        want = n * _EVENT_BYTES + m * _SUMMARY_BYTES
    if len(widths) < (ncols if tag in (3, 4) else 0) or any(w not in _UINT and w != 0 for w in widths + swidths):
        raise ValueError(f"bad column widths {list(widths + swidths)}")
    raw = _inflated(data, want, "block")
    cols = {}
    if tag in (3, 4):
        heads = np.frombuffer(raw, np.int64, 2 * ncols).tolist()
        off = 16 * ncols
        if tag == 4:  # (the summary counts' bases follow the columns' heads)
            bases = np.frombuffer(raw, np.int64, 7, off).tolist()
            off += 56
        for k, ((name, dt), w, delta) in enumerate(zip(_COLS, widths, _DELTA)):
            first, lo = heads[2 * k], heads[2 * k + 1]
            a, off = _widened(raw, off, n, w, lo)
            if delta:
                a = np.cumsum(a) + first  # (the first delta is 0)
            cols[name] = a.astype(dt, copy=False)
    else:
        off = 0
        for name, dt in _COLS:
            a = np.frombuffer(raw, dt, n, off)
            off += a.nbytes
            cols[name] = a
        cols["seq"] = np.cumsum(cols["seq"])
        cols["run"] = np.cumsum(cols["run"])
        cols["start"] = np.cumsum(cols["start"])
    cols["start"] = cols["start"] + t0
    if tag == 4:
        sints = np.empty((m, 7), np.int64)
        for j, (w, lo) in enumerate(zip(swidths, bases)):
            sints[:, j], off = _widened(raw, off, m, w, lo)
        planes = np.zeros((4, 8, m), np.uint8)
        if m:
            planes[kept & _HIGH_PLANES] = np.frombuffer(raw, np.uint8, m * n_high, off).reshape(-1, m)
            off += m * n_high
            if low_deflated:
                low = np.frombuffer(raw, np.uint8, m * n_low, off)
                off += m * n_low
            else:
                low = np.frombuffer(raw_planes, np.uint8)
            planes[kept & ~_HIGH_PLANES] = low.reshape(-1, m)
        sfloats = np.ascontiguousarray(planes.transpose(2, 0, 1)).view("<f8").reshape(m, 4)
        if off != len(raw):
            raise ValueError(f"block holds {len(raw)} bytes, its header says {off}")
        return Block(cols, sints, sfloats)
    matrix = _unshuffled if tag == 3 else np.frombuffer
    sints = matrix(raw, np.dtype("<i8"), m * 7, off).reshape(m, 7)
    off += m * 56
    sfloats = matrix(raw, np.dtype("<f8"), m * 4, off).reshape(m, 4)
    if off + m * 32 != len(raw):
        raise ValueError(f"block holds {len(raw)} bytes, its header says {off + m * 32}")
    return Block(cols, sints, sfloats)


def _inflated(data: bytes, want: int, what: str) -> bytes:
    """`data` inflated, exactly `want` bytes as its header says, or ValueError. The size is
    known before inflating: data that would inflate past it (a zlib bomb) is refused after
    reading one byte too many, not after filling memory. A header that claims more than
    deflate can hold at all (at most about 1032:1) is refused before that; a steady training
    loop's byte-shuffled columns do compress 60x and more."""
    if want > 1040 * max(len(data), 1024):
        raise ValueError(f"header says {want} bytes, far more than {len(data)} compressed bytes can hold")
    z = zlib.decompressobj()
    raw = z.decompress(data, want + 1)
    if len(raw) > want or z.unconsumed_tail:
        raise ValueError(f"{what} inflates to more than the {want} bytes its header says")
    if len(raw) < want:
        raise ValueError(f"{what} holds {len(raw)} bytes, its header says {want}")
    if not z.eof:  # (all there but its deflate stream's end, checksum included: cut short)
        raise ValueError(f"{what} is cut short: its deflate stream does not end")
    return raw


def _widened(raw: bytes, off: int, n: int, w: int, lo: int) -> tuple[np.ndarray, int]:
    """A column `_narrowed` stored at `off` (n values, w bytes each, base lo) -> (the int64
    values, where the next part starts)."""
    if not w:
        return np.full(n, lo, np.int64), off
    u = _unshuffled(raw, _UINT[w], n, off).astype(np.uint64) + np.uint64(lo & _U64)
    return u.view(np.int64), off + n * w


# a run pack's columns (int64 each): run, start_ns, wall_ns, end_ns - start_ns, n_events,
# nonfinite, block (-1: NULL), whether the loss is None, and the loss's float64 bits
_RUN_PACK_TAG = 1
_RUN_PACK_DELTA = (True, True, True, False, False, False, True, False, False)
_RUN_PACK_MAX = 1 << 20  # runs in one pack, at most (a batch holds far fewer)


def _pack_run_columns(
    run: np.ndarray,
    start: np.ndarray,
    wall: np.ndarray,
    end: np.ndarray,
    has_loss: np.ndarray,
    loss: np.ndarray,
    n: np.ndarray,
    bad: np.ndarray,
    blk: np.ndarray,
) -> bytes:
    """A `run_packs` row's data from its runs' columns (int64 each, the loss float64 and
    read only where `has_loss`, the block -1 for none): the tag and one width per column,
    then deflated: each column's first value and base (int64 pairs), then the column as
    offsets from its base in that many bytes (`_narrowed`, as event blocks store theirs).
    Run, start, wall clock and block are stored as deltas, the end as the run's duration: a
    step's 60-odd bytes shrink to about ten."""
    no_loss = 1 - has_loss
    cols = (run, start, wall, end - start, n, bad, blk, no_loss, np.where(no_loss > 0, 0.0, loss).view(np.int64))
    heads, parts, widths = [], [], bytearray()
    for a, delta in zip(cols, _RUN_PACK_DELTA):
        first = int(a[0])
        if delta:
            a = np.diff(a, prepend=a[:1])
        lo, w = _narrowed(a, parts)
        heads += (first, lo)
        widths.append(w)
    deflated = _deflate(b"".join([struct.pack(f"<{len(heads)}q", *heads), *parts]), 1)
    return bytes((_RUN_PACK_TAG,)) + bytes(widths) + deflated


def unpack_runs(data: bytes, n: int, pack: int | None = None) -> list[tuple]:
    """A `run_packs` row's data (n runs) -> per run (run, start_ns, wall_ns, end_ns, loss,
    n_events, nonfinite, block), the loss as the runs table keeps it (a float, "nan" or
    None: see _loss), the block an int or None; and `pack` last, where given (the reader's
    rows). Damaged data raises ValueError (a zlib bomb among it: see `unpack_block`)."""
    if not isinstance(data, bytes) or not isinstance(n, int) or not 0 < n <= _RUN_PACK_MAX:
        raise ValueError(f"bad run pack row (n={n!r}, data of type {type(data).__name__})")
    ncols = len(_RUN_PACK_DELTA)
    if len(data) < 1 + ncols or data[0] != _RUN_PACK_TAG:
        raise ValueError("not a run pack this version knows")
    widths = data[1 : 1 + ncols]
    if any(w not in _UINT and w != 0 for w in widths):
        raise ValueError(f"bad column widths {list(widths)}")
    raw = _inflated(data[1 + ncols :], 16 * ncols + n * sum(widths), "run pack")
    heads = np.frombuffer(raw, np.int64, 2 * ncols).tolist()
    off = 16 * ncols
    cols = []
    for k, (w, delta) in enumerate(zip(widths, _RUN_PACK_DELTA)):
        first, lo = heads[2 * k], heads[2 * k + 1]
        a, off = _widened(raw, off, n, w, lo)
        if delta:
            a = np.cumsum(a) + first  # (the first delta is 0)
        cols.append(a)
    run, start, wall, dur, nev, bad, blk, no_loss, loss = cols
    losses = [None if x else v if v == v else "nan" for x, v in zip(no_loss.tolist(), loss.view(np.float64).tolist())]
    blocks = [None if b < 0 else b for b in blk.tolist()]
    cols = [
        run.tolist(),
        start.tolist(),
        wall.tolist(),
        (start + dur).tolist(),
        losses,
        nev.tolist(),
        bad.tolist(),
        blocks,
    ]
    if pack is not None:
        cols.append(itertools.repeat(pack))
    return list(zip(*cols))


# --------------------------------------------------------------------------- writer


class BatchPacker:
    """The part of writing a batch that needs the recording program's own objects. Raw
    records become rows of six int64 (seq, run, start, end, slot, number of summary rows or
    -1), one slot per distinct (call site, thread, outputs[, stack]), each new slot described
    by plain data (its signature key and `sigs` fields). What `pack` returns is picklable:
    `TraceWriter.write_payload` writes it, in this process or in the writer process
    (trace/server.py). A batch is a list (events.appender's), or the tuple an
    `events.column_queue` hands over, whose records are rows already and whose keys are slots."""

    MAX_SLOTS = 100_000  # bounded memory: past it (a program that keeps making names) slots start over

    def __init__(self) -> None:
        self.keep_summaries = self.keep_stacks = True
        self._slot_val: dict[tuple, int] = {}  # (a list batch's) slot key -> slot
        self._keys: list[tuple] = []  # slot -> (site, thread, shape, dtype, nbytes, stack)

    def pack(self, batch: list[ev.Event] | tuple, values: dict[int, tuple] | None = None) -> tuple:
        """(records, op events, run markers, other events, values) of a batch; the run markers
        as a column queue hands them over (`_run_marks`)."""
        marks: tuple = (b"", [])
        if batch.__class__ is tuple:  # a column queue's: (rows, summary rows, new keys, reset, others, marks, keys)
            rows, summ, new_keys, reset, others = batch[:5]
            if len(batch) > 5:
                marks = batch[5:7]
            if reset:
                self._keys = []
            keys = self._keys
            new = [_sig_info(_key_record(k), k, self.keep_stacks) for k in new_keys]
            keys.extend(new_keys)
            # (no rows but a reset: the writer's slots start over too, before the next batch's rows)
            recs: Any = (rows, new, reset, summ if self.keep_summaries else None) if rows or reset else None
        else:
            recs = [e for e in batch if e.__class__ is tuple]
            others = [e for e in batch if e.__class__ is not tuple] if len(recs) < len(batch) else []
        OpEvent, RunStart, RunEnd = ev.OpEvent, ev.RunStart, ev.RunEnd
        # op events go to blocks like records, run markers (two a step) to the runs table as
        # rows (a column queue made most of them so), the rest to their own tables (none
        # depends on another's order, so they are split with a few fast passes)
        ops = [e for e in others if e.__class__ is OpEvent]
        rest = []
        if len(ops) < len(others):
            markers = [e for e in others if e.__class__ is RunStart or e.__class__ is RunEnd]
            if markers:
                marks = _run_marks(markers, marks)
            if len(ops) + len(markers) < len(others):
                rest = [e for e in others if e.__class__ not in (OpEvent, RunStart, RunEnd)]
        if recs.__class__ is list:
            # a batch that also holds events, or records both with and without summaries, makes
            # them all events
            if recs and (ops or len(set(map(len, recs))) > 1):
                ops.extend(ev.materialize(recs))
                recs = None
            else:
                recs = self._rows(recs) if recs else None
        elif recs is not None and ops:  # (the listener set changed, or an op failed the NaN/inf check)
            ops.extend(ev.materialize(self._records(batch[0], batch[1])))
            recs = (b"", recs[1], recs[2], None)  # (no rows, but the new slots: later rows refer to them)
        if not self.keep_summaries and ops:
            ops = [_strip_summaries(e) if e.summaries is not None else e for e in ops]
        return (recs, ops, marks, rest, values or None)

    def _rows(self, recs: list[tuple]) -> tuple:
        """Record tuples -> what a column queue would have made of them."""
        reset = len(self._slot_val) > self.MAX_SLOTS
        if reset:
            self._slot_val, self._keys = {}, []
        keep = self.keep_stacks
        # each distinct (site, thread, outputs[, stack]) of the batch is looked up by value once
        cols, index, firsts = ev.record_columns(recs, keep)
        slot_val = self._slot_val
        new: list[tuple] = []
        slots = []
        for j in firsts:
            rec = recs[j]
            vkey = (rec[0], rec[5], rec[7], rec[8], rec[9], rec[6] if keep else None)
            s = slot_val.get(vkey)
            if s is None:
                s = slot_val[vkey] = len(self._keys)
                self._keys.append(vkey)
                new.append(_sig_info(rec, vkey, keep))
            slots.append(s)
        n = len(recs)
        rows = np.empty((n, 6), np.int64)
        rows[:, :4] = cols.T
        rows[:, 4] = np.array(slots, np.int64)[index]
        summ = None
        if len(recs[0]) > 10 and self.keep_summaries:  # (packed rows: see events.summary_rows)
            packed = [r[10] for r in recs]
            rows[:, 5] = [len(b) // ev.SUMMARY_ROW.size for b in packed]
            summ = b"".join(packed)
        else:
            rows[:, 5] = -1
        return (rows.tobytes(), new, reset, summ)

    def _records(self, rows: bytes, summ: bytes | None) -> list[tuple]:
        """A column queue's rows as the record tuples they were (to make events of them)."""
        keys, size = self._keys, ev.SUMMARY_ROW.size
        out = []
        off = 0
        for seq, run, t0, t1, k, ns in np.frombuffer(rows, np.int64).reshape(-1, 6).tolist():
            site, tid, shape, dtype, nbytes, stack = keys[k]
            rec = (site, seq, run, t0, t1, tid, stack, shape, dtype, nbytes)
            if ns >= 0 and summ is not None:
                rec += (summ[off : off + ns * size],)
                off += ns * size
            out.append(rec)
        return out


def _run_marks(markers: list[ev.Event], marks: tuple[bytes, list[tuple]]) -> tuple[bytes, list[tuple]]:
    """RunStarts and RunEnds as a column queue hands them over (see `cq_mark` in _speedups.c),
    added to `marks` (rows, keys): a row of six int64 each, (0, run, t_ns, wall_ns, key, 0)
    for a start, (1, run, t_ns, the loss's float64 bits, key, 1 if it has a loss) for an end;
    a key numbers what the steps of a loop share, (mode, kind, name, fetches, feeds, graph,
    thread) of a start, (thread, error) of an end. (The Python path's markers, and those a
    column queue left as objects.)"""
    rows, keys = marks
    keys = list(keys)
    ids: dict[tuple, int] = {}
    out = []
    for e in markers:
        if e.__class__ is ev.RunStart:
            key = (e.mode, e.kind, e.name, tuple(e.fetches), tuple(e.feeds), e.graph, e.thread)
        else:
            key = (e.thread, e.error)
        typed: tuple | None = tuple(map(type, key)) + key  # (1, 1.0 and True are equal keys: not the same key)
        try:
            k = ids.get(typed)
        except TypeError:  # (a field that cannot be hashed: a key of its own)
            k = typed = None
        if k is None:
            k = len(keys)
            keys.append(key)
            if typed is not None:
                ids[typed] = k
        if e.__class__ is ev.RunStart:
            out.append((0, e.run, e.t_ns, e.wall_ns or 0, k, 0))
        else:
            loss = e.loss
            try:
                loss = None if loss is None else float(loss)
            except (TypeError, ValueError):
                loss = None
            bits = 0 if loss is None else struct.unpack("<q", struct.pack("<d", loss))[0]
            out.append((1, e.run, e.t_ns, bits, k, loss is not None))
    return rows + np.array(out, np.int64).tobytes(), keys


def _key_record(key: tuple) -> tuple:
    """A record of slot key (site, thread, shape, dtype, nbytes, stack), for its signature."""
    site, tid, shape, dtype, nbytes, stack = key
    return (site, 0, 0, 0, 0, tid, stack, shape, dtype, nbytes)


def create_trace(path: str, *, meta: dict[str, Any] | None = None, max_bytes: int = 512 << 20) -> tuple[int, int]:
    """Makes `path` a new, empty trace file: locked (flock), the schema and the meta rows
    written (it reads as an empty trace from then on). Returns (the lock's file descriptor,
    the file's time base t0) for a `TraceWriter` to attach to, in this process or in the
    writer process. TraceFileError where the path cannot be, or may not be, written."""
    lock_fd = _lock_for_writing(path)
    try:
        for ext in ("-wal", "-shm", "-journal"):
            if os.path.exists(path + ext):
                os.remove(path + ext)  # a killed earlier recording's leftovers
        t0 = time.perf_counter_ns()
        perf, wall = ev.clock_base()
        info = {
            "format": FORMAT,
            "version": VERSION,
            "t0": t0,
            "clock_perf_ns": perf,
            "clock_wall_ns": wall,
            "created_wall_ns": time.time_ns(),
            "pid": os.getpid(),
            "complete": 0,
            "max_bytes": int(max_bytes),
        }
        info.update(meta or {})
        image = _trace_image(info)
        if image is not None:
            _write_all(lock_fd, image)
        else:  # (no serialize: made through a connection, whose closing folds its WAL in)
            db = sqlite3.connect(path, isolation_level=None)
            try:
                db.execute(f"PRAGMA page_size={PAGE_SIZE}")
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript("BEGIN;" + SCHEMA + "COMMIT;")  # one transaction: one write, not 30
                db.execute("BEGIN")
                db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in info.items()])
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute("COMMIT")
            finally:
                db.close()
    except (sqlite3.Error, OSError) as e:
        os.close(lock_fd)
        raise TraceFileError(path, f"cannot be written ({e})") from None
    except BaseException:
        os.close(lock_fd)
        raise
    return lock_fd, t0


class TraceWriter:
    """Writes events into a new trace file; used by one thread (the recorder's writer).

    The file is locked (flock) for as long as the writer is open: a second process (or a
    second recorder) that targets the same path gets a TraceFileError instead of a mixed file.
    `attach`: (lock fd, t0) of a file `create_trace` made (the writer closes the lock when it
    closes); the lock None where another process holds it (the program whose writer process
    this is). `keep_summaries` / `keep_stacks`: whether what records carry of those is kept.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        meta: dict[str, Any] | None = None,
        max_bytes: int = 512 << 20,
        sources: bool = True,
        attach: tuple[int | None, int] | None = None,
        keep_summaries: bool = True,
        keep_stacks: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = int(max_bytes)
        self.sources = sources
        if attach is None:
            attach = create_trace(self.path, meta=meta, max_bytes=self.max_bytes)
        self._lock_fd, self.t0 = attach
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process, not power loss
            # page 1 (the header) goes into the WAL with this first commit (see _trace_image)
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        except (sqlite3.Error, OSError) as e:
            self._release()
            raise TraceFileError(self.path, f"cannot be written ({e})") from None
        self._ops: dict[str, int] = {}
        self._sigs: dict[tuple, int] = {}
        # raw records: a "slot" per distinct (site, thread, output, stack) -- its sig, op id,
        # iteration and mode, as columns (see `_write_records`; the packer numbers them)
        self.packer = BatchPacker()
        # (another listener may make the engine compute more than the recording asked for)
        self.packer.keep_summaries, self.packer.keep_stacks = keep_summaries, keep_stacks
        self._slot_rows: list[tuple[int, int, int, str]] = []
        self._slot_cols: tuple[np.ndarray, ...] | None = None
        self._sig_op: dict[int, int] = {}
        self._stacks: dict[tuple, int] = {}
        self._files: set[str] = set()
        # rows for the tables above, written with the batch that made them (see `_write_new_rows`)
        self._new_rows: dict[str, list[tuple]] = {
            "INSERT INTO ops": [],
            "INSERT INTO stacks": [],
            "INSERT INTO sigs": [],
            "INSERT OR REPLACE INTO sources": [],
        }
        self._n_sigs = self._n_stacks = self._n_blocks = 0
        self._pos = 0
        self._run_pos: dict[int, int] = {}
        # per block of this batch, its runs' (run, mode, start_ns, events, non-finite, block)
        # (block: the block, where the run's events start there; else -1), and its block_runs
        # rows as columns (see _write_runs)
        self._counts: list[tuple] = []
        self._run_blocks: list[tuple] = []
        # the highest run `_run_pos` may have held when it was last cleared (0: never cleared): a
        # run above it has no events in the file yet, one at or below it is counted there
        self._run_pos_forgot = 0
        self.value_bytes = 0
        self.dropped_values = self.dropped_bytes = 0
        self.n_events = 0

    # -- interning: what repeats across steps is written once
    def _op_id(self, op: str) -> int:
        i = self._ops.get(op)
        if i is None:
            i = self._ops[op] = len(self._ops) + 1
            self._new_rows["INSERT INTO ops"].append((i, op))
        return i

    def _stack_id(self, stack: tuple[ev.Frame, ...] | None) -> int | None:
        if stack is None:
            return None
        i = self._stacks.get(stack)
        if i is None:
            if len(self._stacks) > 100_000:
                self._stacks.clear()  # bounded memory; a repeat then just gets a new row
            self._n_stacks += 1
            i = self._stacks[stack] = self._n_stacks
            self._new_rows["INSERT INTO stacks"].append((i, _frames_json(stack)))
            self._keep_sources(stack)
        return i

    def _keep_sources(self, stack: tuple[ev.Frame, ...]) -> None:
        if not self.sources:
            return
        for f in stack:
            fn = f.filename
            if fn in self._files:
                continue
            self._files.add(fn)
            if fn.startswith(_NOT_USER):
                continue
            text = _source_text(fn)
            if text is not None:
                self._new_rows["INSERT OR REPLACE INTO sources"].append((fn, text))

    def _sig_id(self, e: ev.OpEvent, key: tuple) -> int:
        """The `sigs` row of an event whose signature `key` (see `_write_block`) missed the cache."""
        i = self._sigs.get(key)
        return self._new_sig(key, e.op, _sig_fields(e), key[-1]) if i is None else i

    def _new_sig(self, key: tuple, op: str, fields: tuple, stack: tuple[ev.Frame, ...] | None) -> int:
        if len(self._sigs) > 200_000:
            self._sigs.clear()  # (`_sig_op` stays: ids handed out before still name their op)
        op_id = self._op_id(op)
        self._n_sigs += 1
        i = self._sigs[key] = self._n_sigs
        self._sig_op[i] = op_id
        self._new_rows["INSERT INTO sigs"].append((i, op_id, *fields, self._stack_id(stack)))
        return i

    def _write_new_rows(self) -> None:
        """The ops, stacks, sigs and sources rows this batch made: a few statements, not one each."""
        for head, rows in self._new_rows.items():
            _insert_rows(self.db, head, rows)
            rows.clear()

    # -- one batch, one transaction
    @property
    def keep_summaries(self) -> bool:
        return self.packer.keep_summaries

    @keep_summaries.setter
    def keep_summaries(self, v: bool) -> None:
        self.packer.keep_summaries = v

    @property
    def keep_stacks(self) -> bool:
        return self.packer.keep_stacks

    @keep_stacks.setter
    def keep_stacks(self, v: bool) -> None:
        self.packer.keep_stacks = v

    def write(self, batch: list[ev.Event], values: dict[int, tuple] | None = None) -> None:
        """Writes events (in emission order); `values` maps an op event's seq to the copies of
        its outputs the recorder took (values="full")."""
        self.write_payload(self.packer.pack(batch, values))

    def write_payload(self, payload: tuple) -> None:
        """Writes one batch that a `BatchPacker` packed (here, or in the recording process:
        see tracetensor/trace/server.py), in one transaction."""
        recs, ops, marks, rest, values = payload
        db = self.db
        db.execute("BEGIN")
        self._counts, self._run_blocks = [], []
        try:
            if recs is not None:  # (rows, or none but new slots: then the records came as `ops`)
                self._write_records(*recs)
            if ops:
                # threads emit in the order they finish emitting, not the order their ops took a
                # seq: the file keeps seq order (nearly sorted already, so this costs one pass)
                ops.sort(key=_seq_of)
                for k in range(0, len(ops), BLOCK):
                    self._write_block(ops[k : k + BLOCK])
            times = []
            for e in rest:
                cls = e.__class__
                if cls is ev.DeviceTime:
                    times.append((e.seq, e.device_ns))
                elif cls is ev.GraphDef:
                    db.execute(
                        "INSERT INTO graphs(graph, version, nodes) VALUES (?,?,?)",
                        (e.graph, e.version, json.dumps([_node_json(n) for n in e.nodes])),
                    )
                    for n in e.nodes:
                        self._keep_sources(n.stack)
                elif cls is ev.UserRange:
                    db.execute(
                        "INSERT INTO ranges(name, run, start_ns, end_ns, thread) VALUES (?,?,?,?,?)",
                        (e.name, e.run, e.start_ns, e.end_ns, e.thread),
                    )
            self._write_runs(*marks)
            if times:  # (one statement for a batch's GPU times: a GPU op brings one each)
                db.executemany("INSERT OR REPLACE INTO device_times VALUES (?, ?)", times)
            if values:
                tensors = [
                    (e.seq, i, e.run, m.name, m.nbytes, npy_bytes(v))
                    for e in ops
                    if e.seq in values
                    for i, (m, v) in enumerate(zip(e.outputs, values[e.seq]))
                    if v is not None
                ]
                if tensors:
                    self._keep_tensors(tensors)
            self._write_new_rows()
            db.execute("COMMIT")
        except BaseException:
            for rows in self._new_rows.values():
                rows.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_runs(self, marks: bytes, keys: list[tuple]) -> None:
        """The `runs` rows of one batch: what its run markers (rows and keys, see `_run_marks`)
        and op events say of each run, one upsert per run (each part sets only its own columns,
        so parts that come in different batches merge); a loop's steps, whole in the batch and
        alike, eight or more, one `run_packs` row instead (see `_pack_run_columns`). Column by column:
        a batch holds thousands of steps."""
        counts, self._counts = self._counts, []
        blocks, self._run_blocks = self._run_blocks, []
        m = np.frombuffer(marks, np.int64).reshape(-1, 6)
        sm, em = m[m[:, 0] == 0], m[m[:, 0] == 1]
        # the batch's per-run event counts: a run whose events span blocks of it, one row for them all
        c_run, c_mode, c_start, c_n, c_bad, c_blk = _joined(counts)
        if len(c_run) > 1 and not (c_run[1:] > c_run[:-1]).all():
            if (c_run[1:] >= c_run[:-1]).all():  # (the usual: a run cut by a block's end, its parts side by side)
                first = np.flatnonzero(np.concatenate(([True], c_run[1:] != c_run[:-1])))
                many = np.diff(np.append(first, len(c_run))) > 1
                c_n, c_bad = np.add.reduceat(c_n, first), np.add.reduceat(c_bad, first)
            else:  # (threads' steps interleaved)
                _, first, inv = np.unique(c_run, return_index=True, return_inverse=True)
                many = np.bincount(inv) > 1
                c_n = np.bincount(inv, weights=c_n).astype(np.int64)
                c_bad = np.bincount(inv, weights=c_bad).astype(np.int64)
            c_run, c_blk = c_run[first], np.where(many, -1, c_blk[first])
            c_start, c_mode = c_start[first], [c_mode[i] for i in first.tolist()]
        # the usual run (a step): begun, ended and with events, all in this batch. What a loop's
        # steps share (mode, kind, name, fetches, feeds, graph, thread, error) is bound once
        # per statement, or (eight or more) stored once in a pack
        whole, si, ei = np.intersect1d(sm[:, 1], em[:, 1], return_indices=True)
        whole, wi, ci = np.intersect1d(whole, c_run, assume_unique=True, return_indices=True)
        si, ei = si[wi], ei[wi]
        groups: dict[tuple[bool, bool, bool], list[tuple]] = {}
        in_one = np.zeros(0, np.int64)
        if len(whole):
            s, e = sm[si], em[ei]
            cols = (whole, s[:, 2], s[:, 3], e[:, 2], e[:, 5], e[:, 3].view(np.float64), c_n[ci], c_bad[ci], c_blk[ci])
            code = s[:, 4] * (len(keys) + 1) + e[:, 4]
            if (code == code[0]).all():  # (the usual: one loop's steps)
                at, inv, order = np.zeros(1, np.int64), np.zeros(len(code), np.int64), np.zeros(1, np.int64)
            else:
                _, at, inv = np.unique(code, return_index=True, return_inverse=True)
                order = np.argsort(at, kind="stable")  # (the groups in the order of their first run)
            if len(at) * 8 <= len(whole):
                for g in order.tolist():
                    idx = np.flatnonzero(inv == g)
                    sk, ek = keys[int(s[idx[0], 4])], keys[int(e[idx[0], 4])]
                    shared = (*sk, ek[1])  # (mode, kind, name, fetches, feeds, graph, thread, error)
                    part = [c[idx] for c in cols]
                    if len(idx) >= PACK_MIN:  # (a loop's steps: one packed row)
                        _insert_run_packs(self.db, shared, part)
                    else:
                        _insert_alike_runs(self.db, shared, _run_rows(part))
            else:  # runs that share little (a name per step, say): whole rows, many to a statement
                rows = []
                for row, sk, ek in zip(_run_rows(cols), s[:, 4].tolist(), e[:, 4].tolist()):
                    mo, ki, na, fe, fd, gr, th = keys[sk]
                    r, t0, wall, t1, loss, n, bad, blk = row
                    er = keys[ek][1]
                    rows.append(
                        (r, mo, ki, na, _json_tuple(fe), _json_tuple(fd), gr, t0, wall, th, t1, er, loss, n, bad, blk)
                    )
                groups[(True, True, True)] = rows
            # a whole run in one block has it in its `runs` row (the usual step: a row less a
            # step: 0.6 us of the writer's time measured), the others block_runs rows
            in_one = whole[cols[-1] >= 0]
        # the runs a batch cuts: begun in an earlier batch, or going on into the next
        cut = np.concatenate([r[~np.isin(r, whole)] for r in (sm[:, 1], em[:, 1], c_run)])
        if len(cut) > 1:  # (sorted, each once; not np.unique, whose plain form imports numpy.ma: 13 ms)
            cut = np.sort(cut)
            cut = cut[np.concatenate(([True], cut[1:] != cut[:-1]))]
        if len(cut):
            st = {x[1]: x for x in sm[np.isin(sm[:, 1], cut)].tolist()}
            en = {x[1]: x for x in em[np.isin(em[:, 1], cut)].tolist()}
            at_cut = np.flatnonzero(np.isin(c_run, cut))
            cn = dict(zip(c_run[at_cut].tolist(), at_cut.tolist()))
            for run in cut.tolist():
                s, e, k = st.get(run), en.get(run), cn.get(run)
                row: tuple = (run,)
                if s is not None:
                    mo, ki, na, fe, fd, gr, th = keys[s[4]]
                    row += (mo, ki, na, _json_tuple(fe), _json_tuple(fd), gr, s[2], s[3], th)
                elif k is not None:  # no RunStart (yet): what the events say
                    row += (c_mode[k], "eager", "", "[]", "[]", int(c_start[k]))
                if e is not None:
                    row += (e[2], keys[e[4]][1], _loss(_float_of(e[3]) if e[5] else None))
                if k is not None:
                    row += (int(c_n[k]), int(c_bad[k]))
                groups.setdefault((s is not None, e is not None, k is not None), []).append(row)
        for key, rows in groups.items():
            head, tail = _runs_upsert(*key, block=key == (True, True, True))
            _insert_rows(self.db, head, rows, tail)
        if blocks:
            b_run = np.concatenate([x[0] for x in blocks])
            b_cols = (
                b_run,
                np.concatenate([np.full(len(x[0]), x[1], np.int64) for x in blocks]),
                *(np.concatenate([x[j] for x in blocks]) for j in (2, 3, 4)),
            )
            if len(in_one):
                keep = ~np.isin(b_run, in_one)
                b_cols = tuple(c[keep] for c in b_cols)
            _insert_rows(self.db, "INSERT INTO block_runs", list(zip(*(c.tolist() for c in b_cols))))

    def _write_block(self, evs: list[ev.OpEvent]) -> None:
        """One `blocks` row for up to BLOCK events, plus its per-run and per-op index rows."""
        # each event's signature, looked up in one dict per event: a miss (a new signature) is rare
        keep = self.keep_stacks
        keys = [_sig_key(e, keep) for e in evs]
        get = self._sigs.get
        sigs = [get(k) for k in keys]
        if None in sigs:
            sigs = [self._sig_id(e, k) if s is None else s for e, k, s in zip(evs, keys, sigs)]
        data, m, blk = pack_block(evs, sigs, self.t0)
        sig_op = self._sig_op
        ops = np.fromiter([sig_op[s] for s in sigs], np.int64, len(sigs))
        self._index_block(data, m, blk, ops, [e.mode for e in evs])
        if blk.flags.any():
            self.db.executemany(
                "INSERT OR REPLACE INTO input_summaries VALUES (?, ?)",
                [(e.seq, pack_summaries(e.input_summaries)) for e in evs if e.input_summaries is not None],
            )

    def _write_records(self, rows: bytes, new_slots: list[tuple], reset: bool, summ: bytes | None) -> None:
        """Raw records, as `BatchPacker` made them rows, into blocks: no OpEvent is made but for
        a signature not seen before."""
        if reset:  # (the packer's slots started over)
            self._slot_rows, self._slot_cols = [], None
        for key, op, fields, stack, it in new_slots:  # slot numbers follow on from the last
            sig = self._sigs.get(key) or self._new_sig(key, op, fields, stack)
            self._slot_rows.append((sig, self._sig_op[sig], it, fields[1]))
            self._slot_cols = None
        table = np.frombuffer(rows, np.int64).reshape(-1, 6)
        n = len(table)
        if not n:
            return
        seq, run, start, slot, nsumm = table[:, 0], table[:, 1], table[:, 2], table[:, 4], table[:, 5]
        dur = table[:, 3] - start
        if summ is None:
            nsumm = np.full(n, -1, np.int64)
            srows = np.zeros(0, _SUMMARY_ROW)
        else:
            srows = np.frombuffer(summ, _SUMMARY_ROW)
        # threads emit in the order they finish emitting, not the order their ops took a seq:
        # the file keeps seq order
        if n > 1 and (seq[1:] < seq[:-1]).any():
            order = np.argsort(seq, kind="stable")
            seq, run, start, dur, slot = seq[order], run[order], start[order], dur[order], slot[order]
            if summ is not None:
                cnt = np.maximum(nsumm, 0)
                first = np.cumsum(cnt) - cnt
                cnt, first = cnt[order], first[order]
                # each record's rows, in the new order
                srows = srows[np.repeat(first - (np.cumsum(cnt) - cnt), cnt) + np.arange(cnt.sum())]
            nsumm = nsumm[order]
        row_end = np.cumsum(np.maximum(nsumm, 0))
        if self._slot_cols is None:
            sig, op, it, mode = zip(*self._slot_rows)
            self._slot_cols = (
                np.array(sig, np.int32),
                np.array(op, np.int64),
                np.array(it, np.int64),
                np.array(mode, object),
            )
        sig_of, op_of, it_of, mode_of = self._slot_cols
        for k in range(0, n, BLOCK):
            part = slice(k, k + BLOCK)
            sl = slot[part]
            b = len(sl)
            r0 = int(row_end[k - 1]) if k else 0
            block_rows = srows[r0 : int(row_end[k + b - 1])]
            data, m, blk = _pack(
                seq[part],
                run[part],
                sig_of[sl],
                start[part],
                dur[part],
                it_of[sl],
                nsumm[part].astype(np.int32),
                np.zeros(b, np.uint8),
                np.ascontiguousarray(block_rows["c"]),
                np.ascontiguousarray(block_rows["f"]),
                self.t0,
            )
            self._index_block(data, m, blk, op_of[sl], mode_of[sl])

    def _index_block(self, data: bytes, m: int, blk: Block, ops: np.ndarray, modes: Any) -> None:
        """Writes a packed block and its per-run and per-op index rows; `ops` and `modes` are
        the events' op ids and modes (`modes[i]`: event i's)."""
        n = len(blk)
        self._n_blocks += 1
        bid = self._n_blocks
        bad = blk.nonfinite > 0
        first_bad = int(blk.seq[bad][0]) if bad.any() else 0
        db = self.db
        db.execute(
            "INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?)",
            (bid, int(blk.seq.min()), int(blk.seq.max()), n, m, self._pos, first_bad, data),
        )
        self._pos += n
        self.n_events += n
        # per run: how many events, where they start within the run, the first non-finite one
        # (vectorized: a block of small steps holds hundreds of runs)
        run = blk.run
        if n > 1 and (run[1:] >= run[:-1]).all():  # (the usual block: its runs in order, no sort)
            first = np.flatnonzero(np.concatenate(([True], run[1:] != run[:-1])))
            runs, cnt = run[first], np.diff(np.append(first, n))
            inv = np.repeat(np.arange(len(runs)), cnt)
        else:  # (threads' steps interleaved)
            runs, first, inv, cnt = np.unique(run, return_index=True, return_inverse=True, return_counts=True)
        nbad = np.bincount(inv, weights=bad, minlength=len(runs)).astype(np.int64)
        firsts = np.zeros(len(runs), np.int64)
        if bad.any():
            for k in np.flatnonzero(nbad).tolist():
                firsts[k] = blk.seq[(inv == k) & bad][0]
        starts = blk.start[first]
        mode_of = [modes[i] for i in first.tolist()]
        run_list, cnt_list = runs.tolist(), cnt.tolist()
        run_pos_of = self._run_pos
        # where each run's events of this block start within the run: after what earlier blocks
        # held of it (mostly none: a run of small steps lies in one block); list-wide steps, the
        # rare run seen before (or forgotten, past the bound) one at a time
        pos = list(map(run_pos_of.get, run_list))
        if len(run_pos_of) + len(run_list) > RUN_POS_KEPT:
            # (run ids only grow: one above every run forgotten is a run never seen; this block's
            # runs have their counts already)
            self._run_pos_forgot = max(self._run_pos_forgot, max(run_pos_of, default=0))
            run_pos_of.clear()
        forgot = self._run_pos_forgot
        if forgot:
            for k, p in enumerate(pos):
                if p is None and run_list[k] <= forgot:  # seen, maybe, then forgotten: count what the file holds
                    q = f"SELECT coalesce(sum(n), 0) FROM {RUN_BLOCKS} WHERE run = ?"
                    pos[k] = db.execute(q, (run_list[k],)).fetchone()[0]
        pos = [0 if p is None else p for p in pos]
        run_pos_of.update(zip(run_list, map(operator.add, pos, cnt_list)))
        pos_a = np.array(pos, np.int64)
        # (the batch's per-run totals, one `runs` row each, and these block_runs rows: see _write_runs)
        self._counts.append((runs, mode_of, starts, cnt, nbad, np.where(pos_a == 0, bid, -1)))
        self._run_blocks.append((runs, bid, cnt, pos_a, firsts))
        # per op type: count and total host time (what `trace info` and the profiler summarize)
        # (op ids are small: counted in place, no sort)
        n_of, ns_of = np.bincount(ops), np.bincount(ops, weights=blk.dur)
        uniq = np.flatnonzero(n_of)
        rows = zip(uniq.tolist(), itertools.repeat(bid), n_of[uniq].tolist(), ns_of[uniq].astype(np.int64).tolist())
        _insert_rows(db, "INSERT INTO block_ops", list(rows))

    def _keep_tensors(self, tensors: list[tuple]) -> None:
        db = self.db
        keep = []
        for row in tensors:
            if len(row[5]) > self.max_bytes:  # can never fit: dropped at once
                db.execute("INSERT INTO dropped VALUES (?,?,?,?,?,'larger than max_bytes')", row[:5])
                self.dropped_values += 1
                self.dropped_bytes += row[4]
            else:
                keep.append(row)
                self.value_bytes += len(row[5])
        db.executemany("INSERT INTO tensors(seq, idx, run, name, nbytes, npy) VALUES (?,?,?,?,?,?)", keep)
        if self.value_bytes <= self.max_bytes:
            return
        # ring buffer: delete the oldest tensors until the budget holds again, logging each one
        excess = self.value_bytes - self.max_bytes
        freed, last = 0, None
        for rid, size in db.execute("SELECT id, length(npy) FROM tensors ORDER BY id"):
            freed += size
            last = rid
            if freed >= excess:
                break
        n, nb = db.execute("SELECT count(*), coalesce(sum(nbytes), 0) FROM tensors WHERE id <= ?", (last,)).fetchone()
        db.execute(
            "INSERT INTO dropped SELECT seq, idx, run, name, nbytes, 'max_bytes' FROM tensors WHERE id <= ?",
            (last,),
        )
        db.execute("DELETE FROM tensors WHERE id <= ?", (last,))
        self.value_bytes -= freed
        self.dropped_values += n
        self.dropped_bytes += nb

    def set_meta(self, **kv: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in kv.items()])

    def close(self, complete: bool = True) -> None:
        """Marks the file complete and folds the WAL back in, so the trace is one file."""
        try:
            if complete:
                self.set_meta(complete=1, closed_wall_ns=time.time_ns())
            try:
                # what was committed already survives a crash of this process; power loss during
                # this last step (journal_mode=DELETE checkpoints first) is not worth the fsyncs a
                # recorded step would pay for
                self.db.execute("PRAGMA synchronous=OFF")
                self.db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass  # a reader has it open: the file stays in WAL mode, complete and readable
            self.db.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


@functools.cache
def _schema_image() -> bytes | None:
    """The bytes of an in-memory database holding only the schema, made once per process.
    None where SQLite cannot serialize (Python 3.10, or an SQLite built without it)."""
    try:
        db = sqlite3.connect(":memory:")
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.executescript(SCHEMA)
            image = db.serialize()
        finally:
            db.close()
    except (AttributeError, sqlite3.Error):
        return None
    return image if image[:16] == _SQLITE_MAGIC else None


def _trace_image(meta: dict[str, Any]) -> bytes | None:
    """The bytes of a new trace file: the schema and `meta`, in WAL mode (header bytes 18-19
    say so, as `PRAGMA journal_mode=WAL` would write them). A recording starts by writing them:
    one write, no 20 tables created, and no connection whose closing would fold a WAL in. The
    file's writer then sets the application id (on page 1) in its first commit, so page 1 is
    in the WAL from then on: a cut-short last checkpoint never leaves the file's own page 1 as
    its only copy. None: see _schema_image."""
    base = _schema_image()
    if base is None:
        return None
    db = sqlite3.connect(":memory:", isolation_level=None)  # (autocommit: the rows are in what it serializes)
    try:
        db.deserialize(base)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        image = bytearray(db.serialize())  # (the application id is the writer's first commit)
    finally:
        db.close()
    image[18] = image[19] = 2
    return bytes(image)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_seq_of = operator.attrgetter("seq")
_START_COLS = ("mode", "kind", "name", "fetches", "feeds", "graph", "start_ns", "wall_ns", "thread")
_END_COLS = ("end_ns", "error", "loss")


@functools.cache
def _runs_upsert(start: bool, end: bool, counts: bool, block: bool = False) -> tuple[str, str]:
    """The upsert of `runs` rows from RunStarts, RunEnds and/or op events' counts (and, for
    whole runs, their one block or NULL): the SQL before and after its VALUES."""
    cols = ["run"]
    sets = []
    if start:
        cols += _START_COLS
        sets += [f"{c}=excluded.{c}" for c in _START_COLS]
    elif counts:
        cols += ("mode", "kind", "name", "fetches", "feeds", "start_ns")
    if end:
        cols += _END_COLS
        sets += [f"{c}=excluded.{c}" for c in _END_COLS]
    if counts:
        cols += ("n_events", "nonfinite")
        sets += ["n_events=n_events+excluded.n_events", "nonfinite=nonfinite+excluded.nonfinite"]
    if block:
        cols += ("block",)
        sets += ["block=excluded.block"]
    return f"INSERT INTO runs({','.join(cols)})", f" ON CONFLICT(run) DO UPDATE SET {','.join(sets)}"


_ALIKE_HEAD = (
    "INSERT INTO runs(mode, kind, name, fetches, feeds, graph, thread, error, run, start_ns, wall_ns, end_ns, loss,"
    " n_events, nonfinite, block) SELECT ?, ?, ?, ?, ?, ?, ?, ?, column1, column2, column3, column4, column5,"
    " column6, column7, column8 FROM (VALUES "
)
_ALIKE_TAIL = (
    ") WHERE true" + _runs_upsert(True, True, True, block=True)[1]
)  # (WHERE: how SQLite parses an upsert of a SELECT)


def _insert_alike_runs(db: sqlite3.Connection, shared: tuple, rows: list[tuple]) -> None:
    """`runs` rows of whole runs that share (mode, kind, name, fetches, feeds, graph, thread,
    error): those bound once per statement, each row's (run, start_ns, wall_ns, end_ns, loss,
    n_events, nonfinite, block) after them."""
    mode, kind, name, fetches, feeds, graph, thread, error = shared
    head = [mode, kind, name, _json_tuple(fetches), _json_tuple(feeds), graph, thread, error]
    per = (900 - len(head)) // 8  # within the 999 parameters of an older SQLite
    for k in range(0, len(rows), per):
        chunk = rows[k : k + per]
        values = ",".join(["(?,?,?,?,?,?,?,?)"] * len(chunk))
        db.execute(_ALIKE_HEAD + values + _ALIKE_TAIL, head + [v for r in chunk for v in r])


def _insert_run_packs(db: sqlite3.Connection, shared: tuple, cols: list[np.ndarray]) -> None:
    """Whole runs that share (mode, kind, name, fetches, feeds, graph, thread, error) as
    `run_packs` rows (`cols` as `_pack_run_columns` takes them)."""
    mode, kind, name, fetches, feeds, graph, thread, error = shared
    for k in range(0, len(cols[0]), _RUN_PACK_MAX):
        chunk = [c[k : k + _RUN_PACK_MAX] for c in cols]
        db.execute(
            "INSERT INTO run_packs(n, mode, kind, name, fetches, feeds, graph, thread, error, data)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                len(chunk[0]),
                mode,
                kind,
                name,
                _json_tuple(fetches),
                _json_tuple(feeds),
                graph,
                thread,
                error,
                _pack_run_columns(*chunk),
            ),
        )


def _insert_rows(db: sqlite3.Connection, head: str, rows: list[tuple], tail: str = "") -> None:
    """`executemany(head + " VALUES (?, ...)" + tail, rows)` as a few statements of many rows
    each: the sqlite3 module lets go of the GIL at every step, and the writer wins it back
    from a busy program thread only by a thread switch (with `executemany`, one per row)."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, 900 // width)  # within the 999 parameters of an older SQLite
    one = "(" + ",".join("?" * width) + ")"
    for k in range(0, len(rows), per):
        chunk = rows[k : k + per]
        db.execute(f"{head} VALUES {','.join([one] * len(chunk))}{tail}", [v for r in chunk for v in r])


def _json_tuple(t: tuple[str, ...]) -> str:
    return json.dumps(t) if t else "[]"


def _loss(x: float | None) -> float | str | None:
    """A run's loss as the runs table keeps it: the float itself (the column has no type, so
    SQLite stores it as it is), a NaN as the text "nan" (SQLite stores a NaN REAL as NULL, and
    a NaN loss is news). Version 3 and earlier stored `repr(loss)`: `_float` reads both."""
    return x if x == x or x is None else "nan"


def _float_of(bits: int) -> float:
    """The float64 whose bits int64 `bits` holds (a run marker row's loss)."""
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _run_rows(cols: list | tuple) -> list[tuple]:
    """Whole runs' columns (as `_write_runs` gathers them for `_pack_run_columns`) -> per run
    (run, start_ns, wall_ns, end_ns, loss, n_events, nonfinite, block), as `_insert_alike_runs`
    takes them: the loss as the runs table keeps it (see _loss), None for no loss or block."""
    run, start, wall, end, has_loss, loss, n, bad, blk = cols
    losses = [_loss(v) if h else None for h, v in zip(has_loss.tolist(), loss.tolist())]
    blocks = [None if b < 0 else b for b in blk.tolist()]
    return list(
        zip(run.tolist(), start.tolist(), wall.tolist(), end.tolist(), losses, n.tolist(), bad.tolist(), blocks)
    )


def _joined(counts: list[tuple]) -> tuple:
    """The per-block run counts `_index_block` gathered for a batch, as one set of columns
    (run, mode, start_ns, events, non-finite, block)."""
    if not counts:
        z = np.zeros(0, np.int64)
        return z, [], z, z, z, z
    if len(counts) == 1:
        return counts[0]
    modes = [mo for c in counts for mo in c[1]]
    cols = (np.concatenate([c[j] for c in counts]) for j in (2, 3, 4, 5))
    return (np.concatenate([c[0] for c in counts]), modes, *cols)


def _float(s: Any) -> float | None:
    try:
        return None if s is None else float(s)
    except (TypeError, ValueError):
        return None  # a damaged cell: the loss is simply not known


def _tuple(js: str | None) -> tuple:
    return () if not js or js == "[]" else tuple(json.loads(js))


def _sig_key(e: ev.OpEvent, keep_stack: bool) -> tuple:
    """An event's signature: what repeats from step to step (its stack only when kept)."""
    return (
        e.op,
        e.name,
        e.mode,
        e.phase,
        e.device,
        e.thread,
        e.flops,
        e.forward,
        e.inputs,
        e.outputs,
        e.grad_of,
        e.stack if keep_stack else None,
    )


_SOURCES: OrderedDict[str, tuple[tuple[int, int], str]] = OrderedDict()  # file -> ((mtime, size), text)


def _source_text(fn: str) -> str | None:
    """A user file's text (None: too big, or not a file), read again only when it changed."""
    try:
        st = os.stat(fn)
        if st.st_size > MAX_SOURCE_BYTES:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _SOURCES.get(fn)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(fn, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None  # "<stdin>", "<string>", a file since removed
    if len(text) <= 256 << 10:  # kept: at most 32 small files (8 MB)
        _SOURCES[fn] = (stamp, text)
        if len(_SOURCES) > 32:
            _SOURCES.popitem(last=False)
    return text


def _sig_fields(e: ev.OpEvent) -> tuple:
    """The `sigs` columns of an event's signature, from `name` to `grad_of`."""
    return (
        e.name,
        e.mode,
        e.phase,
        e.device,
        e.thread,
        e.flops,
        e.forward,
        json.dumps(e.inputs),
        json.dumps([[m.name, list(m.shape), m.dtype, m.device, m.nbytes] for m in e.outputs], separators=(",", ":")),
        json.dumps(e.grad_of) if e.grad_of else None,
    )


# a raw record's slot key (Site, thread, outputs, stack) -> what its sig row says: made once
# per process, not once per recording (a program that records many short traces)
_SIG_INFO: dict[tuple, tuple] = {}


def _sig_info(rec: tuple, vkey: tuple, keep_stack: bool) -> tuple:
    """(signature key, op, `_sig_fields`, stack, iteration) of a raw record with slot key `vkey`."""
    info = _SIG_INFO.get(vkey)
    if info is None:
        e = rec[0].event(rec)
        it = _NO_ITER if e.iteration is None else e.iteration
        info = (_sig_key(e, keep_stack), e.op, _sig_fields(e), e.stack if keep_stack else None, it)
        if len(_SIG_INFO) > 20_000:
            _SIG_INFO.clear()  # bounded: a program that keeps making new names
        _SIG_INFO[vkey] = info
    return info


def _strip_summaries(e: ev.OpEvent) -> ev.OpEvent:
    return dataclasses.replace(e, summaries=None, input_summaries=None, values=None)


def _lock_for_writing(path: str) -> int:
    """Opens and flocks `path` (creating it), after checking that it is ours to overwrite."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise TraceFileError(path, "exists and is not a regular file (a directory, device or pipe)")
    if os.path.exists(path) and os.path.getsize(path) > 0:
        problem = _foreign(path)
        if problem:
            raise TraceFileError(path, f"exists and {problem}; refusing to overwrite it")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise TraceFileError(path, f"cannot be written ({e.strerror})") from None
    try:
        import fcntl
    except ImportError:  # Windows: no flock; SQLite's own locking still keeps the file consistent
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise TraceFileError(
                path, "is being recorded by another process or recorder; record to a different path"
            ) from None
    try:
        os.ftruncate(fd, 0)  # a fresh file, same inode, so the lock stays meaningful
    except OSError as e:
        os.close(fd)
        raise TraceFileError(path, f"cannot be written ({e.strerror})") from None
    return fd


def _foreign(path: str) -> str | None:
    """None when `path` is a tracetensor trace (any version), else why it is not."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head != _SQLITE_MAGIC:
        return "is not a tracetensor trace (not an SQLite database)"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return "is an SQLite database without tracetensor's meta table"
    if not row or row[0] != FORMAT:
        return "is an SQLite database that is not a tracetensor trace"
    return None


# --------------------------------------------------------------------------- reader


def open_trace(path: str | os.PathLike) -> SqliteTrace:
    """Opens a trace file for reading (`tt.trace.open(path)`)."""
    return SqliteTrace(path)


def _regexp(pattern: str, value: str | None) -> bool:
    return value is not None and _compiled(pattern).search(value) is not None


_RX: dict[str, re.Pattern] = {}


def _compiled(p: str) -> re.Pattern:
    r = _RX.get(p)
    if r is None:
        r = _RX[p] = re.compile(p)
    return r


# what a damaged row that SQLite reads fine raises while it is decoded
_DAMAGE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, zlib.error, struct.error)


def _reads(what: str) -> Any:
    """Decorates a reader method: damaged rows become one TraceFileError naming the file."""

    def deco(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(self: SqliteTrace, *a: Any, **k: Any) -> Any:
            try:
                return fn(self, *a, **k)
            except TraceFileError:
                raise
            except _DAMAGE as e:
                raise TraceFileError(self.path, f"is corrupt ({what}: {type(e).__name__}: {e})") from None

        return wrapper

    return deco


def _check_schema(path: str, db: sqlite3.Connection) -> None:
    """The file's tables are tables: a view (which could compute forever) or a trigger in
    someone else's file is refused before any query runs."""
    rows = db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchall()
    if rows:
        raise TraceFileError(path, f"is not a tracetensor trace (it holds a {rows[0][0]} {rows[0][1]!r})")


def _check_ints(what: str, *vals: Any) -> None:
    for v in vals:
        if v is not None and not isinstance(v, int):
            raise TypeError(f"{what} holds {v!r} where an integer belongs")


class SqliteTrace(Trace):
    """A trace file, read back: every `Trace` query, answered from indexes, decoding only
    the blocks a query touches (a few are cached).

    Safe to share between threads (one connection behind a lock). Opening a file that is
    still being recorded works too (WAL): each query sees what was committed so far.
    """

    CACHE = 8  # decoded blocks kept (64k events: what 32 blocks of 2,048 held)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        _check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.create_function("regexp", 2, _regexp, deterministic=True)
            _check_schema(self.path, self._db)
            self._meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            msg = str(e)
            raise TraceFileError(
                self.path,
                "is not a tracetensor trace (no meta table)"
                if "no such table" in msg
                else f"is corrupt or truncated ({msg})",
            ) from None
        fmt = self._meta.get("format")
        if fmt != FORMAT:
            raise TraceFileError(self.path, f"is not a tracetensor trace (format {fmt!r}, expected {FORMAT!r})")
        try:
            version = int(self._meta.get("version", ""))
        except ValueError:
            raise TraceFileError(self.path, f"has an unreadable schema version {self._meta.get('version')!r}") from None
        if version < 1:
            raise TraceFileError(self.path, f"has an invalid schema version {version}")
        if version > VERSION:
            raise TraceFileError(
                self.path,
                f"was written by a newer tracetensor (schema version {version}; this "
                f"version reads up to {VERSION}): upgrade tracetensor to read it",
            )
        self.version = version
        # a run's blocks: block_runs rows, and from version 5 a run's one block in its runs row
        self._run_blocks = RUN_BLOCKS if version >= 5 else "block_runs"
        # the runs: from version 6, `runs` rows and those `run_packs` holds, which this reader
        # unpacks into a table of its own as it first needs them (and, while the file is
        # being recorded, the packs that came since; see _q)
        self._runs_from = "runs"
        self._pack_id: int | None = None  # the last pack unpacked (None: none to read)
        if version >= 6:
            # what differs from run to run, beside its pack's row (which holds what the pack's
            # runs share). run INTEGER PRIMARY KEY: the rowid, rows come in order at its end
            self._db.execute(
                "CREATE TEMP TABLE packed_runs(run INTEGER PRIMARY KEY, start_ns, wall_ns, end_ns, loss, n_events,"
                " nonfinite, block, pack INTEGER)"
            )
            self._runs_from = f"(SELECT {_RUN_COLUMNS} FROM main.runs UNION ALL {_PACKED_RUNS})"
            self._run_blocks = _run_blocks_of(self._runs_from)
            self._pack_id = 0
        try:
            self.t0 = int(self._meta["t0"])
        except (KeyError, ValueError, TypeError):
            raise TraceFileError(self.path, f"is corrupt (its clock base t0 is {self._meta.get('t0')!r})") from None
        self._lock = threading.RLock()
        self._ops: dict[int, str] = {}
        self._sigs: dict[int, tuple] = {}
        self._stacks: dict[int | None, tuple[ev.Frame, ...] | None] = {None: None}
        self._graphs: list[ev.GraphDef] = []
        self._graph_rowid = 0
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._runs: list[RunInfo] | None = None
        self._closed_file = self._meta.get("complete") == "1"
        self._q("SELECT count(*) FROM runs")  # touches the schema: a damaged file fails here, at open

    # -- plumbing
    def _q(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            try:
                if self._pack_id is not None and "packed_runs" in sql:  # (every query of the runs)
                    self._unpack_runs()
                return self._db.execute(sql, params).fetchall()
            except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # (text SQLite cannot decode)
                raise TraceFileError(self.path, f"is corrupt or truncated ({e})") from None

    def _unpack_runs(self) -> None:
        """The run packs written since the last call, into this reader's `packed_runs`."""
        db = self._db
        packs = db.execute("SELECT id, n, data FROM run_packs WHERE id > ? ORDER BY id", (self._pack_id,))
        chunk = packs.fetchmany(64)  # (a few thousand runs at a time: little memory)
        if not chunk:  # (a file being recorded: nothing new since the last query)
            if self._closed_file:
                self._pack_id = None
            return
        db.execute("BEGIN")  # (one transaction: a statement's own costs a run about 1 us more)
        try:
            last = self._pack_id
            while chunk:
                rows = []
                for pid, n, data in chunk:
                    try:
                        rows += unpack_runs(data, n, pid)
                    except _DAMAGE as e:
                        raise TraceFileError(self.path, f"is corrupt (run pack {pid}: {e})") from None
                    last = pid
                _insert_rows(db, "INSERT OR REPLACE INTO packed_runs", rows)
                chunk = packs.fetchmany(64)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._pack_id = None if self._closed_file else last  # (a finished file's packs are all read now)

    def meta(self) -> dict[str, str]:
        """The file's meta table: format, version, values level, pid, clock base, complete ..."""
        return dict(self._meta)

    @property
    def complete(self) -> bool:
        """False for a trace whose recorder never closed it (a killed process)."""
        return self._q("SELECT value FROM meta WHERE key='complete'") == [("1",)]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- decoding
    def _load_sigs(self, ids: Any) -> None:
        missing = [int(i) for i in ids if int(i) not in self._sigs]
        for k in range(0, len(missing), 500):
            chunk = missing[k : k + 500]
            rows = self._q(f"SELECT * FROM sigs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            stack_ids = [r[12] for r in rows if r[12] not in self._stacks]
            for j in range(0, len(stack_ids), 500):
                sl = stack_ids[j : j + 500]
                for sid, js in self._q(f"SELECT id, frames FROM stacks WHERE id IN ({','.join('?' * len(sl))})", sl):
                    self._stacks[sid] = _frames(js)
            for i, op, name, mode, phase, device, thread, flops, fwd, inputs, outputs, grad_of, stack in rows:
                outs = tuple(ev.TensorMeta(m[0], tuple(m[1]), m[2], m[3], m[4]) for m in json.loads(outputs))
                self._sigs[i] = (
                    self._op(op),
                    name,
                    mode,
                    phase,
                    device,
                    thread,
                    flops,
                    fwd,
                    tuple(json.loads(inputs)),
                    outs,
                    tuple(json.loads(grad_of)) if grad_of else (),
                    self._stacks.get(stack),
                )

    @_reads("the ops table")
    def _op(self, op_id: int) -> str:
        s = self._ops.get(op_id)
        if s is None:
            self._ops.update(self._q("SELECT id, op FROM ops"))
            s = self._ops[op_id]
        return s

    def _block(self, bid: int) -> Block:
        with self._lock:
            b = self._blocks.get(bid)
            if b is not None:
                self._blocks.move_to_end(bid)
                return b
        rows = self._q("SELECT n, m, data FROM blocks WHERE id = ?", (bid,))
        if not rows:
            raise TraceFileError(self.path, f"has no event block {bid}")
        n, m, data = rows[0]
        try:
            b = unpack_block(data, n, m, self.t0)
        except _DAMAGE as e:
            raise TraceFileError(self.path, f"is corrupt (event block {bid}: {e})") from None
        b.id = bid
        with self._lock:
            self._blocks[bid] = b
            if len(self._blocks) > self.CACHE:
                self._blocks.popitem(last=False)
        return b

    def _events_of(self, b: Block, idx: Any = None) -> list[ev.OpEvent]:
        """OpEvents of block `b` (all, or those at positions `idx`). A whole block is decoded
        once and cached; a few events of an uncached block are decoded alone."""
        if b._events is not None:
            return b._events if idx is None else [b._events[i] for i in idx]
        try:
            if idx is not None and len(idx) * 4 < len(b):
                return self._decode(b, np.asarray(idx, dtype=np.int64))
            b._events = self._decode(b, None)
        except TraceFileError:
            raise
        except _DAMAGE as e:  # damaged rows that SQLite read fine
            problem = f"is corrupt (event block {b.id}: {type(e).__name__}: {e})"
            raise TraceFileError(self.path, problem) from None
        return b._events if idx is None else [b._events[i] for i in idx]

    def _decode(self, b: Block, idx: np.ndarray | None) -> list[ev.OpEvent]:
        cols = [b.seq, b.run, b.sig, b.start, b.dur, b.iteration, b.nsumm, b.flags]
        if idx is None:
            sints, sfloats = b.sints, b.sfloats
        else:
            cols = [c[idx] for c in cols]
            rows = np.concatenate(
                [np.arange(o, o + max(n, 0)) for o, n in zip(b.offsets[idx], b.nsumm[idx])] or [np.zeros(0, np.int64)]
            )
            sints, sfloats = b.sints[rows], b.sfloats[rows]
        seqs, runs, sig_ids, starts, durs, its, nss, flags = (c.tolist() for c in cols)
        self._load_sigs(set(sig_ids))
        sigs, OpEvent, Summary = self._sigs, ev.OpEvent, ev.Summary
        summ = [None if r[0] < 0 else Summary(*r, *f) for r, f in zip(sints.tolist(), sfloats.tolist())]
        isumm = {}
        flagged = [s for s, f in zip(seqs, flags) if f]
        if flagged:
            sql = f"SELECT seq, data FROM input_summaries WHERE seq IN ({','.join('?' * len(flagged))})"
            isumm = {s: unpack_summaries(d) for s, d in self._q(sql, flagged)}
        out = []
        off = 0
        for seq, run, sig, start, dur, it, ns in zip(seqs, runs, sig_ids, starts, durs, its, nss):
            op, name, mode, phase, device, thread, flops, fwd, inputs, outs, grad_of, stack = sigs[sig]
            if ns < 0:
                ss = None
            else:
                ss = tuple(summ[off : off + ns])
                off += ns
            out.append(
                OpEvent(
                    seq,
                    run,
                    mode,
                    phase,
                    op,
                    name,
                    inputs,
                    outs,
                    start,
                    start + dur,
                    thread,
                    device,
                    flops,
                    fwd,
                    grad_of,
                    None if it == _NO_ITER else it,
                    stack,
                    ss,
                    isumm.get(seq) if flagged else None,
                )
            )
        return out

    def _sig_filter(self, phase: str | None, op: str | None, name: str | None) -> np.ndarray | None:
        """Sig ids that pass the phase/op/name filters (None: no filter)."""
        if phase is None and op is None and name is None:
            return None
        conds, params = [], []
        if op is not None:
            conds.append("op IN (SELECT id FROM ops WHERE op REGEXP ?)")
            params.append(op)
        if phase is not None:
            conds.append("phase = ?")
            params.append(phase)
        if name is not None:
            conds.append("name REGEXP ?")
            params.append(name)
        rows = self._q(f"SELECT id FROM sigs WHERE {' AND '.join(conds)}", params)
        return np.array(sorted(r[0] for r in rows), dtype=np.int32)

    def _block_ids(
        self, run: int | None, op: str | None = None, *, from_pos: int = 0, reverse: bool = False
    ) -> Iterator[tuple[int, int]]:
        """(block id, events of the run -- or file -- before it), in order, a page at a time."""
        conds, params = [], []
        if run is not None:
            table, col, key, posc = self._run_blocks, "block", "run = ? AND ", "run_pos"
            params.append(run)
        else:
            table, col, key, posc = "blocks", "id", "", "pos"
        conds.append(f"{key}1")
        if from_pos:
            # the (run, run_pos) / pos index finds the last block starting at or before from_pos
            conds.append(f"{posc} >= coalesce((SELECT max({posc}) FROM {table} WHERE {key}{posc} <= ?), 0)")
            params += ([run] if run is not None else []) + [from_pos]
        if op is not None:
            conds.append(f"{col} IN (SELECT block FROM block_ops WHERE op IN (SELECT id FROM ops WHERE op REGEXP ?))")
            params.append(op)
        where = " AND ".join(conds)
        last = None
        while True:
            page = f" AND {col} {'<' if reverse else '>'} ?" if last is not None else ""
            rows = self._q(
                f"SELECT {col}, {posc} FROM {table} WHERE {where}{page} ORDER BY {col}"
                f"{' DESC' if reverse else ''} LIMIT 256",
                [*params, last] if last is not None else params,
            )
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    # -- Trace
    @_reads("the runs table")
    def runs(self) -> list[RunInfo]:
        if self._runs is not None:
            return list(self._runs)
        out = self._run_rows("ORDER BY run")
        if self._closed_file:
            self._runs = out  # a finished file never changes
        return list(out)

    def run_ids(self, *, nonfinite: bool = False) -> list[int]:
        if self._runs is not None:
            return super().run_ids(nonfinite=nonfinite)
        if nonfinite and self.version < 2:
            return super().run_ids(nonfinite=nonfinite)
        where = " WHERE nonfinite > 0" if nonfinite else ""
        return [r[0] for r in self._q(f"SELECT run FROM {self._runs_from}{where} ORDER BY run")]

    def run_infos(self, ids: list[int]) -> list[RunInfo]:
        if self._runs is not None or len(ids) > 500:
            return super().run_infos(ids)
        ids = [int(i) for i in ids]
        return self._run_rows(f"WHERE run IN ({','.join('?' * len(ids))}) ORDER BY run", tuple(ids))

    def run_info(self, run: int) -> RunInfo:
        if self._runs is None:  # one row by its key, not the whole table
            got = self._run_rows("WHERE run = ?", (run,))
            if got:
                return got[0]
        return super().run_info(run)  # KeyError: not in this trace

    @_reads("the runs table")
    def _run_rows(self, where: str, params: tuple = ()) -> list[RunInfo]:
        out = []
        extra = "loss, nonfinite" if self.version >= 2 else "NULL, 0"
        for run, mode, kind, name, fetches, feeds, graph, start, wall, end, error, n, loss, bad in self._q(
            "SELECT run, mode, kind, name, fetches, feeds, graph, start_ns, wall_ns, end_ns, error, n_events,"
            f" {extra} FROM {self._runs_from} {where}",
            params,
        ):
            _check_ints("the runs table", run, graph, start, wall, end, n)
            out.append(
                RunInfo(
                    run,
                    mode or "eager",
                    kind or "eager",
                    name or "",
                    _tuple(fetches),
                    _tuple(feeds),
                    graph,
                    start or 0,
                    end,
                    error,
                    n,
                    wall or 0,
                    _float(loss),
                    bad or 0,
                )
            )
        return out

    @_reads("the runs table")
    def run_starts(self) -> list[ev.RunStart]:
        """The RunStart events recorded (runs seen only through their ops have none)."""
        return [
            ev.RunStart(run, mode, kind, name, _tuple(fe), _tuple(fd), graph, start, thread, wall)
            for run, mode, kind, name, fe, fd, graph, start, wall, thread in self._q(
                "SELECT run, mode, kind, name, fetches, feeds, graph, start_ns, wall_ns, thread"
                f" FROM {self._runs_from} WHERE thread IS NOT NULL ORDER BY run"
            )
        ]

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
        if limit is not None and limit <= 0:
            return []
        return list(itertools.islice(self.iter_events(run, phase=phase, op=op, name=name, start=start), limit))

    def iter_events(
        self,
        run: int | None = None,
        *,
        phase: str | None = None,
        op: str | None = None,
        name: str | None = None,
        start: int = 0,
    ) -> Iterator[ev.OpEvent]:
        """Like `events()`, decoded a block at a time (constant memory over any file)."""
        op = op_pattern(op)
        sigs = self._sig_filter(phase, op, name)
        if sigs is not None and len(sigs) == 0:
            return
        # without filters, the position index jumps straight to the block holding event `start`
        jump = sigs is None and start > 0
        skip = None if jump else start
        for bid, before in self._block_ids(run, op, from_pos=start if jump else 0):
            b = self._block(bid)
            if skip is None:
                skip = max(0, start - before)
            mask = None if run is None else b.run == run
            if sigs is not None:
                m2 = np.isin(b.sig, sigs)
                mask = m2 if mask is None else mask & m2
            if mask is None:
                if skip >= len(b):
                    skip -= len(b)
                    continue
                idx, skip = (range(skip, len(b)) if skip else None), 0
            else:
                hit = np.flatnonzero(mask)
                if skip >= len(hit):
                    skip -= len(hit)
                    continue
                idx, skip = hit[skip:].tolist(), 0
            yield from self._events_of(b, idx)

    @_reads("the runs table")
    def count(self, run: int | None = None) -> int:
        if run is None:
            return int(self._q(f"SELECT coalesce(sum(n_events), 0) FROM {self._runs_from}")[0][0])
        r = self._q(f"SELECT n_events FROM {self._runs_from} WHERE run = ?", (run,))
        return int(r[0][0]) if r else 0

    @_reads("an event block")
    def first_nonfinite(self, run: int | None = None) -> ev.OpEvent | None:
        if run is None:
            rows = self._q("SELECT id FROM blocks WHERE nonfinite > 0 ORDER BY nonfinite LIMIT 1")
        else:
            rows = self._q(
                f"SELECT block FROM {self._run_blocks} WHERE run = ? AND nonfinite > 0 ORDER BY nonfinite LIMIT 1",
                (run,),
            )
        if not rows:
            return None
        b = self._block(rows[0][0])
        bad = b.nonfinite > 0
        if run is not None:
            bad &= b.run == run
        return self._events_of(b, [int(np.argmax(bad))])[0]

    def iter_nonfinite(self, run: int | None = None) -> Iterator[ev.OpEvent]:
        # only blocks whose index entry holds a first non-finite seq can hold one at all
        if run is None:
            sql, params = "SELECT id FROM blocks WHERE nonfinite > 0 AND id > ? ORDER BY id LIMIT 64", []
        else:
            sql = (
                f"SELECT block FROM {self._run_blocks} WHERE run = ? AND nonfinite > 0 AND block > ?"
                " ORDER BY block LIMIT 64"
            )
            params = [run]
        last = 0
        while True:
            ids = [r[0] for r in self._q(sql, [*params, last])]
            if not ids:
                return
            for bid in ids:
                b = self._block(bid)
                bad = b.nonfinite > 0
                if run is not None:
                    bad &= b.run == run
                yield from self._events_of(b, np.flatnonzero(bad).tolist())
            last = ids[-1]

    @_reads("an event block")
    def nonfinite_counts(self, run: int) -> dict[int, int]:
        """seq -> number of NaN/inf output elements, for the events of `run` that have any."""
        out = {}
        for (bid,) in self._q(f"SELECT block FROM {self._run_blocks} WHERE run = ? AND nonfinite > 0", (run,)):
            b = self._block(bid)
            nz = np.flatnonzero((b.nonfinite > 0) & (b.run == run))
            out.update(zip(b.seq[nz].tolist(), b.nonfinite[nz].tolist()))
        return out

    def _last_with(self, sigs: list[int], run: int | None) -> ev.OpEvent | None:
        arr = np.array(sorted(sigs), dtype=np.int32)
        for bid, _ in self._block_ids(run, reverse=True):
            b = self._block(bid)
            mask = np.isin(b.sig, arr)
            if run is not None:
                mask &= b.run == run
            hit = np.flatnonzero(mask)
            if len(hit):
                return self._events_of(b, [int(hit[-1])])[0]
        return None

    @_reads("the sigs table")
    def find(self, tensor: str, run: int | None = None) -> tuple[ev.OpEvent, int] | None:
        want = output_name(tensor)
        # a name printed without `:i` (a parameter update's `0.weight`) is found as printed
        return self._find(want, run) or (self._find(tensor, run) if want != tensor else None)

    def _find(self, want: str, run: int | None) -> tuple[ev.OpEvent, int] | None:
        # outputs are `name:i` (or `NAME.grad` for accumulated gradients): candidate ops by name first
        rows = self._q("SELECT id FROM sigs WHERE name = ?", (want.rsplit(":", 1)[0],))
        if not rows:
            rows = self._q("SELECT id FROM sigs WHERE instr(outputs, ?) > 0", (json.dumps(want),))
        self._load_sigs([r[0] for r in rows])
        cands = [r[0] for r in rows if any(m.name == want for m in self._sigs[r[0]][9])]
        if not cands:
            return None
        e = self._last_with(cands, run)
        if e is None:
            return None
        return e, next(i for i, m in enumerate(e.outputs) if m.name == want)

    @_reads("the sigs table")
    def consumers(self, name: str, run: int | None = None) -> list[str]:
        base = name.split(":")[0]
        g = self.graph()
        if g is not None and any(n.name == base for n in g.nodes):
            return super().consumers(name, run)
        rows = self._q("SELECT id FROM sigs WHERE instr(inputs, ?) > 0", (json.dumps(base)[:-1],))
        self._load_sigs([r[0] for r in rows])
        cands = [r[0] for r in rows if any(i.split(":")[0] == base for i in self._sigs[r[0]][8])]
        if not cands:
            return []
        arr = np.array(sorted(cands), dtype=np.int32)
        out: list[str] = []
        names = {self._sigs[c][1] for c in cands}
        for bid, _ in self._block_ids(run):
            b = self._block(bid)
            mask = np.isin(b.sig, arr)
            if run is not None:
                mask &= b.run == run
            for s in b.sig[mask].tolist():
                n = self._sigs[s][1]
                if n not in out:
                    out.append(n)
            if len(out) == len(names):
                break
        return out

    @_reads("a stored value")
    def value(self, tensor: str, run: int | None = None, default: Any = NOT_RECORDED) -> np.ndarray | None:
        want = output_name(tensor)
        rows = []
        for name in dict.fromkeys((want, tensor)):  # `relu` means `relu:0`; `0.weight` (an update) is itself
            if run is None:
                rows = self._q("SELECT npy FROM tensors WHERE name = ? ORDER BY run DESC, id DESC LIMIT 1", (name,))
            else:
                rows = self._q(
                    "SELECT npy FROM tensors WHERE name = ? AND run = ? ORDER BY id DESC LIMIT 1", (name, run)
                )
            if rows:
                want = name
                break
        if not rows:
            return self._no_value(tensor, run, default)
        return self._npy(rows[0][0], want)

    def _values_level(self) -> str:
        return self._meta.get("values", "?")

    def _npy(self, b: bytes, what: str) -> np.ndarray:
        try:
            return load_npy(b)
        except ValueError as e:
            raise TraceFileError(self.path, f"holds a damaged value for {what} ({e})") from None

    @_reads("a stored value")
    def values_of(self, seq: int) -> dict[int, np.ndarray]:
        """The kept output values of event `seq`: {output index: array}."""
        return {
            i: self._npy(b, f"event {seq}") for i, b in self._q("SELECT idx, npy FROM tensors WHERE seq = ?", (seq,))
        }

    @_reads("the device_times table")
    def device_times(self, run: int | None = None) -> dict[int, int]:
        if run is None:
            rows = self._q("SELECT seq, device_ns FROM device_times")
            _check_ints("the device_times table", *(t for _, t in rows))
            return dict(rows)
        out = {}
        for bid, lo, hi in self._q(
            f"SELECT id, seq_lo, seq_hi FROM blocks WHERE id IN (SELECT block FROM {self._run_blocks} WHERE run = ?)",
            (run,),
        ):
            got = self._q("SELECT seq, device_ns FROM device_times WHERE seq BETWEEN ? AND ?", (lo, hi))
            _check_ints("the device_times table", *(t for _, t in got))
            if got:
                b = self._block(bid)
                mine = set(b.seq[b.run == run].tolist())
                out.update((s, t) for s, t in got if s in mine)
        return out

    def graphs(self) -> list[ev.GraphDef]:
        with self._lock:
            for rid, graph, version, nodes in self._q(
                "SELECT id, graph, version, nodes FROM graphs WHERE id > ? ORDER BY id", (self._graph_rowid,)
            ):
                try:
                    g = ev.GraphDef(graph, version, tuple(_node(n) for n in json.loads(nodes)))
                except (ValueError, TypeError, IndexError) as e:
                    raise TraceFileError(self.path, f"is corrupt (graph {graph}: {e})") from None
                self._graphs.append(g)
                self._graph_rowid = rid
            return list(self._graphs)

    @_reads("the ranges table")
    def ranges(self, run: int | None = None) -> list[ev.UserRange]:
        sql = "SELECT name, run, start_ns, end_ns, thread FROM ranges"
        rows = self._q(sql + " WHERE run = ? ORDER BY id", (run,)) if run is not None else self._q(sql + " ORDER BY id")
        return [ev.UserRange(*r) for r in rows]

    def source(self, filename: str) -> str | None:
        """Only the text stored in the trace: a file from elsewhere names paths on the
        recording machine, which must not be read on this one."""
        rows = self._q("SELECT text FROM sources WHERE filename = ?", (filename,))
        return rows[0][0] if rows and isinstance(rows[0][0], str) else None

    def sources(self) -> list[str]:
        """Names of the user files whose text the trace holds."""
        return [r[0] for r in self._q("SELECT filename FROM sources ORDER BY filename")]

    def dropped(self) -> dict[str, int]:
        n, b = self._q("SELECT count(*), coalesce(sum(nbytes), 0) FROM dropped")[0]
        return {"values": int(n), "bytes": int(b)}

    @_reads("the block_ops table")
    def op_stats(self, run: int | None = None) -> list[tuple[str, int, int]]:
        """(op type, count, total host ns), most expensive first, from the per-block tallies."""
        if run is not None:
            acc: dict[str, list[int]] = {}
            for e in self.iter_events(run):
                a = acc.setdefault(e.op, [0, 0])
                a[0] += 1
                a[1] += e.duration_ns
            return sorted(((k, n, t) for k, (n, t) in acc.items()), key=lambda r: -r[2])
        rows = self._q(
            "SELECT o.op, sum(b.n), sum(b.total_ns) FROM block_ops b JOIN ops o ON o.id = b.op"
            " GROUP BY b.op ORDER BY 3 DESC"
        )
        return [(op, int(n), int(t)) for op, n, t in rows]

    def stream(self) -> Iterator[ev.Event]:
        """Every recorded event, in the order a live listener would have seen them (graphs first,
        then each run's start, ops, device times, ranges and end); feeds `MemoryTrace.extend`."""
        yield from self.graphs()
        starts = {s.run: s for s in self.run_starts()}
        dev = self.device_times()
        for r in self.runs():
            if r.run in starts:
                yield starts[r.run]
            for e in self.iter_events(r.run):
                yield e
                if e.seq in dev:
                    yield ev.DeviceTime(e.seq, dev[e.seq])
            yield from self.ranges(r.run)
            if r.end_ns is not None:
                yield ev.RunEnd(r.run, r.end_ns, starts[r.run].thread if r.run in starts else 0, r.error, r.loss)

    @_reads("a table")
    def info(self) -> dict[str, Any]:
        """What `tracetensor trace info` prints: counts, ops, bytes, drops."""
        nt, tb = self._q("SELECT count(*), coalesce(sum(length(npy)), 0) FROM tensors")[0]
        size = sum(os.path.getsize(self.path + x) for x in ("", "-wal") if os.path.exists(self.path + x))
        return {
            "path": self.path,
            "version": self.version,
            "complete": self.complete,
            "values": self._meta.get("values", "?"),
            "runs": len(self.runs()),
            "events": self.count(),
            "ops": self.op_stats(),
            "tensors": int(nt),
            "tensor_bytes": int(tb),
            "dropped": self.dropped(),
            "graphs": len(self.graphs()),
            "sources": len(self.sources()),
            "file_bytes": size,
        }


def _check_header(path: str) -> None:
    """One clear error before SQLite sees the file: missing, not a regular file (a FIFO would
    block the open), empty, foreign or truncated."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise TraceFileError(path, "is not a regular file (a directory, device or pipe)")
        size = st.st_size
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the stat
                raise TraceFileError(path, "is not a regular file")
            head = f.read(100)
    except TraceFileError:
        raise
    except FileNotFoundError:
        raise TraceFileError(path, "does not exist") from None
    except (OSError, ValueError) as e:
        raise TraceFileError(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if size == 0:
        raise TraceFileError(path, "is empty (the recording never started, or the file was truncated)")
    if not head.startswith(_SQLITE_MAGIC):
        raise TraceFileError(path, "is not a tracetensor trace (not an SQLite database)")
    if len(head) < 100:
        raise TraceFileError(path, f"is truncated ({size} bytes)")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    # the in-header page count is valid when its change counter matches (SQLite >= 3.7.0 writes both)
    # a WAL next to the file holds pages not yet copied in: a checkpoint cut short by a full
    # disk leaves a header that counts them, and SQLite still reads every committed one
    wal = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0
    if head[24:28] == head[92:96] and pages and size < page * pages and not wal:
        raise TraceFileError(path, f"is truncated ({size} bytes, expected {page * pages})")


def _accelerated(name: str) -> Any:
    from .. import _dispatch  # (the same switch as the dispatch point's: TRACETENSOR_PURE=1, no compiler)

    return getattr(_dispatch._speedups, name) if _dispatch.ACCELERATED else None


_summary_columns_c = _accelerated("summary_columns")
