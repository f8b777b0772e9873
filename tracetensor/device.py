"""Devices: "cpu" runs ops with numpy, "cuda" runs the same op code with cupy."""

from __future__ import annotations

import os
import types

import numpy as np

from .errors import DeviceError

_cupy: types.ModuleType | None | bool = False  # False: not probed yet


def _probe_cupy() -> types.ModuleType | None:
    """Imports cupy once; None when it is missing or no GPU can be used."""
    global _cupy
    if _cupy is False:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:  # ImportError, CUDARuntimeError, missing driver ...
            _cupy = None
    return _cupy  # type: ignore[return-value]


class Device:
    """`tt.device("cuda:0")`; `.xp` is the array module its ops run with."""

    __slots__ = ("type", "index", "xp", "name")

    def __init__(self, spec: str | Device = "cpu", index: int | None = None) -> None:
        if isinstance(spec, Device):
            self.type, self.index, self.xp, self.name = spec.type, spec.index, spec.xp, spec.name
            return
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise DeviceError(f"unknown device {spec!r}: expected 'cpu' or 'cuda[:N]'")
        self.type = kind
        self.index = int(idx) if idx else index
        if kind == "cpu":
            self.xp = np
        else:
            cp = _probe_cupy()
            if cp is None:
                raise DeviceError(
                    f"device {spec!r} was asked for, but no usable CUDA GPU was found "
                    "(install the 'gpu' extra, `pip install tracetensor[gpu]`, on a machine with a GPU)"
                )
            self.xp = cp
            if self.index is None:
                self.index = 0
        self.name = kind if self.index is None else f"{kind}:{self.index}"  # str(device), cached

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = Device(other) if other.partition(":")[0] in ("cpu", "cuda") else None
        return isinstance(other, Device) and (self.type, self.index or 0) == (other.type, other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))

    def __reduce__(self) -> tuple:  # pickled and deep-copied by name (it holds the numpy/cupy module)
        return (device, (self.name,))


CPU = Device("cpu")
_default: Device | None = None


def device(spec: str | Device = "cpu", index: int | None = None) -> Device:
    if isinstance(spec, Device):
        return spec
    if spec == "cpu" and index is None:
        return CPU
    return Device(spec, index)


def get_default_device() -> Device:
    """`tt.set_default_device` wins, then TRACETENSOR_DEVICE, then the CPU."""
    global _default
    if _default is None:
        _default = device(os.environ.get("TRACETENSOR_DEVICE", "cpu") or "cpu")
    return _default


def set_default_device(spec: str | Device | None) -> None:
    global _default
    _default = None if spec is None else device(spec)


def device_of(array: object) -> Device:
    """The device an array lives on (numpy -> cpu, cupy -> cuda:N)."""
    if not hasattr(array, "__cuda_array_interface__"):
        return CPU
    return Device("cuda", int(getattr(getattr(array, "device", None), "id", 0)))


def to_device(array: object, dev: Device) -> object:
    """Copies an array to `dev` (host<->GPU through cupy)."""
    if dev.type == "cpu":
        if isinstance(array, (np.ndarray, np.generic)):
            return np.asarray(array)
        return array.get()  # type: ignore[attr-defined]
    cp = dev.xp
    with cp.cuda.Device(dev.index or 0):
        return cp.asarray(array)


class cuda:  # namespace object mirrored as `tt.cuda`
    """`tt.cuda.is_available()`, `device_count()`, `synchronize()` like torch.cuda."""

    @staticmethod
    def is_available() -> bool:
        return _probe_cupy() is not None

    @staticmethod
    def device_count() -> int:
        cp = _probe_cupy()
        return 0 if cp is None else int(cp.cuda.runtime.getDeviceCount())

    @staticmethod
    def synchronize() -> None:
        cp = _probe_cupy()
        if cp is not None:
            cp.cuda.get_current_stream().synchronize()

    @staticmethod
    def memory_allocated() -> int:
        cp = _probe_cupy()
        return 0 if cp is None else int(cp.get_default_memory_pool().used_bytes())

    @staticmethod
    def memory_reserved() -> int:
        cp = _probe_cupy()
        return 0 if cp is None else int(cp.get_default_memory_pool().total_bytes())

    @staticmethod
    def empty_cache() -> None:
        cp = _probe_cupy()
        if cp is not None:
            cp.get_default_memory_pool().free_all_blocks()

    @staticmethod
    def current_device() -> int:
        cp = _probe_cupy()
        if cp is None:
            raise DeviceError("no usable CUDA GPU was found: tt.cuda.current_device() has no answer")
        return int(cp.cuda.runtime.getDevice())

    @staticmethod
    def get_device_name(device: object = None) -> str:
        cp = _probe_cupy()
        if cp is None:
            raise DeviceError("no usable CUDA GPU was found: tt.cuda.get_device_name() has no answer")
        idx = getattr(device, "index", device) or 0
        name = cp.cuda.runtime.getDeviceProperties(int(idx))["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    @staticmethod
    def manual_seed(seed: int) -> None:
        """Seeds cupy's generator (a no-op without a GPU, as torch.cuda.manual_seed is)."""
        cp = _probe_cupy()
        if cp is not None:
            cp.random.seed(int(seed))

    manual_seed_all = manual_seed
