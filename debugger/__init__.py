"""tracetensor.debugger: a tfdbg-style debugger (Textual TUI and line mode) for graph
sessions, eager code and recorded traces."""

from __future__ import annotations

from .commands import CommandError, Debugger, GradStat, Result, RunAction
from .filters import TensorDatum, add_tensor_filter, has_inf_or_nan
from .session import Controller, LocalCLIDebugWrapperSession, wrap

__all__ = [
    "LocalCLIDebugWrapperSession",
    "wrap",
    "add_tensor_filter",
    "has_inf_or_nan",
    "TensorDatum",
    "Debugger",
    "Controller",
    "CommandError",
    "Result",
    "RunAction",
    "GradStat",
]
