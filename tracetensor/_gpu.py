"""The thin GPU layer: CUDA-event timing of ops on the current stream, resolved
without a synchronize per op, and cupy memory-pool statistics."""

from __future__ import annotations

from collections import deque
from typing import Any

_pending: deque[tuple[int, Any, Any]] = deque()


def start() -> Any:
    """Records a CUDA event on the current stream before an op is launched."""
    import cupy

    ev = cupy.cuda.Event()
    ev.record()
    return ev


def stop(seq: int, ev0: Any) -> None:
    """Records the end event; the time is read later, once the GPU got there."""
    import cupy

    ev1 = cupy.cuda.Event()
    ev1.record()
    _pending.append((seq, ev0, ev1))
    poll()


def poll() -> None:
    """Emits DeviceTime for every finished op, oldest first, without blocking."""
    if not _pending:
        return
    import cupy

    from .events import DeviceTime, emit

    while _pending and _pending[0][2].done:
        seq, ev0, ev1 = _pending.popleft()
        emit(DeviceTime(seq, int(cupy.cuda.get_elapsed_time(ev0, ev1) * 1e6)))


def flush() -> None:
    """Waits for the last pending op (one sync per run end), then emits all times."""
    if not _pending:
        return
    _pending[-1][2].synchronize()
    poll()


def pool_stats() -> tuple[int, int]:
    """(used, total) bytes of cupy's default memory pool; (0, 0) without cupy."""
    from .device import _probe_cupy

    cp = _probe_cupy()
    if cp is None:
        return (0, 0)
    pool = cp.get_default_memory_pool()
    return int(pool.used_bytes()), int(pool.total_bytes())


# One pass over a float tensor on the GPU: finite min/max/sum/sum of squares and the
# NaN/inf/sign counts, block-reduced in shared memory, then combined with atomics into
# ten doubles (counts are exact below 2**53). One launch and one device-to-host copy per
# summary, instead of a dozen reductions, each with cupy's launch overhead.
_SUMMARY_SRC = r"""
#define INF __longlong_as_double(0x7ff0000000000000LL)
__device__ void amin(double* p, double v) {
    unsigned long long* a = (unsigned long long*)p;
    unsigned long long old = *a, seen;
    while (v < __longlong_as_double((long long)old)) {
        seen = old;
        old = atomicCAS(a, seen, (unsigned long long)__double_as_longlong(v));
        if (old == seen) break;
    }
}
__device__ void amax(double* p, double v) {
    unsigned long long* a = (unsigned long long*)p;
    unsigned long long old = *a, seen;
    while (v > __longlong_as_double((long long)old)) {
        seen = old;
        old = atomicCAS(a, seen, (unsigned long long)__double_as_longlong(v));
        if (old == seen) break;
    }
}
extern "C" __global__ void tt_summary(const T* x, long long n, double* out) {
    double acc[10] = {INF, -INF, 0, 0, 0, 0, 0, 0, 0, 0};  // min max sum sumsq nan -inf +inf neg zero pos
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
    int t = threadIdx.x;
    for (int j = 0; j < 10; j++) s[j][t] = acc[j];
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (t < k) {
            s[0][t] = fmin(s[0][t], s[0][t + k]);
            s[1][t] = fmax(s[1][t], s[1][t + k]);
            for (int j = 2; j < 10; j++) s[j][t] += s[j][t + k];
        }
        __syncthreads();
    }
    if (t == 0) {
        amin(&out[0], s[0][0]);
        amax(&out[1], s[1][0]);
        for (int j = 2; j < 10; j++) atomicAdd(&out[j], s[j][0]);
    }
}
"""
_kernels: dict[str, Any] = {}
_fused_ok = True  # set False if the kernel cannot be built here (then the reductions path is used)


def summary_stats(a: Any) -> tuple[float, ...] | None:
    """(min, max, sum, sumsq, nan, -inf, +inf, neg, zero, pos) of a float cupy array in one
    launch (min/max/sums over finite values only); None when the fused kernel is unavailable."""
    global _fused_ok
    if not _fused_ok:
        return None
    import cupy
    import numpy as np

    if a.dtype == np.float16:
        a = a.astype(np.float32)
    ctype = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}.get(a.dtype)
    if ctype is None:
        return None
    try:
        k = _kernels.get(ctype)
        if k is None:
            k = _kernels[ctype] = cupy.RawKernel(_SUMMARY_SRC.replace("const T*", f"const {ctype}*"), "tt_summary")
        flat = cupy.ascontiguousarray(a).reshape(-1)
        n = flat.size
        out = cupy.zeros(10, np.float64)
        out[0], out[1] = np.inf, -np.inf
        k((min((n + 255) // 256, 1024),), (256,), (flat, np.int64(n), out))
        return tuple(float(v) for v in out.get())
    except Exception:  # an old GPU or toolkit that cannot build it: fall back, once, for good
        _fused_ok = False
        return None
