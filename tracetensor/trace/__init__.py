"""`tt.trace`: reading runs back, live (`MemoryTrace`) or from a trace file (`open`)."""
from __future__ import annotations

from .base import MemoryTrace, RunInfo, Trace

__all__ = ["Trace", "MemoryTrace", "RunInfo"]
