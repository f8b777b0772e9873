"""`tracetensor.utils.tensorboard`: PyTorch's `torch.utils.tensorboard` (`SummaryWriter`),
and `export_trace`, which turns a recorded trace into TensorBoard event files.
Needs the optional `tensorboard` package: `pip install "tracetensor[tensorboard]"`."""
from __future__ import annotations

from .export import export_trace
from .summary import INSTALL_HINT, TensorBoardNotInstalled
from .writer import EventWriter, SummaryWriter

__all__ = ["SummaryWriter", "EventWriter", "export_trace", "TensorBoardNotInstalled", "INSTALL_HINT"]
