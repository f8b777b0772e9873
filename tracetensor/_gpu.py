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
