"""The eager Tensor: PyTorch's names and semantics over a numpy (or cupy) array.
Every method that computes something is a one-line call into the op registry via
`apply`, the eager entry of the dispatch point."""

from __future__ import annotations

import builtins
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _autograd, _naming, dtypes
from . import _dispatch as _dispatch_module
from . import events as _events
from . import ops as _ops
from ._autograd import Node, run_backward
from ._dispatch import _FORWARD, Site, dispatch, named_site, site_of
from ._grad_mode import MODE, no_grad
from ._registry import REGISTRY, OpDef
from ._source import stack_here, user_frames
from ._tensor_ops import TensorOps
from .device import CPU, Device, device, device_of, get_default_device, to_device
from .errors import DeviceError, DTypeError, OpError, ShapeError, TraceTensorError
from .events import STATE

_R = REGISTRY


def apply(op: OpDef, *inputs: Tensor, **attrs: Any) -> Tensor:
    """Runs `op` on tensors: the eager entry of the dispatch point."""
    x = inputs[0]
    dev = x._device
    xp = dev.xp
    # (one and two inputs, most ops, unrolled: a comprehension is a function call of its own)
    n = len(inputs)
    arrays = (x._data,) if n == 1 else (x._data, inputs[1]._data) if n == 2 else tuple([t._data for t in inputs])
    # (`named`: someone listens and wants names; a `names=False` listener alone gets the
    # unobserved path, timed by the dispatch point)
    site = _site(op, inputs, dev) if STATE.named else (_FORWARD.get(op) or site_of(op))
    try:
        out = dispatch(site, op.forward, (xp, *arrays), arrays, attrs)
    except OpError as e:
        raise _device_error(inputs) or e from None
    # the output as a Tensor, recorded on the tape
    saved = None
    if op.saves:
        out, saved = out
    if out.__class__ is not np.ndarray and xp is np:
        out = np.asarray(out)  # numpy reductions return scalars; tensors always hold arrays
    t = _new(out, dev)
    name = site.name
    if name is not None:
        t._name = _out0_get(name) or _naming.output_name(name)  # (`name:0`, made once: the hit inline)
    if MODE.enabled:
        if n == 1:
            needs = (x._requires_grad,)
        elif n == 2:
            needs = (x._requires_grad, inputs[1]._requires_grad)
        else:
            needs = tuple([i._requires_grad for i in inputs])
        if True in needs and op.vjp is not None and out.dtype.kind in "fc":
            t._requires_grad = True
            stack = site.stack
            if stack is None and STATE.checks:  # a NaN check names a bad gradient's forward line (and callers)
                stack = user_frames()
            t._node = Node(op, inputs, xp, arrays, out, attrs, needs, name, stack, saved, site.inputs)
    if name is not None:
        hook = _TRACING.hook
        if hook is not None:
            hook(op, inputs, attrs, t)
    return t


def _binary(op: OpDef, a: Tensor, o: Any) -> Tensor:
    """`apply` specialised for the arithmetic operators, the hottest path of eager code
    when nobody listens (binary ops save nothing and take no attrs)."""
    b = o if o.__class__ is Tensor else _wrap_other(o, a)
    if STATE.named:
        return apply(op, a, b)
    dev = a._device
    xp = dev.xp
    x, y = a._data, b._data
    try:
        out = dispatch(_FORWARD.get(op) or site_of(op), op.forward, (xp, x, y), (x, y))
    except OpError as e:
        raise _device_error((a, b)) or e from None
    if out.__class__ is not np.ndarray and xp is np:
        out = np.asarray(out)
    t = _new(out, dev)
    ra, rb = a._requires_grad, b._requires_grad
    if (ra or rb) and MODE.enabled and out.dtype.kind in "fc":
        t._requires_grad = True
        t._node = Node(op, (a, b), xp, (x, y), out, {}, (ra, rb), None, None)
    return t


def _rbinary(op: OpDef, a: Tensor, o: Any) -> Tensor:
    return _binary(op, _wrap_other(o, a), a)


def _site(op: OpDef, inputs: tuple[Tensor, ...], dev: Device) -> Site:
    """The site of one observed eager op: its name (module path + counter), its inputs'
    names and, when a listener asked, the user's stack (last step's, see `named_site`).
    (The C accelerator's `forward_site` replaces it: the same, see the end of this module.)"""
    name = _naming.op_name(op.name)
    ins = tuple([t._name or t._give_name() for t in inputs])
    return named_site(_forward_site, name, op, ins, dev, stack_here() if STATE.stacks else None)


def _forward_site(name: str, op: OpDef, ins: tuple[str, ...], dev: Device, stack: Any) -> Site:
    return _tuple_new(Site, (op, "forward", "eager", op.name, name, ins, dev, stack, None, (), None, None, op.saves))


_tuple_new = tuple.__new__
_out0_get = _naming._out0.get


