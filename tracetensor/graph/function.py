"""`tt.function`: traces an eager function into a graph on its first call for each input
signature (like `tf.function` / `torch.jit.trace`), then runs the cached plan.

Tracing runs the function once, eagerly, while every registry op it applies is also
recorded as a graph node (same op, same attributes). Tensors the function did not get
as arguments (parameters, constants) become `Captured` nodes read live at each call, so
training the parameters between calls is seen. As with `torch.jit.trace`, Python
control flow is frozen at the branch taken while tracing."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _naming
from .. import events as _events
from .._grad_mode import MODE, no_grad
from .._source import user_frames
from ..device import get_default_device
from ..tensor import Tensor as EagerTensor
from ..tensor import mark_values_only
from ..tensor import tensor as _eager_tensor
from ..tensor import tracing as _tracing
from .core import Graph, Tensor
from .ops import placeholder
from .session import Session

_trace_lock = threading.RLock()
_SIMPLE = (int, float, str, bool, type(None), complex)


class _Trace:
    """One traced signature: its graph, session, placeholders and output structure."""

    def __init__(
        self,
        graph: Graph,
        session: Session,
        inputs: list[tuple[int | str, Tensor]],
        spec: Any,
        fetches: list[Tensor],
    ) -> None:
        self.graph, self.session, self.inputs, self.spec, self.fetches = graph, session, inputs, spec, fetches
        self.captured: list[EagerTensor] = []  # parameters and constants the function reads


class Function:
    """A traced function: call it like the original. `.graph` is the latest trace's
    graph (inspect it, run it in a Session, export it); `.graphs` has one per signature."""

    def __init__(self, fn: Callable, input_signature: Any = None) -> None:
        self._fn = fn
        self._traces: dict[Any, _Trace] = {}
        functools.update_wrapper(self, fn)

    @property
    def graph(self) -> Graph | None:
        return next(reversed(self._traces.values())).graph if self._traces else None

    @property
    def graphs(self) -> list[Graph]:
        return [t.graph for t in self._traces.values()]

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def get_concrete_function(self, *args: Any, **kwargs: Any) -> Graph:
        """Traces (if needed) for these arguments and returns the graph."""
        return self._get(args, kwargs).graph

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tr = self._get(args, kwargs)
        feed: dict[Tensor, Any] = {}
        for key, ph in tr.inputs:
            a = args[key] if isinstance(key, int) else kwargs[key]
            feed[ph] = a._data if isinstance(a, EagerTensor) else np.asarray(a)
        vals = tr.session._run(tr.fetches, feed, "tt.function", getattr(self._fn, "__qualname__", "function"), raw=True)
        dev = tr.session.device
        # numpy reductions give scalars; eager tensors always hold arrays
        outs = [EagerTensor._make(np.asarray(v) if isinstance(v, np.generic) else v, dev) for v in vals]
        if MODE.enabled:
            wanted = [t for t in (*args, *kwargs.values(), *tr.captured) if getattr(t, "requires_grad", False)]
            if wanted:
                # the plan computes values only (no tape): a later `.backward()` on these
                # outputs says so, instead of the bare "does not require grad"
                fn = getattr(self._fn, "__qualname__", "function")
                for o in outs:
                    mark_values_only(
                        o,
                        f"it is a result of @tt.function {fn!r}, whose traced plan computes "
                        "values only: no gradient flows back to its inputs or parameters. "
                        "Call the undecorated function to train through it, and use "
                        "@tt.function for inference",
                    )
        return _unflatten(tr.spec, outs)

    # ------------------------------------------------------------------ tracing
    def _key(self, args: tuple, kwargs: dict) -> Any:
        def k(a: Any) -> Any:
            if isinstance(a, EagerTensor):
                return ("T", a.shape, a._data.dtype.str, str(a.device))
            if isinstance(a, np.ndarray):
                return ("A", a.shape, a.dtype.str)
            if isinstance(a, _SIMPLE):
                return ("V", type(a).__name__, a)
            if isinstance(a, (tuple, list)) and all(isinstance(x, _SIMPLE) for x in a):
                return ("V", type(a).__name__, tuple(a))
            return ("O", id(a))  # any other object: traced per object

        return (tuple(k(a) for a in args), tuple(sorted((n, k(v)) for n, v in kwargs.items())))

    def _get(self, args: tuple, kwargs: dict) -> _Trace:
        key = self._key(args, kwargs)
        tr = self._traces.get(key)
        if tr is None:
            tr = self._traces[key] = self._trace(args, kwargs)
        return tr

    def _trace(self, args: tuple, kwargs: dict) -> _Trace:
        g = Graph()
        names = _param_names(self._fn, len(args))
        inputs: list[tuple[int | str, Tensor]] = []
        mapping: dict[int, Tensor] = {}
        keep: list[Any] = []  # keeps traced eager tensors alive so their ids stay unique
        captured: list[EagerTensor] = []
        devs = [a.device for a in (*args, *kwargs.values()) if isinstance(a, EagerTensor)]
        dev = devs[0] if devs else get_default_device()
        with g.as_default():
            call_args = list(args)
            for i, a in enumerate(args):
                if isinstance(a, (EagerTensor, np.ndarray)):
                    t = a if isinstance(a, EagerTensor) else _eager_tensor(a, device=dev)
                    call_args[i] = t
                    ph = placeholder(t.dtype, t.shape, name=names[i])
                    mapping[id(t)] = ph
                    keep.append(t)
                    inputs.append((i, ph))
            call_kwargs = dict(kwargs)
            for n, a in kwargs.items():
                if isinstance(a, (EagerTensor, np.ndarray)):
                    t = a if isinstance(a, EagerTensor) else _eager_tensor(a, device=dev)
                    call_kwargs[n] = t
                    ph = placeholder(t.dtype, t.shape, name=n)
                    mapping[id(t)] = ph
                    keep.append(t)
                    inputs.append((n, ph))

            def lookup(t: EagerTensor) -> Tensor:
                gt = mapping.get(id(t))
                if gt is None:
                    op = g.create_op(
                        "captured",
                        "Captured",
                        (),
                        {"tensor": t},
                        name=t._name.split(":")[0] if t._name else "captured",
                        out=[(t.shape, t.dtype)],
                        stack=user_frames(),
                    )
                    gt = mapping[id(t)] = op.outputs[0]
                    keep.append(t)
                    captured.append(t)
                return gt

            # While someone listens, every eager op (functions, methods, operators) goes
            # through tensor.apply, which (while someone listens) calls this thread's tracing hook.
            def on_op(op: Any, tensors: tuple, attrs: dict, out: EagerTensor) -> None:
                gin = [lookup(t) for t in tensors]
                prefix = getattr(_naming._tls, "prefix", "")
                node = g.create_op(
                    "op",
                    op.tf_name,
                    gin,
                    attrs,
                    opdef=op,
                    name=prefix + op.tf_name,
                    out=[(out.shape, out.dtype)],
                )
                mapping[id(out)] = node.outputs[0]
                keep.append(out)

            with _trace_lock, _tracing(on_op), _events.listen(_ignore), no_grad():
                result = self._fn(*call_args, **call_kwargs)
            leaves: list[Any] = []
            spec = _flatten(result, leaves)
            fetches = [lookup(x) for x in leaves]
        sess = Session(graph=g, device=dev)
        tr = _Trace(g, sess, inputs, spec, fetches)
        tr.captured = captured
        return tr


def _ignore(event: Any) -> None:
    pass


def _param_names(fn: Callable, n: int) -> list[str]:
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def _flatten(x: Any, leaves: list[Any]) -> Any:
    if isinstance(x, EagerTensor):
        leaves.append(x)
        return len(leaves) - 1
    if isinstance(x, dict):
        return ("dict", type(x), [(k, _flatten(v, leaves)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return ("seq", type(x), [_flatten(v, leaves) for v in x])
    return ("value", x)


def _unflatten(spec: Any, outs: list[Any]) -> Any:
    if isinstance(spec, int):
        return outs[spec]
    if spec[0] == "value":
        return spec[1]
    if spec[0] == "dict":
        return spec[1]((k, _unflatten(s, outs)) for k, s in spec[2])
    items = [_unflatten(s, outs) for s in spec[2]]
    return spec[1](*items) if hasattr(spec[1], "_fields") else spec[1](items)


def function(fn: Callable | None = None, *, input_signature: Any = None, **_options: Any) -> Any:
    """`@tt.function` (or `@tt.function()`): trace on first call per signature, then run the plan."""
    if fn is None:
        return lambda f: Function(f, input_signature)
    return Function(fn, input_signature)
