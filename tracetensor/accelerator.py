"""`tt.accelerator` (PyTorch 2.6+): which accelerator this machine has, honestly — CUDA
through cupy when a GPU is usable, otherwise none."""

from __future__ import annotations

from .device import Device, _probe_cupy
from .device import cuda as _cuda


def is_available() -> bool:
    return _probe_cupy() is not None


def current_accelerator(check_available: bool = False) -> Device | None:
    return Device("cuda", 0) if is_available() else None


def device_count() -> int:
    return _cuda.device_count()


def synchronize(device: object = None) -> None:
    _cuda.synchronize()


__all__ = ["is_available", "current_accelerator", "device_count", "synchronize"]