# id(tensor) -> (weak reference, why): tensors that carry values only although their inputs
# required grad (tt.function results), so that `.backward()` can say why it cannot run
_VALUES_ONLY: dict[int, tuple[weakref.ref, str]] = {}


def mark_values_only(t: Tensor, why: str) -> None:
    key = id(t)
    _VALUES_ONLY[key] = (weakref.ref(t, lambda _r: _VALUES_ONLY.pop(key, None)), why)


class _Tracing(threading.local):
    hook: Callable[[OpDef, tuple, dict, Tensor], None] | None = None


_TRACING = _Tracing()


class tracing:
    """`with tracing(hook):` calls `hook(op, inputs, attrs, output)` after each eager op this
    thread runs while someone listens (`tt.function` builds its graph this way)."""

    def __init__(self, hook: Callable[[OpDef, tuple, dict, Tensor], None]) -> None:
        self.hook = hook

    def __enter__(self) -> None:
        self._prev = _TRACING.hook
        _TRACING.hook = self.hook

    def __exit__(self, *exc: object) -> None:
        _TRACING.hook = self._prev


def _new(data: Any, dev: Device) -> Tensor:
    """A Tensor around an array, outside autograd (what every op output starts as)."""
    t = _object_new(Tensor)
    t._data = data
    t._device = dev
    t._requires_grad = False
    t._node = None
    t.grad = None
    t._name = None
    t._hooks = ()
    t._retain = False
    t._g = None
    t._mark = 0
    return t


_object_new = object.__new__
_autograd._new_tensor = _new  # the backward engine wraps gradients without importing us


def _device_error(inputs: Sequence[Tensor]) -> Exception | None:
    devs = {str(t._device) for t in inputs}
    if len(devs) > 1:
        return DeviceError(f"expected all tensors on the same device, got {', '.join(sorted(devs))}")
    return None


def _wrap_other(other: Any, like: Tensor) -> Tensor:
    """A scalar or array next to a tensor becomes a tensor with PyTorch's dtype rule."""
    if isinstance(other, Tensor):
        return other
    if isinstance(other, (builtins.bool, builtins.int, builtins.float, builtins.complex, np.number)):
        dt = dtypes.scalar_dtype(other, like._data.dtype)
        return Tensor._make(like._device.xp.asarray(other, dtype=dt), like._device)
    return tensor(other, device=like._device)


class MinMax(NamedTuple):
    """`t.max(dim)` returns (values, indices), as in PyTorch."""

    values: Tensor
    indices: Tensor


