"""Tensor methods for the rest of the op set: one-line delegators into the registry.
(`Tensor` inherits these; its core methods and operators live in tensor.py.)"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._registry import REGISTRY as _R
from ._source import user_frame
from .dtypes import promote as _promote
from .errors import ShapeError

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


class SortResult(NamedTuple):
    """`t.sort()` and `t.topk(k)` return (values, indices), as in PyTorch."""

    values: Tensor
    indices: Tensor


def _shape_error(op: str, detail: str) -> ShapeError:
    return ShapeError(op, detail, frame=user_frame())


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
        return _t.apply(_R["rsqrt"], self)

    def reciprocal(self) -> Tensor:
        return _t.apply(_R["reciprocal"], self)

    def floor(self) -> Tensor:
        return _t.apply(_R["floor"], self)

    def ceil(self) -> Tensor:
        return _t.apply(_R["ceil"], self)

    def trunc(self) -> Tensor:
        return _t.apply(_R["trunc"], self)

    def round(self, decimals: int = 0) -> Tensor:
        """Half to even, as PyTorch; `decimals` scales by 10**decimals around the rounding."""
        if decimals:
            scale = 10.0**decimals
            return _t.apply(_R["round"], self * scale) / scale
        return _t.apply(_R["round"], self)

    def log1p(self) -> Tensor:
        return _t.apply(_R["log1p"], self)

    def expm1(self) -> Tensor:
        return _t.apply(_R["expm1"], self)

    def log2(self) -> Tensor:
        return _t.apply(_R["log2"], self)

    def log10(self) -> Tensor:
        return _t.apply(_R["log10"], self)

    def erf(self) -> Tensor:
        return _t.apply(_R["erf"], self)

    # arithmetic by name (the operators live in tensor.py)
    def add(self, o: Any, *, alpha: Any = 1) -> Tensor:
        return _t._binary(_R["add"], self, o if alpha == 1 else _t._wrap_other(o, self) * alpha)

    def sub(self, o: Any, *, alpha: Any = 1) -> Tensor:
        return _t._binary(_R["sub"], self, o if alpha == 1 else _t._wrap_other(o, self) * alpha)

    subtract = sub

    def mul(self, o: Any) -> Tensor:
        return _t._binary(_R["mul"], self, o)

    multiply = mul

    def div(self, o: Any, *, rounding_mode: str | None = None) -> Tensor:
        """True division; `rounding_mode="floor"` or `"trunc"` round the quotient (ints stay ints)."""
        if rounding_mode is None:
            return _t._binary(_R["div"], self, o)
        if rounding_mode == "floor":
            return _t._binary(_R["floordiv"], self, o)
        if rounding_mode != "trunc":
            raise ValueError(f"div expected rounding_mode to be one of None, 'trunc' or 'floor', got {rounding_mode!r}")
        b = _t._wrap_other(o, self)
        q = _t._binary(_R["div"], self, b).trunc()
        if self._data.dtype.kind in "biu" and b._data.dtype.kind in "biu":
            return _t.apply(_R["cast"], q, dtype=_promote(self._data.dtype, b._data.dtype))
        return q

    divide = div

    def true_divide(self, o: Any) -> Tensor:
        return _t._binary(_R["div"], self, o)

    def neg(self) -> Tensor:
        return _t.apply(_R["neg"], self)

    negative = neg

    def remainder(self, o: Any) -> Tensor:
        """Python's `%`: the sign of the divisor (torch.remainder)."""
        return _t._binary(_R["remainder"], self, o)

    def __mod__(self, o: Any) -> Tensor:
        return _t._binary(_R["remainder"], self, o)

    def __rmod__(self, o: Any) -> Tensor:
        return _t._rbinary(_R["remainder"], self, o)

    # linear algebra
    def dot(self, o: Tensor) -> Tensor:
        """The inner product of two 1-D tensors of the same size."""
        if self.ndim != 1 or o.ndim != 1 or self.shape != o.shape:
            raise _shape_error(
                "dot", f"expected two 1-D tensors of the same size, got shapes {tuple(self.shape)} and {tuple(o.shape)}"
            )
        return _t.apply(_R["matmul"], self, o)

    inner = dot

    def outer(self, o: Tensor) -> Tensor:
        """The outer product of two vectors: `self.reshape(-1, 1) * o` (PyTorch's definition)."""
        return self.reshape(-1, 1) * o

    ger = outer

    def bmm(self, o: Tensor) -> Tensor:
        """Batched matrix product of (b, n, m) and (b, m, p) tensors."""
        if self.ndim != 3 or o.ndim != 3 or self.shape[0] != o.shape[0]:
            raise _shape_error(
                "bmm",
                f"expected two 3-D tensors with the same batch size, got shapes "
                f"{tuple(self.shape)} and {tuple(o.shape)}",
            )
        return _t.apply(_R["matmul"], self, o)

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
        """The p-norm over `dim` (all elements when None); "fro" and 2 are the Euclidean norm."""
        axis = _dims(dim)
        if p in ("fro", 2, 2.0, None):
            return _t.apply(_R["norm"], self, axis=axis, keepdims=keepdim)
        a = self.abs()
        if p == math.inf:
            return a.amax(axis, keepdim) if axis is not None else a.amax()
        if p == -math.inf:
            return a.amin(axis, keepdim) if axis is not None else a.amin()
        if p == 0:
            return (a != 0).to(self.dtype).sum(axis, keepdim)
        if isinstance(p, str):
            raise ValueError(f"norm supports p='fro', inf, -inf or a number, got {p!r}")
        return a.sum(axis, keepdim) if p == 1 else (a**p).sum(axis, keepdim) ** (1 / p)

    def tril(self, diagonal: int = 0) -> Tensor:
        return _t.apply(_R["tril"], self, diagonal=int(diagonal))

    def triu(self, diagonal: int = 0) -> Tensor:
        return _t.apply(_R["triu"], self, diagonal=int(diagonal))

    def diag(self, diagonal: int = 0) -> Tensor:
        return _t.apply(_R["diag"], self, diagonal=int(diagonal))

    # selection and comparison
    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        """`value` where `mask` is True, else self: `where(mask, value, self)` (PyTorch's definition)."""
        return _t.apply(_R["where"], _t._wrap_other(mask, self), _t._wrap_other(value, self), self)

    def isclose(self, o: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
        return _t.apply(
            _R["isclose"], self, _t._wrap_other(o, self), rtol=float(rtol), atol=float(atol), equal_nan=bool(equal_nan)
        )

    def allclose(self, o: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
        return bool(self.isclose(o, rtol, atol, equal_nan).all())

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """Indices that sort along `dim`; always stable (ties keep their order)."""
        return _t.apply(_R["argsort"], self, axis=int(dim), descending=bool(descending))

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
        """(values, indices); values are `gather(dim, indices)`, so gradients flow to them."""
        idx = self.argsort(dim, descending)
        return SortResult(self.gather(dim, idx) if self.ndim else self.clone(), idx)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> SortResult:
        """The k largest (or smallest) along `dim`, as (values, indices), in sorted order."""
        n = self.shape[dim] if self.ndim else 1
        if not 0 <= k <= n:
            raise _shape_error(
                "topk", f"k={k} is out of range for dimension {dim} of size {n} (shape {tuple(self.shape)})"
            )
        idx = self.argsort(dim, descending=largest)
        if self.ndim:
            idx = idx[(slice(None),) * (dim % self.ndim) + (slice(0, k),)]
        return SortResult(self.gather(dim, idx) if self.ndim else self.clone(), idx)

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        """(n, ndim) int64 indices of nonzero elements; with `as_tuple`, one index tensor per dimension."""
        idx = _t.apply(_R["nonzero"], self)
        return tuple(idx[:, d] for d in range(self.ndim)) if as_tuple else idx

    def count_nonzero(self, dim: Any = None) -> Tensor:
        return (self != 0).sum(dim)

    def repeat(self, *sizes: Any) -> Tensor:
        """Tiles the tensor `sizes[i]` times along dimension i (PyTorch's repeat, numpy's tile)."""
        reps = _sizes(sizes)
        if len(reps) < self.ndim:
            raise _shape_error(
                "repeat",
                f"the number of repeats {len(reps)} cannot be smaller than the "
                f"number of dimensions {self.ndim} (shape {tuple(self.shape)})",
            )
        return _t.apply(_R["tile"], self, reps=reps)

    def tile(self, *dims: Any) -> Tensor:
        return _t.apply(_R["tile"], self, reps=_sizes(dims))

    @property
    def real(self) -> Tensor:
        return _t.apply(_R["real"], self)

    @property
    def imag(self) -> Tensor:
        return _t.apply(_R["imag"], self)

    # reductions
    def var(
        self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *, correction: int | None = None
    ) -> Tensor:
        return _t.apply(
            _R["var"], self, axis=_dims(dim), keepdims=keepdim, correction=_correction(unbiased, correction)
        )

    def std(
        self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *, correction: int | None = None
    ) -> Tensor:
        return _t.apply(
            _R["std"], self, axis=_dims(dim), keepdims=keepdim, correction=_correction(unbiased, correction)
        )

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
        sizes = (
            [split_size] * (n // split_size) + ([n % split_size] if n % split_size else [])
            if isinstance(split_size, int)
            else list(split_size)
        )
        out, start = [], 0
        for s in sizes:
            idx = (slice(None),) * (dim % self.ndim) + (slice(start, start + s),)
            out.append(self[idx])
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        n = self.shape[dim]
        return self.split(-(-n // chunks), dim)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """The slice [start, start + length) of dimension `dim` (a getitem op)."""
        d = dim % self.ndim
        return self[(slice(None),) * d + (slice(int(start), int(start) + int(length)),)]

    def select(self, dim: int, index: int) -> Tensor:
        d = dim % self.ndim
        return self[(slice(None),) * d + (int(index),)]

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        return tuple(self.select(dim, i) for i in range(self.shape[dim]))

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Tensor:
        d = dim % self.ndim
        return self.reshape(*self.shape[:d], *sizes, *self.shape[d + 1 :])

    def masked_select(self, mask: Tensor) -> Tensor:
        m = mask if tuple(mask.shape) == tuple(self.shape) else mask.expand(*self.shape)
        return self[m]

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def lerp(self, end: Any, weight: Any) -> Tensor:
        return self + (_t._wrap_other(end, self) - self) * weight

    def addmm(self, mat1: Tensor, mat2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        prod = mat1 @ mat2
        return (self if beta == 1 else self * beta) + (prod if alpha == 1 else prod * alpha)

    def half(self) -> Tensor:
        return self.type(_t.dtypes.float16)

    # in-place elementwise functions (outside autograd, as the fills are)
    def abs_(self) -> Tensor:
        return self._assign_inplace("abs_", self.abs())

    def exp_(self) -> Tensor:
        return self._assign_inplace("exp_", self.exp())

    def log_(self) -> Tensor:
        return self._assign_inplace("log_", self.log())

    def sqrt_(self) -> Tensor:
        return self._assign_inplace("sqrt_", self.sqrt())

    def neg_(self) -> Tensor:
        return self._assign_inplace("neg_", -self)

    def relu_(self) -> Tensor:
        return self._assign_inplace("relu_", self.relu())

    def sigmoid_(self) -> Tensor:
        return self._assign_inplace("sigmoid_", self.sigmoid())

    def tanh_(self) -> Tensor:
        return self._assign_inplace("tanh_", self.tanh())

    def pow_(self, exponent: Any) -> Tensor:
        return self._assign_inplace("pow_", self**exponent)

    def floor_(self) -> Tensor:
        return self._assign_inplace("floor_", self.floor())

    def round_(self, decimals: int = 0) -> Tensor:
        return self._assign_inplace("round_", self.round(decimals))

    # layout, formatting
    def contiguous(self, memory_format: Any = None) -> Tensor:
        return self if self._data.flags.c_contiguous else self.clone()

    def is_contiguous(self, memory_format: Any = None) -> bool:
        return bool(self._data.flags.c_contiguous)

    def roll(self, shifts: Any, dims: Any = None) -> Tensor:
        s = tuple(int(x) for x in shifts) if isinstance(shifts, (tuple, list)) else int(shifts)
        return _t.apply(_R["roll"], self, shifts=s, dims=_dims(dims))

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:  # f"{loss:.4f}", as PyTorch formats a 0-d tensor's value
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    # sampling (the draws come from a Generator; the op that uses them is pure)
    def bernoulli(self, p: Any = None, *, generator: Any = None) -> Tensor:
        prob = self if p is None else _t._wrap_other(p, self)
        u = _t.rand(self.shape, dtype=self.dtype, device=self.device, generator=generator)
        return _t.apply(_R["bernoulli"], prob.detach(), u)

    def multinomial(self, num_samples: int, replacement: bool = False, *, generator: Any = None) -> Tensor:
        shape = (*self.shape[:-1], int(num_samples)) if replacement else tuple(self.shape)
        u = _t.rand(shape, dtype=_t.dtypes.float64, device=self.device, generator=generator)
        return _t.apply(
            _R["multinomial"], self.detach(), u, num_samples=int(num_samples), replacement=bool(replacement)
        )

    # in-place fills from a Generator (initializers use these; outside autograd, as in PyTorch)
    def _fill_random(self, values: Any) -> Tensor:
        if self._requires_grad and _t.MODE.enabled and self._node is None:
            raise _t.TraceTensorError(
                "a leaf tensor that requires grad is being filled in place; wrap it in `with tt.no_grad():`"
            )
        self._data[...] = values._data.astype(self._data.dtype, copy=False)
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Tensor:
        r = _t.randn(self.shape, dtype=_float_like(self), device=self.device, generator=generator)
        return self._fill_random(r * std + mean)

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> Tensor:
        r = _t.rand(self.shape, dtype=_float_like(self), device=self.device, generator=generator)
        return self._fill_random(r * (b - a) + a)

    def bernoulli_(self, p: Any = 0.5, *, generator: Any = None) -> Tensor:
        r = _t.rand(self.shape, dtype=_t.dtypes.float64, device=self.device, generator=generator)
        prob = p._data if isinstance(p, _t.Tensor) else p
        return self._fill_random(_t.Tensor._make(r._data < prob, self.device))

    def exponential_(self, lambd: float = 1.0, *, generator: Any = None) -> Tensor:
        r = _t.rand(self.shape, dtype=_t.dtypes.float64, device=self.device, generator=generator)
        return self._fill_random(_t.Tensor._make(-self.device.xp.log1p(-r._data) / lambd, self.device))

    def random_(self, from_: int = 0, to: int | None = None, *, generator: Any = None) -> Tensor:
        if to is None:
            from_, to = 0, from_ if from_ else 2**24
        return self._fill_random(_t.randint(from_, to, self.shape, device=self.device, generator=generator))


def _float_like(t: Any) -> Any:
    return t.dtype if t._data.dtype.kind in "fc" else _t.dtypes.get_default_dtype()


from . import tensor as _t  # noqa: E402  (tensor.py imports this module first; the cycle is by design)
