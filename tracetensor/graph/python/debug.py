"""`tf_debug` (TF1's `tensorflow.python.debug`): tracetensor's debugger under tfdbg's names."""

from __future__ import annotations

from tracetensor.debugger.tf_debug import (
    DebugTensorDatum,
    LocalCLIDebugWrapperSession,
    add_tensor_filter,
    has_inf_or_nan,
)

__all__ = ["LocalCLIDebugWrapperSession", "has_inf_or_nan", "add_tensor_filter", "DebugTensorDatum"]
