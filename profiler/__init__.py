"""tracetensor.profiler: per-op CPU/GPU timings, torch.profiler-style tables, Chrome
trace / speedscope / folded-stack exports, and `tracetensor profile script.py` with
py-spy's Python samples merged in (see `profiler/core.py` for what self and total mean)."""

from __future__ import annotations

from .core import (
    EventList,
    ProfilerAction,
    ProfilerActivity,
    Report,
    Row,
    SortKeyError,
    profile,
    record_function,
    schedule,
    step,
)

__all__ = [
    "profile",
    "schedule",
    "record_function",
    "step",
    "ProfilerActivity",
    "ProfilerAction",
    "Report",
    "EventList",
    "Row",
    "SortKeyError",
]
