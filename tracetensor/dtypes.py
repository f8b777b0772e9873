"""Dtypes with PyTorch's names and promotion rules, mapped onto numpy dtypes."""

from __future__ import annotations

import builtins

import numpy as np


class dtype:
    """A tensor element type (`tt.float32`, ...); wraps a numpy dtype."""

    __slots__ = ("name", "np", "is_floating_point", "is_complex")

    def __init__(self, name: str, np_dtype: np.dtype) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.is_complex = self.np.kind == "c"

    def __repr__(self) -> str:
        return f"tracetensor.{self.name}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dtype):
            return self.np == other.np
        try:
            return self.np == np.dtype(other)  # lets `t.dtype == np.float32` work
        except TypeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.np)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize


float16 = half = dtype("float16", np.float16)
float32 = float = dtype("float32", np.float32)
float64 = double = dtype("float64", np.float64)
int8 = dtype("int8", np.int8)
uint8 = dtype("uint8", np.uint8)
int16 = short = dtype("int16", np.int16)
int32 = int = dtype("int32", np.int32)
int64 = long = dtype("int64", np.int64)
bool = dtype("bool", np.bool_)
complex64 = cfloat = dtype("complex64", np.complex64)
complex128 = cdouble = dtype("complex128", np.complex128)

_BY_NP = {d.np: d for d in (float16, float32, float64, int8, uint8, int16, int32, int64, bool, complex64, complex128)}
_default_float = float32


def from_numpy(np_dtype: np.dtype) -> dtype:
    """The tracetensor dtype for a numpy dtype."""
    return _BY_NP[np.dtype(np_dtype)]


def to_numpy(d: dtype | np.dtype | type | str | None) -> np.dtype | None:
    """Accepts tt dtypes, numpy dtypes, Python types and names; None passes through."""
    if d is None:
        return None
    if isinstance(d, dtype):
        return d.np
    if d is builtins.float:
        return _default_float.np
    if d is builtins.int:
        return np.dtype(np.int64)
    return np.dtype(d)


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d: dtype) -> None:
    """Like torch.set_default_dtype: the dtype of float tensors made from Python floats."""
    global _default_float
    _default_float = from_numpy(to_numpy(d))


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's rule: the higher category wins and keeps its own width
    (int64 + float32 -> float32, where numpy would give float64)."""
    if a == b:
        return a
    ra, rb = _KIND_RANK[a.kind], _KIND_RANK[b.kind]
    if ra != rb:
        return a if ra > rb else b
    return np.promote_types(a, b)


def scalar_dtype(value: object, like: np.dtype) -> np.dtype:
    """The dtype a Python scalar takes next to a tensor of dtype `like` (PyTorch's
    "scalars don't widen tensors" rule)."""
    if isinstance(value, builtins.bool):
        kind = "b"
    elif isinstance(value, (builtins.int, np.integer)):
        kind = "i"
    elif isinstance(value, (builtins.float, np.floating)):
        kind = "f"
    else:
        kind = "c"
    if _KIND_RANK[kind] <= _KIND_RANK[like.kind]:
        return like
    if kind == "i":
        return np.dtype(np.int64)
    if kind == "f":
        return _default_float.np
    return np.dtype(np.complex64) if _default_float.np == np.float32 else np.dtype(np.complex128)
