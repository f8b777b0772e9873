"""The thin GPU layer: CUDA-event timing of ops on the current stream, resolved
without a synchronize per op; the NaN/inf check and summaries of GPU outputs, computed
on the device and read a few ops later, also without a synchronize per op; and cupy
memory-pool statistics."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

# Ops whose GPU work is queued and not yet read back, oldest first: (seq, ev0, ev1, done,
# then, device, held bytes) where ev0..ev1 time the op (None: not timed), `done` is the last event recorded
# for it (ev1, or the one after its statistics kernels), and `then(rows)` is what to do
# once the device got there (None: only the time), given the statistics rows it asked for.
_pending: deque[tuple[int, Any, Any, Any, Any, int, int]] = deque()
_POLL_EVERY = 8  # an event query is a driver call: the queue is looked at every 8th op
# Beyond either bound (a loop that never ends a step, an inference loop over large
# activations), wait for the queue: queued checks keep their ops' outputs alive
_MAX_PENDING = 512
_MAX_HELD = 1 << 30  # bytes of those outputs (a training step's all fit: ~0.8 GB at 4096 wide)
_appended = 0
_held = 0
# Recorded events are reused once read (creating and destroying two per op costs more host
# time than the op's launch): per device and kind, (timing, marks) -> free events
_free: dict[tuple[int, bool], list[Any]] = {}


def _event(timed: bool, dev: int | None = None) -> Any:
    import cupy

    pool = _free.get((cupy.cuda.runtime.getDevice() if dev is None else dev, timed))
    return pool.pop() if pool else cupy.cuda.Event(disable_timing=not timed)


def start() -> Any:
    """Records a CUDA event on the current stream before an op is launched."""
    ev = _event(True)
    ev.record()
    return ev


def stop(seq: int, ev0: Any, then: tuple[Callable[..., None], tuple, list] | None = None, held: int = 0) -> None:
    """After the op was launched: records its end event and queues what to read back later.
    `then` = (fn, args, rows): `fn(*args, summaries)` runs once the device reached the op's
    statistics kernels, with a Summary (or None) per output from `rows` (see `stats_async`);
    `held`: the bytes of GPU memory the queued op keeps alive until then."""
    global _appended, _held
    import cupy

    dev = cupy.cuda.runtime.getDevice()
    ev1 = _event(True, dev) if ev0 is not None else None
    if ev1 is not None:
        ev1.record()
    done = ev1
    if then is not None and (done is None or any(r is not None and r[1] is not None for r in then[2])):
        done = _event(False, dev)  # after the statistics kernels (the op's time stays the op's)
        done.record()
    _pending.append((seq, ev0, ev1, done, then, dev, held))
    _appended += 1
    _held += held
    if len(_pending) >= _MAX_PENDING or _held > _MAX_HELD:
        flush()
    elif _appended % _POLL_EVERY == 0:
        poll()


_resolving = False


def forward_pending() -> bool:
    """Whether a queued op is not an optimizer update: the optimizer's first op then waits
    for it, so a finding's inputs are read before they are updated in place."""
    then = _pending[-1][4] if _pending else None
    return then is not None and then[1][0].phase != "update"


def poll() -> None:
    """Finishes every queued op the device is done with, oldest first, without blocking:
    its `then` (the op's record or event), then its DeviceTime."""
    global _resolving, _held
    if not _pending or _resolving:
        return
    import cupy

    from .events import DeviceTime, emit

    _resolving = True  # (a listener acting on a finding may close or subscribe: no nested pass)
    try:
        while _pending and _pending[0][3].done:
            seq, ev0, ev1, done, then, dev, held = _pending.popleft()
            _held -= held
            if then is not None:
                fn, args, rows = then
                fn(*args, _summaries(rows))
            if ev0 is not None:
                emit(DeviceTime(seq, int(cupy.cuda.get_elapsed_time(ev0, ev1) * 1e6)))
                _free.setdefault((dev, True), []).extend((ev0, ev1))
            if done is not ev1:
                _free.setdefault((dev, False), []).append(done)
    finally:
        _resolving = False


def flush() -> None:
    """Waits for the last queued op (one sync per run end), then finishes all of them."""
    if not _pending or _resolving:
        return
    _pending[-1][3].synchronize()
    poll()


