"""Tensor methods for the rest of the op set: one-line delegators into the registry.
(`Tensor` inherits these; its core methods and operators live in tensor.py.)"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._registry import REGISTRY as _R

if TYPE_CHECKING:
    from .tensor import Tensor


def _dims(dims: Any) -> Any:
    """`dim` / `dims` arguments (an int, a sequence or None) as the `axis` attribute."""
    if dims is None or isinstance(dims, int):
        return dims
    return tuple(int(d) for d in dims)


def _sizes(sizes: tuple) -> tuple[int, ...]:
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        return tuple(int(s) for s in sizes[0])
    return tuple(int(s) for s in sizes)


def _correction(unbiased: bool | None, correction: int | None) -> int:
    if correction is not None:
        return int(correction)
    return 0 if unbiased is False else 1  # unbiased by default, as in PyTorch


class TensorOps:
    __slots__ = ()

    # comparisons: bool tensors, no gradient
    def eq(self, o: Any) -> Tensor:
        return _t.apply(_R["eq"], self, _t._wrap_other(o, self))

    def ne(self, o: Any) -> Tensor:
        return _t.apply(_R["ne"], self, _t._wrap_other(o, self))

    def lt(self, o: Any) -> Tensor:
        return _t.apply(_R["lt"], self, _t._wrap_other(o, self))

    def le(self, o: Any) -> Tensor:
        return _t.apply(_R["le"], self, _t._wrap_other(o, self))

    def gt(self, o: Any) -> Tensor:
        return _t.apply(_R["gt"], self, _t._wrap_other(o, self))

    def ge(self, o: Any) -> Tensor:
        return _t.apply(_R["ge"], self, _t._wrap_other(o, self))

    __eq__ = eq  # type: ignore[assignment]
    __ne__ = ne  # type: ignore[assignment]
    __lt__ = lt
    __le__ = le
    __gt__ = gt
    __ge__ = ge

    def equal(self, o: Tensor) -> bool:
        """True when shapes and all values are equal (torch.equal)."""
        return tuple(self.shape) == tuple(o.shape) and bool(self.eq(o).all())

    def logical_and(self, o: Any) -> Tensor:
        return _t.apply(_R["logical_and"], self, _t._wrap_other(o, self))

    def logical_or(self, o: Any) -> Tensor:
        return _t.apply(_R["logical_or"], self, _t._wrap_other(o, self))

    def logical_xor(self, o: Any) -> Tensor:
        return _t.apply(_R["logical_xor"], self, _t._wrap_other(o, self))

    def logical_not(self) -> Tensor:
        return _t.apply(_R["logical_not"], self)

    def __and__(self, o: Any) -> Tensor:
        return self.logical_and(o)

    def __or__(self, o: Any) -> Tensor:
        return self.logical_or(o)

    def __xor__(self, o: Any) -> Tensor:
        return self.logical_xor(o)

    def __invert__(self) -> Tensor:
        return self.logical_not()

    def isnan(self) -> Tensor:
        return _t.apply(_R["isnan"], self)

    def isinf(self) -> Tensor:
        return _t.apply(_R["isinf"], self)

    def isfinite(self) -> Tensor:
        return _t.apply(_R["isfinite"], self)

    def all(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _t.apply(_R["all"], self, axis=_dims(dim), keepdims=keepdim)

    def any(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _t.apply(_R["any"], self, axis=_dims(dim), keepdims=keepdim)

    # elementwise
    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return _t.apply(_R["clamp"], self, min=min, max=max)

    clip = clamp

    def clamp_min(self, min: Any) -> Tensor:
        return self.clamp(min=min)

    def clamp_max(self, max: Any) -> Tensor:
        return self.clamp(max=max)

    def sign(self) -> Tensor:
        return _t.apply(_R["sign"], self)

    def sin(self) -> Tensor:
        return _t.apply(_R["sin"], self)

    def cos(self) -> Tensor:
        return _t.apply(_R["cos"], self)

    def square(self) -> Tensor:
        return _t.apply(_R["square"], self)

    def rsqrt(self) -> Tensor:
        return 1 / self.sqrt()

    @property
    def real(self) -> Tensor:
        return _t.apply(_R["real"], self)

    @property
    def imag(self) -> Tensor:
        return _t.apply(_R["imag"], self)

    # reductions
    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        return _t.apply(_R["var"], self, axis=_dims(dim), keepdims=keepdim,
                        correction=_correction(unbiased, correction))

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        return _t.apply(_R["std"], self, axis=_dims(dim), keepdims=keepdim,
                        correction=_correction(unbiased, correction))

    def prod(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _t.apply(_R["prod"], self, axis=_dims(dim), keepdims=keepdim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        return _t.apply(_R["logsumexp"], self, axis=_dims(dim), keepdims=keepdim)

    def cumsum(self, dim: int) -> Tensor:
        return _t.apply(_R["cumsum"], self, axis=int(dim))

    # shape and order
    def flip(self, *dims: Any) -> Tensor:
        return _t.apply(_R["flip"], self, axis=_sizes(dims))

    def squeeze(self, dim: Any = None) -> Tensor:
        return _t.apply(_R["squeeze"], self, axis=_dims(dim))

    def unsqueeze(self, dim: int) -> Tensor:
        return _t.apply(_R["unsqueeze"], self, axis=int(dim))

    def expand(self, *sizes: Any) -> Tensor:
        return _t.apply(_R["expand"], self, shape=_sizes(sizes))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def identity(self) -> Tensor:
        return _t.apply(_R["identity"], self)

    # indexing
    def gather(self, dim: int, index: Tensor) -> Tensor:
        return _t.apply(_R["gather"], self, index, axis=int(dim))

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        return _t.apply(_R["index_select"], self, _t._wrap_other(index, self), axis=int(dim))

    def split(self, split_size: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        n = self.shape[dim]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        out, start = [], 0
        for s in sizes:
            idx = (slice(None),) * (dim % self.ndim) + (slice(start, start + s),)
            out.append(self[idx])
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        n = self.shape[dim]
        return self.split(-(-n // chunks), dim)


from . import tensor as _t  # noqa: E402  (tensor.py imports this module first; the cycle is by design)
