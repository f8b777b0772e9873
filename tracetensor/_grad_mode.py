"""Whether ops record the autograd tape; per thread, as in PyTorch."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _Mode(threading.local):
    enabled = True


MODE = _Mode()


class _Switch:
    """Base of no_grad/enable_grad: a context manager and a decorator."""

    _to = True

    def __enter__(self) -> None:
        self._prev = MODE.enabled
        MODE.enabled = self._to

    def __exit__(self, *exc: object) -> None:
        MODE.enabled = self._prev

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with type(self)():
                return fn(*a, **k)

        return wrapper  # type: ignore[return-value]


class no_grad(_Switch):
    """`with tt.no_grad():` ops inside record no tape (as torch.no_grad)."""

    _to = False


class enable_grad(_Switch):
    _to = True


class set_grad_enabled(_Switch):
    def __init__(self, mode: bool) -> None:
        self._to = bool(mode)
        self._prev = MODE.enabled
        MODE.enabled = self._to

    def __enter__(self) -> None:
        pass


class inference_mode(_Switch):
    """`@tt.inference_mode()` or `with tt.inference_mode():` ops record no tape, as no_grad
    (PyTorch's extra restrictions on inference tensors are not enforced here)."""

    def __init__(self, mode: bool = True) -> None:
        self._mode = bool(mode)
        self._to = not self._mode

    def __call__(self, fn: F) -> F:
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with inference_mode(mode):
                return fn(*a, **k)

        return wrapper  # type: ignore[return-value]


def is_inference_mode_enabled() -> bool:
    return not MODE.enabled


def is_grad_enabled() -> bool:
    return MODE.enabled
