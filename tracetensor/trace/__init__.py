"""`tt.trace`: recording runs (`record`) and reading them back, live (`MemoryTrace`) or
from a trace file (`open` -> `SqliteTrace`), through one `Trace` interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .text import format_bytes, format_ns, is_launcher_frame, nonfinite_text, printable

if TYPE_CHECKING:
    from .base import MemoryTrace, RunInfo, Trace, ValueNotRecorded
    from .multi import MultiTrace, merge, open_ranks
    from .recorder import Recorder, record, record_script, run_script
    from .store import FORMAT, VERSION, SqliteTrace, TraceFileError
    from .store import open_trace as open

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

# The reader, the writer and the recorder (SQLite, zlib, the file format) load on first use:
# the text helpers above are all that the pytest plugin's NaN report and the debugger's
# listings need, and importing the rest cost a pytest run with the plugin about 30 ms.
_LAZY = {
    "Trace": ("base", "Trace"),
    "MemoryTrace": ("base", "MemoryTrace"),
    "RunInfo": ("base", "RunInfo"),
    "ValueNotRecorded": ("base", "ValueNotRecorded"),
    "MultiTrace": ("multi", "MultiTrace"),
    "merge": ("multi", "merge"),
    "open_ranks": ("multi", "open_ranks"),
    "Recorder": ("recorder", "Recorder"),
    "record": ("recorder", "record"),
    "record_script": ("recorder", "record_script"),
    "run_script": ("recorder", "run_script"),
    "FORMAT": ("store", "FORMAT"),
    "VERSION": ("store", "VERSION"),
    "SqliteTrace": ("store", "SqliteTrace"),
    "TraceFileError": ("store", "TraceFileError"),
    "open": ("store", "open_trace"),
}


def __getattr__(name: str) -> Any:
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'tracetensor.trace' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{spec[0]}"), spec[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