class Tensor(TensorOps):
    """A multi-dimensional array that records how it was computed."""

    # _g and _mark are the backward engine's scratch space (see _autograd.run_backward)
    __slots__ = (
        "_data",
        "_device",
        "_requires_grad",
        "_node",
        "grad",
        "_name",
        "_hooks",
        "_retain",
        "_g",
        "_mark",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy scalars defer to Tensor's operators

    def __init__(
        self, data: Any = None, *sizes: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None
    ) -> None:
        """`Tensor([1, 2])` (default float dtype, as torch.Tensor) or `Tensor(2, 3)` (uninitialized)."""
        if isinstance(data, builtins.int) and not isinstance(data, builtins.bool):
            t = zeros(data, *sizes, dtype=dtype, device=device, requires_grad=requires_grad)
        else:
            if data is None:
                data = []
            if dtype is None and not isinstance(data, Tensor):
                dtype = dtypes.get_default_dtype()  # torch.Tensor(ints or an int array) is float
            t = tensor(data, dtype=dtype, requires_grad=requires_grad, device=device)
        self._data, self._device = t._data, t._device
        self._requires_grad, self._node, self.grad = t._requires_grad, None, None
        self._name, self._hooks, self._retain = None, (), False
        self._g, self._mark = None, 0

    @staticmethod
    def _make(data: Any, dev: Device) -> Tensor:
        return _new(data, dev)

    def _give_name(self) -> str:
        self._name = _naming.leaf_name()
        return self._name

    # ------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self._data.shape if dim is None else self._data.shape[dim]

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    def nelement(self) -> int:
        return int(self._data.size)

    def element_size(self) -> int:
        return int(self._data.itemsize)

    def type_as(self, other: Tensor) -> Tensor:
        return self.type(other.dtype)

    def new_zeros(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
        return zeros(*size, dtype=dtype or self.dtype, device=device or self._device, requires_grad=requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
        return ones(*size, dtype=dtype or self.dtype, device=device or self._device, requires_grad=requires_grad)

    def new_full(self, size: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Tensor:
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self._device)

    def new_empty(self, *size: Any, dtype: Any = None, device: Any = None) -> Tensor:
        return empty(*size, dtype=dtype or self.dtype, device=device or self._device)

    def new_tensor(self, data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
        return tensor(data, dtype=dtype or self.dtype, device=device or self._device, requires_grad=requires_grad)

    def numel(self) -> int:
        return int(self._data.size)

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes.from_numpy(self._data.dtype)

    @property
    def device(self) -> Device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._node is not None and not requires_grad:
            raise TraceTensorError("requires_grad can only be switched off on a leaf tensor; use .detach()")
        if requires_grad and self._data.dtype.kind not in "fc":
            raise TraceTensorError(f"only floating point and complex tensors can require gradients, got {self.dtype}")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        return self._node

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's storage, outside autograd: `p.data -= lr * p.grad.data`
        updates `p`, as in PyTorch."""
        t = Tensor._make(self._data, self._device)
        t._name = self._name
        return t

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data if isinstance(value, Tensor) else self._device.xp.asarray(value)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        if self._requires_grad:
            raise TraceTensorError("can't call numpy() on a tensor that requires grad; use .detach().numpy()")
        if self._device.type != "cpu":
            raise TraceTensorError("can't convert a cuda tensor to numpy; use .cpu() first")
        return self._data

    def item(self) -> Any:
        if self._data.size != 1:
            raise TraceTensorError(f"a tensor with {self._data.size} elements cannot be converted to a scalar")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return to_device(self._data, CPU).tolist()

    def detach(self) -> Tensor:
        t = Tensor._make(self._data, self._device)
        t._name = self._name
        return t

    def detach_(self) -> Tensor:
        self._node = None
        self._requires_grad = False
        return self

    def clone(self) -> Tensor:
        return apply(_R["clone"], self)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """`.to("cuda")`, `.to(tt.float64)`, `.to(other)`, `.to(device, dtype)`."""
        dev = kwargs.pop("device", None)
        dt = kwargs.pop("dtype", None)
        for a in args:
            if isinstance(a, Tensor):
                dev, dt = a._device, a.dtype
            elif isinstance(a, (str, Device)):
                dev = a
            else:
                dt = a
        out = self
        if dt is not None and dtypes.to_numpy(dt) != self._data.dtype:
            out = out.type(dt)
        if dev is not None and device(dev) != self._device:
            out = _move(out, device(dev))
        return out

    def cpu(self) -> Tensor:
        return self.to(CPU)

    def cuda(self, index: int | None = None) -> Tensor:
        return self.to(device("cuda", index))

    def type(self, dtype: Any) -> Tensor:
        return apply(_R["cast"], self, dtype=dtypes.to_numpy(dtype))

    def float(self) -> Tensor:
        return self.type(dtypes.float32)

    def double(self) -> Tensor:
        return self.type(dtypes.float64)

    def long(self) -> Tensor:
        return self.type(dtypes.int64)

    def int(self) -> Tensor:
        return self.type(dtypes.int32)

    def bool(self) -> Tensor:
        return self.type(dtypes.bool)

    # ------------------------------------------------------------ autograd
    def backward(
        self,
        gradient: Tensor | None = None,
        retain_graph: bool = False,
        create_graph: bool = False,
        inputs: Sequence[Tensor] | None = None,
    ) -> None:
        if create_graph:
            raise TraceTensorError("create_graph=True (higher-order gradients) is not supported")
        if not self._requires_grad:
            why = _VALUES_ONLY.get(id(self))
            raise TraceTensorError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
                + (f": {why[1]}" if why is not None and why[0]() is self else "")
            )
        if gradient is None:
            if self._data.size != 1:
                raise TraceTensorError(
                    f"grad can be implicitly created only for scalar outputs, got shape {self.shape}"
                )
            # a cached read-only ones array (np.ones_like costs a few us): a VJP never writes
            # into its incoming gradient, and a leaf handed it as its .grad gets a copy
            g = _ops._ones(self._device.xp, self._data.shape, self._data.dtype)
            # the step's loss, shown in the debugger's run list; `ends`: a hand-written loop's
            # step ends with this backward pass (see events.backward_done)
            ends = STATE.listeners and _events.note_loss(self._data)
        else:
            ends = False
            g = _wrap_other(gradient, self)._data
            if g.shape != self._data.shape:
                raise TraceTensorError(f"gradient has shape {g.shape}, but the tensor has shape {self.shape}")
        run_backward([self], [g], retain_graph=retain_graph)
        if ends:
            _events.backward_done()

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """`hook(grad)` runs when this tensor's gradient is computed; it may return a replacement."""
        if not self._requires_grad:
            raise TraceTensorError("cannot register a hook on a tensor that doesn't require gradient")
        self._hooks = (*self._hooks, hook)

        def remove() -> None:
            self._hooks = tuple(h for h in self._hooks if h is not hook)

        return remove

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> Callable[[], None]:
        """`hook(tensor)` runs after a backward pass accumulated into this leaf's `.grad`."""
        if not self._requires_grad or self._node is not None:
            raise TraceTensorError("post-accumulate-grad hooks go on leaf tensors that require gradient")
        from ._autograd import add_post_accumulate_hook

        return add_post_accumulate_hook(self, hook)

    def retain_grad(self) -> None:
        self._retain = True

    # in-place shape changes: rebinds this tensor's array (outside autograd only)
    def _reshape_inplace(self, name: str, out: Tensor) -> Tensor:
        if self._requires_grad and MODE.enabled:
            raise TraceTensorError(
                f"{name} on a tensor that requires grad is not supported; use the out-of-place {name.rstrip('_')}()"
            )
        self._data = out._data
        return self

    def unsqueeze_(self, dim: builtins.int) -> Tensor:
        return self._reshape_inplace("unsqueeze_", self.unsqueeze(dim))

    def squeeze_(self, dim: Any = None) -> Tensor:
        return self._reshape_inplace("squeeze_", self.squeeze(dim))

    def t_(self) -> Tensor:
        return self._reshape_inplace("t_", self.t())

    def transpose_(self, dim0: builtins.int, dim1: builtins.int) -> Tensor:
        return self._reshape_inplace("transpose_", self.transpose(dim0, dim1))

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        return self._assign_inplace("clamp_", self.clamp(min, max))

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return self._assign_inplace("masked_fill_", self.masked_fill(mask, value))

    def _assign_inplace(self, name: str, out: Tensor) -> Tensor:
        """An in-place op outside autograd: the result is written into this tensor's array."""
        if self._requires_grad and MODE.enabled:
            raise TraceTensorError(
                f"{name} on a tensor that requires grad is not supported; use "
                f"{name.rstrip('_')}() (out of place), or wrap it in `with tt.no_grad():`"
            )
        self._data[...] = out._data
        return self

    def zero_(self) -> Tensor:
        self._data[...] = 0
        return self

    def fill_(self, value: Any) -> Tensor:
        self._data[...] = value
        return self

    def copy_(self, src: Tensor) -> Tensor:
        self._data[...] = _wrap_other(src, self)._data
        return self

    # ------------------------------------------------------------ operators
    def __add__(self, o: Any) -> Tensor:
        return _binary(_ops.add, self, o)

    def __radd__(self, o: Any) -> Tensor:
        return _rbinary(_ops.add, self, o)

    def __sub__(self, o: Any) -> Tensor:
        return _binary(_ops.sub, self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return _rbinary(_ops.sub, self, o)

    def __mul__(self, o: Any) -> Tensor:
        return _binary(_ops.mul, self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return _rbinary(_ops.mul, self, o)

    def __truediv__(self, o: Any) -> Tensor:
        return _binary(_ops.div, self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return _rbinary(_ops.div, self, o)

    def __floordiv__(self, o: Any) -> Tensor:
        return _binary(_ops.floordiv, self, o)

    def __rfloordiv__(self, o: Any) -> Tensor:
        return _rbinary(_ops.floordiv, self, o)

    def __pow__(self, o: Any) -> Tensor:
        return _binary(_ops.pow, self, o)

    def __rpow__(self, o: Any) -> Tensor:
        return _rbinary(_ops.pow, self, o)

    def __matmul__(self, o: Any) -> Tensor:
        return _binary(_ops.matmul, self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return _rbinary(_ops.matmul, self, o)

    def __neg__(self) -> Tensor:
        return apply(_R["neg"], self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return apply(_R["abs"], self)

    # in place: true in-place on tensors outside autograd (so `p.data -= ...` and
    # updates under no_grad change the parameter); out of place on tape tensors.
    def _inplace(self, opname: str, o: Any) -> Tensor:
        other = _wrap_other(o, self)
        if MODE.enabled and (self._requires_grad or other._requires_grad):
            if self._requires_grad and self._node is None:
                raise TraceTensorError(
                    f"a leaf tensor that requires grad is being used in an in-place operation ({opname}); "
                    "wrap it in `with tt.no_grad():` or update `.data`"
                )
            # on the tape: this tensor becomes the op's output, as in PyTorch; the op's input is a
            # snapshot of what it was (same array and history), so the graph has no cycle
            before = _new(self._data, self._device)
            before._node, before._requires_grad, before._name = self._node, self._requires_grad, self._name
            res = apply(_R[opname], before, other)
            self._data, self._node, self._requires_grad = res._data, res._node, res._requires_grad
            return self
        res = apply(_R[opname], self, other)
        try:
            self._data[...] = res._data
        except (TypeError, ValueError) as e:  # e.g. an int tensor += a float
            raise OpError(
                opname,
                f"result of dtype {res._data.dtype} and shape {res._data.shape} cannot be "
                f"stored in place into a tensor of dtype {self._data.dtype} and shape {self.shape}",
                frame=user_frames(1)[0] if user_frames(1) else None,
            ) from e
        return self

    def __iadd__(self, o: Any) -> Tensor:
        return self._inplace("add", o)

    def __isub__(self, o: Any) -> Tensor:
        return self._inplace("sub", o)

    def __imul__(self, o: Any) -> Tensor:
        return self._inplace("mul", o)

    def __itruediv__(self, o: Any) -> Tensor:
        return self._inplace("div", o)

    def add_(self, o: Any, alpha: Any = 1) -> Tensor:
        return self._inplace("add", o if alpha == 1 else _wrap_other(o, self) * alpha)

    def sub_(self, o: Any, alpha: Any = 1) -> Tensor:
        return self._inplace("sub", o if alpha == 1 else _wrap_other(o, self) * alpha)

    def mul_(self, o: Any) -> Tensor:
        return self._inplace("mul", o)

    def div_(self, o: Any) -> Tensor:
        return self._inplace("div", o)

    # ------------------------------------------------------------ ops (one-line delegators)
    def matmul(self, o: Any) -> Tensor:
        return apply(_R["matmul"], self, _wrap_other(o, self))

    mm = matmul

    def exp(self) -> Tensor:
        return apply(_R["exp"], self)

    def log(self) -> Tensor:
        return apply(_R["log"], self)

    def sqrt(self) -> Tensor:
        return apply(_R["sqrt"], self)

    def abs(self) -> Tensor:
        return apply(_R["abs"], self)

    def tanh(self) -> Tensor:
        return apply(_R["tanh"], self)

    def sigmoid(self) -> Tensor:
        return apply(_R["sigmoid"], self)

    def relu(self) -> Tensor:
        return apply(_R["relu"], self)

    def pow(self, exponent: Any) -> Tensor:
        return apply(_R["pow"], self, _wrap_other(exponent, self))

    def maximum(self, o: Any) -> Tensor:
        return apply(_R["maximum"], self, _wrap_other(o, self))

    def minimum(self, o: Any) -> Tensor:
        return apply(_R["minimum"], self, _wrap_other(o, self))

    def sum(self, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
        t = self if dtype is None else self.type(dtype)
        return apply(_R["sum"], t, axis=_dim(dim), keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
        t = self if dtype is None else self.type(dtype)
        return apply(_R["mean"], t, axis=_dim(dim), keepdims=keepdim)

    def max(self, dim: Any = None, keepdim: bool = False) -> Tensor | MinMax:
        """`t.max()` is the largest value; `t.max(dim)` returns (values, indices)."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return apply(_R["amax"], self, axis=None, keepdims=False)
        return MinMax(apply(_R["amax"], self, axis=int(dim), keepdims=keepdim), self.argmax(dim, keepdim))

    def min(self, dim: Any = None, keepdim: bool = False) -> Tensor | MinMax:
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return apply(_R["amin"], self, axis=None, keepdims=False)
        return MinMax(apply(_R["amin"], self, axis=int(dim), keepdims=keepdim), self.argmin(dim, keepdim))

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return apply(_R["amax"], self, axis=_dim(dim), keepdims=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return apply(_R["amin"], self, axis=_dim(dim), keepdims=keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return apply(_R["argmax"], self, axis=dim, keepdims=keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return apply(_R["argmin"], self, axis=dim, keepdims=keepdim)

    def softmax(self, dim: int = -1) -> Tensor:
        return apply(_R["softmax"], self, axis=dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return apply(_R["log_softmax"], self, axis=dim)

    def reshape(self, *shape: Any) -> Tensor:
        return apply(_R["reshape"], self, shape=_shape(shape))

    def view(self, *shape: Any) -> Tensor:
        """reshape without a copy: refuses, as PyTorch does, a tensor whose strides cannot
        give the new shape (`a.t().view(6)`); `.reshape` or `.contiguous().view` copy."""
        if len(shape) == 1 and not isinstance(shape[0], (builtins.int, tuple, list)):
            raise TraceTensorError("view(dtype) is not supported; use .to(dtype)")
        shape = _shape(shape)
        a = self._data
        if not a.flags.c_contiguous and a.size:
            try:
                a.view().shape = shape
            except AttributeError:
                raise OpError(
                    "view",
                    "view size is not compatible with input tensor's size and stride (at "
                    "least one dimension spans across two contiguous subspaces). Use .reshape(...) "
                    f"instead. (Asked for shape {tuple(shape)} from a tensor of shape "
                    f"{tuple(a.shape)} that is not contiguous.)",
                    frame=(user_frames(1) or (None,))[0],
                ) from None
            except ValueError:
                pass  # a wrong element count: the reshape op explains it
        return apply(_R["reshape"], self, shape=shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        s = self.shape
        if not s:
            return self.reshape(1)
        e = end_dim % len(s)
        st = start_dim % len(s)
        return self.reshape(*s[:st], -1, *s[e + 1 :])

    def permute(self, *dims: Any) -> Tensor:
        return apply(_R["permute"], self, axes=_shape(dims))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return apply(_R["permute"], self, axes=tuple(axes))

    swapaxes = transpose

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise TraceTensorError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim}")
        return self.T if self.ndim == 2 else self

    def where(self, condition: Any, other: Any) -> Tensor:
        from .functional import where

        return where(condition, self, other)

    # ------------------------------------------------------------ python protocol
    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise TraceTensorError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous; use .any() or .all()"
            )
        return builtins.bool(self._data.reshape(()).item())

    def __float__(self) -> float:
        return builtins.float(self.item())

    def __int__(self) -> int:
        return builtins.int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return builtins.int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = to_device(self._data, CPU)
        return a if dtype is None else a.astype(dtype)

    def __hash__(self) -> int:
        return id(self)

    def __deepcopy__(self, memo: dict) -> Tensor:
        """A copy with its own storage (copy.deepcopy(model.state_dict()) / of a whole model);
        only leaf tensors can be deep-copied, as in PyTorch."""
        if self._node is not None:
            raise TraceTensorError(
                "only tensors created explicitly by the user (graph leaves) support the "
                "deepcopy protocol; use .detach().clone()"
            )
        t = _object_new(type(self))
        for slot in Tensor.__slots__:
            if slot != "__weakref__":
                object.__setattr__(t, slot, getattr(self, slot))
        t._data, t._node, t.grad, t._hooks = self._data.copy(), None, None, ()
        memo[id(self)] = t
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        return t

    def __repr__(self) -> str:
        body = np.array2string(np.asarray(to_device(self._data, CPU)), separator=", ", prefix="tensor(", precision=4)
        extra = ""
        if self._data.dtype not in (np.float32, np.int64, np.bool_):
            extra += f", dtype={self.dtype}"
        if self._device.type != "cpu":
            extra += f", device='{self._device}'"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.op.name}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __str__ = __repr__

    def __getitem__(self, index: Any) -> Tensor:
        return apply(_R["getitem"], self, index=_index_attr(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        if self._requires_grad and MODE.enabled:
            raise TraceTensorError(
                "in-place assignment into a tensor that requires grad; use tt.where "
                "or update `.data` under tt.no_grad()"
            )
        self._data[_index_attr(index)] = _wrap_other(value, self)._data


def _np_aliases(fn: Callable) -> Callable:
    """Accepts numpy's `axis=`/`keepdims=` for `dim=`/`keepdim=`, as PyTorch's reductions do."""

    def method(self: Tensor, *args: Any, **kw: Any) -> Any:
        if kw:
            if "axis" in kw:
                kw["dim"] = kw.pop("axis")
            if "keepdims" in kw:
                kw["keepdim"] = kw.pop("keepdims")
        return fn(self, *args, **kw)

    method.__name__, method.__qualname__, method.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return method


for _n in (
    "sum",
    "mean",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "std",
    "var",
    "prod",
    "logsumexp",
    "all",
    "any",
    "norm",
    "softmax",
    "log_softmax",
    "cumsum",
    "count_nonzero",
):
    setattr(Tensor, _n, _np_aliases(getattr(Tensor, _n)))


def _dim(dim: Any) -> Any:
    """A `dim` argument as the `axis` attribute (None, an int or a tuple of ints)."""
    if dim is None or isinstance(dim, builtins.int):
        return dim
    return tuple(builtins.int(d) for d in dim)


def _index_attr(index: Any) -> Any:
    """Index with tensors replaced by their arrays; a tuple, so ops see one form."""
    if not isinstance(index, tuple):
        index = (index,)
    return tuple(i._data if isinstance(i, Tensor) else (np.asarray(i) if isinstance(i, list) else i) for i in index)


def _move(t: Tensor, dev: Device) -> Tensor:
    """Copies to another device; gradients flow back across the copy."""
    op = _R["to_device"]
    out = Tensor._make(to_device(t._data, dev), dev)
    if t._requires_grad and MODE.enabled:
        out._requires_grad = True
        out._node = Node(op, (t,), dev.xp, (t._data,), out._data, {"device": t._device}, (True,), None, None)
    return out


# ---------------------------------------------------------------- creation


def tensor(data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """`tt.tensor([[1., 2.]])`: copies data; Python floats become float32, ints int64."""
    dev = get_default_device() if device is None else globals()["device"](device)
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
        arr = np.asarray([np.asarray(x) for x in data])
    else:
        arr = data
    dt = dtypes.to_numpy(dtype)
    if dev.type == "cpu" and not isinstance(arr, np.ndarray) and device_of(arr).type == "cuda":
        arr = to_device(arr, CPU)
    try:
        a = np.array(arr, dtype=dt) if dev.type == "cpu" else dev.xp.array(arr, dtype=dt)
    except (ValueError, TypeError, OverflowError) as e:  # ragged lists, text, numbers beyond the dtype
        raise _creation_error("tensor", f"cannot make a tensor of {_brief(data)}: {e}") from None
    except MemoryError:
        raise _creation_error("tensor", f"not enough memory for {_brief(data)}") from None
    if a.dtype.kind not in "biufc":  # objects (ints beyond 64 bits, None, ...) and strings
        raise _creation_error(
            "tensor",
            f"cannot make a tensor of {_brief(data)}: its elements must be "
            f"numbers or bools of one nested shape (numpy made dtype {a.dtype}; "
            "integers must fit in 64 bits)",
            DTypeError,
        )
    if dt is None and not hasattr(data, "dtype"):
        # Python numbers and lists take PyTorch's defaults (arrays keep their own dtype)
        if a.dtype == np.float64:
            a = a.astype(dtypes.get_default_dtype().np)
        elif a.dtype.kind == "i" and a.dtype != np.int64:
            a = a.astype(np.int64)
        elif a.dtype == np.complex128:
            a = a.astype(np.complex64)
    t = _new(a, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_numpy(a: np.ndarray) -> Tensor:
    """Shares memory with `a`, as torch.from_numpy does."""
    return Tensor._make(np.asarray(a), CPU)


def _creator(dtype: Any, device_: Any) -> tuple[np.dtype, Device]:
    dev = get_default_device() if device_ is None else device(device_)
    dt = dtypes.to_numpy(dtype) if dtype is not None else dtypes.get_default_dtype().np
    return dt, dev


def _shape(size: tuple) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _size(size: tuple, call: str) -> tuple[int, ...]:
    """A creation function's size, checked: non-negative integers (`zeros(2, 3)`, `zeros((2, 3))`)."""
    size = _shape(size)
    for d in size:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise _creation_error(
                call, f"size must be integers, got {d!r} ({type(d).__name__}) in {tuple(size)}", DTypeError
            )
        if d < 0:
            raise _creation_error(call, f"negative dimension {d} in size {tuple(size)}")
    return tuple(int(d) for d in size)


def _creation_error(call: str, detail: str, cls: type[OpError] = ShapeError) -> OpError:
    """A creation function's error: names the call and the user's line, like an op's."""
    return cls(call, detail, frame=(user_frames(1) or (None,))[0])


def _brief(data: Any) -> str:
    r = repr(data)
    return f"{type(data).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def _alloc(call: str, shape: Any, dt: Any, make: Callable[[], Any]) -> Any:
    """`make()`, with numpy's MemoryError (and bad sizes it finds) told as this call's error."""
    try:
        return make()
    except MemoryError:
        n = 1
        for d in shape:
            n *= int(d)
        raise _creation_error(
            call,
            f"cannot allocate {n * np.dtype(dt).itemsize / 2**30:.1f} GiB for shape {shape} of {np.dtype(dt)}",
            OpError,
        ) from None
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        raise _creation_error(call, f"{e} (size {shape})") from None


def _finish(a: Any, dev: Device, requires_grad: bool) -> Tensor:
    t = Tensor._make(a, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _creator(dtype, device)
    shape = _size(size, "zeros")
    return _finish(_alloc("zeros", shape, dt, lambda: dev.xp.zeros(shape, dtype=dt)), dev, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _creator(dtype, device)
    shape = _size(size, "ones")
    return _finish(_alloc("ones", shape, dt, lambda: dev.xp.ones(shape, dtype=dt)), dev, requires_grad)


def full(
    size: Sequence[int], fill_value: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value, np.dtype(np.bool_))
    dt, dev = _creator(dtype, device)
    shape = _size((size,) if isinstance(size, (tuple, list)) else (size,), "full")
    return _finish(_alloc("full", shape, dt, lambda: dev.xp.full(shape, fill_value, dtype=dt)), dev, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _creator(dtype, device)
    shape = _size(size, "empty")
    return _finish(_alloc("empty", shape, dt, lambda: dev.xp.empty(shape, dtype=dt)), dev, requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dt, dev = _creator(dtype, device)
    _size((n,) if m is None else (n, m), "eye")
    return _finish(
        _alloc("eye", (n, n if m is None else m), dt, lambda: dev.xp.eye(n, m, dtype=dt)), dev, requires_grad
    )


def arange(
    start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, builtins.float) for v in (start, end, step))
        dtype = dtypes.get_default_dtype() if is_float else dtypes.int64
    dt, dev = _creator(dtype, device)
    try:
        n = max(0, int(np.ceil((end - start) / step)))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError) as e:
        raise _creation_error("arange", f"start={start!r}, end={end!r}, step={step!r}: {e}") from None
    return _finish(_alloc("arange", (n,), dt, lambda: dev.xp.arange(start, end, step, dtype=dt)), dev, requires_grad)


def linspace(
    start: float, end: float, steps: int, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    dt, dev = _creator(dtype, device)
    return _finish(dev.xp.linspace(start, end, steps, dtype=dt), dev, requires_grad)


def zeros_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t._device, requires_grad=requires_grad)


def ones_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t._device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t._device)


# ---------------------------------------------------------------- randomness
# numbers are drawn on the host from a Generator (tt.Generator, or the default one that
# tt.manual_seed seeds), so a seed gives the same numbers on every device
from ._random import manual_seed, rng_of  # noqa: E402, F401  (manual_seed: tt.manual_seed)


def _random(kind: str, size: tuple, dt: np.dtype, dev: Device, generator: Any = None, **kw: Any) -> Any:
    rng = rng_of(generator)
    if kind == "randn":
        a = rng.standard_normal(size, dtype=dt if dt in (np.float32, np.float64) else np.float64)
    elif kind == "rand":
        a = rng.random(size, dtype=dt if dt in (np.float32, np.float64) else np.float64)
    else:
        a = rng.integers(kw["low"], kw["high"], size)
    return to_device(np.asarray(a, dtype=dt), dev)


def randn(
    *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None
) -> Tensor:
    dt, dev = _creator(dtype, device)
    shape = _size(size, "randn")
    return _finish(_alloc("randn", shape, dt, lambda: _random("randn", shape, dt, dev, generator)), dev, requires_grad)


def rand(
    *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None
) -> Tensor:
    dt, dev = _creator(dtype, device)
    shape = _size(size, "rand")
    return _finish(_alloc("rand", shape, dt, lambda: _random("rand", shape, dt, dev, generator)), dev, requires_grad)


def randint(
    *args: Any,
    size: Sequence[int] | None = None,
    dtype: Any = None,
    device: Any = None,
    generator: Any = None,
    requires_grad: bool = False,
    low: int | None = None,
    high: int | None = None,
) -> Tensor:
    """PyTorch's overloads: `randint(high, size)`, `randint(low, high, size)`, and keywords."""
    a = list(args)
    if a and isinstance(a[-1], (tuple, list)) and size is None:
        size = a.pop()
    if low is not None:
        a.insert(0, low)
    if high is not None:
        a.append(high)
    if len(a) == 1:
        lo, hi = 0, a[0]
    elif len(a) == 2:
        lo, hi = a
    else:
        raise TypeError(f"randint() takes (high, size) or (low, high, size), got {len(args)} positional arguments")
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if builtins.int(hi) <= builtins.int(lo):
        raise ValueError(f"randint: low ({lo}) must be less than high ({hi})")
    dt, dev = _creator(dtype or dtypes.int64, device)
    return _finish(
        _random("randint", tuple(size), dt, dev, generator, low=builtins.int(lo), high=builtins.int(hi)),
        dev,
        requires_grad,
    )


def randperm(
    n: int, *, generator: Any = None, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    dt, dev = _creator(dtype or dtypes.int64, device)
    return _finish(to_device(rng_of(generator).permutation(builtins.int(n)).astype(dt), dev), dev, requires_grad)


def randn_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return randn(t.shape, dtype=dtype or t.dtype, device=device or t._device, requires_grad=requires_grad)


def rand_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=device or t._device, requires_grad=requires_grad)


def randint_like(t: Tensor, low: int, high: int | None = None, *, dtype: Any = None) -> Tensor:
    lo, hi = (0, low) if high is None else (low, high)
    return randint(lo, hi, t.shape, dtype=dtype or t.dtype, device=t._device)


def _legacy(name: str, dt: Any) -> Any:
    def make(*args: Any, device: Any = None) -> Tensor:
        if args and all(isinstance(a, builtins.int) and not isinstance(a, builtins.bool) for a in args):
            return zeros(*args, dtype=dt, device=device)  # LongTensor(2, 3): a new tensor of that size
        return tensor(args[0] if args else [], dtype=dt, device=device)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"`tt.{name}(data)` or `tt.{name}(*sizes)`: PyTorch's legacy constructor ({dt})."
    return make


FloatTensor = _legacy("FloatTensor", dtypes.float32)
DoubleTensor = _legacy("DoubleTensor", dtypes.float64)
HalfTensor = _legacy("HalfTensor", dtypes.float16)
LongTensor = _legacy("LongTensor", dtypes.int64)
IntTensor = _legacy("IntTensor", dtypes.int32)
ShortTensor = _legacy("ShortTensor", dtypes.int16)
ByteTensor = _legacy("ByteTensor", dtypes.uint8)
BoolTensor = _legacy("BoolTensor", dtypes.bool)


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


_site_py = _site
if _dispatch_module.ACCELERATED:  # (the observed op's naming in C: see _speedups.forward_site)
    _dispatch_module._speedups.setup_forward(_forward_site)
    _site = _dispatch_module._speedups.forward_site


__all__ = ["Tensor", "tensor", "apply", "no_grad", "MinMax"]
