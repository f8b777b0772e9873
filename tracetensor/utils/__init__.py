"""PyTorch's `torch.utils` namespace: `tracetensor.utils.data`, `tracetensor.utils.tensorboard`."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # `import torch; torch.utils.data.DataLoader` works in PyTorch without importing the
    # subpackage: load it on first use here too
    if name in ("data", "tensorboard"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
