"""Graph-mode core: `Graph`, `Operation`, the symbolic `Tensor`, name scopes, static
shape inference and the errors a session raises (TensorFlow 1's names)."""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import dtypes as _dt
from .._dispatch import fail
from .._registry import REGISTRY, OpDef, output_only
from .._source import Frame, user_frames
from ..errors import DTypeError, ShapeError, TraceTensorError

# --------------------------------------------------------------------------- errors


class GraphError(TraceTensorError):
    """Base of the errors graph building and `Session.run` raise."""


class InvalidArgumentError(GraphError, ValueError):
    """A feed of the wrong shape or dtype, a missing feed, a bad argument to an op builder."""


class FailedPreconditionError(GraphError, RuntimeError):
    """A variable read before it was initialized (TensorFlow's name)."""


class NotFoundError(GraphError, KeyError):
    """A tensor or operation name that the graph does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunShapeError(ShapeError, InvalidArgumentError):
    """A node whose inputs' shapes do not fit, found while a session runs (TF1 code catches
    these as tf.errors.InvalidArgumentError). Named ShapeError, as what it refines."""


class RunDTypeError(DTypeError, InvalidArgumentError):
    """A node given a dtype it does not accept, found while a session runs."""


RunShapeError.__name__ = RunShapeError.__qualname__ = "ShapeError"  # messages and screens say ShapeError
RunDTypeError.__name__ = RunDTypeError.__qualname__ = "DTypeError"


def as_tf_error(e: BaseException) -> BaseException:
    """An op's ShapeError / DTypeError from a run, re-classed (same object, same message) as
    the InvalidArgumentError subclass TF1 code expects to catch."""
    if isinstance(e, InvalidArgumentError):
        return e
    if isinstance(e, ShapeError) and type(e).__init__ is ShapeError.__init__:
        e.__class__ = RunShapeError
    elif isinstance(e, DTypeError) and type(e).__init__ is DTypeError.__init__:
        e.__class__ = RunDTypeError
    return e


class errors:
    GraphError = GraphError
    InvalidArgumentError = InvalidArgumentError
    FailedPreconditionError = FailedPreconditionError
    NotFoundError = NotFoundError
    OpError = TraceTensorError


# --------------------------------------------------------------------------- shapes


class TensorShape:
    """A static shape: `dims` is a tuple with None for unknown sizes, or None for an
    unknown rank. Compares equal to lists and tuples (`x.shape == (None, 3)`)."""

    __slots__ = ("dims",)

    def __init__(self, dims: Sequence[int | None] | None) -> None:
        self.dims = None if dims is None else tuple(None if d is None or d == -1 else int(d) for d in dims)

    @property
    def ndims(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    rank = ndims

    def as_list(self) -> list[int | None]:
        if self.dims is None:
            raise ValueError("as_list() is not defined on an unknown TensorShape")
        return list(self.dims)

    def is_fully_defined(self) -> bool:
        return self.dims is not None and None not in self.dims

    def is_compatible_with(self, shape: Sequence[int]) -> bool:
        if self.dims is None:
            return True
        return len(shape) == len(self.dims) and all(d is None or d == s for d, s in zip(self.dims, shape))

    def __iter__(self) -> Iterator[int | None]:
        if self.dims is None:
            raise ValueError("cannot iterate over a shape of unknown rank")
        return iter(self.dims)

    def __len__(self) -> int:
        if self.dims is None:
            raise ValueError("cannot take the length of a shape of unknown rank")
        return len(self.dims)

    def __getitem__(self, i: Any) -> Any:
        if self.dims is None:
            return None
        return self.dims[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TensorShape):
            return self.dims == other.dims
        if isinstance(other, (tuple, list)):
            return self.dims == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.dims)

    def __repr__(self) -> str:
        return "TensorShape(None)" if self.dims is None else f"TensorShape({list(self.dims)})"

    def __str__(self) -> str:
        if self.dims is None:
            return "<unknown>"
        return (
            "("
            + ", ".join("?" if d is None else str(d) for d in self.dims)
            + ("," if len(self.dims) == 1 else "")
            + ")"
        )


def fmt_shape(dims: tuple | None) -> str:
    return str(TensorShape(dims))


# --------------------------------------------------------------------------- graph objects

_graph_ids = itertools.count(1)


class Operation:
    """A node: `name`, `type` (the op's TensorFlow name), `inputs`, `outputs`,
    `control_inputs`, `attrs`, and `stack`, the user's frames where it was defined.

    `kind` says how a session runs it: "op" (a registry op, `opdef`), "placeholder",
    "variable", "const", "assign", "noop", "fill", "random", "grad", "update", "while",
    "cond", "loop_var", "while_grad", "cond_grad", "captured"."""

    __slots__ = (
        "graph",
        "name",
        "type",
        "kind",
        "opdef",
        "inputs",
        "control_inputs",
        "attrs",
        "stack",
        "outputs",
        "ctx",
        "device",
        "__weakref__",
    )

    def __init__(
        self,
        graph: Graph,
        name: str,
        type_: str,
        kind: str,
        opdef: OpDef | None,
        inputs: tuple[Tensor, ...],
        attrs: dict,
        stack: tuple[Frame, ...],
        control_inputs: tuple[Operation, ...],
        ctx: Any,
        device: str | None,
    ) -> None:
        self.graph, self.name, self.type, self.kind, self.opdef = graph, name, type_, kind, opdef
        self.inputs, self.attrs, self.stack, self.control_inputs = inputs, attrs, stack, control_inputs
        self.ctx, self.device = ctx, device
        self.outputs: tuple[Tensor, ...] = ()

    @property
    def values(self) -> tuple[Tensor, ...]:
        return self.outputs

    def run(self, feed_dict: dict | None = None, session: Any = None) -> None:
        """Runs this op in `session` (default: the default session)."""
        from .session import _session_for

        _session_for(session, self).run(self, feed_dict)

    def get_attr(self, name: str) -> Any:
        return self.attrs[name]

    def __repr__(self) -> str:
        return f"<tf.Operation '{self.name}' type={self.type}>"


class Tensor:
    """A symbolic tensor: output `value_index` of `op`; named `op_name:index`."""

    __slots__ = ("op", "value_index", "_dims", "dtype", "__weakref__")
    __array_priority__ = 1000  # numpy arrays defer to our operators

    def __init__(self, op: Operation, value_index: int, dims: tuple | None, dtype: _dt.dtype) -> None:
        self.op, self.value_index, self._dims, self.dtype = op, value_index, dims, dtype

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self) -> Graph:
        return self.op.graph

    @property
    def shape(self) -> TensorShape:
        return TensorShape(self._dims)

    def get_shape(self) -> TensorShape:
        return self.shape

    def set_shape(self, shape: Any) -> None:
        """Refines the static shape with what the caller knows (TF's set_shape); a shape
        that contradicts the known one is a ValueError."""
        new = TensorShape(shape.dims if isinstance(shape, TensorShape) else shape).dims
        if new is None:
            return
        if self._dims is None:
            self._dims = new
            return
        if len(new) != len(self._dims) or any(
            a is not None and b is not None and a != b for a, b in zip(self._dims, new)
        ):
            raise ValueError(f"cannot set the shape of '{self.name}' {self.shape} to {TensorShape(new)}")
        self._dims = tuple(a if a is not None else b for a, b in zip(self._dims, new))

    @property
    def device(self) -> str | None:
        return self.op.device

    def consumers(self) -> list[Operation]:
        return [op for op in self.graph.get_operations() if any(t is self for t in op.inputs)]

    def eval(self, feed_dict: dict | None = None, session: Any = None) -> Any:
        """The value in `session` (default: the default session, e.g. an InteractiveSession)."""
        from .session import _session_for

        return _session_for(session, self.op).run(self, feed_dict)

    def __repr__(self) -> str:
        return f"<tf.Tensor '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    def __bool__(self) -> bool:
        raise TypeError(
            f"using the graph tensor '{self.name}' as a Python bool is not allowed: its value "
            "exists only when a session runs it; use tf.cond or tf.where"
        )

    def __iter__(self) -> Iterator[Tensor]:
        if self._dims is None or not self._dims or self._dims[0] is None:
            raise TypeError(f"graph tensor '{self.name}' of shape {self.shape} is not iterable")
        return (self[i] for i in range(self._dims[0]))

    def __len__(self) -> int:
        if self._dims is None or not self._dims or self._dims[0] is None:
            raise TypeError(f"len() of graph tensor '{self.name}' with shape {self.shape} is not known")
        return self._dims[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"the graph tensor '{self.name}' has no value outside a session: use sess.run({self.name!r}) "
            "or tensor.eval()"
        )

    __hash__ = object.__hash__  # identity, as TensorFlow 1 tensors (== is identity too)

    # operators: one-line delegators to the TF-named builders
    def __add__(self, o: Any) -> Tensor:
        return _ops().add(self, o)

    def __radd__(self, o: Any) -> Tensor:
        return _ops().add(o, self)

    def __sub__(self, o: Any) -> Tensor:
        return _ops().subtract(self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return _ops().subtract(o, self)

    def __mul__(self, o: Any) -> Tensor:
        return _ops().multiply(self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return _ops().multiply(o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return _ops().divide(self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return _ops().divide(o, self)

    def __floordiv__(self, o: Any) -> Tensor:
        return _ops().floordiv(self, o)

    def __rfloordiv__(self, o: Any) -> Tensor:
        return _ops().floordiv(o, self)

    def __mod__(self, o: Any) -> Tensor:
        return _ops().floormod(self, o)

    def __rmod__(self, o: Any) -> Tensor:
        return _ops().floormod(o, self)

    def __pow__(self, o: Any) -> Tensor:
        return _ops().pow(self, o)

    def __rpow__(self, o: Any) -> Tensor:
        return _ops().pow(o, self)

    def __matmul__(self, o: Any) -> Tensor:
        return _ops().matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return _ops().matmul(o, self)

    def __neg__(self) -> Tensor:
        return _ops().negative(self)

    def __abs__(self) -> Tensor:
        return _ops().abs(self)

    def __lt__(self, o: Any) -> Tensor:
        return _ops().less(self, o)

    def __le__(self, o: Any) -> Tensor:
        return _ops().less_equal(self, o)

    def __gt__(self, o: Any) -> Tensor:
        return _ops().greater(self, o)

    def __ge__(self, o: Any) -> Tensor:
        return _ops().greater_equal(self, o)

    def __and__(self, o: Any) -> Tensor:
        return _ops().logical_and(self, o)

    def __or__(self, o: Any) -> Tensor:
        return _ops().logical_or(self, o)

    def __invert__(self) -> Tensor:
        return _ops().logical_not(self)

    def __getitem__(self, index: Any) -> Tensor:
        return _ops().strided_slice(self, index)


def _ops() -> Any:
    from . import ops

    return ops


# --------------------------------------------------------------------------- the graph


class _Default(threading.local):
    stack: list[Graph]

    def __init__(self) -> None:
        self.stack = []


_defaults = _Default()
_global_default: Graph | None = None


def get_default_graph() -> Graph:
    """The graph new ops go into: the innermost `as_default()` one, else the global default."""
    global _global_default
    if _defaults.stack:
        return _defaults.stack[-1]
    if _global_default is None:
        _global_default = Graph()
    return _global_default


def reset_default_graph() -> None:
    """Starts a fresh global default graph (TF1's `tf.reset_default_graph`)."""
    global _global_default
    if _defaults.stack:
        raise GraphError("reset_default_graph() called inside a `with graph.as_default():` block")
    _global_default = Graph()
    from .session import _clear_default_session

    _clear_default_session()


class CFContext:
    """The control-flow body (while_loop body/cond, a cond branch) ops are being built in."""

    def __init__(self, name: str, outer: CFContext | None) -> None:
        self.name, self.outer = name, outer
        self.ops: list[Operation] = []


class Graph:
    """A dataflow graph. `with g.as_default():` makes new ops go into it; `version`
    grows with every op added (sessions re-announce the structure when it changed)."""

    def __init__(self) -> None:
        self.id = next(_graph_ids)
        self.version = 0
        self._ops: dict[str, Operation] = {}
        self._order: list[Operation] = []
        self._names: dict[str, int] = {}
        self._scope = ""
        self._control: list[list[Operation]] = []
        self._device: list[str | None] = []
        self._ctx: CFContext | None = None
        self._collections: dict[str, list[Any]] = {}
        self.seed: int | None = None
        self._finalized = False

    # ------------------------------------------------------------------ context managers
    @contextmanager
    def as_default(self) -> Iterator[Graph]:
        _defaults.stack.append(self)
        try:
            yield self
        finally:
            _defaults.stack.pop()

    @contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """TF1 semantics: a scope name used twice becomes `name_1`; a name ending in
        '/' is taken as an absolute scope; None or '' resets to the top level."""
        prev = self._scope
        if not name:
            self._scope = ""
        elif name.endswith("/"):
            self._scope = name[:-1]
        else:
            self._scope = self.unique_name(name)
        try:
            yield self._scope + "/" if self._scope else ""
        finally:
            self._scope = prev

    @contextmanager
    def control_dependencies(self, control_inputs: Sequence[Any] | None) -> Iterator[None]:
        if control_inputs is None:  # TF: None clears the dependencies
            saved, self._control = self._control, []
            try:
                yield
            finally:
                self._control = saved
            return
        ops = [self.as_graph_element(c, allow_tensor=True, allow_operation=True) for c in control_inputs]
        self._control.append([c.op if isinstance(c, Tensor) else c for c in ops])
        try:
            yield
        finally:
            self._control.pop()

    @contextmanager
    def device(self, spec: str | None) -> Iterator[None]:
        self._device.append(spec)
        try:
            yield
        finally:
            self._device.pop()

    def get_name_scope(self) -> str:
        return self._scope

    def finalize(self) -> None:
        """After this, adding an op is an error (catches graphs that grow every step)."""
        self._finalized = True

    @property
    def finalized(self) -> bool:
        return self._finalized

    # ------------------------------------------------------------------ names and lookup
    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        full = f"{self._scope}/{name}" if self._scope else name
        i = self._names.get(full, 0)
        out = full
        if i:
            while f"{full}_{i}" in self._names:
                i += 1
            out = f"{full}_{i}"
        if mark_as_used:
            self._names[full] = i + 1
            self._names.setdefault(out, 1)
        return out

    def get_operations(self) -> list[Operation]:
        return list(self._order)

    def get_operation_by_name(self, name: str) -> Operation:
        op = self._ops.get(name)
        if op is None:
            raise NotFoundError(f"the graph has no operation named '{name}'{self._suggest(name)}")
        return op

    def get_tensor_by_name(self, name: str) -> Tensor:
        op_name, sep, idx = name.rpartition(":")
        if not sep or not idx.isdigit():
            raise NotFoundError(f"'{name}' is not a tensor name: tensor names look like 'op_name:0'")
        op = self.get_operation_by_name(op_name)
        i = int(idx)
        if i >= len(op.outputs):
            raise NotFoundError(f"operation '{op_name}' has {len(op.outputs)} output(s); there is no '{name}'")
        return op.outputs[i]

    def _suggest(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(self._ops), n=3)
        return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""

    def as_graph_element(self, obj: Any, allow_tensor: bool = True, allow_operation: bool = True) -> Any:
        """A Tensor or Operation of this graph from a tensor, an op, a Variable or a name."""
        if isinstance(obj, str):
            if ":" in obj:
                if not allow_tensor:
                    raise InvalidArgumentError(f"'{obj}' names a tensor, an operation was expected")
                return self.get_tensor_by_name(obj)
            if not allow_operation:
                raise InvalidArgumentError(f"'{obj}' names an operation; a tensor name looks like '{obj}:0'")
            return self.get_operation_by_name(obj)
        if isinstance(obj, (Tensor, Operation)):
            if obj.graph is not self:
                raise InvalidArgumentError(
                    f"{'tensor' if isinstance(obj, Tensor) else 'operation'} '{obj.name}' is not an "
                    f"element of this graph: it belongs to graph #{obj.graph.id}, this is graph #{self.id}"
                )
            if obj.op.ctx if isinstance(obj, Tensor) else obj.ctx:
                raise InvalidArgumentError(
                    f"'{obj.name}' is inside the control-flow body "
                    f"'{(obj.op.ctx if isinstance(obj, Tensor) else obj.ctx).name}': it exists only while "
                    "the loop or branch runs; fetch the outputs of tf.while_loop / tf.cond instead"
                )
            return obj
        raise TypeError(f"cannot interpret {type(obj).__name__} {obj!r} as a graph tensor or operation")

    # ------------------------------------------------------------------ collections
    def add_to_collection(self, name: str, value: Any) -> None:
        self._collections.setdefault(name, []).append(value)

    def get_collection(self, name: str) -> list[Any]:
        return list(self._collections.get(name, ()))

    # ------------------------------------------------------------------ op creation
    def create_op(
        self,
        kind: str,
        type_: str,
        inputs: Sequence[Tensor],
        attrs: dict | None = None,
        *,
        name: str | None = None,
        opdef: OpDef | None = None,
        out: Sequence[tuple[tuple | None, _dt.dtype]] | None = None,
        control_inputs: Sequence[Operation] = (),
        stack: tuple[Frame, ...] | None = None,
        exact_name: bool = False,
    ) -> Operation:
        """Adds a node. `out` gives each output's (static dims, dtype); when omitted for a
        registry op they are inferred by running it on small stand-in arrays."""
        if self._finalized:
            raise GraphError(f"the graph is finalized: cannot add the operation '{name or type_}'")
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"inputs of '{name or type_}' must be graph tensors, got {type(t).__name__}")
            if t.graph is not self:
                raise InvalidArgumentError(
                    f"tensor '{t.name}' (graph #{t.graph.id}) cannot be an input of an op in graph "
                    f"#{self.id}: build every op of a model in one graph"
                )
        attrs = dict(attrs or {})
        full = name if exact_name else self.unique_name(name or type_)
        if stack is None:
            stack = user_frames()
        ctrl = tuple(dict.fromkeys([*(c for group in self._control for c in group), *control_inputs]))
        dev = next((d for d in reversed(self._device) if d is not None), None)
        op = Operation(self, full, type_, kind, opdef, tuple(inputs), attrs, stack, ctrl, self._ctx, dev)
        if out is None:
            out = [infer(opdef, inputs, attrs, full, stack)]
        op.outputs = tuple(Tensor(op, i, d, dt) for i, (d, dt) in enumerate(out))
        self._ops[full] = op
        self._order.append(op)
        if self._ctx is not None:
            self._ctx.ops.append(op)
        self.version += 1
        return op

    @contextmanager
    def _cf_context(self, name: str) -> Iterator[CFContext]:
        ctx = CFContext(name, self._ctx)
        prev, self._ctx = self._ctx, ctx
        saved_control, self._control = self._control, []  # outer control deps do not reach inside
        try:
            yield ctx
        finally:
            self._ctx = prev
            self._control = saved_control

    def __repr__(self) -> str:
        return f"<tf.Graph #{self.id} with {len(self._order)} ops>"


# --------------------------------------------------------------------------- shape inference


_BIG = 1 << 16  # input elements above which inference runs on shrunk stand-ins first
_SMALL = 64  # sizes up to this stay as they are in the stand-ins
# stand-in sizes for the large sizes, two disjoint sets (> _SMALL, so never confused with a kept size)
_PRIMES = (
    (67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113),
    (127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181),
)


def infer(
    opdef: OpDef | None, inputs: Sequence[Tensor], attrs: dict, name: str, stack: tuple[Frame, ...]
) -> tuple[tuple | None, _dt.dtype]:
    """Static output (dims, dtype) of a registry op, found by running its forward on
    small arrays of ones of the input shapes (unknown sizes tried as 2 and 3: a size that
    differs between the two is unknown). When every size is known, an op that cannot run
    is reported now, at build time, with the node's name and line.

    Large inputs never run at full size when avoidable: each large size is replaced by a
    small prime, twice with different primes (equal sizes stay equal, distinct ones
    distinct); an output size that is the matching prime both times is that large size.
    Only for ops with no integer attributes (no slice bounds, reshape targets, axes ...
    that would mean something else for a shrunk input); anything inconclusive (an output
    size that is neither kept nor mapped, a stand-in the op refuses) falls back to the
    full-size run below, so the answer and the error are always the full-size ones."""
    assert opdef is not None
    dts = [t.dtype.np for t in inputs]
    dims = [t._dims for t in inputs]
    if all(d is not None for d in dims) and _elements(dims) > _BIG and not _has_int(attrs):
        shrunk = _infer_shrunk(opdef, dims, dts, attrs)
        if shrunk is not None:
            return shrunk
    if any(d is None for d in dims):
        trials = [tuple(() if d is None else tuple(1 if s is None else s for s in d) for d in dims)]
    else:
        known = all(None not in d for d in dims)
        trials = [tuple(tuple(k if s is None else s for s in d) for d in dims) for k in ((2, 3) if not known else (0,))]
    results = []
    for shapes in trials:
        arrays = tuple(np.ones(s, dtype=dt) for s, dt in zip(shapes, dts))
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = output_only(opdef)(np, *arrays, **attrs)
        except Exception as e:
            if len(trials) == 1 and all(d is not None and None not in d for d in dims):
                raise fail(
                    opdef,
                    "forward",
                    arrays,
                    attrs,
                    e,
                    mode="graph",
                    name=name,
                    frame=stack[0] if stack else None,
                ) from None
            results.append(None)
            continue
        results.append(np.asarray(r) if not hasattr(r, "shape") else r)
    ok = [r for r in results if r is not None]
    if not ok:
        dt = dts[0] if dts else np.dtype(np.float32)
        return None, _dt.from_numpy(dt)
    dtype = _dt.from_numpy(ok[0].dtype)
    if any(d is None for d in dims) or len(ok) < len(results):
        return None, dtype
    if len(ok) == 1:
        return tuple(ok[0].shape), dtype
    a, b = ok
    if a.ndim != b.ndim:
        return None, dtype
    return tuple(x if x == y else None for x, y in zip(a.shape, b.shape)), dtype


def _elements(dims: list) -> int:
    n = 0
    for d in dims:
        k = 1
        for x in d:
            k *= 2 if x is None else x
        n += k
    return n


def _has_int(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    if isinstance(v, dict):
        return any(_has_int(x) for x in v.values())
    if isinstance(v, (tuple, list)):
        return any(_has_int(x) for x in v)
    return False


def _infer_shrunk(opdef: OpDef, dims: list, dts: list, attrs: dict) -> tuple[tuple | None, _dt.dtype] | None:
    """`infer` on stand-ins whose large sizes are small primes; None when inconclusive."""
    big = sorted({x for d in dims for x in d if x is not None and x > _SMALL})
    if not big or len(big) > len(_PRIMES[0]):
        return None
    outs = []
    for k, primes in enumerate(_PRIMES):
        to = dict(zip(big, primes))
        shapes = [tuple(to.get(x, x) if x is not None else 2 + k for x in d) for d in dims]
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = output_only(opdef)(np, *(np.ones(s, dtype=dt) for s, dt in zip(shapes, dts)), **attrs)
        except Exception:
            return None  # the full-size run reports the error with the real shapes
        outs.append(r if hasattr(r, "shape") else np.asarray(r))
    a, b = outs
    if a.ndim != b.ndim or a.dtype != b.dtype:
        return None
    back = [dict(zip(primes, big)) for primes in _PRIMES]
    unknown_inputs = any(x is None for d in dims for x in d)
    shape = []
    for x, y in zip(a.shape, b.shape):
        if x == y:  # the same for both stand-ins: a size kept as it is, or a constant
            shape.append(x)
        elif x in back[0] and back[0][x] == back[1].get(y):
            shape.append(back[0][x])
        elif unknown_inputs and x == 2 and y == 3:
            shape.append(None)
        else:
            return None
    return tuple(shape), _dt.from_numpy(a.dtype)


def registry(name: str) -> OpDef:
    return REGISTRY[name]