# One pass over a tensor on the GPU: finite min/max/sum/sum of squares and the NaN/inf/sign
# counts. Each block reduces its share in shared memory; the last block to finish (a ticket
# counter, reset by that block) combines the blocks' partials and writes the ten doubles
# straight into a row of pinned host memory (with unified addressing a kernel may write
# there through the host pointer). One launch, no memset, no device-to-host copy and no
# synchronize: the host reads the row once an event recorded after the launch is done.
# Counts are exact below 2**53.
_STATS_SRC = r"""
#define INF __longlong_as_double(0x7ff0000000000000LL)
__device__ void combine(double s[10][256], int t, int k) {
    s[0][t] = fmin(s[0][t], s[0][t + k]);
    s[1][t] = fmax(s[1][t], s[1][t + k]);
    for (int j = 2; j < 10; j++) s[j][t] += s[j][t + k];
}
extern "C" __global__ void tt_stats(const T* x, long long n, double* part, unsigned int* ticket,
                                    unsigned long long out_addr) {
    // acc: min max sum sumsq nan -inf +inf neg zero pos
    double acc[10] = {INF, -INF, 0, 0, 0, 0, 0, 0, 0, 0};
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double v = (double)x[i];
        if (isnan(v)) acc[4] += 1;
        else if (isinf(v)) { if (v < 0) acc[5] += 1; else acc[6] += 1; }
        else {
            acc[0] = fmin(acc[0], v); acc[1] = fmax(acc[1], v); acc[2] += v; acc[3] += v * v;
            if (v < 0) acc[7] += 1; else if (v == 0) acc[8] += 1; else acc[9] += 1;
        }
    }
    __shared__ double s[10][256];
    __shared__ bool last;
    int t = threadIdx.x;
    for (int j = 0; j < 10; j++) s[j][t] = acc[j];
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (t < k) combine(s, t, k);
        __syncthreads();
    }
    if (t == 0) {
        for (int j = 0; j < 10; j++) part[blockIdx.x * 10 + j] = s[j][0];
        __threadfence();
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    volatile double* p = part;  // (other blocks' partials: past this SM's L1)
    for (int j = 0; j < 10; j++) s[j][t] = j == 0 ? INF : (j == 1 ? -INF : 0.0);
    for (unsigned int b = t; b < gridDim.x; b += blockDim.x) {
        s[0][t] = fmin(s[0][t], p[b * 10]);
        s[1][t] = fmax(s[1][t], p[b * 10 + 1]);
        for (int j = 2; j < 10; j++) s[j][t] += p[b * 10 + j];
    }
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (t < k) combine(s, t, k);
        __syncthreads();
    }
    if (t == 0) {
        double* out = (double*)out_addr;
        for (int j = 0; j < 10; j++) out[j] = s[j][0];
        __threadfence_system();
        *ticket = 0;  // ready for the next launch on this stream
    }
}
"""
# The check alone (listeners with `checks` and no summaries): how many values are NaN or
# infinite, counted in each block, added into a device counter, and written to a pinned row
# by the last block (which resets the counter and the ticket). About a quarter of the
# statistics kernel's device time on a large tensor (19 against 81 us for 64 MiB on an
# H200): a finite output needs nothing else, and a failing op is summarized in full later.
_COUNT_SRC = r"""
extern "C" __global__ void tt_count(const T* x, long long n, unsigned long long* count, unsigned int* ticket,
                                    unsigned long long out_addr) {
    unsigned long long bad = 0;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) bad += !isfinite(x[i]);
    __shared__ unsigned long long s[256];
    __shared__ bool last;
    int t = threadIdx.x;
    s[t] = bad;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (t < k) s[t] += s[t + k];
        __syncthreads();
    }
    if (t == 0) {
        if (s[0]) atomicAdd(count, s[0]);
        __threadfence();
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
        if (last) {
            double* out = (double*)out_addr;
            out[0] = (double)*(volatile unsigned long long*)count;
            __threadfence_system();
            *count = 0;  // ready for the next launch on this stream
            *ticket = 0;
        }
    }
}
"""
_BLOCKS = 1024  # at most: each block's partials take a slot of the scratch buffer
_ROWS = 4096  # pinned result rows: enough for every output of _MAX_PENDING queued ops
_CTYPES = {
    "float32": "float",
    "float64": "double",
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long long",
    "bool": "bool",
}
_kernels: dict[tuple[str, str], Any] = {}  # (kernel, C type) -> RawKernel, or False: not built here
# (device, stream) -> (partials, ticket, count): launches on one stream never overlap
_scratch: dict[tuple[int, int], tuple[Any, Any, Any]] = {}
_host: Any = None  # (pinned memory, its (_ROWS, 10) float64 view, free row numbers)
_ok: bool | None = None  # None: not tried yet; False: this GPU or toolkit cannot (the reductions path is used)


