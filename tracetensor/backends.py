"""`tt.backends`: the switches training scripts set (`cudnn.benchmark`, `cudnn.deterministic`,
`mps.is_available()` ...). They are accepted and remembered; tracetensor runs numpy or cupy
kernels, so none of them changes what is computed."""

from __future__ import annotations

import types


class _Flags(types.SimpleNamespace):
    pass


def _false() -> bool:
    return False


cudnn = _Flags(
    benchmark=False, deterministic=False, enabled=True, allow_tf32=True, is_available=_false, version=lambda: None
)
mps = _Flags(is_available=_false, is_built=_false)
cuda = _Flags(matmul=_Flags(allow_tf32=False, allow_fp16_reduced_precision_reduction=True), is_built=_false)
mkldnn = _Flags(enabled=True, is_available=_false)
openmp = _Flags(is_available=_false)

__all__ = ["cudnn", "mps", "cuda", "mkldnn", "openmp"]
