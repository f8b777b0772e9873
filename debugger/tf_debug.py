"""tfdbg's public names in one module, for `from tracetensor.debugger import tf_debug`
(TF1: `from tensorflow.python import debug as tf_debug`)."""

from __future__ import annotations

from .filters import TensorDatum, add_tensor_filter, has_inf_or_nan
from .session import LocalCLIDebugWrapperSession

DebugTensorDatum = TensorDatum  # tfdbg's name for what a tensor filter receives

__all__ = ["LocalCLIDebugWrapperSession", "has_inf_or_nan", "add_tensor_filter", "DebugTensorDatum"]
