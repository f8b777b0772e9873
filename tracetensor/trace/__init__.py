"""`tt.trace`: recording runs (`record`) and reading them back, live (`MemoryTrace`) or
from a trace file (`open` -> `SqliteTrace`), through one `Trace` interface."""

from __future__ import annotations

from .base import MemoryTrace, RunInfo, Trace, ValueNotRecorded
from .multi import MultiTrace, merge, open_ranks
from .recorder import Recorder, record, record_script, run_script
from .store import FORMAT, VERSION, SqliteTrace, TraceFileError
from .store import open_trace as open
from .text import format_bytes, format_ns, is_launcher_frame, nonfinite_text, printable

__all__ = [
    "Trace",
    "MemoryTrace",
    "RunInfo",
    "SqliteTrace",
    "TraceFileError",
    "ValueNotRecorded",
    "Recorder",
    "record",
    "open",
    "open_ranks",
    "MultiTrace",
    "merge",
    "run_script",
    "record_script",
    "FORMAT",
    "VERSION",
    "format_bytes",
    "format_ns",
    "nonfinite_text",
    "is_launcher_frame",
    "printable",
]
