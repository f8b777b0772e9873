"""`tf.Variable`: state that lives in a session across runs, with TF1's initializers,
`assign`/`assign_add`/`assign_sub` and the global/trainable collections."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import dtypes as _dt
from .core import Graph, Operation, Tensor, get_default_graph
from .ops import as_dtype, convert_to_tensor

GLOBAL_VARIABLES = "variables"
TRAINABLE_VARIABLES = "trainable_variables"


class GraphKeys:
    GLOBAL_VARIABLES = GLOBAL_VARIABLES
    TRAINABLE_VARIABLES = TRAINABLE_VARIABLES


class Variable(Tensor):
    """A graph tensor whose value is the session's stored array for it. Its op is the
    `VariableV2` node `name`; `initializer` is the `name/Assign` op that sets the
    initial value (run by `tf.global_variables_initializer()`)."""

    __slots__ = ("initializer", "initial_value", "trainable")

    def __init__(
        self,
        initial_value: Any = None,
        trainable: bool = True,
        name: str | None = None,
        dtype: Any = None,
        collections: Sequence[str] | None = None,
        validate_shape: bool = True,
        graph: Graph | None = None,
        **_ignored: Any,
    ) -> None:
        if initial_value is None:
            raise ValueError("Variable needs an initial_value")
        g = graph or (initial_value.graph if isinstance(initial_value, Tensor) else get_default_graph())
        with g.name_scope(name or "Variable") as scope:
            vname = scope[:-1]
            if callable(initial_value):
                initial_value = initial_value()
            init = convert_to_tensor(
                initial_value,
                dtype=dtype if not isinstance(initial_value, Tensor) else None,
                name="initial_value",
                graph=g,
            )
            if dtype is not None and as_dtype(dtype) != init.dtype:
                from .ops import cast

                init = cast(init, dtype)
            dims = init._dims if validate_shape else None
            with g.control_dependencies(None):  # a variable never waits on the context's deps
                op = g.create_op(
                    "variable",
                    "VariableV2",
                    (),
                    {"dtype": init.dtype.np, "shape": dims},
                    name=vname,
                    exact_name=True,
                    out=[],
                )
            Tensor.__init__(self, op, 0, dims, init.dtype)
            op.outputs = (self,)
            self.initial_value = init
            self.trainable = bool(trainable)
            self.initializer = _assign(self, init, "init", "Assign")
        for key in (
            collections
            if collections is not None
            else ((GLOBAL_VARIABLES, TRAINABLE_VARIABLES) if trainable else (GLOBAL_VARIABLES,))
        ):
            g.add_to_collection(key, self)
        if trainable and collections is not None and TRAINABLE_VARIABLES not in collections:
            g.add_to_collection(TRAINABLE_VARIABLES, self)

    def __repr__(self) -> str:
        return f"<tf.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    def assign(self, value: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True) -> Tensor:
        return _assign(self, value, "set", name or "Assign").outputs[0]

    def assign_add(
        self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True
    ) -> Tensor:
        return _assign(self, delta, "add", name or "AssignAdd").outputs[0]

    def assign_sub(
        self, delta: Any, use_locking: bool = False, name: str | None = None, read_value: bool = True
    ) -> Tensor:
        return _assign(self, delta, "sub", name or "AssignSub").outputs[0]

    def value(self) -> Tensor:
        return self

    def read_value(self) -> Tensor:
        from .ops import identity

        return identity(self, name=f"{self.op.name}/read")

    def initialized_value(self) -> Tensor:
        return self.initial_value

    def load(self, value: Any, session: Any = None) -> None:
        """Sets the value in `session` without adding a node."""
        from .session import _session_for

        _session_for(session, self.op)._load_variable(self, value)


def _assign(var: Variable, value: Any, mode: str, type_: str) -> Operation:
    g = var.graph
    v = convert_to_tensor(value, like=var, graph=g) if not isinstance(value, Tensor) else value
    if mode != "init":
        with g.name_scope(var.op.name + "/"):
            return g.create_op("assign", type_, (v,), {"var": var.op.name, "mode": mode}, out=[(var._dims, var.dtype)])
    with g.name_scope(var.op.name + "/"), g.control_dependencies(None):
        return g.create_op("assign", type_, (v,), {"var": var.op.name, "mode": mode}, out=[(var._dims, var.dtype)])


def get_collection(key: str, scope: str | None = None) -> list[Any]:
    """The default graph's collection `key` (items whose name starts with `scope`, if given)."""
    items = get_default_graph().get_collection(key)
    if scope is None:
        return items
    return [v for v in items if getattr(v, "name", "").startswith(scope)]


def add_to_collection(name: str, value: Any) -> None:
    get_default_graph().add_to_collection(name, value)


