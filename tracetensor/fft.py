"""`tt.fft`: discrete Fourier transforms with gradients (PyTorch's torch.fft names)."""

from __future__ import annotations

from ._registry import REGISTRY as _R
from .tensor import Tensor, apply

__all__ = ["fft", "ifft", "rfft", "irfft"]


def fft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """Complex DFT along `dim` (a real input is taken as complex)."""
    return apply(_R["fft"], input, n=n, axis=int(dim), norm=norm)


def ifft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    return apply(_R["ifft"], input, n=n, axis=int(dim), norm=norm)


def rfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The n//2+1 non-negative frequency bins of a real input's DFT."""
    return apply(_R["rfft"], input, n=n, axis=int(dim), norm=norm)


def irfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The real signal (length n, default 2*(m-1)) whose rfft is `input`."""
    return apply(_R["irfft"], input, n=n, axis=int(dim), norm=norm)