def _setup() -> bool:
    """Pinned rows, then one launch checked against the host's own reduction: a machine
    where the kernel cannot build, or cannot write to host memory, takes the old path."""
    global _ok, _host
    _ok = False
    try:
        import cupy

        mem = cupy.cuda.alloc_pinned_memory(_ROWS * 80)
        view = np.frombuffer(mem, np.float64, _ROWS * 10).reshape(_ROWS, 10)
        _host = (mem, view, list(range(_ROWS - 1, -1, -1)))
        _ok = True
        probe = cupy.asarray(np.array([1.0, -2.0, 0.0, np.nan, np.inf, 3.5], np.float32))
        r = stats_async(probe)
        cupy.cuda.get_current_stream().synchronize()
        got = _take(r) if r is not None else None
        c = stats_async(probe, count=True)
        cupy.cuda.get_current_stream().synchronize()
        counted = _take(c)[0] if c is not None else None
        if got != (-2.0, 3.5, 2.5, 17.25, 1.0, 0.0, 1.0, 1.0, 1.0, 2.0) or counted != 2.0:
            _ok = False
    except Exception:
        _ok = False
    return _ok


def stats_async(a: Any, count: bool = False) -> int | None:
    """Queues the statistics of cupy array `a` into a pinned row (`count`: only how many
    values are NaN or infinite, in the row's first number; floating arrays only); returns
    the row number, readable (`_take`) once an event recorded after this call is done.
    None: not done here (an empty array, a dtype the kernel has no type for, or no kernel
    on this machine)."""
    if not (_ok or (_ok is None and _setup())):
        return None
    n = a.size
    if a.dtype == np.float16:
        a = a.astype(np.float32)  # (one more launch; NVRTC may not find cuda_fp16.h)
    ctype = _CTYPES.get(a.dtype.name)
    if count and a.dtype.kind != "f":
        ctype = None
    name = "tt_count" if count else "tt_stats"
    free = _host[2]
    if not n or ctype is None or not free or _kernels.get((name, ctype)) is False:
        return None
    import cupy

    key = (cupy.cuda.runtime.getDevice(), cupy.cuda.get_current_stream().ptr)
    sc = _scratch.get(key)
    if sc is None:
        sc = _scratch[key] = (cupy.empty(_BLOCKS * 10, np.float64), cupy.zeros(1, np.uint32), cupy.zeros(1, np.uint64))
    if not a.flags.c_contiguous:
        a = cupy.ascontiguousarray(a)
    row = free.pop()
    addr = _host[1].ctypes.data + row * 80
    try:
        k = _kernels.get((name, ctype))
        if k is None:
            src = _COUNT_SRC if count else _STATS_SRC
            k = _kernels[(name, ctype)] = cupy.RawKernel(src.replace("const T*", f"const {ctype}*"), name)
        scratch = sc[2] if count else sc[0]
        k((min((n + 255) // 256, _BLOCKS),), (256,), (a, np.int64(n), scratch, sc[1], np.uint64(addr)))
    except Exception:  # this type does not build here: the reductions path, for good
        _kernels[(name, ctype)] = False
        free.append(row)
        return None
    return row


def _take(row: int) -> tuple[float, ...]:
    """The ten numbers of a finished row, and the row back to the free list."""
    v = tuple(_host[1][row].tolist())
    _host[2].append(row)
    return v


def _summaries(rows: list) -> tuple:
    """Each output's Summary from what `_defer` queued for it: None (not an array), or
    (kind, row, array) with kind "stats" (a Summary from the statistics row), "count" (None
    when the row counted no NaN or inf; a row of None: an integer output, finite) or
    "sync" (summarized now, the synchronous way). An op with a counted NaN or inf has every
    output summarized in full, as at the op."""
    from .events import _summary_from_stats, summarize

    out = []
    failed = False
    for r in rows:
        if r is None:
            out.append(None)
        elif r[0] == "stats":
            out.append(_summary_from_stats(r[2].size, _take(r[1])))
        elif r[0] == "count":
            failed = failed or (r[1] is not None and _take(r[1])[0] > 0)
            out.append(None)
        else:
            out.append(summarize(r[2]))
    if failed:
        out = [None if r is None else (s if s is not None else summarize(r[2])) for r, s in zip(rows, out)]
    return tuple(out)


def pool_stats() -> tuple[int, int]:
    """(used, total) bytes of cupy's default memory pool; (0, 0) without cupy."""
    from .device import _probe_cupy

    cp = _probe_cupy()
    if cp is None:
        return (0, 0)
    pool = cp.get_default_memory_pool()
    return int(pool.used_bytes()), int(pool.total_bytes())


def summary_stats(a: Any) -> tuple[float, ...] | None:
    """(min, max, sum, sumsq, nan, -inf, +inf, neg, zero, pos) of a cupy array in one launch
    and one synchronize (min/max/sums over finite values only); None when the kernel is
    unavailable for it."""
    row = stats_async(a)
    if row is None:
        return None
    import cupy

    cupy.cuda.get_current_stream().synchronize()
    return _take(row)
