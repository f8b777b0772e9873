"""`tracetensor.utils.tensorboard`: PyTorch's `torch.utils.tensorboard` (`SummaryWriter`),
and `export_trace`, which turns a recorded trace into TensorBoard event files.
Needs the optional `tensorboard` package: `pip install "tracetensor[tensorboard]"`."""

from __future__ import annotations

from typing import Any

from .summary import INSTALL_HINT, TensorBoardNotInstalled
from .writer import EventWriter, SummaryWriter

__all__ = ["SummaryWriter", "EventWriter", "export_trace", "TensorBoardNotInstalled", "INSTALL_HINT"]


def __getattr__(name: str) -> Any:
    if name == "export_trace":  # imported on use: `import tracetensor.graph` need not load the trace reader
        from .export import export_trace

        return export_trace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
