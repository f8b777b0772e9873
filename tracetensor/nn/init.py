"""`tt.nn.init`: in-place parameter initializers (PyTorch's names and formulas)."""

from __future__ import annotations

import math
from typing import Any

from ..tensor import Tensor, rand, randn


def _fill(t: Tensor, values: Tensor) -> Tensor:
    t._data[...] = values._data.astype(t._data.dtype, copy=False)
    return t


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dimensions, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    return _fill(t, rand(t.shape, dtype=t.dtype, device=t.device, generator=generator) * (b - a) + a)


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    return _fill(t, randn(t.shape, dtype=t.dtype, device=t.device, generator=generator) * std + mean)


def trunc_normal_(
    t: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator: Any = None
) -> Tensor:
    """Normal values redrawn until they fall in [a, b] (rejection; PyTorch uses the inverse CDF)."""
    vals = randn(t.shape, dtype="float64", generator=generator)._data * std + mean
    bad = (vals < a) | (vals > b)
    while bad.any():
        vals[bad] = randn(int(bad.sum()), dtype="float64", generator=generator)._data * std + mean
        bad = (vals < a) | (vals > b)
    t._data[...] = t._device.xp.asarray(vals.astype(t._data.dtype))
    return t


def zeros_(t: Tensor) -> Tensor:
    t._data[...] = 0
    return t


def ones_(t: Tensor) -> Tensor:
    t._data[...] = 1
    return t


def constant_(t: Tensor, val: float) -> Tensor:
    t._data[...] = val
    return t


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    return 1.0


def kaiming_uniform_(
    t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator: Any = None
) -> Tensor:
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(
    t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator: Any = None
) -> Tensor:
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


def xavier_uniform_(t: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)