def global_variables(graph: Graph | None = None) -> list[Variable]:
    return (graph or get_default_graph()).get_collection(GLOBAL_VARIABLES)


all_variables = global_variables


def trainable_variables(graph: Graph | None = None) -> list[Variable]:
    return (graph or get_default_graph()).get_collection(TRAINABLE_VARIABLES)


def variables_initializer(var_list: Sequence[Variable], name: str = "init") -> Operation:
    from .ops import group

    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer() -> Operation:
    return variables_initializer(global_variables(), name="init")


initialize_all_variables = global_variables_initializer


class _Reuse:
    """`tf.AUTO_REUSE`: get_variable creates a variable the first time, returns it after."""

    def __repr__(self) -> str:
        return "tf.AUTO_REUSE"


AUTO_REUSE: Any = _Reuse()


class VariableScope(str):
    """What `with tf.variable_scope(...) as scope` gives: the scope's name (a str, as before)
    with TF's `.name` and `.reuse_variables()`."""

    @property
    def name(self) -> str:
        return str(self)

    def reuse_variables(self) -> None:
        """From here to the end of the `with` block, get_variable returns existing variables."""
        if _scopes.reuse:
            _scopes.reuse[-1] = True
        else:  # the root scope: from now on in this thread, as TF's root scope
            _scopes.reuse.append(True)


class _VariableScope(threading.local):
    reuse: list[Any]

    def __init__(self) -> None:
        self.reuse = []


_scopes = _VariableScope()


def get_variable_scope() -> VariableScope:
    """The current variable scope (`tf.get_variable_scope().reuse_variables()` works)."""
    return VariableScope(get_default_graph().get_name_scope())


@contextmanager
def variable_scope(
    name_or_scope: Any,
    default_name: str | None = None,
    values: Any = None,
    reuse: bool | None = None,
    **_ignored: Any,
) -> Iterator[str]:
    """TF1's variable_scope: a name scope that can be re-entered (`reuse=True`) so that
    `get_variable` returns the variables created the first time."""
    g = get_default_graph()
    name = name_or_scope or default_name or "scope"
    outer = g.get_name_scope()
    # a scope object (from `as scope`) names its scope absolutely
    full = str(name) if isinstance(name, VariableScope) or not outer else f"{outer}/{name}"
    # entering a scope restarts the layer names under it (TF closes its subscopes), so a model
    # built again under `variable_scope(name, reuse=True)` names its layers as the first time
    counts = g.__dict__.get("_tf_layer_names")
    if counts:
        for key in [k for k in counts if k.startswith(full + "/")]:
            del counts[key]
    inherited = _scopes.reuse[-1] if _scopes.reuse else False
    _scopes.reuse.append(
        True if reuse is True or inherited is True else AUTO_REUSE if AUTO_REUSE in (reuse, inherited) else False
    )
    try:
        with g.name_scope(full + "/") as scope:
            g._names.setdefault(full, 1)
            yield VariableScope(scope[:-1])
    finally:
        _scopes.reuse.pop()


def get_variable(
    name: str,
    shape: Sequence[int] | None = None,
    dtype: Any = _dt.float32,
    initializer: Any = None,
    trainable: bool = True,
    **_ignored: Any,
) -> Variable:
    """TF1's get_variable: the variable `scope/name`, created with `initializer` (a value,
    a tensor, or a callable taking shape and dtype; Glorot-uniform by default), or the
    existing one inside `variable_scope(..., reuse=True)`."""
    from .ops import random_uniform

    g = get_default_graph()
    scope = g.get_name_scope()
    full = f"{scope}/{name}" if scope else name
    existing = next((v for v in g.get_collection(GLOBAL_VARIABLES) if v.op.name == full), None)
    reuse = _scopes.reuse[-1] if _scopes.reuse else False
    if existing is not None:
        if not reuse:
            raise ValueError(
                f"Variable {full} already exists, disallowed: did you mean to set reuse=True in variable_scope?"
            )
        return existing
    if reuse is True:
        raise ValueError(f"Variable {full} does not exist: variable_scope(reuse=True) only returns existing ones")
    dt = as_dtype(dtype)
    if initializer is None:
        if shape is None:
            raise ValueError(f"get_variable('{name}') needs a shape or an initializer value")
        fan_in = shape[-2] if len(shape) >= 2 else shape[0] if shape else 1
        fan_out = shape[-1] if shape else 1
        lim = (6.0 / max(fan_in + fan_out, 1)) ** 0.5

        def initializer(shape: Sequence[int], dtype: Any) -> Tensor:
            return random_uniform(shape, -lim, lim, dtype=dtype)

    init: Callable[[], Any] | Any = initializer
    if callable(initializer) and not isinstance(initializer, Tensor):

        def init() -> Any:
            return initializer(shape, dt)

    return Variable(init, trainable=trainable, name=name, dtype=dt)
